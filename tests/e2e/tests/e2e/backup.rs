//! Backups and restores with the real binaries: `podium admin backup` against a podiumd under a
//! ballot storm with an upload in flight, `podiumd restore` into a new data directory, and a
//! podiumd started on it; a damaged, truncated or misplaced restore refused with nothing left.

use std::{
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use nix::sys::signal::Signal;
use podium_client::{Client, pb};
use podium_e2e::{CONFERENCE, NewPoll, Podiumd, Show, Talk, ballot};
use podium_eventlog::{EventLog, RecordedEvent, SledEventLog, SledOptions};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use podium_e2e::restore;

/// Every event of the sled log in `data_dir`, in order.
async fn events(data_dir: &Path) -> Vec<RecordedEvent> {
    let log = SledEventLog::open(data_dir.join("log"), SledOptions::default()).unwrap();
    let mut events = Vec::new();
    loop {
        let page = log.read_all(events.len() as u64, 4096).await.unwrap();
        if page.is_empty() {
            return events;
        }
        events.extend(page);
    }
}

fn recording_header(session_id: &str, bytes: &[u8], duration_ms: u64) -> pb::RecordingHeader {
    pb::RecordingHeader {
        request_id: Client::request_id(),
        conference_id: CONFERENCE.into(),
        session_id: session_id.into(),
        sha256: hex::encode(Sha256::digest(bytes)),
        size_bytes: bytes.len() as u64,
        media_type: "video/mp4".into(),
        duration_ms,
        language: "km".into(),
        file_name: "talk.mp4".into(),
        ..Default::default()
    }
}

/// The backup is taken while attendees change their ballots as fast as they can and a second
/// recording is half uploaded; the restored log is the original's, event for event, up to the
/// backup's head, and a podiumd started on it knows the tokens, the anonymous poll's voters
/// and the finished recording, and nothing of the unfinished one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_a_ballot_storm_restores_the_same_log() {
    let talk = Talk::new(
        "Open data in Cambodia",
        "2030-11-14T02:00:00Z",
        "2030-11-14T02:45:00Z",
    );
    let mut show = Show::start()
        // A storm, not an attack: no attendee is slowed down.
        .args(&["--rate-ballots", "1000000"])
        .session(talk)
        .poll(NewPoll::single_choice(&["Budgets", "Health", "Schools"]))
        .poll(NewPoll::single_choice(&["Yes", "No"]).anonymous())
        .attendees(12)
        .await
        .unwrap();
    let (storm_poll, secret_poll) = (show.polls[0].clone(), show.polls[1].clone());
    for attendee in &show.attendees {
        attendee
            .polls()
            .cast_ballot(ballot(
                &secret_poll,
                vec![secret_poll.options[0].id.clone()],
            ))
            .await
            .unwrap();
    }
    let scratch = tempfile::tempdir().unwrap();
    let talk_bytes = podium_client::placeholder_mp4(45 * 60 * 1000);
    let talk_file = scratch.path().join("talk.mp4");
    std::fs::write(&talk_file, &talk_bytes).unwrap();
    let kept = show
        .admin
        .upload_recording_file(
            &talk_file,
            recording_header(show.session_id(), &talk_bytes, 0),
            |_| {},
        )
        .await
        .unwrap();

    // A backup recording, half sent: its header and the first half of its bytes.
    let late_bytes = podium_client::placeholder_mp4(30 * 60 * 1000);
    let mut late_header = recording_header(show.session_id(), &late_bytes, 0);
    late_header.backup = true;
    let (send, parts) = mpsc::channel(4);
    let half = late_bytes.len() / 2;
    for part in [
        pb::upload_recording_request::Part::Header(late_header),
        pb::upload_recording_request::Part::Chunk(late_bytes[..half].to_vec()),
    ] {
        send.send(pb::UploadRecordingRequest { part: Some(part) })
            .await
            .unwrap();
    }
    let mut recordings = show.admin.recordings();
    let in_flight = tokio::spawn(async move {
        recordings
            .upload_recording(ReceiverStream::new(parts))
            .await
    });

    // The storm: every attendee changes their ballot again and again until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let cast = Arc::new(AtomicU64::new(0));
    let mut storm = Vec::new();
    for (i, attendee) in show.attendees.iter().enumerate() {
        let (client, poll) = (attendee.client.clone(), storm_poll.clone());
        let (stop, cast) = (stop.clone(), cast.clone());
        storm.push(tokio::spawn(async move {
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                let option = poll.options[n % poll.options.len()].id.clone();
                client
                    .polls()
                    .cast_ballot(ballot(&poll, vec![option]))
                    .await
                    .unwrap();
                cast.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    while cast.load(Ordering::Relaxed) < 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let file = scratch.path().join("odc.podium-backup");
    let admin_token = show.server.admin_token().unwrap();
    let (ok, out, err) = tokio::task::block_in_place(|| {
        podium_e2e::cli(
            &show.server,
            &admin_token,
            &[
                "admin",
                "backup",
                "--out",
                file.to_str().unwrap(),
                "--recordings",
            ],
        )
        .unwrap()
    });
    assert!(ok, "{err}");
    assert!(
        out.contains("backup written to") && out.contains("recordings included"),
        "{out}"
    );
    let during = cast.load(Ordering::Relaxed);
    // The storm goes on after the backup, so the original log grows past it.
    while cast.load(Ordering::Relaxed) < during + 100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in storm {
        task.await.unwrap();
    }
    // The half-sent recording completes after the backup: it is in the original only.
    send.send(pb::UploadRecordingRequest {
        part: Some(pb::upload_recording_request::Part::Chunk(
            late_bytes[half..].to_vec(),
        )),
    })
    .await
    .unwrap();
    drop(send);
    let late = in_flight
        .await
        .unwrap()
        .unwrap()
        .into_inner()
        .recording
        .unwrap();

    let restored_dir = scratch.path().join("restored");
    let (ok, out, err) = restore(&file, &restored_dir);
    assert!(ok, "{err}");
    assert!(out.contains("1 of 1 recording files"), "{out}");
    // Taking a backup again into the same file is refused: a backup is never overwritten.
    let (ok, _, err) = tokio::task::block_in_place(|| {
        podium_e2e::cli(
            &show.server,
            &admin_token,
            &["admin", "backup", "--out", file.to_str().unwrap()],
        )
        .unwrap()
    });
    assert!(!ok && err.contains("already exists"), "{err}");

    show.server.stop(Signal::SIGTERM).await.unwrap();
    let original = events(&show.server.data_dir).await;
    let restored = events(&restored_dir).await;
    let head = restored.len();
    assert!(original.len() > head, "the storm went on after the backup");
    assert_eq!(
        restored,
        original[..head],
        "the restored log differs from the original"
    );
    let ballots =
        |events: &[RecordedEvent]| events.iter().filter(|e| e.is::<pb::BallotCast>()).count();
    assert!(
        ballots(&restored) > 200,
        "the backup holds the storm's ballots"
    );
    let files: Vec<String> = std::fs::read_dir(restored_dir.join("recordings/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        files,
        [kept.sha256.as_str()],
        "only the finished recording is restored"
    );
    assert!(
        !restored_dir
            .join("recordings/tmp")
            .read_dir()
            .unwrap()
            .any(|_| true)
    );

    // podiumd on the restored directory: the tokens of before, the poll's voters, the file.
    let server = tokio::task::spawn_blocking(move || Podiumd::start_in(&restored_dir, &[]))
        .await
        .unwrap()
        .unwrap();
    let admin = server.client(Some(admin_token.clone())).await.unwrap();
    let dara = server
        .client(Some(show.attendees[0].token.clone()))
        .await
        .unwrap();
    dara.polls()
        .cast_ballot(ballot(
            &secret_poll,
            vec![secret_poll.options[1].id.clone()],
        ))
        .await
        .unwrap();
    let closed = admin
        .polls()
        .close_poll(pb::ClosePollRequest {
            conference_id: CONFERENCE.into(),
            poll_id: secret_poll.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .unwrap();
    // Dara's new ballot replaced her old one: the poll's key came back with the log.
    assert_eq!(closed.ballots, show.attendees.len() as u64, "{closed:?}");
    let listed = admin
        .recordings()
        .list_recordings(pb::ListRecordingsRequest {
            conference_id: CONFERENCE.into(),
            session_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .recordings;
    let ids: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [kept.id.as_str()],
        "{late:?} was uploaded after the backup"
    );
    let fetched = scratch.path().join("fetched.mp4");
    let got = admin
        .fetch_recording_file(CONFERENCE, &kept.id, &fetched, false, |_| {})
        .await
        .unwrap();
    assert_eq!(got.sha256, kept.sha256);
    let (ok, out, err) = tokio::task::block_in_place(|| {
        podium_e2e::cli(&server, &admin_token, &["admin", "status"]).unwrap()
    });
    assert!(ok, "{err}");
    assert!(out.contains("caught up"), "{out}");
}

/// A restore that cannot be whole writes nothing: a truncated file, a changed byte, a file
/// that is no backup, and a data directory already in use are refused, each with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_backups_are_refused_and_leave_nothing() {
    let show = Show::start()
        .poll(NewPoll::single_choice(&["Budgets", "Health"]))
        .attendees(3)
        .await
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("odc.podium-backup");
    let size = show
        .admin
        .backup_to_file(false, &file, |_| {})
        .await
        .unwrap();
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes.len() as u64, size);
    let target = scratch.path().join("data");
    let nothing_left = || {
        let names: Vec<String> = std::fs::read_dir(scratch.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.ends_with(".podium-backup") && !n.ends_with(".bad"))
            .collect();
        assert!(names.is_empty(), "left behind: {names:?}");
    };
    let damaged = [
        (
            "truncated",
            bytes[..bytes.len() / 2].to_vec(),
            "it is truncated",
        ),
        (
            "no end",
            bytes[..bytes.len() - 1].to_vec(),
            "it is truncated",
        ),
        (
            "flipped",
            {
                let mut b = bytes.clone();
                b[bytes.len() / 2] ^= 0x01;
                b
            },
            "the backup is corrupt",
        ),
        (
            "zip",
            b"PK\x03\x04 not a backup at all".to_vec(),
            "is not a podium backup",
        ),
    ];
    for (what, content, why) in damaged {
        let bad = scratch
            .path()
            .join(format!("{}.bad", what.replace(' ', "-")));
        std::fs::write(&bad, content).unwrap();
        let (ok, _, err) = restore(&bad, &target);
        assert!(!ok, "{what} was restored");
        assert!(err.contains(why), "{what}: {err}");
        nothing_left();
    }
    // Never into the default directory by accident.
    let unnamed = Command::new(podium_e2e::binary("podiumd").unwrap())
        .arg("restore")
        .arg(&file)
        .env_remove("PODIUM_DATA_DIR")
        .current_dir(scratch.path())
        .output()
        .unwrap();
    assert!(!unnamed.status.success());
    assert!(
        String::from_utf8_lossy(&unnamed.stderr).contains("restore needs --data-dir"),
        "{unnamed:?}"
    );
    nothing_left();
    // A data directory in use is not touched.
    let (ok, _, err) = restore(&file, &show.server.data_dir);
    assert!(!ok && err.contains("is not empty"), "{err}");
    assert!(show.server.data_dir.join("token-signing.key").exists());
    // Whole, it restores into an empty directory.
    std::fs::create_dir(&target).unwrap();
    let (ok, out, err) = restore(&file, &target);
    assert!(ok, "{err}");
    assert!(
        out.contains("restored") && out.contains("0 of 0 recording files"),
        "{out}"
    );
    assert!(target.join("log").is_dir() && target.join("token-signing.key").is_file());
}
