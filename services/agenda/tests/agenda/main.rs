//! Property tests of the agenda aggregate through the real sled log: any sequence of commands,
//! including retries and refusals, leaves a state that a replay of the log rebuilds exactly, and
//! the agenda never double-books a room or a speaker.

mod join_codes;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use podium_agenda::{
    AgendaStore,
    domain::{self, Agenda, LocalizedText, NewConference, Room, Session, SessionKind, Speaker},
};
use podium_core::{FailoverPolicy, Hours};
use podium_eventlog::{EventLog, RequestId, SledEventLog, SledOptions};
use proptest::prelude::*;
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Command {
    Create {
        conference: usize,
    },
    AddRoom {
        conference: usize,
        name: usize,
    },
    AddSpeaker {
        conference: usize,
        zone: usize,
        from_hour: u32,
    },
    AddSession {
        conference: usize,
        room: usize,
        speakers: Vec<usize>,
        backups: Vec<usize>,
        start_slot: i64,
        slots: i64,
    },
    /// Moves the `session`-th session of the conference to another room and slot.
    MoveSession {
        conference: usize,
        session: usize,
        room: usize,
        start_slot: i64,
        slots: i64,
    },
    /// Sends an earlier command again with the same request id.
    Retry {
        index: usize,
    },
}

const CONFERENCES: [&str; 2] = ["odc2024", "odc2025"];
const ZONES: [chrono_tz::Tz; 4] = [
    chrono_tz::Asia::Phnom_Penh,
    chrono_tz::America::New_York,
    chrono_tz::Asia::Taipei,
    chrono_tz::Europe::Paris,
];

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        1 => (0..2usize).prop_map(|conference| Command::Create { conference }),
        2 => (0..2usize, 0..3usize).prop_map(|(conference, name)| Command::AddRoom { conference, name }),
        2 => (0..2usize, 0..4usize, 6..12u32).prop_map(|(conference, zone, from_hour)| Command::AddSpeaker { conference, zone, from_hour }),
        5 => (0..2usize, 0..4usize, proptest::collection::vec(0..6usize, 0..3), proptest::collection::vec(0..6usize, 0..2), 0..16i64, 1..4i64)
            .prop_map(|(conference, room, speakers, backups, start_slot, slots)| Command::AddSession { conference, room, speakers, backups, start_slot, slots }),
        3 => (0..2usize, 0..6usize, 0..4usize, 0..16i64, 1..4i64)
            .prop_map(|(conference, session, room, start_slot, slots)| Command::MoveSession { conference, session, room, start_slot, slots }),
        2 => (0..64usize).prop_map(|index| Command::Retry { index }),
    ]
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 11, 14, 0, 0, 0)
        .single()
        .expect("valid time")
}

