//! The workload: a conference set up once, then in every cycle a storm of the writes a live
//! show makes at once: attendees' ballots (re-voting on polls that stay open across cycles,
//! anonymous ones included), questions, a moderator creating, opening and closing polls, an
//! organiser adding rooms and speakers and uploading recordings. Every write is entered in the
//! [`Ledger`] as sent before it leaves and as acknowledged when podiumd's answer arrives. The
//! storm runs until podiumd is killed under it.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use podium_client::{Client, pb};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::ledger::{AckedAt, Ballot, Ledger, PollRecord, Question, Upload, Write};

pub const CONFERENCE: &str = "powerloss";
const JOIN_CODE: &str = "POWER-CUT";
/// The room `set_up` adds; the agenda worker's rooms come on top.
pub const MAIN_HALL: &str = "Main hall";
/// Attendees who vote and ask; three ballot workers share them.
const ATTENDEES: usize = 24;
const BALLOT_WORKERS: usize = 3;
/// Polls the moderator keeps open at most.
const OPEN_POLLS: usize = 4;

/// The people of the show and what `set_up` made.
#[derive(Debug, Clone)]
pub struct Cast {
    pub session: String,
    pub organiser: String,
    pub moderator: String,
    /// (attendee id, token).
    pub attendees: Vec<(String, String)>,
}

fn text(en: &str) -> Option<pb::LocalizedText> {
    Some(pb::LocalizedText {
        text: HashMap::from([("en".to_owned(), en.to_owned())]),
    })
}

/// Creates the conference, a room and a session, tokens for an organiser and a moderator, and
/// joins the attendees. Runs before the first storm, with nothing killed under it.
pub async fn set_up(addr: &str, admin_token: String) -> anyhow::Result<Cast> {
    let admin = Client::connect(addr, Some(admin_token)).await?;
    admin
        .agenda()
        .create_conference(pb::CreateConferenceRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            title: text("Power cut"),
            default_language: "en".into(),
            time_zone: "Asia/Phnom_Penh".into(),
            join_code: JOIN_CODE.into(),
        })
        .await
        .context("creating the conference")?;
    let token = |role: pb::Role, name: &'static str| {
        let access = admin.access();
        async move {
            let mut access = access;
            let response = access
                .issue_token(pb::IssueTokenRequest {
                    role: role as i32,
                    conference_id: CONFERENCE.into(),
                    name: name.into(),
                    ..Default::default()
                })
                .await
                .with_context(|| format!("issuing a {name} token"))?;
            anyhow::Ok(response.into_inner().token)
        }
    };
    let organiser = token(pb::Role::Organiser, "organiser").await?;
    let moderator = token(pb::Role::Moderator, "moderator").await?;
    let staff = admin.with_token(Some(organiser.clone()))?;
    let room = staff
        .agenda()
        .add_room(pb::AddRoomRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            name: MAIN_HALL.into(),
            capacity: 300,
        })
        .await
        .context("adding the room")?
        .into_inner()
        .room
        .context("no room")?;
    let start = prost_types::Timestamp {
        seconds: 1_900_000_000,
        nanos: 0,
    };
    let end = prost_types::Timestamp {
        seconds: start.seconds + 3600,
        nanos: 0,
    };
    let session = staff
        .agenda()
        .add_session(pb::AddSessionRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            title: text("Keynote"),
            start: Some(start),
            end: Some(end),
            room_id: room.id,
            ..Default::default()
        })
        .await
        .context("adding the session")?
        .into_inner()
        .session
        .context("no session")?;
    let mut attendees = Vec::with_capacity(ATTENDEES);
    for i in 0..ATTENDEES {
        let joined = admin
            .access()
            .join(pb::JoinRequest {
                join_code: JOIN_CODE.into(),
                display_name: format!("Attendee {i}"),
            })
            .await
            .context("joining")?
            .into_inner();
        let id = joined.principal.context("no principal")?.id;
        attendees.push((id, joined.token));
    }
    Ok(Cast {
        session: session.id,
        organiser,
        moderator,
        attendees,
    })
}

