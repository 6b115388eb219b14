//! Writing a log taken elsewhere (a backup, another backend) into an empty sled database, event
//! by event, with every position, stream version, event id and time kept as they were. The log
//! it makes is the one the writer would have made: the same key spaces ([`super::keys`]),
//! and nothing in it that the writer would refuse (a gap in positions or in a stream's
//! versions, an event id twice in a stream, a bad stream name).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use prost::Message;
use uuid::Uuid;

use super::{
    Store,
    chunks::{self, Chunks},
    ids,
    keys::{id_key, stream_key},
    storage,
    sync::SledFiles,
    validate_event, validate_stream,
};
use crate::{EventLogError, RecordedEvent, Result};

/// Events buffered before they are applied to sled as one batch.
const BATCH: usize = 4096;

/// An import into a new sled log. Nothing of it is durable before [`finish`](Self::finish).
pub struct SledImport {
    store: Store,
    files: SledFiles,
    path: PathBuf,
    batch: sled::Batch,
    /// The events of `batch`, packed as the log stores them.
    chunks: Chunks,
    batched: usize,
    /// The position the next event must have.
    next: u64,
    /// Each stream's last version so far.
    heads: HashMap<String, u64>,
    /// Ids in `batch`, not yet in the tree, and their streams.
    pending_ids: HashMap<Uuid, String>,
}