/// Runs one command; returns the position of its event, or None if it was refused.
async fn run(store: &AgendaStore, command: &Command, request_id: Uuid) -> Option<u64> {
    let id = |prefix: &str| RequestId::from(request_id).derive_id(prefix);
    let result = match command.clone() {
        Command::Create { conference } => {
            let new = NewConference {
                id: CONFERENCES[conference].into(),
                title: LocalizedText([("en".to_owned(), "Open Data Conference".to_owned())].into()),
                default_language: "en".into(),
                zone: chrono_tz::Asia::Phnom_Penh,
                join_code: format!("CODE-{conference}"),
                created_by: "admin".into(),
            };
            store
                .execute(CONFERENCES[conference], request_id, |a| {
                    domain::create_conference(a, new.clone())
                })
                .await
        }
        Command::AddRoom { conference, name } => {
            let room = Room {
                id: id("room"),
                name: format!("Room {name}"),
                capacity: 50,
            };
            let cid = CONFERENCES[conference];
            store
                .execute(cid, request_id, |a| {
                    domain::add_room(a.conference(cid)?, room.clone())
                })
                .await
        }
        Command::AddSpeaker {
            conference,
            zone,
            from_hour,
        } => {
            let speaker = Speaker {
                id: id("spk"),
                name: "Speaker".into(),
                organisation: "Open Knowledge Foundation".into(),
                zone: ZONES[zone],
                hours: Hours::new(from_hour * 60, 21 * 60).expect("valid hours"),
            };
            let cid = CONFERENCES[conference];
            store
                .execute(cid, request_id, |a| {
                    domain::add_speaker(a.conference(cid)?, speaker.clone())
                })
                .await
        }
        Command::AddSession {
            conference,
            room,
            speakers,
            backups,
            start_slot,
            slots,
        } => {
            let cid = CONFERENCES[conference];
            let session_id = id("ses");
            store
                .execute(cid, request_id, |a| {
                    let c = a.conference(cid)?;
                    // Pick existing rooms and speakers by index, so that most sessions are valid.
                    let room_id = c
                        .rooms
                        .keys()
                        .nth(room)
                        .cloned()
                        .unwrap_or_else(|| "room-missing".into());
                    let mut speaker_ids: Vec<String> = speakers
                        .iter()
                        .filter_map(|i| c.speakers.keys().nth(*i).cloned())
                        .collect();
                    speaker_ids.dedup();
                    let mut backup_speaker_ids: Vec<String> = backups
                        .iter()
                        .filter_map(|i| c.speakers.keys().nth(*i).cloned())
                        .filter(|id| !speaker_ids.contains(id))
                        .collect();
                    backup_speaker_ids.dedup();
                    let start = base() + Duration::minutes(30 * start_slot);
                    let session = Session {
                        id: session_id.clone(),
                        title: LocalizedText([("en".to_owned(), "Talk".to_owned())].into()),
                        kind: SessionKind::Talk,
                        start,
                        end: start + Duration::minutes(30 * slots),
                        room_id,
                        speaker_ids,
                        backup_speaker_ids,
                        failover: FailoverPolicy::default(),
                        revision: 0,
                    };
                    domain::schedule_session(c, session)
                })
                .await
        }
        Command::MoveSession {
            conference,
            session,
            room,
            start_slot,
            slots,
        } => {
            let cid = CONFERENCES[conference];
            store
                .execute(cid, request_id, |a| {
                    let c = a.conference(cid)?;
                    let mut moved =
                        c.sessions.values().nth(session).cloned().ok_or_else(|| {
                            podium_agenda::AgendaError::NotFound("no session".into())
                        })?;
                    moved.room_id = c
                        .rooms
                        .keys()
                        .nth(room)
                        .cloned()
                        .unwrap_or_else(|| "room-missing".into());
                    moved.start = base() + Duration::minutes(30 * start_slot);
                    moved.end = moved.start + Duration::minutes(30 * slots);
                    let read = moved.revision;
                    domain::reschedule_session(c, moved, Some(read))
                })
                .await
        }
        Command::Retry { .. } => unreachable!("resolved by the caller"),
    };
    result.ok()
}

