//! podium's power-loss test: a real podiumd with its data directory on LazyFS, under a storm of
//! writes, killed with SIGKILL at a random moment, its unsynced writes dropped (a power cut),
//! restarted, and checked: every write podiumd acknowledged must be there, exactly as
//! acknowledged. Then the same with torn writes to the log's database file (LazyFS's
//! `torn-op` and `torn-seq` faults): podiumd must recover a consistent prefix holding every
//! acknowledged write, or refuse to start with an error naming the file; it must never serve a
//! corrupted event. `.ci/run` runs it; it needs root, /dev/fuse and Debian's fuse3.
//!
//! ```sh
//! cargo build --bin podiumd --bin podium-powerloss
//! target/debug/podium-powerloss --podiumd target/debug/podiumd \
//!     --lazyfs ../shared/tools/lazyfs/lazyfs --cycles 30 --torn 6
//! ```
//!
//! Exits non-zero if any acknowledged write was lost or changed.

#![forbid(unsafe_code)]

mod check;
mod lazyfs;
mod ledger;
mod podiumd;
mod storm;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Parser;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::{
    lazyfs::LazyFs,
    ledger::Ledger,
    podiumd::{Podiumd, Started},
    storm::{Cast, Storm},
};

/// The power-loss test of podiumd on LazyFS.
#[derive(Debug, Parser)]
struct Args {
    /// The podiumd binary to test.
    #[arg(long)]
    podiumd: PathBuf,
    /// LazyFS's wrapper script (shared/tools/lazyfs/lazyfs).
    #[arg(long, env = "PODIUM_LAZYFS")]
    lazyfs: PathBuf,
    /// Power cuts (kill -9, then LazyFS's clear-cache) under a storm of writes.
    #[arg(long, default_value_t = 30)]
    cycles: u32,
    /// Torn-write cycles after them (torn-op and torn-seq on the log's database file).
    #[arg(long, default_value_t = 6)]
    torn: u32,
    /// Seed of the random choices (printed, so a run can be repeated); random by default.
    #[arg(long)]
    seed: Option<u64>,
    /// Longest storm before the cut, in milliseconds; each lasts a random time up to it.
    #[arg(long, default_value_t = 1500)]
    max_storm_ms: u64,
    /// Keep the working directory (LazyFS's backing files, podiumd's logs) for a post-mortem.
    #[arg(long)]
    keep: bool,
}

