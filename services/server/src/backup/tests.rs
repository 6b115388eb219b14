//! Restores of hand-made backup files: what a real podiumd never writes but a damaged or
//! crafted file may hold is refused with nothing left behind, and the keys of closed polls
//! stay out.

use std::{
    path::Path,
    time::{Duration, SystemTime},
};

use podium_eventlog::{NewEvent, RecordedEvent};
use podium_proto::v1::{self as pb, backup_record::Record};
use uuid::Uuid;

use super::{
    format::{Encoder, FORMAT_VERSION},
    restore,
};

fn event<M: prost::Message + prost::Name>(position: u64, stream: &str, m: &M) -> Record {
    let new = NewEvent::new(Uuid::new_v4(), m);
    Record::Event(
        RecordedEvent {
            id: new.id,
            stream: stream.into(),
            stream_version: 0,
            position,
            event_type: new.event_type,
            payload: new.payload,
            recorded_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_730_000_000),
        }
        .to_proto(),
    )
}

fn key(path: &str) -> Record {
    Record::Key(pb::BackupKey {
        path: path.into(),
        secret: vec![9; 32],
    })
}

/// A backup file of `records` after a header for `head` events, written to `dir/name`.
fn write(dir: &Path, name: &str, head: u64, records: Vec<Record>) -> std::path::PathBuf {
    let mut encoder = Encoder::new();
    encoder.push(Record::Header(pb::BackupHeader {
        format_version: FORMAT_VERSION,
        log_head: head,
        recordings_included: true,
        ..Default::default()
    }));
    for record in records {
        encoder.push(record);
    }
    let mut bytes = encoder.take(0).unwrap_or_default();
    bytes.extend(encoder.finish());
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn poll_event(closed: bool, poll: &str) -> (String, Box<dyn Fn(u64) -> Record>) {
    let poll = poll.to_owned();
    let stream = format!("conference/odc/poll/{poll}");
    (
        stream.clone(),
        Box::new(move |position| {
            let (c, p) = ("odc".to_owned(), poll.clone());
            if closed {
                event(
                    position,
                    &stream,
                    &pb::PollClosed {
                        conference_id: c,
                        poll_id: p,
                        at: None,
                    },
                )
            } else {
                event(
                    position,
                    &stream,
                    &pb::PollOpened {
                        conference_id: c,
                        poll_id: p,
                        at: None,
                    },
                )
            }
        }),
    )
}

/// Only what is left in `dir` besides the backup files.
fn left(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".backup"))
        .collect();
    names.sort();
    names
}

#[test]
fn the_keys_of_open_polls_come_back_and_those_of_closed_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (_, open_p1) = poll_event(false, "p1");
    let (_, open_p2) = poll_event(false, "p2");
    let (_, close_p2) = poll_event(true, "p2");
    // Each event in a stream of its own, so every version is 0.
    let retired = format!("1999999999 {}\n", "ab".repeat(32));
    let records = vec![
        key("token-signing.key"),
        Record::Key(pb::BackupKey {
            path: "token-signing.retired".into(),
            secret: retired.clone().into_bytes(),
        }),
        key("poll-keys/odc--p1.key"),
        key("poll-keys/odc--p2.key"),
        open_p1(0),
        {
            let Record::Event(mut e) = open_p2(1) else {
                unreachable!()
            };
            e.stream = "conference/odc/poll/p2/a".into();
            Record::Event(e)
        },
        {
            let Record::Event(mut e) = close_p2(2) else {
                unreachable!()
            };
            e.stream = "conference/odc/poll/p2/b".into();
            Record::Event(e)
        },
    ];
    let file = write(dir.path(), "good.backup", 3, records);
    let target = dir.path().join("data");
    let restored = restore(&file, &target).unwrap();
    assert_eq!((restored.head, restored.keys), (3, 3));
    assert_eq!(
        std::fs::read_to_string(target.join("token-signing.retired")).unwrap(),
        retired,
        "keys rotated out and still in their grace come back"
    );
    assert!(target.join("poll-keys/odc--p1.key").is_file());
    assert!(!target.join("poll-keys/odc--p2.key").exists());
    assert_eq!(
        std::fs::read(target.join("token-signing.key")).unwrap(),
        [9; 32]
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o700,
            "the data directory is its owner's alone"
        );
    }
    assert_eq!(left(dir.path()), ["data"]);
}

#[test]
fn crafted_and_disordered_files_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let escape = pb::RecordingRegistered {
        recording: Some(pb::Recording {
            sha256: "../../../../escaped".into(),
            size_bytes: 4,
            ..Default::default()
        }),
    };
    let (_, open_p1) = poll_event(false, "p1");
    let cases: Vec<(&str, u64, Vec<Record>, &str)> = vec![
        (
            "a recording named to climb out",
            1,
            vec![
                key("token-signing.key"),
                event(0, "conference/odc/recordings", &escape),
                Record::Recording(pb::BackupRecordingFile {
                    sha256: "../../../../escaped".into(),
                    size_bytes: 4,
                }),
                Record::Chunk(b"evil".to_vec()),
            ],
            "is not 64 lowercase hex digits",
        ),
        (
            "a key that climbs out",
            0,
            vec![key("token-signing.key"), key("poll-keys/../../x.key")],
            "not a place podium keeps keys",
        ),
        (
            "retired token keys that do not read",
            0,
            vec![
                key("token-signing.key"),
                Record::Key(pb::BackupKey {
                    path: "token-signing.retired".into(),
                    secret: b"12 zz\n".to_vec(),
                }),
            ],
            "the retired token keys do not read",
        ),
        (
            "a key after the events",
            1,
            vec![
                key("token-signing.key"),
                open_p1(0),
                key("poll-keys/odc--p1.key"),
            ],
            "a key after the events",
        ),
        (
            "fewer events than the header says",
            2,
            vec![key("token-signing.key"), open_p1(0)],
            "holds 1 events, but its header says 2",
        ),
        (
            "no token key",
            1,
            vec![open_p1(0)],
            "holds no token signing key",
        ),
        (
            "bytes with no file",
            1,
            vec![key("token-signing.key"), open_p1(0), Record::Chunk(vec![1])],
            "file bytes before a recording",
        ),
    ];
    for (what, head, records, why) in cases {
        let file = write(dir.path(), "bad.backup", head, records);
        let error = restore(&file, &dir.path().join("data"))
            .unwrap_err()
            .to_string();
        assert!(error.contains(why), "{what}: {error}");
        assert!(
            left(dir.path()).is_empty(),
            "{what} left {:?}",
            left(dir.path())
        );
    }
    assert!(!dir.path().parent().unwrap().join("escaped.part").exists());
}