fn assert_no_double_booking(agenda: &Agenda) {
    for conference in agenda.conferences.values() {
        let sessions: Vec<&Session> = conference.sessions.values().collect();
        for (i, a) in sessions.iter().enumerate() {
            for b in &sessions[i + 1..] {
                if domain::time::overlaps(a.start, a.end, b.start, b.end) {
                    assert_ne!(a.room_id, b.room_id, "room double-booked");
                    // Backing up is not being booked: only two backups may overlap.
                    for (s, a_backup) in a.all_speakers() {
                        assert!(
                            b.all_speakers()
                                .all(|(o, b_backup)| o != s || (a_backup && b_backup)),
                            "speaker {s} double-booked"
                        );
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn replaying_the_log_rebuilds_the_live_agenda(commands in proptest::collection::vec(command(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let log = Arc::new(SledEventLog::open(dir.path(), SledOptions::default()).unwrap());
            let store = AgendaStore::open(log.clone()).await.unwrap();

            let mut sent: Vec<(Command, Uuid, Option<u64>)> = Vec::new();
            for command in &commands {
                let (command, request_id, original) = match command {
                    Command::Retry { index } if !sent.is_empty() => {
                        let (c, id, first) = sent[index % sent.len()].clone();
                        (c, id, Some(first))
                    }
                    Command::Retry { .. } => continue,
                    other => (other.clone(), Uuid::new_v4(), None),
                };
                let position = run(&store, &command, request_id).await;
                if let Some(Some(first)) = original {
                    // A retry of an accepted write is answered with the original position.
                    assert_eq!(position, Some(first));
                }
                sent.push((command, request_id, position));
            }

            let live = store.read(Agenda::clone);
            assert_no_double_booking(&live);
            let accepted = sent.iter().filter_map(|(_, _, p)| *p).collect::<std::collections::BTreeSet<_>>();
            assert_eq!(log.head(), accepted.len() as u64, "one event per accepted command, none for retries");

            // A second read model over the same log.
            let replayed = AgendaStore::open(log.clone()).await.unwrap().read(Agenda::clone);
            assert_eq!(&replayed, &live);

            // And one over the files on disk, after closing the log.
            drop(store);
            log.close().unwrap();
            // Closing ends the read models' live subscriptions; let their tasks finish and let
            // go of the log, so that sled's lock on the directory is released.
            while Arc::strong_count(&log) > 1 {
                tokio::task::yield_now().await;
            }
            drop(log);
            let reopened: Arc<dyn EventLog> = Arc::new(SledEventLog::open(dir.path(), SledOptions::default()).unwrap());
            let from_disk = AgendaStore::open(reopened).await.unwrap().read(Agenda::clone);
            assert_eq!(from_disk, live);
        });
    }
}

/// A session's revision counts its changes; a change made against an older revision is refused
/// and stores nothing; a replay of the log counts the same.
#[tokio::test]
async fn a_change_made_to_an_older_revision_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SledEventLog::open(dir.path(), SledOptions::default()).unwrap());
    let store = AgendaStore::open(log.clone()).await.unwrap();
    let setup = [
        Command::Create { conference: 0 },
        Command::AddRoom {
            conference: 0,
            name: 1,
        },
        Command::AddSession {
            conference: 0,
            room: 0,
            speakers: vec![],
            backups: vec![],
            start_slot: 2,
            slots: 1,
        },
    ];
    for command in &setup {
        run(&store, command, Uuid::new_v4()).await.unwrap();
    }
    let cid = CONFERENCES[0];
    let session = || {
        store.read(|a| {
            a.conferences[cid]
                .sessions
                .values()
                .next()
                .cloned()
                .unwrap()
        })
    };
    let read = session();
    assert_eq!(read.revision, 0);
    let change = |expected: Option<u32>, minutes: i64| {
        let mut moved = read.clone();
        moved.end = moved.start + Duration::minutes(minutes);
        store.execute(cid, Uuid::new_v4(), move |a| {
            domain::reschedule_session(a.conference(cid)?, moved.clone(), expected)
        })
    };
    change(Some(0), 45).await.unwrap();
    assert_eq!(session().revision, 1);
    let head = log.head();
    let refused = change(Some(0), 50).await.unwrap_err();
    assert!(
        matches!(&refused, podium_agenda::AgendaError::Changed(m) if m.contains("changed since revision 0 (it is at revision 1)")),
        "{refused:?}"
    );
    assert_eq!(log.head(), head, "a refused change stores nothing");
    assert_eq!(session().end - session().start, Duration::minutes(45));
    // Without an expected revision, a change replaces whatever is there.
    change(None, 50).await.unwrap();
    assert_eq!(session().revision, 2);
    let replayed = AgendaStore::open(log.clone()).await.unwrap();
    let replayed = replayed.read(|a| a.conferences[cid].sessions.values().next().cloned());
    assert_eq!(replayed.unwrap().revision, 2);
}