/// A torn-write fault for one cycle.
#[derive(Debug, Clone, Copy)]
enum Tear {
    /// The next write split in `parts`, only those in `persist` reaching the disk.
    Op { parts: u32, persist: &'static str },
    /// Of the next writes with no fsync between them, only those in `persist`.
    Seq { persist: &'static str },
}

/// Torn-write faults in turn: prefixes, holes, and later writes without earlier ones. A
/// torn-seq needs as many writes between two fsyncs as its highest number, and with a sync per
/// group there are few: at most two are asked for.
const TEARS: [Tear; 6] = [
    Tear::Op {
        parts: 4,
        persist: "1,3",
    },
    Tear::Seq { persist: "2" },
    Tear::Op {
        parts: 3,
        persist: "2",
    },
    Tear::Seq { persist: "1" },
    Tear::Op {
        parts: 2,
        persist: "1",
    },
    Tear::Seq { persist: "2" },
];

/// One data directory's run: set up once, then cut again and again until something is lost.
struct Episode {
    data: PathBuf,
    ledger: Arc<Mutex<Ledger>>,
    cast: Option<Cast>,
}

impl Episode {
    fn new(lazyfs: &LazyFs, number: u32) -> Self {
        Self {
            data: lazyfs.mount.join(format!("d{number}")),
            ledger: Arc::default(),
            cast: None,
        }
    }

    /// The ledger, taken out to be checked while no storm writes to it.
    fn take_ledger(&self) -> Ledger {
        std::mem::take(&mut *self.ledger.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn put_ledger(&self, ledger: Ledger) {
        *self.ledger.lock().unwrap_or_else(|p| p.into_inner()) = ledger;
    }

    /// Writes acknowledged, and sent without an answer, so far.
    fn counts(&self) -> (usize, usize) {
        self.ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .counts()
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let failures = runtime.block_on(run(&args))?;
    if failures > 0 {
        eprintln!(
            "podium-powerloss: FAILED: {failures} cycles lost or changed acknowledged writes"
        );
        std::process::exit(1);
    }
    println!("podium-powerloss: passed");
    Ok(())
}

/// Runs every cycle; returns how many failed.
async fn run(args: &Args) -> anyhow::Result<u32> {
    let seed = args.seed.unwrap_or_else(rand::random);
    // A short path: LazyFS's fault commands name files in under 100 bytes.
    let work = tempfile::Builder::new().prefix("pl").tempdir_in("/tmp")?;
    let work_path = work.path().to_path_buf();
    let mut lazyfs = LazyFs::mount(&args.lazyfs, &work_path, "512mb")?;
    let podiumd = std::fs::canonicalize(&args.podiumd)
        .with_context(|| format!("no podiumd at {}", args.podiumd.display()))?;
    println!(
        "podium-powerloss: {} on LazyFS at {}, {} power cuts then {} torn writes, seed {seed}",
        podiumd.display(),
        lazyfs.mount.display(),
        args.cycles,
        args.torn
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let mut episodes = 0u32;
    let mut episode = Episode::new(&lazyfs, episodes);
    let mut failures = 0u32;
    let mut refusals = 0u32;
    let mut starts = 0u32;
    // Cuts after which a check ran.
    let mut checked = 0u32;
    let total = args.cycles + args.torn;
    // Times LazyFS died on its own (not at a torn write), each taken as a power cut.
    let mut deaths = 0u32;
    // Round `total` only checks what the last cut left.
    for round in 0..=total {
        let began = Instant::now();
        if let Some(death) = revive(&mut lazyfs)? {
            deaths += 1;
            println!("round {round}: {death}");
        }
        let tear =
            (round >= args.cycles).then(|| TEARS[(round - args.cycles) as usize % TEARS.len()]);
        let last = round == total;
        let mut violations = Vec::new();
        let mut head = None;
        if episode.cast.is_some() {
            // A copy of what the cut left, so that podiumd meets the files untouched: opening
            // them here would let this process's recovery repair them first.
            let copy = work_path.join("log-copy");
            let _ = std::fs::remove_dir_all(&copy);
            copy_dir(
                &lazyfs.fault_path(&episode.data.join("log"))?,
                &copy.join("log"),
            )?;
            let ledger = episode.take_ledger();
            let checked = check::log(&copy, &ledger, &mut violations).await;
            episode.put_ledger(ledger);
            match checked {
                Ok(h) => head = Some(h),
                Err(error) => violations.push(format!("the log does not open: {error:#}")),
            }
        }
        starts += 1;
        let stderr = podiumd::stderr_path(&work_path, starts);
        let server = match Podiumd::start(&podiumd, &episode.data, &stderr)? {
            Started::Running(server) => server,
            Started::Refused(why) => {
                let log_file = episode.data.join("log").join("db");
                let after_tear = round > args.cycles;
                if after_tear && why.contains(&*log_file.to_string_lossy()) {
                    // Refusing to serve a damaged log, and saying which file, is allowed.
                    checked += 1;
                    refusals += 1;
                    println!(
                        "round {round}: podiumd refused the torn log, naming it: {}",
                        last_line(&why)
                    );
                    episodes += 1;
                    episode = Episode::new(&lazyfs, episodes);
                    continue;
                }
                violations.push(format!("podiumd did not start: {}", why.trim()));
                report(round, &violations);
                checked += u32::from(episode.cast.is_some());
                failures += 1;
                episodes += 1;
                episode = Episode::new(&lazyfs, episodes);
                continue;
            }
        };
        let admin = std::fs::read_to_string(episode.data.join("admin.token"))?
            .trim()
            .to_owned();
        if let Some(cast) = &episode.cast {
            let mut ledger = episode.take_ledger();
            let checked = check::server(
                &server.addr,
                &episode.data,
                cast,
                &mut ledger,
                last,
                &mut violations,
            )
            .await;
            episode.put_ledger(ledger);
            if let Err(error) = checked {
                violations.push(format!("checking podiumd failed: {error:#}"));
            }
        }
        if !violations.is_empty()
            && let Some(death) = revive(&mut lazyfs)?
        {
            // The mount went away under podiumd while it was checked: what it answered says
            // nothing about the log. The data directory starts over, and the round is not
            // counted either way (the log itself was checked before, from the backing files).
            deaths += 1;
            server.kill()?;
            println!(
                "round {round}: {death}, during the check ({} findings not counted: {})",
                violations.len(),
                violations[0]
            );
            episodes += 1;
            episode = Episode::new(&lazyfs, episodes);
            continue;
        }
        if !violations.is_empty() {
            report(round, &violations);
            checked += 1;
            failures += 1;
            server.kill()?;
            // What this directory holds no longer matches the ledger: start over beside it.
            episodes += 1;
            episode = Episode::new(&lazyfs, episodes);
            continue;
        }
        if episode.cast.is_some() {
            checked += 1;
        }
        if last {
            server.kill()?;
            let (acked, unknown) = episode.counts();
            if episode.cast.is_some() {
                println!(
                    "round {round}: log head {}, every acknowledged write there: all {acked} of this data directory, recordings fetched again ({unknown} sent without an answer)",
                    head.unwrap_or_default()
                );
            }
            break;
        }
        let cast = match &episode.cast {
            Some(cast) => cast.clone(),
            None => {
                let cast = storm::set_up(&server.addr, admin).await?;
                episode.cast = Some(cast.clone());
                cast
            }
        };
        let before = episode.counts();
        let storm = Storm::start(&server.addr, &cast, episode.ledger.clone(), round, seed).await?;
        let storm_ms = rng.random_range(200..=args.max_storm_ms.max(200));
        let mut fired = None;
        match tear {
            None => tokio::time::sleep(Duration::from_millis(storm_ms)).await,
            Some(tear) => {
                tokio::time::sleep(Duration::from_millis(storm_ms / 2)).await;
                if lazyfs.exited().is_none() {
                    fired = Some(arm_and_wait(&mut lazyfs, &episode.data, tear).await?);
                }
            }
        }
        server.kill()?;
        storm.end().await?;
        if tear.is_some() && fired == Some(false) && lazyfs.exited().is_some() {
            // The tear fired after arm_and_wait stopped waiting for it: LazyFS's log says so.
            fired = Some(lazyfs.torn_report().is_some());
        }
        let died = match fired {
            Some(true) => None,
            _ => revive(&mut lazyfs)?,
        };
        let cut = match (died, tear) {
            (Some(death), _) => {
                deaths += 1;
                death
            }
            (None, None) => {
                lazyfs.clear_cache()?;
                "kill -9, clear-cache".to_owned()
            }
            (None, Some(tear)) => {
                let what = match fired {
                    Some(true) => format!(
                        "kill -9, {tear:?}: {}",
                        lazyfs
                            .torn_report()
                            .unwrap_or_else(|| "nothing reported".to_owned())
                    ),
                    _ => format!("kill -9, {tear:?} armed but did not fire (a plain cut)"),
                };
                lazyfs.cut_and_remount()?;
                what
            }
        };
        let after = episode.counts();
        println!(
            "round {round}: {}; storm {storm_ms} ms: {} writes acknowledged, {} unanswered; cut: {cut} ({:.1} s)",
            match head {
                Some(head) => format!("log head {head}, every acknowledged write there"),
                None => "set up".to_owned(),
            },
            after.0 - before.0,
            after.1 - before.1,
            began.elapsed().as_secs_f64()
        );
    }
    drop(lazyfs);
    if args.keep {
        println!("kept {}", work.keep().display());
    }
    println!(
        "podium-powerloss: {total} cuts, {checked} checked, {failures} lost or changed acknowledged writes, {refusals} torn logs refused at start{}",
        match deaths {
            0 => String::new(),
            1 => ", LazyFS died on its own once (taken as a power cut)".to_owned(),
            n => format!(", LazyFS died on its own {n} times (each taken as a power cut)"),
        }
    );
    Ok(failures)
}

/// If LazyFS died on its own (seen once in CI: a zombie LazyFS, its mount answering "Transport
/// endpoint is not connected", podiumd refusing every write), mounts it again and says so. Its
/// death drops what it held unwritten, as a power cut does, so the round goes on as one; before,
/// the run hung on the dead LazyFS's FIFO.
fn revive(lazyfs: &mut LazyFs) -> anyhow::Result<Option<String>> {
    let Some(status) = lazyfs.exited() else {
        return Ok(None);
    };
    let log = lazyfs.log_tail();
    lazyfs.cut_and_remount()?;
    Ok(Some(format!(
        "LazyFS died on its own ({status}; its log: {log}), taken as a power cut: mounted again"
    )))
}

/// Arms `tear` on the log's database file and waits a little for LazyFS to crash on it.
async fn arm_and_wait(lazyfs: &mut LazyFs, data: &Path, tear: Tear) -> anyhow::Result<bool> {
    let file = data.join("log").join("db");
    match tear {
        Tear::Op { parts, persist } => lazyfs.torn_op(&file, parts, persist)?,
        Tear::Seq { persist } => lazyfs.torn_seq(&file, persist)?,
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if lazyfs.exited().is_some() {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(false)
}

/// Copies a directory tree of plain files.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The last line of a process's stderr: its error.
fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

fn report(round: u32, violations: &[String]) {
    eprintln!("round {round}: LOST OR CHANGED after the cut:");
    for violation in violations.iter().take(20) {
        eprintln!("  - {violation}");
    }
    if violations.len() > 20 {
        eprintln!("  ... and {} more", violations.len() - 20);
    }
}
