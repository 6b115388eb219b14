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

    /// Sends one command line (under 100 bytes: LazyFS reads the FIFO 100 bytes at a time).
    fn command(&self, command: &str) -> anyhow::Result<()> {
        if command.len() >= 100 {
            bail!("LazyFS command {command:?} is not under 100 bytes");
        }
        let mut fifo = std::fs::OpenOptions::new().write(true).open(&self.faults)?;
        fifo.write_all(format!("{command}\n").as_bytes())?;
        Ok(())
    }

    /// Drops every write that was never fsynced, as a power cut would, and waits until done.
    pub fn clear_cache(&self) -> anyhow::Result<()> {
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
    pub fn torn_op(&self, file: &Path, parts: u32, persist: &str) -> anyhow::Result<()> {
        let file = self.fault_path(file)?;
        self.command(&format!(
            "lazyfs::torn-op::file={}::persist={persist}::parts={parts}",
            file.display()
        ))
    }

    /// Arms a torn sequence: of the next writes to `file` with no fsync between them, only
    /// those numbered in `persist` (1-based) reach the backing file, and LazyFS crashes.
    pub fn torn_seq(&self, file: &Path, persist: &str) -> anyhow::Result<()> {
        let file = self.fault_path(file)?;
        self.command(&format!(
            "lazyfs::torn-seq::op=write::file={}::persist={persist}",
            file.display()
        ))
    }

    /// Whether LazyFS has crashed (a torn-write fault ends with LazyFS killing itself).
    pub fn crashed(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some())
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

    /// What LazyFS says it let through of a torn write, from its log.
    pub fn torn_report(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let kept: Vec<&str> = log
            .lines()
            .filter_map(|line| {
                let at = line.find("[lazyfs.faults]: ")?;
                let said = &line[at + "[lazyfs.faults]: ".len()..];
                said.contains("persist").then_some(said)
            })
            .collect();
        if kept.is_empty() {
            "nothing reported".to_owned()
        } else {
            kept.join("; ")
        }
    }

    /// The end of LazyFS's own log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("podium-powerloss: {error:#}");
        }
    }
}
