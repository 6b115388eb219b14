//! The soak: a whole conference played at accelerated pace, to show that nothing in podiumd
//! grows for ever. By default 3 days × 10 rooms × 8 sessions, each session with its speaker
//! agent on `Presence/Link`, 2,000 attendees, 3 polls and 20 questions per session, with
//! failovers (a speaker's link freezes) and moderators' switches sprinkled in.
//!
//! The rooms of one time slot run together; a day is its slots one after another. After each
//! day the scenario reads podiumd's own figures (`Diagnostics/Process`: resident memory, open
//! files, threads, tasks). The target (README, "Targets"): memory after the last day within
//! 1.2 times memory after the first. At the end every poll's tally must equal the attendees'
//! latest ballots, which this process kept as it cast them.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt, stream};
use podium_client::{Client, pb};

use crate::{
    Podium,
    failover::{
        link::Agent,
        setup::{self, Show, text},
    },
};

mod report;

pub use report::{Day, Report, TARGET_GROWTH};

#[derive(Debug, Clone)]
pub struct Config {
    pub days: usize,
    pub rooms: usize,
    /// Sessions per room per day.
    pub sessions: usize,
    pub attendees: usize,
    /// Polls per session: single choice, multiple choice and rating in turn.
    pub polls: usize,
    /// Questions asked per session.
    pub questions: usize,
    /// The sessions' failover_after.
    pub failover_after: Duration,
}

/// The conference the soak plays: its rooms' speakers and every session, by day and slot.
struct Programme {
    conference_id: String,
    join_code: String,
    /// `sessions[day][slot][room]`: the session id and its speaker's show.
    sessions: Vec<Vec<Vec<Show>>>,
}

async fn programme(admin: &Client, config: &Config) -> anyhow::Result<Programme> {
    let conference = setup::conference(admin, "podium-loadgen soak").await?;
    let conference_id = conference.id;
    let mut rooms = Vec::with_capacity(config.rooms);
    for r in 1..=config.rooms {
        let staff = setup::room_with_speaker(
            admin,
            &conference_id,
            &format!("Room {r}"),
            &format!("Speaker {r}"),
        )
        .await?;
        rooms.push(staff);
    }
    // From 09:00 UTC tomorrow, 50-minute sessions five minutes apart, inside the speakers'
    // default hours.
    let first = setup::tomorrow()? + 9 * 3_600;
    let mut sessions = Vec::with_capacity(config.days);
    for day in 0..config.days {
        let mut slots = Vec::with_capacity(config.sessions);
        for slot in 0..config.sessions {
            let start = first + day as i64 * 86_400 + slot as i64 * 55 * 60;
            let mut shows = Vec::with_capacity(config.rooms);
            for staff in &rooms {
                let title = format!("Day {} talk {}", day + 1, slot + 1);
                let show = setup::session(
                    admin,
                    &conference_id,
                    staff,
                    &title,
                    (start, 50),
                    config.failover_after,
                )
                .await?;
                shows.push(show);
            }
            slots.push(shows);
        }
        sessions.push(slots);
    }
    Ok(Programme {
        conference_id,
        join_code: conference.join_code,
        sessions,
    })
}

/// Attendees joined by the conference's code, sharing a few connections as phones behind one
/// venue's Wi-Fi share its uplink.
async fn attendees(podium: &Podium, join_code: &str, n: usize) -> anyhow::Result<Vec<Client>> {
    let mut channels = Vec::new();
    for _ in 0..n.div_ceil(100).max(1) {
        channels.push(Client::connect(&podium.addr, None).await?);
    }
    stream::iter(0..n)
        .map(|i| {
            let anonymous = channels[i % channels.len()].clone();
            let join_code = join_code.to_owned();
            async move {
                let joined = anonymous
                    .access()
                    .join(pb::JoinRequest {
                        join_code,
                        display_name: format!("attendee {i}"),
                    })
                    .await
                    .context("cannot join")?
                    .into_inner();
                anyhow::Ok(anonymous.with_token(Some(joined.token))?)
            }
        })
        .buffered(32)
        .try_collect()
        .await
}

/// What the soak expects of a poll: each attendee's latest answer.
struct Expected {
    poll: pb::Poll,
    /// Attendee index → option ids or rating.
    latest: BTreeMap<usize, Answer>,
}

#[derive(Clone)]
enum Answer {
    Options(Vec<String>),
    Rating(i32),
}