/// A storm in progress.
pub struct Storm {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

/// What every worker shares.
#[derive(Clone)]
struct Crew {
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    cast: Cast,
    cycle: u32,
}

impl Crew {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Storm {
    /// Starts the workers against podiumd at `addr`.
    pub async fn start(
        addr: &str,
        cast: &Cast,
        ledger: Arc<Mutex<Ledger>>,
        cycle: u32,
        seed: u64,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let crew = Crew {
            ledger,
            stop: stop.clone(),
            cast: cast.clone(),
            cycle,
        };
        let rng = |worker: u64| StdRng::seed_from_u64(seed ^ (u64::from(cycle) << 20) ^ worker);
        let client = Client::connect(addr, None).await?;
        let as_who = |token: &String| client.with_token(Some(token.clone()));
        let mut tasks = Vec::new();
        for worker in 0..BALLOT_WORKERS {
            let voters = cast
                .attendees
                .iter()
                .skip(worker)
                .step_by(BALLOT_WORKERS)
                .map(|(id, token)| Ok((id.clone(), as_who(token)?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            tasks.push(tokio::spawn(ballots(
                crew.clone(),
                voters,
                rng(worker as u64),
            )));
        }
        let attendees = cast
            .attendees
            .iter()
            .map(|(_, token)| as_who(token))
            .collect::<Result<Vec<_>, _>>()?;
        let moderator = as_who(&cast.moderator)?;
        let organiser = as_who(&cast.organiser)?;
        tasks.push(tokio::spawn(polls(crew.clone(), moderator, rng(10))));
        tasks.push(tokio::spawn(questions(crew.clone(), attendees, rng(11))));
        tasks.push(tokio::spawn(agenda(crew.clone(), organiser.clone())));
        tasks.push(tokio::spawn(uploads(crew, organiser, rng(12))));
        Ok(Self { stop, tasks })
    }

    /// Stops the workers once podiumd is gone: whatever they were waiting for never comes.
    pub async fn end(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            match tokio::time::timeout(Duration::from_secs(30), task).await {
                Ok(joined) => joined??,
                Err(_) => anyhow::bail!("a storm worker did not stop within 30 s of the cut"),
            }
        }
        Ok(())
    }
}

/// A pause after a refused write, so that a worker whose server is gone does not spin.
async fn after_error(crew: &Crew) {
    if crew.running() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Attendees voting, each on one poll at a time: a new ballot replaces their last one.
async fn ballots(crew: Crew, voters: Vec<(String, Client)>, mut rng: StdRng) -> anyhow::Result<()> {
    while crew.running() {
        let (voter, client) = voters.choose(&mut rng).context("no voters")?;
        let chosen = {
            let mut ledger = crew.ledger();
            let open: Vec<&String> = ledger
                .polls
                .iter()
                .filter(|(_, p)| p.takes_ballots())
                .map(|(id, _)| id)
                .collect();
            open.choose(&mut rng)
                .map(|id| (*id).clone())
                .and_then(|id| {
                    let poll = ledger.polls.get_mut(&id)?;
                    let option = poll.options.choose(&mut rng)?.clone();
                    let sent = poll.ballots.entry(voter.clone()).or_default();
                    sent.push(Ballot {
                        option: option.clone(),
                        acked: false,
                    });
                    Some((id, option, sent.len() - 1))
                })
        };
        let Some((poll_id, option, index)) = chosen else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let ballot_id = Uuid::new_v4().to_string();
        let answer = client
            .polls()
            .cast_ballot(pb::CastBallotRequest {
                conference_id: CONFERENCE.into(),
                poll_id: poll_id.clone(),
                ballot_id: ballot_id.clone(),
                option_ids: vec![option],
                ..Default::default()
            })
            .await;
        match answer {
            Ok(response) => {
                let mut ledger = crew.ledger();
                if let Some(sent) = ledger
                    .polls
                    .get_mut(&poll_id)
                    .and_then(|p| p.ballots.get_mut(voter))
                {
                    sent[index].acked = true;
                }
                ledger.positions.push(AckedAt {
                    position: response.into_inner().position,
                    event_type: "podium.v1.BallotCast",
                    key: ballot_id,
                });
            }
            Err(_) => after_error(&crew).await,
        }
    }
    Ok(())
}

/// The moderator: keeps a few polls open (every other one anonymous) and closes them.
async fn polls(crew: Crew, moderator: Client, mut rng: StdRng) -> anyhow::Result<()> {
    let mut made = 0u32;
    while crew.running() {
        let open: Vec<String> = crew
            .ledger()
            .polls
            .iter()
            .filter(|(_, p)| p.takes_ballots())
            .map(|(id, _)| id.clone())
            .collect();
        if open.len() < OPEN_POLLS {
            made += 1;
            let anonymous = made.is_multiple_of(2);
            let created = moderator
                .polls()
                .create_poll(pb::CreatePollRequest {
                    request_id: Client::request_id(),
                    conference_id: CONFERENCE.into(),
                    question: text(&format!("Cycle {} poll {made}", crew.cycle)),
                    kind: pb::PollKind::SingleChoice as i32,
                    options: ["Budgets", "Health", "Land", "Water"]
                        .into_iter()
                        .map(text)
                        .map(Option::unwrap_or_default)
                        .collect(),
                    anonymous,
                    ..Default::default()
                })
                .await;
            let Ok(created) = created else {
                after_error(&crew).await;
                continue;
            };
            let poll = created.into_inner().poll.context("no poll")?;
            let record = PollRecord {
                anonymous,
                options: poll.options.iter().map(|o| o.id.clone()).collect(),
                open: Some(false),
                ..PollRecord::default()
            };
            crew.ledger().polls.insert(poll.id.clone(), record);
            let opened = moderator
                .polls()
                .open_poll(pb::OpenPollRequest {
                    conference_id: CONFERENCE.into(),
                    poll_id: poll.id.clone(),
                })
                .await;
            if opened.is_ok()
                && let Some(record) = crew.ledger().polls.get_mut(&poll.id)
            {
                record.open = Some(true);
            }
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(20..200))).await;
            let Some(poll_id) = open.choose(&mut rng).cloned() else {
                continue;
            };
            if let Some(record) = crew.ledger().polls.get_mut(&poll_id) {
                record.close = Some(false);
            }
            let closed = moderator
                .polls()
                .close_poll(pb::ClosePollRequest {
                    conference_id: CONFERENCE.into(),
                    poll_id: poll_id.clone(),
                })
                .await;
            if closed.is_ok()
                && let Some(record) = crew.ledger().polls.get_mut(&poll_id)
            {
                record.close = Some(true);
                record.close_answered = true;
            }
        }
    }
    Ok(())
}

/// Attendees asking questions in the session, each text unique.
async fn questions(crew: Crew, attendees: Vec<Client>, mut rng: StdRng) -> anyhow::Result<()> {
    let mut n = 0u32;
    while crew.running() {
        n += 1;
        let text = format!("Cycle {} question {n}: is this still here?", crew.cycle);
        let index = {
            let mut ledger = crew.ledger();
            ledger.questions.push(Question {
                text: text.clone(),
                id: None,
            });
            ledger.questions.len() - 1
        };
        let client = attendees.choose(&mut rng).context("no attendees")?;
        let answer = client
            .questions()
            .ask_question(pb::AskQuestionRequest {
                request_id: Client::request_id(),
                conference_id: CONFERENCE.into(),
                session_id: crew.cast.session.clone(),
                text,
                anonymous: false,
            })
            .await;
        match answer {
            Ok(response) => {
                let response = response.into_inner();
                let id = response.question.context("no question")?.id;
                let mut ledger = crew.ledger();
                ledger.questions[index].id = Some(id.clone());
                ledger.positions.push(AckedAt {
                    position: response.position,
                    event_type: "podium.v1.QuestionAsked",
                    key: id,
                });
            }
            Err(_) => after_error(&crew).await,
        }
    }
    Ok(())
}

/// The organiser adding rooms and speakers, one after the other.
async fn agenda(crew: Crew, organiser: Client) -> anyhow::Result<()> {
    let mut n = 0u32;
    while crew.running() {
        n += 1;
        let room = n.is_multiple_of(2);
        let name = if room {
            format!("Room {}-{n}", crew.cycle)
        } else {
            format!("Speaker {}-{n}", crew.cycle)
        };
        let index = {
            let mut ledger = crew.ledger();
            let list = if room {
                &mut ledger.rooms
            } else {
                &mut ledger.speakers
            };
            list.push(Write {
                what: name.clone(),
                acked: false,
            });
            list.len() - 1
        };
        let answered = if room {
            organiser
                .agenda()
                .add_room(pb::AddRoomRequest {
                    request_id: Client::request_id(),
                    conference_id: CONFERENCE.into(),
                    name,
                    capacity: 40,
                })
                .await
                .is_ok()
        } else {
            organiser
                .agenda()
                .add_speaker(pb::AddSpeakerRequest {
                    request_id: Client::request_id(),
                    conference_id: CONFERENCE.into(),
                    name,
                    time_zone: "Asia/Taipei".into(),
                    ..Default::default()
                })
                .await
                .is_ok()
        };
        if answered {
            let mut ledger = crew.ledger();
            let list = if room {
                &mut ledger.rooms
            } else {
                &mut ledger.speakers
            };
            list[index].acked = true;
        } else {
            after_error(&crew).await;
        }
    }
    Ok(())
}

/// The organiser uploading backup recordings, 2 KiB to 384 KiB each: a minute-long talk's
/// MP4 index, then random bytes in a `free` box.
async fn uploads(crew: Crew, organiser: Client, mut rng: StdRng) -> anyhow::Result<()> {
    use pb::upload_recording_request::Part;
    while crew.running() {
        let mut bytes = podium_client::placeholder_mp4(60_000);
        let padding = rng.random_range(1 << 10..=383 << 10);
        bytes.extend((padding as u32).to_be_bytes());
        bytes.extend(b"free");
        let start = bytes.len();
        bytes.resize(start + padding - 8, 0);
        rng.fill_bytes(&mut bytes[start..]);
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let size = bytes.len() as u64;
        let index = {
            let mut ledger = crew.ledger();
            ledger.uploads.push(Upload {
                sha256: sha256.clone(),
                size,
                id: None,
                fetched: false,
            });
            ledger.uploads.len() - 1
        };
        let header = pb::RecordingHeader {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            session_id: crew.cast.session.clone(),
            sha256,
            size_bytes: size,
            media_type: "video/mp4".into(),
            duration_ms: 60_000,
            file_name: format!("talk-{}-{index}.mp4", crew.cycle),
            backup: true,
            ..Default::default()
        };
        let parts = vec![
            pb::UploadRecordingRequest {
                part: Some(Part::Header(header)),
            },
            pb::UploadRecordingRequest {
                part: Some(Part::Chunk(bytes)),
            },
        ];
        let answer = organiser
            .recordings()
            .upload_recording(futures::stream::iter(parts))
            .await;
        match answer.map(|r| r.into_inner().recording) {
            Ok(Some(recording)) => crew.ledger().uploads[index].id = Some(recording.id),
            _ => after_error(&crew).await,
        }
    }
    Ok(())
}
