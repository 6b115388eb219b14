//! Restoring a backup into a new data directory, all or nothing. Everything is written into a
//! directory beside the target (`.<name>.restoring`), checked against the file's closing
//! digest, made durable, and only then renamed to the target: a truncated or damaged file, or
//! a crash half-way, leaves no data directory behind that podiumd would start on.

use std::{
    collections::{HashMap, HashSet},
    fs,
    io::{BufReader, Write},
    path::{Path, PathBuf},
    time::SystemTime,
};

use podium_eventlog::{
    RecordedEvent, SledImport, durable,
    personal::{KEYS_FILE, KeyStore, PersonalKeys},
};
use podium_feedback::VoterKeys;
use podium_proto::v1::{self as pb, backup_record::Record};
use podium_status::recordings::is_sha256;
use prost::Name;
use sha2::{Digest, Sha256};

use super::{
    BackupError, POLL_KEYS, RECORDINGS, RETIRED_TOKEN_KEYS, TOKEN_KEY, format::Decoder, log_path,
    recording_path,
};

/// The most keys a backup may hold: one per anonymous poll open at once, and the token key.
const MAX_KEYS: usize = 1_000_000;

/// What a restore put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The restored log's head: it holds the events at positions 0 to `head - 1`.
    pub head: u64,
    /// When the backup was taken.
    pub taken_at: Option<SystemTime>,
    /// Keys written: the token signing key and the open anonymous polls' keys.
    pub keys: usize,
    /// Recording files the log needs (of recordings registered and not deleted), and how many
    /// files the backup held.
    pub recordings: usize,
    pub recording_files: usize,
    /// Events of erased people whose personal fields the restore dropped: text written before
    /// podium encrypted it, and ciphertext nothing can read any more.
    pub erased_events: u64,
}