/// Counters shared by the sessions of a run.
#[derive(Default)]
struct Counts {
    ballots: AtomicU64,
    failovers: AtomicU64,
    switches: AtomicU64,
    questions: AtomicU64,
}

/// One session, start to end; returns its polls with the ballots cast in them.
async fn play_session(
    podium: &Podium,
    admin: &Client,
    people: &[Client],
    show: &Show,
    index: usize,
    config: &Config,
    counts: &Counts,
) -> anyhow::Result<Vec<Expected>> {
    let (conference_id, session_id) = (&show.conference_id, &show.session_id);
    let mut agent = Agent::connect(podium, show).await?;
    admin
        .stage()
        .start_session(pb::StartSessionRequest {
            request_id: podium_client::Client::request_id(),
            conference_id: conference_id.clone(),
            session_id: session_id.clone(),
        })
        .await
        .context("cannot start a session")?;
    admin
        .questions()
        .set_qa_settings(pb::SetQaSettingsRequest {
            request_id: Client::request_id(),
            conference_id: conference_id.clone(),
            session_id: session_id.clone(),
            settings: Some(pb::QaSettings {
                allow_anonymous: true,
                require_approval: true,
            }),
        })
        .await
        .context("cannot set the session's Q&A")?;

    let mut polls = Vec::with_capacity(config.polls);
    for p in 0..config.polls {
        let (kind, options, scale) = match p % 3 {
            0 => (pb::PollKind::SingleChoice, 4, (0, 0)),
            1 => (pb::PollKind::MultipleChoice, 4, (0, 0)),
            _ => (pb::PollKind::Rating, 0, (1, 5)),
        };
        let poll = admin
            .polls()
            .create_poll(pb::CreatePollRequest {
                request_id: Client::request_id(),
                conference_id: conference_id.clone(),
                session_id: session_id.clone(),
                question: text(&format!("Question {}", p + 1)),
                kind: kind as i32,
                options: (0..options)
                    .map(|o| text(&format!("Option {}", o + 1)).unwrap_or_default())
                    .collect(),
                max_choices: if kind == pb::PollKind::MultipleChoice {
                    2
                } else {
                    0
                },
                scale_min: scale.0,
                scale_max: scale.1,
                ..Default::default()
            })
            .await
            .context("cannot create a poll")?
            .into_inner()
            .poll
            .context("no poll in the answer")?;
        admin
            .polls()
            .open_poll(pb::OpenPollRequest {
                conference_id: conference_id.clone(),
                poll_id: poll.id.clone(),
            })
            .await
            .context("cannot open a poll")?;
        polls.push(Expected {
            poll,
            latest: BTreeMap::new(),
        });
    }

    // A few watchers follow the first poll while the votes come in, then leave.
    let mut watchers = Vec::new();
    if let Some(first) = polls.first() {
        for person in people.iter().take(20) {
            let stream = person
                .polls()
                .watch_results(pb::WatchResultsRequest {
                    conference_id: conference_id.clone(),
                    poll_id: first.poll.id.clone(),
                    language: String::new(),
                })
                .await
                .context("cannot watch results")?
                .into_inner();
            watchers.push(tokio::spawn(stream.for_each(|_| async {})));
        }
    }

    // Every attendee votes in every poll; then one in ten changes their mind.
    for expected in &mut polls {
        let first: Vec<(usize, Answer)> = (0..people.len())
            .map(|a| (a, answer(&expected.poll, a + index)))
            .collect();
        let second: Vec<(usize, Answer)> = (0..people.len())
            .filter(|a| (a + index).is_multiple_of(10))
            .map(|a| (a, answer(&expected.poll, a + index + 1)))
            .collect();
        for round in [first, second] {
            cast(people, conference_id, &expected.poll.id, &round).await?;
            counts
                .ballots
                .fetch_add(round.len() as u64, Ordering::Relaxed);
            expected.latest.extend(round);
        }
    }
    for watcher in watchers {
        watcher.abort();
    }

    // Questions: asked by attendees, most published, some answered, the rest dismissed.
    for q in 0..config.questions {
        let asker = &people[(index * config.questions + q) % people.len()];
        let question = asker
            .questions()
            .ask_question(pb::AskQuestionRequest {
                request_id: Client::request_id(),
                conference_id: conference_id.clone(),
                session_id: session_id.clone(),
                text: format!("Question {q} about open data in session {index}?"),
                anonymous: q % 4 == 0,
            })
            .await
            .context("a question was refused")?
            .into_inner()
            .question
            .context("no question in the answer")?;
        let (action, reason) = match q % 5 {
            0 => (pb::ModerationAction::Dismiss, "answered in the talk"),
            1 => (pb::ModerationAction::Answer, ""),
            _ => (pb::ModerationAction::Publish, ""),
        };
        admin
            .questions()
            .moderate_question(pb::ModerateQuestionRequest {
                request_id: Client::request_id(),
                conference_id: conference_id.clone(),
                question_id: question.id.clone(),
                action: action as i32,
                reason: reason.into(),
            })
            .await
            .context("cannot moderate a question")?;
        if action == pb::ModerationAction::Publish {
            let voter = &people[(index * config.questions + q + 1) % people.len()];
            voter
                .questions()
                .upvote_question(pb::UpvoteQuestionRequest {
                    conference_id: conference_id.clone(),
                    question_id: question.id,
                })
                .await
                .context("an upvote was refused")?;
        }
        counts.questions.fetch_add(1, Ordering::Relaxed);
    }

    // One session in four loses its speaker; another, the moderator switches to the recording
    // and back.
    match index % 4 {
        1 => {
            agent.stop().await?;
            tokio::time::sleep(config.failover_after * 2).await;
            counts.failovers.fetch_add(1, Ordering::Relaxed);
        }
        2 => {
            for kind in [pb::SourceKind::Recording, pb::SourceKind::Speaker] {
                admin
                    .stage()
                    .switch_source(pb::SwitchSourceRequest {
                        request_id: podium_client::Client::request_id(),
                        conference_id: conference_id.clone(),
                        session_id: session_id.clone(),
                        kind: kind as i32,
                        speaker_id: String::new(),
                        recording_id: String::new(),
                    })
                    .await
                    .context("cannot switch the source")?;
            }
            counts.switches.fetch_add(2, Ordering::Relaxed);
        }
        _ => {}
    }

    for expected in &polls {
        admin
            .polls()
            .close_poll(pb::ClosePollRequest {
                conference_id: conference_id.clone(),
                poll_id: expected.poll.id.clone(),
            })
            .await
            .context("cannot close a poll")?;
    }
    for person in people.iter().skip(index % 7).step_by(40) {
        person
            .ratings()
            .rate_session(pb::RateSessionRequest {
                request_id: Client::request_id(),
                conference_id: conference_id.clone(),
                session_id: session_id.clone(),
                rating: 1 + (index % 5) as i32,
                comment: String::new(),
            })
            .await
            .context("a rating was refused")?;
    }
    admin
        .stage()
        .end_session(pb::EndSessionRequest {
            request_id: podium_client::Client::request_id(),
            conference_id: conference_id.clone(),
            session_id: session_id.clone(),
        })
        .await
        .context("cannot end a session")?;
    agent.close().await;
    Ok(polls)
}

