//! A log that looks like a real conference, written straight through the log library: the
//! agenda (rooms, speakers, sessions over three days), each session going live with its links
//! changing, three polls per session (a choice, a rating, a word cloud) with the attendees'
//! ballots and re-votes, questions with upvotes, and ratings. `podium-loadgen startup` writes
//! one of a million events with it to measure start-up, and the snapshot tests write small ones
//! to compare read models; both need every read model fed, which is why it lives beside
//! `Podium::open`, the one place that knows them all.
//!
//! Events are what the services would append (the same types, fields and streams), but nothing
//! is decided: no text is cleaned and no rule is checked, so use it only on a log of its own.

use std::{collections::BTreeMap, sync::Arc};

use futures::{StreamExt, stream};
use podium_agenda::agenda_stream;
use podium_eventlog::{AppendOutcome, EventLog, ExpectedVersion, NewEvent, Result};
use podium_feedback::store::{
    ballot_stream, poll_stream,
    qa::{question_stream, upvote_stream},
    ratings::rating_stream,
};
use podium_proto::{time::timestamp_from_millis, v1 as pb};
use podium_status::codec::status_stream;
use prost::{Message, Name};
use uuid::Uuid;

/// How large the agenda is.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub days: usize,
    pub rooms: usize,
    pub sessions_per_room_and_day: usize,
}

/// Three days of ten rooms with eight sessions each, as the soak of issue 14 describes.
pub const THREE_DAYS: Shape = Shape {
    days: 3,
    rooms: 10,
    sessions_per_room_and_day: 8,
};

const SPEAKERS: usize = 160;
const ATTENDEES: usize = 2_000;
const QUESTIONS_PER_SESSION: usize = 20;
const WORDS: [&str; 12] = [
    "latency", "sled", "tonic", "failover", "snapshot", "replay", "ballot", "stream", "rust",
    "quorum", "fsync", "agenda",
];
/// Appends in flight at once: enough for the log's writer to commit large groups.
const IN_FLIGHT: usize = 512;
/// 2024-11-14 09:00 UTC, the first session's start.
const START_MS: i64 = 1_731_574_800_000;

/// One append: a stream and its events, appended in order.
type Append = (String, Vec<NewEvent>);

