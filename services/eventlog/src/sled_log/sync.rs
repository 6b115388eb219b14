//! What makes a group commit durable: the fsyncs sled 0.34 leaves out.
//!
//! sled's `Db::flush` writes its buffers with `pwrite` and then calls `sync_file_range`, which
//! starts write-back and waits for it but makes neither the file's size nor the disk's write
//! cache durable: on a power cut, acknowledged writes are lost (LazyFS shows it; see the
//! README's "Durability"). sled also writes pages too large for its log into files of their
//! own under `blobs/`, which it never syncs, and never fsyncs a directory. So after every flush
//! and before any caller is answered, the writer calls [`SledFiles::sync`]: `fdatasync` on the
//! database file (its data, and its size when it grew), `fdatasync` on every blob file that is
//! new or grew and then an `fsync` of `blobs/`, and an `fsync` of the log's directory when the
//! names in it changed (sled's snapshots). Once per group, however many appends it holds.

use std::{
    collections::HashMap,
    ffi::OsString,
    fs, io,
    path::{Path, PathBuf},
};

use crate::durable;

/// The files of one open sled database, and what of them is known to be durable.
pub(super) struct SledFiles {
    dir: PathBuf,
    /// sled's database file, opened once more: an fsync on any descriptor of a file makes all
    /// of its written data durable.
    db: fs::File,
    /// Blob files synced so far, with their length then; forgotten when sled removes them.
    synced_blobs: HashMap<OsString, u64>,
    /// The names in `dir` when it was last fsynced.
    listing: Vec<OsString>,
}

impl SledFiles {
    /// Takes the files of the database sled has just opened in `dir` and makes all of them
    /// durable, directories included, so that nothing read from the log at start-up (which may
    /// still be in the page cache after a crash) can be lost afterwards.
    pub(super) fn open(dir: &Path) -> io::Result<Self> {
        let db = fs::File::open(dir.join("db"))?;
        let mut files = Self {
            dir: dir.to_path_buf(),
            db,
            synced_blobs: HashMap::new(),
            listing: Vec::new(),
        };
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                match fs::File::open(entry.path()) {
                    Ok(file) => file.sync_all()?,
                    // sled replaced it meanwhile (a snapshot); the directory's sync covers that.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        files.sync_blobs()?;
        durable::sync_dir(&files.dir.join("blobs"))?;
        files.listing = files.names()?;
        durable::sync_dir(dir)?;
        durable::sync_parent(dir)?;
        Ok(files)
    }

    /// Makes everything sled has written so far durable. Call after `Db::flush`.
    pub(super) fn sync(&mut self) -> io::Result<()> {
        self.db.sync_data()?;
        if self.sync_blobs()? {
            durable::sync_dir(&self.dir.join("blobs"))?;
        }
        let listing = self.names()?;
        if listing != self.listing {
            durable::sync_dir(&self.dir)?;
            self.listing = listing;
        }
        Ok(())
    }

    /// Fdatasyncs the blob files that are new or grew since they were last synced (another
    /// thread of sled may have been writing one); returns whether there were any. It runs after
    /// the database file's sync: a page written to the log there had its blob complete first.
    fn sync_blobs(&mut self) -> io::Result<bool> {
        let blobs = self.dir.join("blobs");
        let mut present = HashMap::with_capacity(self.synced_blobs.len());
        let mut synced_any = false;
        for entry in fs::read_dir(&blobs)? {
            let entry = entry?;
            let name = entry.file_name();
            let len = match entry.metadata() {
                Ok(metadata) => metadata.len(),
                // sled removed it meanwhile (it collects the blobs of rewritten pages).
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if self.synced_blobs.get(&name) != Some(&len) {
                match fs::File::open(blobs.join(&name)) {
                    Ok(file) => file.sync_data()?,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                synced_any = true;
            }
            present.insert(name, len);
        }
        self.synced_blobs = present;
        Ok(synced_any)
    }

    /// The names in the database's directory, sorted.
    fn names(&self) -> io::Result<Vec<OsString>> {
        let mut names = fs::read_dir(&self.dir)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<io::Result<Vec<_>>>()?;
        names.sort_unstable();
        Ok(names)
    }
}