/// Restores the backup in `file` into `data_dir`, which must not exist or be empty.
pub fn restore(file: &Path, data_dir: &Path) -> Result<Restored, BackupError> {
    if fs::symlink_metadata(data_dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(BackupError::Target(format!(
            "{} is a symbolic link: restore into the directory it points to (nothing was written)",
            data_dir.display()
        )));
    }
    match fs::read_dir(data_dir).map(|mut entries| entries.next().is_none()) {
        Ok(true) => {}
        Ok(false) => {
            return Err(BackupError::Target(format!(
                "{} is not empty: restore only into a new or empty data directory (nothing was written)",
                data_dir.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(BackupError::io(format!("reading {}", data_dir.display()))(
                e,
            ));
        }
    }
    let name = data_dir
        .file_name()
        .ok_or_else(|| BackupError::Target(format!("{} names no directory", data_dir.display())))?
        .to_string_lossy()
        .into_owned();
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    durable::create_dir_all(&parent)
        .map_err(BackupError::io(format!("creating {}", parent.display())))?;
    let staging = parent.join(format!(".{name}.restoring"));
    // Left by a restore that was stopped: it was never renamed, so nothing else uses it.
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .map_err(BackupError::io(format!("removing {}", staging.display())))?;
    }
    let restored = Staging::new(&staging).and_then(|mut staging| {
        staging.read(file)?;
        staging.finish()
    });
    // An empty target directory is replaced by the rename.
    let renamed = restored.and_then(|restored| {
        durable::rename(&staging, data_dir)
            .map_err(BackupError::io(format!(
                "moving the restored data into {} (did something write there meanwhile?)",
                data_dir.display()
            )))
            .map(|()| restored)
    });
    match renamed {
        Ok(restored) => Ok(restored),
        Err(error) => {
            let _ = fs::remove_dir_all(&staging);
            let _ = durable::sync_dir(&parent);
            Err(error)
        }
    }
}

/// A restore in progress in its own directory.
struct Staging {
    dir: PathBuf,
    log: Option<SledImport>,
    header: pb::BackupHeader,
    keys: Vec<(String, Vec<u8>)>,
    /// Anonymous polls' key file names, and whether the poll is closed in the log.
    poll_closed: HashMap<String, bool>,
    /// Recordings registered in the log: SHA-256 and size.
    registered: HashMap<String, u64>,
    /// Recordings registered and not deleted: id and SHA-256, the files the restore needs.
    kept_recordings: HashMap<String, String>,
    /// Recording files restored so far.
    files: HashSet<String>,
    /// The recording file being written.
    current: Option<RecordingFile>,
    /// The backup's per-person keys, loaded at its first event, to tell who was erased.
    personal: Option<PersonalKeys>,
    erased_events: u64,
}

struct RecordingFile {
    sha256: String,
    size_bytes: u64,
    temp: PathBuf,
    file: fs::File,
    hasher: Sha256,
    written: u64,
}

impl Staging {
    fn new(dir: &Path) -> Result<Self, BackupError> {
        // The log names attendees: the data directory is its owner's alone, as podiumd's is.
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(BackupError::io(format!("creating {}", dir.display())))?;
        durable::sync_parent(dir)
            .map_err(BackupError::io(format!("creating {}", dir.display())))?;
        for sub in ["sha256", "tmp"] {
            let path = dir.join(RECORDINGS).join(sub);
            durable::create_dir_all(&path)
                .map_err(BackupError::io(format!("creating {}", path.display())))?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            log: Some(SledImport::create(log_path(dir))?),
            header: pb::BackupHeader::default(),
            keys: Vec::new(),
            poll_closed: HashMap::new(),
            registered: HashMap::new(),
            kept_recordings: HashMap::new(),
            files: HashSet::new(),
            current: None,
            personal: None,
            erased_events: 0,
        })
    }

    fn read(&mut self, file: &Path) -> Result<(), BackupError> {
        let name = file.display().to_string();
        let opened = fs::File::open(file).map_err(BackupError::io(format!("opening {name}")))?;
        let (mut decoder, header) =
            Decoder::open(BufReader::with_capacity(1 << 20, opened), &name)?;
        self.header = header;
        while let Some(record) = decoder.next()? {
            let at = decoder.records();
            match record {
                Record::Key(key) => self.key(key, at)?,
                Record::Event(event) => self.event(event, at)?,
                Record::Recording(recording) => self.recording(recording, at)?,
                Record::Chunk(bytes) => self.chunk(&bytes, at)?,
                Record::Header(_) | Record::End(_) => {
                    return Err(out_of_place(at, "a second header"));
                }
            }
        }
        self.close_recording()
    }

    fn key(&mut self, key: pb::BackupKey, at: u64) -> Result<(), BackupError> {
        if self.log.as_ref().is_some_and(|log| log.head() > 0) || self.current.is_some() {
            return Err(out_of_place(at, "a key after the events"));
        }
        let poll_key = key
            .path
            .strip_prefix(&format!("{POLL_KEYS}/"))
            .filter(|name| is_poll_key_name(name));
        let retired = key.path == RETIRED_TOKEN_KEYS;
        let personal = key.path == KEYS_FILE;
        if key.path != TOKEN_KEY && !retired && !personal && poll_key.is_none() {
            return Err(BackupError::Corrupt(format!(
                "record {at} is a key for {:?}, which is not a place podium keeps keys",
                key.path
            )));
        }
        let (min, max) = if poll_key.is_some() {
            (32, 32)
        } else if personal {
            // One record of 72 bytes per person.
            (8, super::format::MAX_RECORD_BYTES)
        } else if retired {
            // One line of about 80 bytes per key rotated out and still in its grace period.
            (1, 64 * 1024)
        } else {
            (32, 4096)
        };
        if !(min..=max).contains(&key.secret.len()) {
            return Err(BackupError::Corrupt(format!(
                "record {at}: the key {} is {} bytes, not {min} to {max}",
                key.path,
                key.secret.len()
            )));
        }
        if self.keys.len() >= MAX_KEYS {
            return Err(BackupError::Corrupt(format!(
                "record {at}: more than {MAX_KEYS} keys"
            )));
        }
        if retired && let Err(problem) = podium_access::keyring::check_retired(&key.secret) {
            return Err(BackupError::Corrupt(format!(
                "record {at}: the retired token keys do not read: {problem}"
            )));
        }
        if personal && let Err(problem) = KeyStore::check(&key.secret) {
            return Err(BackupError::Corrupt(format!(
                "record {at}: the personal keys do not read: {problem}"
            )));
        }
        if let Some(name) = poll_key {
            self.poll_closed.insert(name.to_owned(), false);
        }
        if personal {
            // Written where it will stay, and loaded: the events that follow are opened with
            // it (`finish` counts it without writing it again).
            let path = self.dir.join(KEYS_FILE);
            durable::write_private(&path, &key.secret)
                .map_err(BackupError::io(format!("writing {}", path.display())))?;
            let keys = PersonalKeys::load(&path)
                .map_err(|e| BackupError::Corrupt(format!("the personal keys do not load: {e}")))?;
            self.personal = Some(keys);
        }
        self.keys.push((key.path, key.secret));
        Ok(())
    }

    fn event(&mut self, event: pb::Event, at: u64) -> Result<(), BackupError> {
        let log = match (&mut self.log, &self.current) {
            (Some(log), None) if self.files.is_empty() => log,
            _ => return Err(out_of_place(at, "an event after the recordings")),
        };
        let mut event = RecordedEvent::from_proto(event)
            .map_err(|e| BackupError::Corrupt(format!("record {at}: {e}")))?;
        // An erased person's fields leave the log for good: the plain text of events written
        // before podium encrypted it, the dead ciphertext of the others. (A backup taken by
        // this podium already left them out; one taken before the erasure holds the key.)
        if let Some(keys) = &self.personal
            && keys.drop_erased(&mut event)
        {
            self.erased_events += 1;
        }
        if event.position >= self.header.log_head {
            return Err(BackupError::Corrupt(format!(
                "record {at} is the event at position {}, past the header's head {}",
                event.position, self.header.log_head
            )));
        }
        log.push(&event)?;
        let bad = |e: podium_eventlog::DecodeError| BackupError::Corrupt(e.to_string());
        if event.event_type == pb::RecordingRegistered::full_name() {
            if let pb::RecordingRegistered { recording: Some(r) } = event.decode().map_err(bad)? {
                if !is_sha256(&r.sha256) {
                    return Err(BackupError::Corrupt(format!(
                        "record {at} registers a recording whose SHA-256 {:?} is not 64 lowercase hex digits",
                        r.sha256
                    )));
                }
                self.kept_recordings.insert(r.id, r.sha256.clone());
                self.registered.insert(r.sha256, r.size_bytes);
            }
        } else if event.event_type == pb::RecordingDeleted::full_name() {
            if let pb::RecordingDeleted {
                recording: Some(r), ..
            } = event.decode().map_err(bad)?
            {
                self.kept_recordings.remove(&r.id);
            }
        } else if event.event_type == pb::PollOpened::full_name() {
            let opened: pb::PollOpened = event.decode().map_err(bad)?;
            self.poll_closed.insert(
                VoterKeys::file_name(&opened.conference_id, &opened.poll_id),
                false,
            );
        } else if event.event_type == pb::PollClosed::full_name() {
            let closed: pb::PollClosed = event.decode().map_err(bad)?;
            self.poll_closed.insert(
                VoterKeys::file_name(&closed.conference_id, &closed.poll_id),
                true,
            );
        }
        Ok(())
    }

    fn recording(
        &mut self,
        recording: pb::BackupRecordingFile,
        at: u64,
    ) -> Result<(), BackupError> {
        self.close_recording()?;
        if !self.header.recordings_included {
            return Err(out_of_place(
                at,
                "a recording in a backup said to hold none",
            ));
        }
        let pb::BackupRecordingFile { sha256, size_bytes } = recording;
        // Only names the log registered (each checked as a SHA-256 there) become file names.
        if !is_sha256(&sha256) || self.registered.get(&sha256) != Some(&size_bytes) {
            return Err(BackupError::Corrupt(format!(
                "record {at} is the file {sha256} of {size_bytes} bytes, which no event registers"
            )));
        }
        if !self.files.insert(sha256.clone()) {
            return Err(out_of_place(at, "the same recording file twice"));
        }
        let temp = self
            .dir
            .join(RECORDINGS)
            .join("tmp")
            .join(format!("{sha256}.part"));
        let file = fs::File::create(&temp)
            .map_err(BackupError::io(format!("creating {}", temp.display())))?;
        self.current = Some(RecordingFile {
            sha256,
            size_bytes,
            temp,
            file,
            hasher: Sha256::new(),
            written: 0,
        });
        Ok(())
    }

    fn chunk(&mut self, bytes: &[u8], at: u64) -> Result<(), BackupError> {
        let Some(current) = self.current.as_mut() else {
            return Err(out_of_place(at, "file bytes before a recording"));
        };
        current.written += bytes.len() as u64;
        if current.written > current.size_bytes {
            return Err(BackupError::Corrupt(format!(
                "record {at}: recording {} holds more than its {} bytes",
                current.sha256, current.size_bytes
            )));
        }
        current.hasher.update(bytes);
        current
            .file
            .write_all(bytes)
            .map_err(BackupError::io(format!(
                "writing {}",
                current.temp.display()
            )))
    }

    /// Checks the recording file just written and moves it into place.
    fn close_recording(&mut self) -> Result<(), BackupError> {
        let Some(current) = self.current.take() else {
            return Ok(());
        };
        let digest = hex::encode(current.hasher.finalize());
        if current.written != current.size_bytes || digest != current.sha256 {
            return Err(BackupError::Corrupt(format!(
                "recording {}: its {} bytes do not hash to its name",
                current.sha256, current.written
            )));
        }
        current.file.sync_all().map_err(BackupError::io(format!(
            "writing {}",
            current.temp.display()
        )))?;
        let target = recording_path(&self.dir, &current.sha256);
        fs::rename(&current.temp, &target).map_err(BackupError::io(format!(
            "renaming {}",
            current.temp.display()
        )))
    }

    /// Checks that the file held what its header promised, writes the keys of the polls that
    /// are still open, and makes everything durable.
    fn finish(mut self) -> Result<Restored, BackupError> {
        let head = self.log.take().map_or(Ok(0), SledImport::finish)?;
        if head != self.header.log_head {
            return Err(BackupError::Corrupt(format!(
                "it holds {head} events, but its header says {}",
                self.header.log_head
            )));
        }
        let needed: HashSet<&String> = self.kept_recordings.values().collect();
        let missing = needed
            .iter()
            .filter(|sha| !self.files.contains(**sha))
            .count();
        if self.header.recordings_included && missing > 0 {
            return Err(BackupError::Corrupt(format!(
                "{missing} registered recordings have no file in it, though its header says they are included"
            )));
        }
        if !self.keys.iter().any(|(path, _)| path == TOKEN_KEY) {
            return Err(BackupError::Corrupt("it holds no token signing key".into()));
        }
        let mut written = 0;
        durable::create_dir_all(&self.dir.join(POLL_KEYS))
            .map_err(BackupError::io("creating the poll keys' directory"))?;
        for (path, secret) in &self.keys {
            // A poll closed in the log keeps no key: the backup may hold one whose poll closed
            // while it was being taken.
            let closed = path
                .strip_prefix(&format!("{POLL_KEYS}/"))
                .is_some_and(|name| self.poll_closed.get(name) == Some(&true));
            if closed {
                continue;
            }
            if path == KEYS_FILE {
                // Written when its record was read.
                written += 1;
                continue;
            }
            let target = self.dir.join(path);
            durable::write_private(&target, secret)
                .map_err(BackupError::io(format!("writing {}", target.display())))?;
            written += 1;
        }
        for dir in [
            self.dir.join(RECORDINGS).join("sha256"),
            self.dir.join(RECORDINGS),
        ] {
            durable::sync_dir(&dir)
                .map_err(BackupError::io(format!("syncing {}", dir.display())))?;
        }
        durable::sync_dir(&self.dir)
            .map_err(BackupError::io(format!("syncing {}", self.dir.display())))?;
        Ok(Restored {
            head,
            taken_at: self
                .header
                .taken_at
                .and_then(|t| SystemTime::try_from(t).ok()),
            keys: written,
            recordings: needed.len(),
            recording_files: self.files.len(),
            erased_events: self.erased_events,
        })
    }
}

fn out_of_place(at: u64, what: &str) -> BackupError {
    BackupError::Corrupt(format!("record {at} is {what}, out of the format's order"))
}

/// A key file name that stays inside the keys' directory.
fn is_poll_key_name(name: &str) -> bool {
    name.ends_with(".key")
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}