/// Writes a conference of about `events` events (at least the agenda's and each session's
/// lifecycle; ballots make up the rest) to `log`, and returns how many it wrote. Appends of one
/// step run concurrently; steps run one after another, so a poll exists before its ballots.
pub async fn write_conference(
    log: Arc<dyn EventLog>,
    conference_id: &str,
    shape: Shape,
    events: u64,
) -> Result<u64> {
    let mut written = 0u64;
    for step in conference(conference_id, shape, events) {
        let results: Vec<Result<AppendOutcome>> = stream::iter(step)
            .map(|(stream, batch)| {
                let log = log.clone();
                async move { log.append(&stream, ExpectedVersion::Any, batch).await }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        for outcome in results {
            let outcome = outcome?;
            written += outcome.last_position - outcome.first_position + 1;
        }
    }
    Ok(written)
}

fn event<M: Message + Name>(message: &M) -> NewEvent {
    NewEvent {
        id: Uuid::now_v7(),
        event_type: M::full_name(),
        payload: message.encode_to_vec(),
    }
}

fn text(s: String) -> Option<pb::LocalizedText> {
    Some(pb::LocalizedText {
        text: BTreeMap::from([("en".to_owned(), s)]).into_iter().collect(),
    })
}

fn at(ms: i64) -> Option<prost_types::Timestamp> {
    Some(timestamp_from_millis(ms))
}

/// The appends, step by step.
fn conference(c: &str, shape: Shape, events: u64) -> Vec<Vec<Append>> {
    let Shape {
        days,
        rooms,
        sessions_per_room_and_day,
    } = shape;
    let sessions = days * rooms * sessions_per_room_and_day;
    let mut agenda = vec![event(&pb::ConferenceCreated {
        conference_id: c.into(),
        title: text(format!("Conference {c}")),
        default_language: "en".into(),
        time_zone: "Europe/Berlin".into(),
        join_code: format!("JOIN-{c}"),
        created_by: "admin".into(),
    })];
    for r in 0..rooms {
        agenda.push(event(&pb::RoomAdded {
            conference_id: c.into(),
            room_id: format!("room-{r}"),
            name: format!("Room {r}"),
            capacity: 300,
        }));
    }
    for s in 0..SPEAKERS {
        agenda.push(event(&pb::SpeakerAdded {
            conference_id: c.into(),
            speaker_id: format!("spk-{s}"),
            name: format!("Speaker {s}"),
            organisation: "Podium".into(),
            time_zone: "Europe/Berlin".into(),
            available_from_minute: 0,
            available_until_minute: 1439,
            personal: None,
        }));
    }
    let start_of = |i: usize| {
        let (day, slot) = (
            i / (rooms * sessions_per_room_and_day),
            i % sessions_per_room_and_day,
        );
        START_MS + (day as i64) * 86_400_000 + (slot as i64) * 3_600_000
    };
    for i in 0..sessions {
        agenda.push(event(&pb::SessionScheduled {
            conference_id: c.into(),
            session_id: format!("ses-{i}"),
            title: text(format!("Session {i}")),
            kind: pb::SessionKind::Talk as i32,
            start: at(start_of(i)),
            end: at(start_of(i) + 2_700_000),
            room_id: format!("room-{}", (i / sessions_per_room_and_day) % rooms),
            speaker_ids: vec![format!("spk-{}", i % SPEAKERS)],
            backup_speaker_ids: vec![format!("spk-{}", (i + 1) % SPEAKERS)],
            failover: None,
            revision: 0,
        }));
    }
    let mut steps: Vec<Vec<Append>> = agenda
        .chunks(512)
        .map(|chunk| vec![(agenda_stream(c), chunk.to_vec())])
        .collect();

    // Everything but ballots, per session: went live, links, polls, questions, upvotes, ratings.
    let fixed_per_session = 1 + 4 + 3 * 3 + QUESTIONS_PER_SESSION * 3 + 10;
    let fixed =
        steps.iter().flatten().map(|(_, e)| e.len()).sum::<usize>() + sessions * fixed_per_session;
    let ballots_per_poll = (events.saturating_sub(fixed as u64) / (sessions as u64 * 3)) as usize;

    for i in 0..sessions {
        let session = format!("ses-{i}");
        let t = start_of(i);
        let mut opening: Vec<Append> = Vec::new();
        let status = status_stream(c, &session);
        let speaker = format!("spk-{}", i % SPEAKERS);
        let mut status_events = vec![event(&pb::SessionWentLive {
            conference_id: c.into(),
            session_id: session.clone(),
            source: Some(pb::Source {
                kind: pb::SourceKind::Speaker as i32,
                speaker_id: speaker.clone(),
                since: at(t),
                ..Default::default()
            }),
            at: at(t),
            by: "moderator".into(),
        })];
        for (k, state) in [
            pb::LinkState::Healthy,
            pb::LinkState::Poor,
            pb::LinkState::Healthy,
            pb::LinkState::Healthy,
        ]
        .into_iter()
        .enumerate()
        {
            status_events.push(event(&pb::LinkChanged {
                conference_id: c.into(),
                session_id: session.clone(),
                speaker_id: speaker.clone(),
                state: state as i32,
                figures: Some(pb::LinkFigures {
                    round_trip_ms: 40 + k as u32 * 30,
                    packet_loss_percent: k as f32,
                    upstream_kbps: 3_000,
                }),
                at: at(t + 60_000 * k as i64),
            }));
        }
        opening.push((status, status_events));
        let polls: Vec<(String, pb::PollKind)> = [
            pb::PollKind::SingleChoice,
            pb::PollKind::Rating,
            pb::PollKind::WordCloud,
        ]
        .into_iter()
        .enumerate()
        .map(|(p, kind)| (format!("poll-{i}-{p}"), kind))
        .collect();
        for (poll, kind) in &polls {
            let options = if *kind == pb::PollKind::SingleChoice {
                (0..4)
                    .map(|o| pb::PollOption {
                        id: format!("opt-{o}"),
                        text: text(format!("Option {o}")),
                        label: String::new(),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let created = pb::PollCreated {
                poll: Some(pb::Poll {
                    id: poll.clone(),
                    conference_id: c.into(),
                    session_id: session.clone(),
                    question: text(format!("Question of {poll}")),
                    kind: *kind as i32,
                    options,
                    max_choices: 1,
                    scale_min: 1,
                    scale_max: 5,
                    visibility: pb::ResultVisibility::Live as i32,
                    state: pb::PollState::Draft as i32,
                    created_at: at(t),
                    ..Default::default()
                }),
                created_by: "moderator".into(),
            };
            let opened = pb::PollOpened {
                conference_id: c.into(),
                poll_id: poll.clone(),
                at: at(t + 600_000),
            };
            opening.push((poll_stream(c, poll), vec![event(&created), event(&opened)]));
        }
        let mut questions = Vec::new();
        for q in 0..QUESTIONS_PER_SESSION {
            let question = format!("q-{i}-{q}");
            let author = format!("att-{}", (i * 7 + q) % ATTENDEES);
            opening.push((
                question_stream(c, &question),
                vec![event(&pb::QuestionAsked {
                    conference_id: c.into(),
                    session_id: session.clone(),
                    question_id: question.clone(),
                    author: author.clone(),
                    author_name: format!("Attendee {author}"),
                    anonymous: false,
                    text: format!(
                        "How does the {} work with {}?",
                        WORDS[q % 12],
                        WORDS[i % 12]
                    ),
                    state: pb::QuestionState::Published as i32,
                    at: at(t + 900_000),
                    personal: None,
                })],
            ));
            questions.push(question);
        }
        steps.push(opening);

        let mut during: Vec<Append> = Vec::new();
        for (q, question) in questions.iter().enumerate() {
            for v in 0..2 {
                let voter = format!("att-{}", (i * 13 + q * 3 + v + 1) % ATTENDEES);
                during.push((
                    upvote_stream(c, question, &voter),
                    vec![event(&pb::QuestionUpvoted {
                        conference_id: c.into(),
                        question_id: question.clone(),
                        voter,
                    })],
                ));
            }
        }
        for r in 0..10 {
            let rater = format!("att-{}", (i * 11 + r) % ATTENDEES);
            during.push((
                rating_stream(c, &session, &rater),
                vec![event(&pb::SessionRated {
                    conference_id: c.into(),
                    session_id: session.clone(),
                    rater,
                    rating: 1 + (r as i32 % 5),
                    comment: String::new(),
                    at: at(t + 2_400_000),
                    personal: None,
                })],
            ));
        }
        for (p, (poll, kind)) in polls.iter().enumerate() {
            // Each voter's ballots in one append: a first vote and, past the attendees, re-votes.
            let mut by_voter: BTreeMap<usize, Vec<NewEvent>> = BTreeMap::new();
            for b in 0..ballots_per_poll {
                let voter = (b + i * 17 + p) % ATTENDEES;
                let (option_ids, rating, answer) = match kind {
                    pb::PollKind::SingleChoice => {
                        (vec![format!("opt-{}", b % 4)], 0, String::new())
                    }
                    pb::PollKind::Rating => (Vec::new(), 1 + (b % 5) as i32, String::new()),
                    _ => (
                        Vec::new(),
                        0,
                        format!("{} {}", WORDS[b % 12], WORDS[(b / 12 + i) % 12]),
                    ),
                };
                by_voter
                    .entry(voter)
                    .or_default()
                    .push(event(&pb::BallotCast {
                        conference_id: c.into(),
                        poll_id: poll.clone(),
                        voter: format!("att-{voter}"),
                        ballot_id: Uuid::now_v7().to_string(),
                        option_ids,
                        rating,
                        text: answer,
                    }));
            }
            for (voter, ballots) in by_voter {
                let stream = ballot_stream(c, poll, &format!("att-{voter}"));
                for chunk in ballots.chunks(1024) {
                    during.push((stream.clone(), chunk.to_vec()));
                }
            }
        }
        steps.push(during);

        let mut closing: Vec<Append> = Vec::new();
        for (poll, _) in &polls {
            closing.push((
                poll_stream(c, poll),
                vec![event(&pb::PollClosed {
                    conference_id: c.into(),
                    poll_id: poll.clone(),
                    at: at(t + 2_400_000),
                })],
            ));
        }
        steps.push(closing);
    }
    steps
}