impl std::fmt::Debug for SledImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledImport")
            .field("path", &self.path)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl SledImport {
    /// Creates the log in directory `path`, which must not hold one with events already.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let (store, files) = Store::open(&path, 64 << 20)?;
        // A directory a newer podiumd made (marked, maybe still without events) is not filled
        // with this layout.
        super::format::check(&store.tree)?;
        if chunks::holds_events(&store.tree) {
            return Err(EventLogError::InvalidAppend(format!(
                "{} already holds a log; import only into an empty one",
                path.display()
            )));
        }
        Ok(Self {
            store,
            files,
            path,
            batch: sled::Batch::default(),
            chunks: Chunks::default(),
            batched: 0,
            next: 0,
            heads: HashMap::new(),
            pending_ids: HashMap::new(),
        })
    }

    /// Adds the next event, which must have the next position and its stream's next version.
    pub fn push(&mut self, event: &RecordedEvent) -> Result<()> {
        let invalid = |m: String| Err(EventLogError::InvalidAppend(m));
        validate_stream(&event.stream)?;
        validate_event(event.id, &event.event_type, &event.payload)?;
        if event.position != self.next {
            return invalid(format!(
                "event {} has position {}, but the log is at {}: positions must run from 0 without a gap",
                event.id, event.position, self.next
            ));
        }
        let version = self.heads.get(&event.stream).map_or(0, |v| v + 1);
        if event.stream_version != version {
            return invalid(format!(
                "event {} at position {} has version {} of stream {}, which is at {version}",
                event.id, event.position, event.stream_version, event.stream
            ));
        }
        let earlier = match self.pending_ids.get(&event.id) {
            Some(stream) => Some(stream.clone()),
            None => ids::stored(&self.store.tree, event.id)?.map(|s| s.stream),
        };
        if earlier.as_deref() == Some(event.stream.as_str()) {
            return invalid(format!(
                "event id {} is in stream {} twice (again at position {})",
                event.id, event.stream, event.position
            ));
        }
        let position = event.position;
        self.chunks
            .push(position, &event.to_proto().encode_to_vec());
        self.batch.insert(
            stream_key(&event.stream, version),
            position.to_be_bytes().to_vec(),
        );
        // A log written before ids were unique in the whole log may hold an id in two streams:
        // the first keeps it, as when such a database is opened (`ids::migrate`).
        if earlier.is_none() {
            self.batch
                .insert(id_key(event.id).to_vec(), ids::entry(position, version));
            self.pending_ids.insert(event.id, event.stream.clone());
        }
        self.heads.insert(event.stream.clone(), version);
        self.next += 1;
        self.batched += 1;
        if self.batched >= BATCH {
            self.apply()?;
        }
        Ok(())
    }

    /// The position the next event must have: the number of events pushed so far.
    pub fn head(&self) -> u64 {
        self.next
    }

    /// Writes what is left and makes the whole log durable; returns its head.
    pub fn finish(mut self) -> Result<u64> {
        self.apply()?;
        super::format::mark(&self.store.tree)?;
        self.store.make_durable(&mut self.files, &self.path)?;
        Ok(self.next)
    }

    fn apply(&mut self) -> Result<()> {
        let mut batch = std::mem::take(&mut self.batch);
        std::mem::take(&mut self.chunks).write(&mut batch);
        self.store.tree.apply_batch(batch).map_err(storage)?;
        self.chunks = Chunks::at(&self.store.tree, self.next)?;
        self.pending_ids.clear();
        self.batched = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::{EventLog, ExpectedVersion, NewEvent, SledEventLog, SledOptions};

    fn event(stream: &str, version: u64, position: u64) -> RecordedEvent {
        RecordedEvent {
            id: Uuid::new_v4(),
            stream: stream.into(),
            stream_version: version,
            position,
            event_type: "podium.test.A".into(),
            payload: vec![position as u8; 3],
            recorded_at: SystemTime::UNIX_EPOCH + Duration::new(1_717_000_000 + position, 7),
        }
    }

    #[tokio::test]
    async fn an_imported_log_reads_and_appends_like_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let events: Vec<RecordedEvent> = (0..10_000u64)
            .map(|p| event(&format!("s/{}", p % 7), p / 7, p))
            .collect();
        let mut import = SledImport::create(dir.path()).unwrap();
        for e in &events {
            import.push(e).unwrap();
        }
        assert_eq!(import.finish().unwrap(), 10_000);

        let log = SledEventLog::open(dir.path(), SledOptions::default()).unwrap();
        assert_eq!(log.head(), 10_000);
        assert_eq!(log.read_all(0, 20_000).await.unwrap(), events);
        let stream: Vec<_> = events
            .iter()
            .filter(|e| e.stream == "s/3")
            .cloned()
            .collect();
        assert_eq!(log.read_stream("s/3", 0, 5_000).await.unwrap(), stream);
        // A retry of an imported write gets its first answer; the next append goes on from
        // the imported head and version.
        let first = &events[3];
        let retried = log
            .append(
                "s/3",
                ExpectedVersion::Any,
                vec![NewEvent {
                    id: first.id,
                    event_type: first.event_type.clone(),
                    payload: first.payload.clone(),
                }],
            )
            .await
            .unwrap();
        assert!(retried.deduplicated);
        assert_eq!((retried.first_position, retried.first_version), (3, 0));
        // The same answer, asked without writing.
        assert_eq!(log.find("s/3", first.id).await.unwrap(), Some((3, 0)));
        assert_eq!(log.find("s/4", first.id).await.unwrap(), None);
        assert_eq!(log.find("s/3", Uuid::new_v4()).await.unwrap(), None);
        let last = stream.last().unwrap().stream_version;
        let next = log
            .append(
                "s/3",
                ExpectedVersion::Exact(last),
                vec![NewEvent {
                    id: Uuid::new_v4(),
                    event_type: "podium.test.A".into(),
                    payload: vec![],
                }],
            )
            .await
            .unwrap();
        assert_eq!(
            (next.first_position, next.first_version),
            (10_000, last + 1)
        );
    }

    #[test]
    fn gaps_repeats_and_a_full_log_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut import = SledImport::create(dir.path()).unwrap();
        let first = event("s", 0, 0);
        import.push(&first).unwrap();
        let refused = |import: &mut SledImport, e: RecordedEvent, why: &str| {
            let error = import.push(&e).unwrap_err().to_string();
            assert!(error.contains(why), "{error}");
        };
        refused(
            &mut import,
            event("s", 1, 2),
            "positions must run from 0 without a gap",
        );
        refused(
            &mut import,
            event("s", 2, 1),
            "has version 2 of stream s, which is at 1",
        );
        refused(
            &mut import,
            event("t", 1, 1),
            "has version 1 of stream t, which is at 0",
        );
        refused(
            &mut import,
            RecordedEvent {
                id: first.id,
                ..event("s", 1, 1)
            },
            "is in stream s twice",
        );
        refused(&mut import, event("bad stream", 0, 1), "may only hold");
        // A refused event leaves the import where it was.
        import.push(&event("s", 1, 1)).unwrap();
        assert_eq!(import.finish().unwrap(), 2);
        let error = SledImport::create(dir.path()).unwrap_err().to_string();
        assert!(error.contains("already holds a log"), "{error}");
        // So does a log of the older layout, one event per `L` key, not yet opened.
        let older = tempfile::tempdir().unwrap();
        {
            let (store, _) = Store::open(older.path(), 1 << 20).unwrap();
            let key = super::super::keys::log_key(0);
            store
                .tree
                .insert(key, first.to_proto().encode_to_vec())
                .unwrap();
            store.db.flush().unwrap();
        }
        let error = SledImport::create(older.path()).unwrap_err().to_string();
        assert!(error.contains("already holds a log"), "{error}");
    }

    #[test]
    fn an_import_is_marked_and_one_into_a_newer_format_is_refused() {
        use super::super::{format::CURRENT, keys::FORMAT};
        let format = |dir: &Path| {
            let (store, _) = Store::open(dir, 1 << 20).unwrap();
            store.tree.get(FORMAT).unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let mut import = SledImport::create(dir.path()).unwrap();
        import.push(&event("s", 0, 0)).unwrap();
        import.finish().unwrap();
        assert_eq!(format(dir.path()).as_deref(), Some(&[CURRENT][..]));

        // A directory a newer podiumd made, still without events.
        let newer = tempfile::tempdir().unwrap();
        {
            let (store, _) = Store::open(newer.path(), 1 << 20).unwrap();
            store.tree.insert(FORMAT, &[CURRENT + 1]).unwrap();
            store.db.flush().unwrap();
        }
        let error = SledImport::create(newer.path()).unwrap_err().to_string();
        assert!(error.contains("newer podiumd"), "{error}");
    }
}
