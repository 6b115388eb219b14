//! Snapshots never change what a read model holds. Every model (access directory, agenda,
//! status, feedback with its Q&A and ratings) loaded from a snapshot and the log's tail equals
//! the same model replayed from the whole log, compared by their snapshot bytes (maps in key
//! order, so equal models write equal bytes); and a snapshot that does not match the log
//! (corrupt, of an older format, past the log's head, of another log) is ignored and its model
//! rebuilt from the log.

use std::{path::Path, sync::Arc};

use podium_eventlog::{
    EventLog, SledEventLog, SledOptions, Snapshot,
    snapshot::{self, SnapshotFile},
};
use podium_feedback::FeedbackModel;
use podium_server::{
    ReadModels,
    synthetic::{Shape, write_conference},
};
use tempfile::TempDir;

const SMALL: Shape = Shape {
    days: 1,
    rooms: 2,
    sessions_per_room_and_day: 2,
};
const MODELS: [&str; 4] = ["access-directory", "agenda", "status", "feedback"];

/// Opens the log in `dir` (opening waits for a log this process just closed to let go of
/// sled's lock).
fn open(dir: &Path) -> Arc<SledEventLog> {
    Arc::new(SledEventLog::open(dir, SledOptions::default()).expect("open the log"))
}

/// Waits until nothing but `log` itself holds the (closed) log, then drops it: the read
/// models' tasks let go as they see it closed, and with the last handle sled lets go of its
/// file lock, so the directory opens again at once. On a busy machine that can take longer
/// than opening waits for the lock.
async fn released(log: Arc<SledEventLog>) {
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while Arc::strong_count(&log) > 1 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every other holder of the closed log lets go of it");
}

async fn follow(log: &Arc<SledEventLog>, snapshots: Option<&Path>) -> ReadModels {
    let log: Arc<dyn EventLog> = log.clone();
    let keys = tempfile::tempdir().expect("a temporary directory");
    let personal = Arc::new(
        podium_eventlog::personal::PersonalKeys::load(&keys.path().join("personal.keys"))
            .expect("a key store"),
    );
    ReadModels::follow(log, personal, snapshots.map(Path::to_path_buf), 0, |_| true)
        .await
        .expect("read models follow the log")
}

/// Each model's state, as its snapshot would hold it.
fn states(models: &ReadModels) -> Vec<Vec<u8>> {
    let bytes = |r: Result<Vec<u8>, _>| r.expect("a model encodes");
    let agenda = models.agenda.as_ref().expect("agenda runs");
    vec![
        bytes(models.directory.read().save()),
        bytes(agenda.read(snapshot::encode)),
        bytes(models.status.as_ref().expect("status runs").read().save()),
        bytes(feedback(models).read().save()),
    ]
}

fn feedback(models: &ReadModels) -> &podium_eventlog::Projector<FeedbackModel> {
    models.feedback.as_ref().expect("feedback runs")
}

/// Waits until every model has applied the whole log.
async fn caught_up(models: &ReadModels) {
    models.directory.catch_up().await.expect("directory");
    models
        .status
        .as_ref()
        .expect("status")
        .catch_up()
        .await
        .expect("status");
    feedback(models).catch_up().await.expect("feedback");
}

/// A log with a conference, read models that followed it and snapshotted while a second
/// conference was being written (so snapshots fall mid-stream), and the log closed.
async fn log_with_snapshots(dir: &Path, ballots: u64) -> u64 {
    let log = open(&dir.join("log"));
    write_conference(log.clone(), "first", SMALL, ballots)
        .await
        .expect("write the first conference");
    let models = follow(&log, Some(&dir.join("snapshots"))).await;
    let second = tokio::spawn(write_conference(log.clone(), "second", SMALL, ballots));
    tokio::task::yield_now().await;
    models.follower.snapshot().await.expect("snapshot");
    second
        .await
        .expect("writer task")
        .expect("write the second conference");
    caught_up(&models).await;
    models.follower.snapshot().await.expect("snapshot");
    // The last snapshot is taken before these: they are the tail a restart replays.
    write_conference(log.clone(), "third", SMALL, 50)
        .await
        .expect("write the third conference");
    let head = log.head();
    log.close().expect("close");
    models.follower.stopped().await;
    drop(models);
    released(log).await;
    head
}

