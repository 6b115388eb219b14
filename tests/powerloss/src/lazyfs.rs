//! LazyFS, driven: mounted over a backing directory, told through its FIFO to drop every write
//! that was never fsynced (`lazyfs::clear-cache`, a power cut), or to tear the next writes to a
//! file and crash itself (`torn-op`, `torn-seq`). See `shared/tools/lazyfs/README.md` for what
//! it models: the page cache; not lost directory operations (creates, renames and unlinks go
//! straight to the backing directory).

use std::{
    io::{BufRead, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use std::os::unix::fs::OpenOptionsExt as _;

/// How long LazyFS gets to mount, and to answer a clear-cache.
const PATIENCE: Duration = Duration::from_secs(10);

/// A mounted LazyFS. Unmounted when dropped.
pub struct LazyFs {
    binary: PathBuf,
    work: PathBuf,
    cache: String,
    faults: PathBuf,
    completed: PathBuf,
    /// LazyFS's log of the current mount (one per mount: it starts its log afresh).
    log: PathBuf,
    mounts: u32,
    /// What LazyFS passes through to: the files as a power cut leaves them.
    pub backing: PathBuf,
    pub mount: PathBuf,
    child: Option<Child>,
    /// Lines LazyFS writes to its completion FIFO (`finished::clear-cache`).
    done: mpsc::Receiver<String>,
}

impl LazyFs {
    /// Mounts LazyFS (`binary`, the wrapper in `shared/tools/lazyfs/`) on `work/m` over
    /// `work/b`, with its FIFOs and configuration in `work`. `cache` is LazyFS's cache size,
    /// e.g. `512mb`: above the bytes written between two clear-caches.
    pub fn mount(binary: &Path, work: &Path, cache: &str) -> anyhow::Result<Self> {
        let (backing, mount) = (work.join("b"), work.join("m"));
        std::fs::create_dir_all(&backing)?;
        std::fs::create_dir_all(&mount)?;
        let (faults, completed) = (work.join("faults.fifo"), work.join("done.fifo"));
        for fifo in [&faults, &completed] {
            if !fifo.exists() {
                nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .with_context(|| format!("cannot make the FIFO {}", fifo.display()))?;
            }
        }
        // Opened read-write, the completion FIFO never blocks LazyFS (which waits for a reader
        // before its first answer), and stays open across remounts.
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&completed)?;
        let (tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut lazyfs = Self {
            binary: binary.to_path_buf(),
            work: work.to_path_buf(),
            cache: cache.to_owned(),
            faults,
            completed,
            log: PathBuf::new(),
            mounts: 0,
            backing,
            mount,
            child: None,
            done,
        };
        lazyfs.start()?;
        Ok(lazyfs)
    }

    fn start(&mut self) -> anyhow::Result<()> {
        self.mounts += 1;
        self.log = self.work.join(format!("lazyfs-{}.log", self.mounts));
        let config = self.work.join(format!("lazyfs-{}.toml", self.mounts));
        std::fs::write(
            &config,
            format!(
                "[faults]\nfifo_path=\"{}\"\nfifo_path_completed=\"{}\"\n\n[cache]\n\
                 apply_eviction=false\n\n[cache.simple]\ncustom_size=\"{}\"\n\
                 blocks_per_page=1\n\n[filesystem]\nlog_all_operations=false\nlogfile=\"{}\"\n",
                self.faults.display(),
                self.completed.display(),
                self.cache,
                self.log.display()
            ),
        )?;
        let child = Command::new(&self.binary)
            .arg(&self.mount)
            .arg("--config-path")
            .arg(&config)
            .args(["-o", "allow_other", "-o", "modules=subdir", "-o"])
            .arg(format!("subdir={}", self.backing.display()))
            .arg("-f")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run LazyFS ({})", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while !self.mounted()? {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "LazyFS exited with {status} instead of mounting {} (it needs root, /dev/fuse \
                     and Debian's fuse3 package); its log: {}",
                    self.mount.display(),
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "LazyFS did not mount {} within {PATIENCE:?}",
                    self.mount.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Whether the mount point is a FUSE mount now.
    fn mounted(&self) -> anyhow::Result<bool> {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
        let mount = self.mount.to_string_lossy();
        Ok(mounts
            .lines()
            .any(|line| line.split(' ').nth(4) == Some(&*mount) && line.contains("fuse")))
    }

    /// The path LazyFS knows a file in the mount by (it sees the backing paths), for faults.
    pub fn fault_path(&self, in_mount: &Path) -> anyhow::Result<PathBuf> {
        Ok(self.backing.join(in_mount.strip_prefix(&self.mount)?))
    }

    /// Sends one command line to LazyFS's fault FIFO (see [`send`]).
    fn command(&mut self, command: &str) -> anyhow::Result<()> {
        let faults = self.faults.clone();
        send(&faults, command, || {
            self.exited()
                .map(|status| format!("{status}; its log: {}", self.log_tail()))
        })
    }

    /// How LazyFS exited, if it has: after a torn write (which ends with LazyFS killing
    /// itself), or on its own, which leaves the mount answering "Transport endpoint is not
    /// connected".
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Drops every write that was never fsynced, as a power cut would, and waits until done.
    pub fn clear_cache(&mut self) -> anyhow::Result<()> {
        while self.done.try_recv().is_ok() {}
        self.command("lazyfs::clear-cache")?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.done.recv_timeout(left) {
                Ok(line) if line.contains("finished::clear-cache") => return Ok(()),
                Ok(_) => {}
                Err(_) => bail!("LazyFS did not finish a clear-cache within {PATIENCE:?}"),
            }
        }
    }

    /// Arms a torn write: the next write to `file` (a path in the mount) is split in `parts`,
    /// only the parts in `persist` (1-based) reach the backing file, and LazyFS crashes.
    pub fn torn_op(&mut self, file: &Path, parts: u32, persist: &str) -> anyhow::Result<()> {
        let file = self.fault_path(file)?;
        self.command(&format!(
            "lazyfs::torn-op::file={}::persist={persist}::parts={parts}",
            file.display()
        ))
    }

    /// Arms a torn sequence: of the next writes to `file` with no fsync between them, only
    /// those numbered in `persist` (1-based) reach the backing file, and LazyFS crashes.
    pub fn torn_seq(&mut self, file: &Path, persist: &str) -> anyhow::Result<()> {
        let file = self.fault_path(file)?;
        self.command(&format!(
            "lazyfs::torn-seq::op=write::file={}::persist={persist}",
            file.display()
        ))
    }

    /// A power cut at the file system's level: LazyFS is killed with whatever it has not
    /// written through (if it is still running), unmounted, and mounted again over what the
    /// backing directory holds.
    pub fn cut_and_remount(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.start()
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Lazily: a killed FUSE daemon leaves the mount point answering ENOTCONN.
        let status = Command::new("fusermount3")
            .arg("-uz")
            .arg(&self.mount)
            .stderr(Stdio::null())
            .status()
            .context("cannot run fusermount3 (Debian's fuse3 package)")?;
        if !status.success() && self.mounted()? {
            bail!("cannot unmount {}", self.mount.display());
        }
        Ok(())
    }

    /// What LazyFS says it let through of a torn write, from its log; `None` when its log
    /// holds no torn write.
    pub fn torn_report(&self) -> Option<String> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let kept: Vec<&str> = log
            .lines()
            .filter_map(|line| {
                let at = line.find("[lazyfs.faults]: ")?;
                let said = &line[at + "[lazyfs.faults]: ".len()..];
                said.contains("persist").then_some(said)
            })
            .collect();
        (!kept.is_empty()).then(|| kept.join("; "))
    }

    /// The end of LazyFS's own log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

/// Writes one command line (under 100 bytes: LazyFS reads the FIFO 100 bytes at a time) to
/// the FIFO `fifo`. The FIFO is opened without blocking, as a plain open for writing waits for
/// a reader for ever, and a LazyFS that died leaves none (a run once hung there for good);
/// while nothing reads it, it is tried again until `exited` names how LazyFS ended, or for
/// [`PATIENCE`].
fn send(
    fifo: &Path,
    command: &str,
    mut exited: impl FnMut() -> Option<String>,
) -> anyhow::Result<()> {
    if command.len() >= 100 {
        bail!("LazyFS command {command:?} is not under 100 bytes");
    }
    let gone =
        |how: &str| format!("LazyFS is gone ({how}), so nothing took the command {command:?}");
    let deadline = Instant::now() + PATIENCE;
    let mut file = loop {
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(fifo);
        match opened {
            Ok(file) => break file,
            Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
                if let Some(how) = exited() {
                    bail!(gone(&how));
                }
                if Instant::now() > deadline {
                    bail!(
                        "nothing read LazyFS's fault FIFO {} within {PATIENCE:?}",
                        fifo.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot open {}", fifo.display()));
            }
        }
    };
    // Blocking again for the write: a full pipe waits for LazyFS to read it.
    nix::fcntl::fcntl(
        &file,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    )
    .with_context(|| format!("cannot make {} blocking", fifo.display()))?;
    file.write_all(format!("{command}\n").as_bytes())
        .with_context(|| match exited() {
            Some(how) => gone(&how),
            None => format!("cannot write to {}", fifo.display()),
        })
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("podium-powerloss: {error:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fifo(dir: &Path) -> PathBuf {
        let path = dir.join("faults.fifo");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        path
    }

    #[test]
    fn a_command_reaches_whoever_reads_the_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let path = fifo(dir.path());
        let reader_path = path.clone();
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            BufReader::new(std::fs::File::open(reader_path).unwrap())
                .read_line(&mut line)
                .unwrap();
            line
        });
        send(&path, "lazyfs::clear-cache", || None).unwrap();
        assert_eq!(reader.join().unwrap(), "lazyfs::clear-cache\n");
    }

    #[test]
    fn a_command_to_a_lazyfs_that_is_gone_is_an_error_naming_how_it_ended() {
        let dir = tempfile::tempdir().unwrap();
        let path = fifo(dir.path());
        let error = send(&path, "lazyfs::clear-cache", || {
            Some("signal: 11 (SIGSEGV)".into())
        })
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("LazyFS is gone (signal: 11 (SIGSEGV))"),
            "{error}"
        );
        assert!(error.contains("lazyfs::clear-cache"), "{error}");
        let long = "x".repeat(100);
        assert!(send(&path, &long, || None).is_err());
    }
}