/// Casts each attendee's ballot, 64 at a time.
async fn cast(
    people: &[Client],
    conference_id: &str,
    poll_id: &str,
    ballots: &[(usize, Answer)],
) -> anyhow::Result<()> {
    stream::iter(ballots.iter().cloned())
        .map(|(a, choice)| {
            let person = people[a].clone();
            let (conference_id, poll_id) = (conference_id.to_owned(), poll_id.to_owned());
            async move {
                let (option_ids, rating) = match choice {
                    Answer::Options(ids) => (ids, 0),
                    Answer::Rating(r) => (Vec::new(), r),
                };
                person
                    .polls()
                    .cast_ballot(pb::CastBallotRequest {
                        conference_id,
                        poll_id,
                        ballot_id: Client::request_id(),
                        option_ids,
                        rating,
                        text: String::new(),
                    })
                    .await
                    .context("a ballot was refused")?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// A varied but reproducible answer to `poll` from seed `n`.
fn answer(poll: &pb::Poll, n: usize) -> Answer {
    let options: Vec<&str> = poll.options.iter().map(|o| o.id.as_str()).collect();
    match poll.kind() {
        pb::PollKind::Rating => Answer::Rating(1 + (n % 5) as i32),
        pb::PollKind::MultipleChoice => {
            let first = n % options.len();
            let second = (n / 3 + 1) % options.len();
            let mut ids = vec![options[first].to_owned()];
            if second != first {
                ids.push(options[second].to_owned());
            }
            Answer::Options(ids)
        }
        _ => Answer::Options(vec![options[n % options.len()].to_owned()]),
    }
}

/// Compares a closed poll's tally with the latest ballots; `None` when they agree.
async fn check_tally(
    admin: &Client,
    conference_id: &str,
    expected: &Expected,
) -> anyhow::Result<Option<String>> {
    let mut stream = admin
        .polls()
        .watch_results(pb::WatchResultsRequest {
            conference_id: conference_id.to_owned(),
            poll_id: expected.poll.id.clone(),
            language: String::new(),
        })
        .await?
        .into_inner();
    let results = stream
        .next()
        .await
        .context("no results")??
        .results
        .context("a closed poll without results")?;
    let mut options: BTreeMap<String, u64> = BTreeMap::new();
    let mut ratings: BTreeMap<i32, u64> = BTreeMap::new();
    for answer in expected.latest.values() {
        match answer {
            Answer::Options(ids) => {
                for id in ids {
                    *options.entry(id.clone()).or_default() += 1;
                }
            }
            Answer::Rating(r) => *ratings.entry(*r).or_default() += 1,
        }
    }
    let counted: BTreeMap<String, u64> = results
        .options
        .iter()
        .filter(|o| o.count > 0)
        .map(|o| (o.option_id.clone(), o.count))
        .collect();
    let rated: BTreeMap<i32, u64> = results
        .rating
        .iter()
        .flat_map(|r| r.distribution.iter().enumerate())
        .filter(|(_, count)| **count > 0)
        .map(|(i, count)| (1 + i as i32, *count))
        .collect();
    let ballots = expected.latest.len() as u64;
    if results.ballots != ballots || counted != options || rated != ratings {
        return Ok(Some(format!(
            "poll {}: {} ballots {counted:?} {rated:?}, expected {ballots} {options:?} {ratings:?}",
            expected.poll.id, results.ballots
        )));
    }
    Ok(None)
}

async fn process(admin: &Client) -> anyhow::Result<pb::ProcessResponse> {
    Ok(admin
        .diagnostics()
        .process(pb::ProcessRequest {})
        .await
        .context("cannot read podiumd's figures")?
        .into_inner())
}

/// Plays the conference against `podium`; `progress` hears each slot as it ends.
pub async fn run(
    podium: &Podium,
    config: &Config,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<Report> {
    if config.rooms == 0 || config.sessions == 0 || config.attendees == 0 {
        bail!("the soak needs at least one room, session and attendee");
    }
    let admin = Client::connect(&podium.addr, Some(podium.admin_token.clone())).await?;
    let programme = programme(&admin, config).await?;
    progress(&format!(
        "{} sessions scheduled; {} attendees joining",
        config.days * config.rooms * config.sessions,
        config.attendees
    ));
    let people = Arc::new(attendees(podium, &programme.join_code, config.attendees).await?);
    let counts = Counts::default();
    let start = process(&admin).await?;
    let mut days = Vec::with_capacity(config.days);
    let mut expected = Vec::new();
    let mut index = 0;
    for (day, slots) in programme.sessions.iter().enumerate() {
        let started = Instant::now();
        let ballots_before = counts.ballots.load(Ordering::Relaxed);
        for (slot, shows) in slots.iter().enumerate() {
            let sessions = shows.iter().enumerate().map(|(room, show)| {
                play_session(podium, &admin, &people, show, index + room, config, &counts)
            });
            for polls in futures::future::try_join_all(sessions).await? {
                expected.extend(polls);
            }
            index += shows.len();
            progress(&format!("day {} slot {} played", day + 1, slot + 1));
        }
        // Let the coalescing publishers and closed streams settle before reading memory.
        tokio::time::sleep(Duration::from_secs(2)).await;
        days.push(Day {
            process: process(&admin).await?,
            ballots: counts.ballots.load(Ordering::Relaxed) - ballots_before,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let mut tally_mismatches = Vec::new();
    for poll in &expected {
        if let Some(mismatch) = check_tally(&admin, &programme.conference_id, poll).await? {
            tally_mismatches.push(mismatch);
        }
    }
    Ok(Report {
        config: config.clone(),
        start,
        days,
        polls_checked: expected.len(),
        tally_mismatches,
        failovers: counts.failovers.load(Ordering::Relaxed),
        switches: counts.switches.load(Ordering::Relaxed),
        questions: counts.questions.load(Ordering::Relaxed),
    })
}