/// The models loaded from the snapshots in `dir`, and the same models replayed from the whole
/// log, compared; returns the positions each snapshotted model started from.
async fn restart_and_compare(dir: &Path) -> Vec<u64> {
    let log = open(&dir.join("log"));
    let loaded = follow(&log, Some(&dir.join("snapshots"))).await;
    let replayed = follow(&log, None).await;
    caught_up(&loaded).await;
    caught_up(&replayed).await;
    let (loaded_states, replayed_states) = (states(&loaded), states(&replayed));
    for (name, (l, r)) in MODELS
        .iter()
        .zip(loaded_states.iter().zip(&replayed_states))
    {
        assert!(
            l == r,
            "{name}: loaded from its snapshot differs from a replay"
        );
    }
    let started = MODELS
        .iter()
        .map(|m| loaded.follower.started_from(m).expect("registered"))
        .collect();
    log.close().expect("close");
    loaded.follower.stopped().await;
    replayed.follower.stopped().await;
    drop((loaded, replayed));
    released(log).await;
    started
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_from_its_snapshot_and_the_tail_equals_the_model_replayed() {
    for ballots in [0, 300, 1_500] {
        let dir = TempDir::new().expect("temporary directory");
        let head = log_with_snapshots(dir.path(), ballots).await;
        let started = restart_and_compare(dir.path()).await;
        for (name, from) in MODELS.iter().zip(&started) {
            assert!(
                *from > 0 && *from < head,
                "{name} loads its snapshot ({from}) and replays a tail up to {head}"
            );
        }
    }
}

/// Rewrites the feedback model's snapshot with `change` and checks that, at the restart, it is
/// ignored and the model rebuilt from the whole log, while the other models load theirs.
async fn feedback_snapshot_ignored_after(change: impl FnOnce(&Path)) {
    let dir = TempDir::new().expect("temporary directory");
    log_with_snapshots(dir.path(), 400).await;
    change(&snapshot::snapshot_path(
        &dir.path().join("snapshots"),
        "feedback",
    ));
    let started = restart_and_compare(dir.path()).await;
    assert_eq!(started[3], 0, "feedback is rebuilt from the log");
    assert!(
        started[..3].iter().all(|from| *from > 0),
        "the other models still load theirs: {started:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_snapshot_is_ignored() {
    feedback_snapshot_ignored_after(|path| {
        let mut bytes = std::fs::read(path).expect("read the snapshot");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(path, bytes).expect("write it back");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_an_older_format_is_ignored() {
    feedback_snapshot_ignored_after(|path| {
        let bytes = std::fs::read(path).expect("read the snapshot");
        let mut file = SnapshotFile::parse(&bytes, FeedbackModel::VERSION).expect("a snapshot");
        // Correctly checksummed, only older: refused for its version, not as corrupt.
        file.version = FeedbackModel::VERSION - 1;
        std::fs::write(path, file.to_bytes()).expect("write it back");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_past_the_head_of_a_log_restored_from_an_older_backup_is_ignored() {
    let dir = TempDir::new().expect("temporary directory");
    let log_dir = dir.path().join("log");
    let log = open(&log_dir);
    write_conference(log.clone(), "first", SMALL, 200)
        .await
        .expect("write");
    log.close().expect("close");
    released(log).await;
    let backup = dir.path().join("backup");
    copy_dir(&log_dir, &backup);

    let log = open(&log_dir);
    write_conference(log.clone(), "second", SMALL, 200)
        .await
        .expect("write");
    let models = follow(&log, Some(&dir.path().join("snapshots"))).await;
    models.follower.snapshot().await.expect("snapshot");
    log.close().expect("close");
    models.follower.stopped().await;
    drop(models);
    released(log).await;

    std::fs::remove_dir_all(&log_dir).expect("remove the log");
    copy_dir(&backup, &log_dir);
    let started = restart_and_compare(dir.path()).await;
    assert_eq!(started, [0, 0, 0, 0], "every snapshot is past the head");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_another_log_is_ignored() {
    let dir = TempDir::new().expect("temporary directory");
    let snapshotted = log_with_snapshots(dir.path(), 200).await;
    // Another log, longer than the one the snapshots were taken of, in place of it.
    let log_dir = dir.path().join("log");
    std::fs::remove_dir_all(&log_dir).expect("remove the log");
    let other = open(&log_dir);
    write_conference(other.clone(), "other", SMALL, 2_000)
        .await
        .expect("write");
    assert!(
        other.head() > snapshotted,
        "the snapshots are refused for their event, not for lying past the head"
    );
    other.close().expect("close");
    released(other).await;
    let started = restart_and_compare(dir.path()).await;
    assert_eq!(started, [0, 0, 0, 0], "no snapshot belongs to this log");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the directory") {
        let entry = entry.expect("an entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_of_podiumd_leaves_a_snapshot_of_every_model_at_the_head() {
    use clap::Parser;
    let dir = TempDir::new().expect("temporary directory");
    let data = dir.path().join("data");
    let log = open(&data.join("log"));
    let written = write_conference(log.clone(), "first", SMALL, 300)
        .await
        .expect("write");
    log.close().expect("close");
    released(log).await;
    let config = podium_server::Config::try_parse_from([
        "podiumd",
        "--data-dir",
        data.to_str().expect("a UTF-8 path"),
    ])
    .expect("configuration");
    let podium = podium_server::Podium::open(config)
        .await
        .expect("podiumd opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    // Stops at once: the shutdown path alone, as after SIGTERM.
    podium
        .serve(listener, async {})
        .await
        .expect("podiumd stops cleanly");
    let snapshots = data.join(podium_server::SNAPSHOT_DIR);
    let versions = [
        podium_access::Directory::VERSION,
        podium_agenda::store::AgendaModel::VERSION,
        podium_status::StatusModel::VERSION,
        FeedbackModel::VERSION,
    ];
    for (model, version) in MODELS.iter().zip(versions) {
        let path = snapshot::snapshot_path(&snapshots, model);
        let bytes = std::fs::read(&path).expect("a snapshot written at shutdown");
        let file = SnapshotFile::parse(&bytes, version).expect("a valid snapshot");
        assert_eq!(file.position, written, "{model} reflects the whole log");
    }
}
