//! Recordings through the real `podium` CLI and `podiumd`: a 200 MiB talk is uploaded and
//! fetched back byte for byte while podiumd's peak memory stays flat (the figures are printed),
//! a backup recording's download resumes from a partial file, a wrong checksum is refused and
//! keeps nothing, and an unknown recording is NOT_FOUND.

use std::{
    io::{Read, Write},
    path::Path,
    time::Instant,
};

use podium_client::{Client, TransferError, hash_file, pb};
use podium_e2e::{CONFERENCE, Podiumd, Show, Talk, cli};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const MIB: u64 = 1 << 20;
const SIZE: u64 = 200 * MIB;
/// podiumd's peak resident memory may grow by at most this much while 200 MiB go through it
/// twice: chunks and buffers, never the file.
const MAX_GROWTH: u64 = 64 * MIB;

/// Writes a 45-minute MP4 of `size` bytes: a placeholder talk's index, then a `free` box of
/// deterministic pseudo-random bytes (xorshift), a mebibyte at a time.
fn write_talk(path: &Path, size: u64) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let index = podium_client::placeholder_mp4(45 * 60 * 1000);
    file.write_all(&index)?;
    let padding = u32::try_from(size - index.len() as u64).expect("under 4 GiB");
    file.write_all(&padding.to_be_bytes())?;
    file.write_all(b"free")?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunk = vec![0u8; MIB as usize];
    let mut left = u64::from(padding) - 8;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(MIB) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.flush()
}

/// A figure from `/proc/<pid>/status` (VmHWM is the peak resident set), in bytes.
fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kib * 1024
}

async fn sha256_of(path: &Path) -> String {
    hash_file(path, |_| {}).await.unwrap().0
}

/// The conference with one 45-minute talk.
async fn cambodia() -> Show {
    Show::start()
        .session(Talk::new(
            "Open data in Cambodia",
            "2024-11-14T02:00:00Z",
            "2024-11-14T02:45:00Z",
        ))
        .await
        .unwrap()
}

