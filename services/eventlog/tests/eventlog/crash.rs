//! The crash test: a child process (`podium-log-torture`) appends under load and reports each
//! acknowledgement; the test kills it with SIGKILL at random moments and, after each restart,
//! checks that every acknowledged event is present where its acknowledgement said, that the log
//! is a gap-free prefix of what it was before, and that no batch is torn. The same test runs on
//! sled (50 cycles by default) and on a three-server JetStream cluster (20 cycles, the child a
//! client of the cluster killed mid-append); `PODIUM_CRASH_CYCLES` asks for more and
//! `PODIUM_CRASH_SEED` replays a run.

use std::{
    io::{BufRead, BufReader, Read},
    os::unix::process::ExitStatusExt,
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, SystemTime},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use podium_eventlog::RecordedEvent;
use proptest::{
    prelude::RngExt,
    test_runner::{RngAlgorithm, TestRng},
};
use tempfile::TempDir;
use uuid::Uuid;

use crate::helpers::{Place, ballot_value, checked_log, cluster, runtime};

/// One acknowledged append, as the child reported it.
#[derive(Debug)]
struct Ack {
    stream: String,
    first_version: u64,
    last_version: u64,
    first_position: u64,
    last_position: u64,
    ids: Vec<Uuid>,
}

impl Ack {
    fn parse(line: &str) -> Self {
        let fields: Vec<&str> = line.split(' ').collect();
        assert!(
            fields.len() > 6 && fields[0] == "ack",
            "malformed line from the child: {line:?}"
        );
        let number = |i: usize| {
            fields[i]
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("bad number in {line:?}"))
        };
        Self {
            stream: fields[1].to_owned(),
            first_version: number(2),
            last_version: number(3),
            first_position: number(4),
            last_position: number(5),
            ids: fields[6..]
                .iter()
                .map(|id| Uuid::parse_str(id).expect("event id"))
                .collect(),
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number"))
    })
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let dir = TempDir::new().unwrap();
    crash_cycles(&Place::Sled(dir.path().to_owned()), 50);
}

#[test]
fn acknowledged_appends_survive_sigkill_on_jetstream() {
    let cluster = cluster();
    crash_cycles(&Place::on(&cluster), 20);
}

/// Kills the child appending to the log at `place`, `cycles` times unless told otherwise, and
/// checks the log after each kill.
fn crash_cycles(place: &Place, cycles: u64) {
    let cycles = env_number("PODIUM_CRASH_CYCLES").unwrap_or(cycles);
    let seed = env_number("PODIUM_CRASH_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    println!("crash test: {cycles} cycles, PODIUM_CRASH_SEED={seed}");
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);

    let mut acks: Vec<Ack> = Vec::new();
    let mut previous: Vec<Uuid> = Vec::new();
    for cycle in 0..cycles {
        let appenders = rng.random_range(1..=8u32);
        let before = acks.len();
        // One kill in five lands while the child starts (opening and recovering the log,
        // resending its last batches); the others after its first acknowledged append, while
        // it appends. Counted, not drawn: the test proves something only if most kills land
        // while appends are in flight.
        let kill = if cycle % 5 == 4 {
            Kill::Starting
        } else {
            Kill::Appending
        };
        run_child(place, appenders, kill, &mut rng, &mut acks);
        // A runtime per check, dropped before the next child starts: dropping it waits for
        // the blocking reads it spawned (a read-ahead the check did not need), so none of them
        // still holds the database, and its lock, when the child opens it.
        let log = runtime().block_on(verify(place, &acks, &previous));
        println!(
            "cycle {cycle}: {appenders} appenders, {} new acks, log head {}",
            acks.len() - before,
            log.len()
        );
        previous = log.iter().map(|e| e.id).collect();
    }
}

/// When the child is killed.
#[derive(Clone, Copy)]
enum Kill {
    /// 0 to 30 ms after it was started.
    Starting,
    /// 1 to 150 ms after its first acknowledged append. A child that is not ready, or does not
    /// acknowledge an append, within 60 s fails the test: the log must take appends again
    /// after every crash.
    Appending,
}