/// Runs the CLI without stalling the runtime; returns (success, stdout, stderr).
async fn podium(server: &Podiumd, token: &str, args: &[&str]) -> (bool, String, String) {
    tokio::task::block_in_place(|| cli(server, token, args).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_talk_goes_up_and_down_through_the_cli_in_flat_memory() {
    let show = cambodia().await;
    let (server, admin, talk) = (&show.server, &show.admin, &show.sessions[0]);
    let token = server.admin_token().unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "podium.v1.Recordings".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("open-data-in-cambodia.mp4");
    let path = file.clone();
    tokio::task::spawn_blocking(move || write_talk(&path, SIZE))
        .await
        .unwrap()
        .unwrap();
    let sha256 = sha256_of(&file).await;

    let pid = server.pid().unwrap();
    let before = proc_status(pid, "VmHWM");
    let started = Instant::now();
    let (ok, out, err) = podium(
        server,
        &token,
        &[
            "recording",
            "upload",
            file.to_str().unwrap(),
            "--session",
            &talk.id,
            "--duration",
            "00:45:00",
            "--caption",
            "km:Khmer subtitles",
            "-c",
            CONFERENCE,
        ],
    )
    .await;
    assert!(ok, "upload failed: {err}");
    let recording = out.trim().to_owned();
    assert!(recording.starts_with("rec-"), "{out}");
    // Not a terminal: plain progress lines instead of a bar.
    assert!(
        err.contains("uploading 200.0 MiB of 200.0 MiB (100%)"),
        "{err}"
    );
    assert!(err.contains(&sha256), "{err}");
    let after_upload = proc_status(pid, "VmHWM");
    let upload_time = started.elapsed();
    let started = Instant::now();

    let fetched = dir.path().join("fetched.mp4");
    let (ok, out, err) = podium(
        server,
        &token,
        &[
            "recording",
            "fetch",
            &recording,
            "--out",
            fetched.to_str().unwrap(),
            "-c",
            CONFERENCE,
        ],
    )
    .await;
    assert!(ok, "fetch failed: {err}");
    assert_eq!(out.trim(), fetched.to_str().unwrap());
    assert!(err.contains("verified"), "{err}");
    let after_fetch = proc_status(pid, "VmHWM");
    let fetch_time = started.elapsed();
    assert_eq!(
        sha256_of(&fetched).await,
        sha256,
        "the fetched bytes differ"
    );
    assert_eq!(std::fs::metadata(&fetched).unwrap().len(), SIZE);

    println!(
        "podiumd peak RSS (VmHWM): {:.1} MiB before, {:.1} MiB after uploading 200 MiB, \
         {:.1} MiB after fetching it; now {:.1} MiB resident \
         (CLI upload with hashing {:.1} s, fetch with verification {:.1} s, this build's profile)",
        before as f64 / MIB as f64,
        after_upload as f64 / MIB as f64,
        after_fetch as f64 / MIB as f64,
        proc_status(pid, "VmRSS") as f64 / MIB as f64,
        upload_time.as_secs_f64(),
        fetch_time.as_secs_f64(),
    );
    assert!(
        after_fetch.saturating_sub(before) < MAX_GROWTH,
        "podiumd's peak memory grew by {} MiB moving a 200 MiB file",
        (after_fetch - before) / MIB
    );

    // An interrupted download resumes from its .part file: only the rest crosses the wire.
    // A smaller backup recording keeps this quick.
    let backup = dir.path().join("backup.mp4");
    let path = backup.clone();
    tokio::task::spawn_blocking(move || write_talk(&path, 6 * MIB))
        .await
        .unwrap()
        .unwrap();
    let backup_sha256 = sha256_of(&backup).await;
    let header = pb::RecordingHeader {
        conference_id: CONFERENCE.into(),
        session_id: talk.id.clone(),
        media_type: "video/mp4".into(),
        file_name: "backup.mp4".into(),
        backup: true,
        ..Default::default()
    };
    let backup_recording = admin
        .upload_recording_file(&backup, header, |_| {})
        .await
        .unwrap();
    assert_eq!(backup_recording.order, 1);
    let resumed = dir.path().join("resumed.mp4");
    let have = 2 * MIB + 12_345;
    let (from, part) = (backup.clone(), podium_client::part_path(&resumed));
    tokio::task::spawn_blocking(move || {
        let mut source = std::fs::File::open(from)?.take(have);
        std::io::copy(&mut source, &mut std::fs::File::create(part)?)
    })
    .await
    .unwrap()
    .unwrap();
    let (ok, _, err) = podium(
        server,
        &token,
        &[
            "recording",
            "fetch",
            &backup_recording.id,
            "--out",
            resumed.to_str().unwrap(),
            "--resume",
            "-c",
            CONFERENCE,
        ],
    )
    .await;
    assert!(ok, "resumed fetch failed: {err}");
    assert!(err.contains("resumed after 2.0 MiB"), "{err}");
    assert_eq!(sha256_of(&resumed).await, backup_sha256);
    assert!(!podium_client::part_path(&resumed).exists());

    // The list shows it, with its captions.
    let (ok, out, err) = podium(server, &token, &["recording", "list", "-c", CONFERENCE]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&recording) && out.contains("primary"), "{out}");
    assert!(
        out.contains(&backup_recording.id) && out.contains("backup 1"),
        "{out}"
    );
    assert!(out.contains("km (Khmer subtitles)"), "{out}");
    // With what podiumd read from the files.
    assert!(
        out.contains("45:00") && out.contains("mp4 h264 16x16 aac"),
        "{out}"
    );

    // Deleting the 200 MiB primary gives its disk space back; the backup becomes the primary.
    let stored = || -> u64 {
        std::fs::read_dir(server.data_dir.join("recordings/sha256"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let before_delete = stored();
    let (ok, out, err) = podium(
        server,
        &token,
        &["recording", "delete", &recording, "-c", CONFERENCE],
    )
    .await;
    assert!(ok, "delete failed: {err}");
    assert_eq!(out.trim(), recording);
    assert!(err.contains("deleted") && err.contains(&talk.id), "{err}");
    assert_eq!(before_delete - stored(), SIZE);
    let (ok, out, err) = podium(server, &token, &["recording", "list", "-c", CONFERENCE]).await;
    assert!(ok, "{err}");
    assert!(!out.contains(&recording), "{out}");
    assert!(
        out.contains(&backup_recording.id) && out.contains("primary"),
        "{out}"
    );

    refusals(server, admin, &talk.id, dir.path(), &token).await;
}

/// A wrong checksum and a file that is not video keep nothing; an unknown recording is
/// NOT_FOUND.
async fn refusals(server: &Podiumd, admin: &Client, session_id: &str, dir: &Path, token: &str) {
    let slides = dir.join("slides.mp4");
    std::fs::write(
        &slides,
        b"%PDF-1.7 the slides, sent instead of the talk".repeat(50),
    )
    .unwrap();
    let (ok, _, err) = podium(
        server,
        token,
        &[
            "recording",
            "upload",
            slides.to_str().unwrap(),
            "--session",
            session_id,
            "-c",
            CONFERENCE,
        ],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("file: the file is not MP4, MOV, WebM or Matroska video"),
        "{err}"
    );
    let small = dir.join("short.mp4");
    std::fs::write(&small, b"not the talk you declared").unwrap();
    let header = pb::RecordingHeader {
        request_id: Client::request_id(),
        conference_id: CONFERENCE.into(),
        session_id: session_id.into(),
        sha256: "0".repeat(64),
        size_bytes: 25,
        media_type: "video/mp4".into(),
        duration_ms: 60_000,
        file_name: "short.mp4".into(),
        ..Default::default()
    };
    let refused = admin
        .upload_recording_file(&small, header, |_| {})
        .await
        .unwrap_err();
    let TransferError::Rpc(status) = refused else {
        panic!("expected the server's refusal, got {refused}");
    };
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("sha256: 0000000000000000000000000000000000000000000000000000000000000000 does not match the bytes received"),
        "{}",
        status.message()
    );
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
    // The backup only: the primary was deleted before.
    assert_eq!(listed.len(), 1, "the refused upload was registered");
    let leftovers = std::fs::read_dir(server.data_dir.join("recordings/tmp"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "a refused upload left a temporary file");
    let stored = std::fs::read_dir(server.data_dir.join("recordings/sha256"))
        .unwrap()
        .count();
    assert_eq!(stored, 1);

    let (ok, _, err) = podium(
        server,
        token,
        &[
            "recording",
            "fetch",
            "rec-0000000000",
            "--out",
            dir.join("nothing").to_str().unwrap(),
            "-c",
            CONFERENCE,
        ],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("recording rec-0000000000 not found (NotFound)"),
        "{err}"
    );
    let status = admin
        .recordings()
        .fetch_recording(pb::FetchRecordingRequest {
            conference_id: CONFERENCE.into(),
            recording_id: "rec-0000000000".into(),
            offset: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

/// Real media made by ffmpeg, in three containers: podiumd reads each one's length, codecs and
/// picture from the file, `podium recording list` shows them, and pre-flight warns of a talk
/// much shorter than its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_media_is_probed_and_preflight_warns_of_a_short_talk() {
    let show = cambodia().await;
    let (server, admin, talk) = (&show.server, &show.admin, &show.sessions[0]);
    let token = server.admin_token().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // 60 s of H.264 and AAC at 320x240; three seconds of it as VP9 and Opus; the same as MOV.
    let mp4 = podium_e2e::obs::talk_mp4().unwrap();
    let (webm, mov) = (dir.path().join("talk.webm"), dir.path().join("talk.mov"));
    let (source, to_webm, to_mov) = (mp4.clone(), webm.clone(), mov.clone());
    tokio::task::spawn_blocking(move || {
        let source = source.to_str().unwrap();
        podium_e2e::obs::ffmpeg(
            &[
                "-i",
                source,
                "-t",
                "3",
                "-c:v",
                "libvpx-vp9",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-c:a",
                "libopus",
            ],
            &to_webm,
        )?;
        podium_e2e::obs::ffmpeg(&["-i", source, "-c", "copy"], &to_mov)
    })
    .await
    .unwrap()
    .unwrap();

    for (file, backup) in [(&mp4, false), (&webm, true), (&mov, true)] {
        let mut args = vec![
            "recording",
            "upload",
            file.to_str().unwrap(),
            "--session",
            &talk.id,
            "-c",
            CONFERENCE,
        ];
        if backup {
            args.push("--backup");
        }
        let (ok, _, err) = podium(server, &token, &args).await;
        assert!(ok, "{}: {err}", file.display());
    }
    let listed = admin
        .recordings()
        .list_recordings(pb::ListRecordingsRequest {
            conference_id: CONFERENCE.into(),
            session_id: talk.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .recordings;
    let facts: Vec<_> = listed
        .iter()
        .map(|r| {
            let m = r.media.clone().unwrap();
            (
                m.container,
                r.duration_ms / 100,
                m.video_codec,
                (m.width, m.height),
                m.audio_codec,
            )
        })
        .collect();
    let fact = |container: &str, tenths: u64, video: &str, audio: &str| {
        (
            container.to_owned(),
            tenths,
            video.to_owned(),
            (320, 240),
            audio.to_owned(),
        )
    };
    assert_eq!(
        facts,
        [
            fact("mp4", 600, "h264", "aac"),
            fact("webm", 30, "vp9", "opus"),
            fact("mov", 600, "h264", "aac"),
        ],
        "{listed:#?}"
    );
    let (ok, out, err) = podium(server, &token, &["recording", "list", "-c", CONFERENCE]).await;
    assert!(ok, "{err}");
    assert!(out.contains("webm vp9 320x240 opus"), "{out}");

    let report = show.preflight().await.unwrap();
    assert!(
        report.sessions[0]
            .reasons
            .contains(&"recording plays 1 min of a 45 min slot".to_owned()),
        "{report:#?}"
    );
    // The same concern as data, with both lengths, for a page to say in its reader's language.
    let short = report.sessions[0]
        .concerns
        .iter()
        .find(|c| c.kind() == pb::ReadinessConcernKind::ShortRecording)
        .unwrap_or_else(|| panic!("{report:#?}"));
    assert_eq!(
        (short.recording_ms / 1000, short.slot_ms),
        (60, 45 * 60 * 1000)
    );
    // Boards see how many recordings the session has to put on air.
    let status = admin
        .stage()
        .start_session(pb::StartSessionRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            session_id: talk.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.recordings, 3);
}