/// Starts the child on `place`, kills it with SIGKILL as `kill` says and collects its
/// acknowledgements.
fn run_child(place: &Place, appenders: u32, when: Kill, rng: &mut TestRng, acks: &mut Vec<Ack>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_podium-log-torture"))
        .arg(place.arg())
        .arg(appenders.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start podium-log-torture");
    let stdout = child.stdout.take().expect("child stdout");
    let mut stderr = child.stderr.take().expect("child stderr");
    let (lines, received) = mpsc::channel::<String>();
    let reader = thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        // A line cut short by the kill has no newline and was never an acknowledgement.
        while stdout.read_line(&mut line).is_ok_and(|n| n > 0) && line.ends_with('\n') {
            if lines.send(line.trim_end().to_owned()).is_err() {
                break;
            }
            line.clear();
        }
    });
    let errors = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    match when {
        Kill::Starting => thread::sleep(Duration::from_millis(rng.random_range(0..30))),
        Kill::Appending => {
            let line = |awaited: &str| {
                received
                    .recv_timeout(Duration::from_secs(60))
                    .map_err(|error| format!("the child never sent {awaited} ({error})"))
            };
            let first_ack = line("ready").and_then(|ready| {
                assert!(
                    ready.starts_with("ready "),
                    "the child said {ready:?} before ready"
                );
                line("its first acknowledgement")
            });
            match first_ack {
                Ok(ack) => acks.push(Ack::parse(&ack)),
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{why}: {}", errors.join().unwrap_or_default());
                }
            }
            thread::sleep(Duration::from_millis(rng.random_range(1..150)));
        }
    }
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
    kill(pid, Signal::SIGKILL).expect("SIGKILL the child");
    let status = child.wait().expect("wait for the child");
    reader.join().expect("stdout reader");
    let stderr = errors.join().unwrap_or_default();
    assert_eq!(
        status.signal(),
        Some(Signal::SIGKILL as i32),
        "the child stopped by itself ({status}): {stderr}"
    );

    acks.extend(
        received
            .try_iter()
            .filter(|line| !line.starts_with("ready "))
            .map(|line| Ack::parse(&line)),
    );
}

/// Opens the log as a restarted server would and checks it against everything acknowledged
/// so far and against the log as the previous cycle found it.
async fn verify(place: &Place, acks: &[Ack], previous: &[Uuid]) -> Vec<RecordedEvent> {
    let log = place.open(4096).await;
    if matches!(place, Place::Nats { .. }) {
        settle(log.log.as_ref()).await;
    }
    // Dense positions, contiguous stream versions, read_stream agreeing with read_all.
    let all = checked_log(log.log.as_ref()).await;
    assert!(
        all.len() >= previous.len(),
        "the log shrank from {} to {} events",
        previous.len(),
        all.len()
    );
    assert!(
        all.iter().zip(previous).all(|(e, id)| e.id == *id),
        "the log changed below its old head"
    );

    // Every event decodes and is intact, and every batch is whole.
    let mut position = 0;
    while position < all.len() {
        let (index, len) = batch_place(&all[position]);
        assert_eq!(index, 0, "position {position} starts inside a batch");
        assert!(
            position + len <= all.len(),
            "the batch at position {position} is cut off at the head"
        );
        for (k, event) in all[position..position + len].iter().enumerate() {
            assert_eq!(
                batch_place(event),
                (k, len),
                "the batch at position {position} is torn"
            );
            assert_eq!(event.stream, all[position].stream);
            assert_eq!(
                event.stream_version,
                all[position].stream_version + k as u64
            );
        }
        position += len;
    }

    for ack in acks {
        assert_eq!(
            ack.last_position + 1 - ack.first_position,
            ack.ids.len() as u64,
            "{ack:?}"
        );
        assert_eq!(
            ack.last_version + 1 - ack.first_version,
            ack.ids.len() as u64,
            "{ack:?}"
        );
        for (i, id) in ack.ids.iter().enumerate() {
            let stored = all.get((ack.first_position + i as u64) as usize);
            let stored =
                stored.unwrap_or_else(|| panic!("acknowledged event {id} is lost: {ack:?}"));
            assert_eq!(
                (stored.id, stored.stream.as_str(), stored.stream_version),
                (*id, ack.stream.as_str(), ack.first_version + i as u64),
                "acknowledged event is not where its acknowledgement said: {ack:?}"
            );
        }
    }
    log.close();
    all
}

/// Waits until the log stops growing. A killed child's last publishes were already on their
/// way to the cluster: the servers store them after the child is gone (a sled log is written
/// by the dying process only, so nothing lands after it).
async fn settle(log: &dyn podium_eventlog::EventLog) {
    let quiet = Duration::from_millis(300);
    let mut head = log.head();
    for _ in 0..100 {
        tokio::time::sleep(quiet).await;
        if log.head() == head {
            return;
        }
        head = log.head();
    }
    panic!("the log never stopped growing after the child was killed");
}

/// Where an event sits in its batch, from its payload, after checking the payload is intact.
fn batch_place(event: &RecordedEvent) -> (usize, usize) {
    let message: prost_types::Any = event.decode().expect("every stored payload decodes");
    assert_eq!(
        message.value,
        ballot_value(event.id),
        "payload of {} is not its own",
        event.id
    );
    let place = message
        .type_url
        .strip_prefix("podium.test/torture/")
        .expect("torture payload");
    let (index, len) = place.split_once('/').expect("index/len");
    (index.parse().expect("index"), len.parse().expect("len"))
}
