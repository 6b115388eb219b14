//! The chunks' tests: reading back, sizes, damage, and the move of older logs.

use std::time::SystemTime;

use prost::Message;
use uuid::Uuid;

use super::*;
use crate::{
    EventLog, ExpectedVersion, NewEvent, RecordedEvent,
    sled_log::{SledEventLog, SledImport, SledOptions, Store, keys::log_key, read::decode_stored},
};

fn temporary() -> Result<(sled::Db, sled::Tree)> {
    let db = sled::Config::new()
        .temporary(true)
        .open()
        .map_err(storage)?;
    let tree = db.open_tree("events").map_err(storage)?;
    Ok((db, tree))
}

fn event(position: u64, payload: usize) -> RecordedEvent {
    RecordedEvent {
        id: Uuid::now_v7(),
        stream: format!("s-{}", position % 3),
        stream_version: position / 3,
        position,
        event_type: "podium.test.A".into(),
        payload: vec![position as u8; payload],
        recorded_at: SystemTime::now(),
    }
}

/// Appends `events` as the writer does, one batch for the lot.
fn append(tree: &sled::Tree, events: &[RecordedEvent]) -> Result<()> {
    let next = next_position(tree)?;
    let mut chunks = Chunks::at(tree, next)?;
    for event in events {
        chunks.push(event.position, &event.to_proto().encode_to_vec());
    }
    let mut batch = sled::Batch::default();
    chunks.write(&mut batch);
    tree.apply_batch(batch).map_err(storage)
}

fn read_back(tree: &sled::Tree, from: u64, end: u64) -> Result<Vec<RecordedEvent>> {
    range(tree, from, end)?
        .into_iter()
        .map(|(position, bytes)| decode_stored(position, &bytes))
        .collect()
}

fn chunk_count(tree: &sled::Tree) -> usize {
    tree.scan_prefix([CHUNK]).count()
}

/// Every chunk but the last is full (by count or by size), and each begins where the one
/// before it ended: extending a chunk left nothing behind.
fn assert_packed(tree: &sled::Tree) -> Result<()> {
    let chunks: Vec<_> = tree
        .scan_prefix([CHUNK])
        .collect::<std::result::Result<_, _>>()
        .map_err(storage)?;
    let mut expected_first = 0;
    for (i, (key, value)) in chunks.iter().enumerate() {
        let records = records(key, value)?;
        assert_eq!(
            records[0].0, expected_first,
            "chunk {i} begins where the last ended"
        );
        let full = records.len() as u64 == CHUNK_EVENTS || value.len() >= CHUNK_BYTES;
        assert!(
            full || i + 1 == chunks.len(),
            "chunk {i} of {} is not full",
            chunks.len()
        );
        expected_first += records.len() as u64;
    }
    Ok(())
}

#[test]
fn every_event_is_read_back_from_its_chunk_whatever_the_groups() -> Result<()> {
    let (_db, tree) = temporary()?;
    let events: Vec<_> = (0..100).map(|p| event(p, 40)).collect();
    // Groups of 1, 2, ... events, as the writer's groups come.
    let mut at = 0;
    for size in 1.. {
        if at >= events.len() {
            break;
        }
        let end = (at + size).min(events.len());
        append(&tree, &events[at..end])?;
        at = end;
        assert_eq!(next_position(&tree)?, at as u64);
    }
    assert_eq!(read_back(&tree, 0, 100)?, events);
    for (from, end) in [
        (0, 1),
        (15, 17),
        (16, 32),
        (37, 99),
        (99, 100),
        (50, 50),
        (90, 100),
    ] {
        let expected: Vec<_> = events
            .iter()
            .filter(|e| (from..end).contains(&e.position))
            .cloned()
            .collect();
        assert_eq!(read_back(&tree, from, end)?, expected, "{from}..{end}");
    }
    for event in &events {
        let bytes = find(&tree, event.position)?.expect("stored");
        assert_eq!(&decode_stored(event.position, &bytes)?, event);
    }
    assert_eq!(find(&tree, 100)?, None);
    // A range is read below the head: a position past it is one no chunk holds.
    assert!(matches!(
        range(&tree, 90, 101),
        Err(EventLogError::Corrupt { position: 100, .. })
    ));
    assert_packed(&tree)?;
    assert!(
        chunk_count(&tree) <= 100 / 4,
        "{} chunks",
        chunk_count(&tree)
    );
    Ok(())
}

#[test]
fn a_chunk_ends_at_its_size_and_a_large_event_ends_the_chunk_it_joins() -> Result<()> {
    let (_db, tree) = temporary()?;
    let events = vec![
        event(0, 10),
        event(1, CHUNK_BYTES * 2),
        event(2, 10),
        event(3, 10),
    ];
    append(&tree, &events[..1])?;
    append(&tree, &events[1..])?;
    // [0, 1] (the large one ends the chunk it joins), then [2, 3], under their first
    // positions.
    let keys: Vec<u64> = tree
        .scan_prefix([CHUNK])
        .map(|entry| be_u64(&entry.map_err(storage)?.0[1..]))
        .collect::<Result<_>>()?;
    assert_eq!(keys, [0, 2]);
    assert_eq!(read_back(&tree, 0, 4)?, events);
    Ok(())
}

#[test]
fn a_chunk_that_does_not_parse_names_the_position_and_is_not_extended() -> Result<()> {
    let (_db, tree) = temporary()?;
    append(&tree, &[event(0, 10), event(1, 10)])?;
    let (key, value) = tree
        .scan_prefix([CHUNK])
        .next_back()
        .expect("a chunk")
        .map_err(storage)?;
    // The last entry loses its end, as a torn write would leave it.
    tree.insert(&key, &value[..value.len() - 3])
        .map_err(storage)?;
    assert!(matches!(
        read_back(&tree, 0, 2),
        Err(EventLogError::Corrupt { position: 1, .. })
    ));
    // Where the log ends is not known; a writer that knows it begins a chunk of its own.
    assert!(matches!(
        next_position(&tree),
        Err(EventLogError::Corrupt { position: 1, .. })
    ));
    let mut chunks = Chunks::at(&tree, 2)?;
    chunks.push(2, &event(2, 10).to_proto().encode_to_vec());
    let mut batch = sled::Batch::default();
    chunks.write(&mut batch);
    tree.apply_batch(batch).map_err(storage)?;
    assert_eq!(chunk_count(&tree), 2);
    assert_eq!(next_position(&tree)?, 3);
    assert_eq!(read_back(&tree, 2, 3)?.len(), 1);
    for value in [&[0xff, 0xff, 0xff][..], &[][..]] {
        tree.insert(&key, value).map_err(storage)?;
        assert!(matches!(
            find(&tree, 0),
            Err(EventLogError::Corrupt { position: 0, .. })
        ));
    }
    Ok(())
}

#[test]
fn a_chunk_decodes_to_its_events_and_one_past_the_last_position_is_refused() -> Result<()> {
    let (_db, tree) = temporary()?;
    let events = [event(7, 10), event(8, 20), event(9, 30)];
    append(&tree, &[event(0, 1), event(1, 1), event(2, 1)])?;
    let mut chunks = Chunks::at(&tree, 7)?;
    for event in &events {
        chunks.push(event.position, &event.to_proto().encode_to_vec());
    }
    let mut batch = sled::Batch::default();
    chunks.write(&mut batch);
    tree.apply_batch(batch).map_err(storage)?;
    let value = tree.get(chunk_key(7)).map_err(storage)?.expect("the chunk");
    assert_eq!(decode_chunk(7, &value)?, events);
    // Stored under another first position, its events claim the wrong positions.
    assert!(matches!(
        decode_chunk(6, &value),
        Err(EventLogError::Corrupt { position: 6, .. })
    ));
    // A damaged key whose chunk would run past the last position, or end beyond it.
    let one = event(0, 1).to_proto().encode_length_delimited_to_vec();
    for value in [[one.clone(), one.clone()].concat(), one] {
        assert!(matches!(
            decode_chunk(u64::MAX, &value),
            Err(EventLogError::Corrupt {
                position: u64::MAX,
                ..
            })
        ));
    }
    Ok(())
}

#[test]
fn chunks_that_leave_a_gap_or_overlap_are_damage_not_a_page() -> Result<()> {
    let events: Vec<_> = (0..40).map(|p| event(p, 300)).collect();
    for step in [1i64, -1] {
        let (_db, tree) = temporary()?;
        append(&tree, &events)?;
        assert_eq!(read_back(&tree, 0, 40)?, events);
        let second = tree
            .scan_prefix([CHUNK])
            .nth(1)
            .expect("a second chunk")
            .map_err(storage)?;
        let at = be_u64(&second.0[1..])?;
        // The second chunk's key moved one position on (a gap) or back (an overlap).
        tree.remove(&second.0).map_err(storage)?;
        tree.insert(chunk_key(at.saturating_add_signed(step)), second.1)
            .map_err(storage)?;
        assert!(
            matches!(
                range(&tree, 0, 40),
                Err(EventLogError::Corrupt { position, .. }) if position == at
            ),
            "moved by {step}"
        );
    }
    Ok(())
}

/// Writes `events` as databases from before chunks did: one `L` key each.
fn write_legacy(tree: &sled::Tree, events: &[RecordedEvent]) -> Result<()> {
    for event in events {
        tree.insert(log_key(event.position), event.to_proto().encode_to_vec())
            .map_err(storage)?;
    }
    Ok(())
}

#[test]
fn an_older_databases_events_are_packed_once_and_a_crash_at_any_step_is_picked_up() -> Result<()> {
    let (_db, tree) = temporary()?;
    let events: Vec<_> = (0..5_000).map(|p| event(p, 20)).collect();
    write_legacy(&tree, &events[..4_500])?;
    // Undecodable bytes are moved as they are and refused when read, as before.
    tree.insert(log_key(4_500), vec![0xff, 0xff])
        .map_err(storage)?;
    // The chunks are made durable while every `L` key is still there, and reach its end.
    let mut made_durable = false;
    migrate(&tree, || {
        assert_eq!(tree.scan_prefix([LOG]).count(), 4_501);
        assert_eq!(next_position(&tree)?, 4_501);
        made_durable = true;
        Ok(())
    })?;
    assert!(made_durable);
    assert!(tree.scan_prefix([LOG]).next().is_none());
    assert_eq!(next_position(&tree)?, 4_501);
    assert_eq!(read_back(&tree, 0, 4_500)?, events[..4_500]);
    assert!(matches!(
        read_back(&tree, 4_500, 4_501),
        Err(EventLogError::Corrupt {
            position: 4_500,
            ..
        })
    ));
    let checksum = tree.checksum().map_err(storage)?;
    migrate(&tree, || Ok(()))?;
    assert_eq!(
        tree.checksum().map_err(storage)?,
        checksum,
        "a second opening writes nothing"
    );

    // A crash while the chunks are written: every event is still under `L`, the first
    // hundred in chunks too. The next opening goes on from where the chunks end.
    let (_db, tree) = temporary()?;
    write_legacy(&tree, &events)?;
    append(&tree, &events[..100])?;
    migrate(&tree, || Ok(()))?;
    assert!(tree.scan_prefix([LOG]).next().is_none());
    assert_eq!(read_back(&tree, 0, 5_000)?, events);
    assert_packed(&tree)?;

    // A crash while the `L` keys are removed: the chunks are whole, and the rest goes.
    let (_db, tree) = temporary()?;
    write_legacy(&tree, &events)?;
    append(&tree, &events)?;
    for event in &events[..2_000] {
        tree.remove(log_key(event.position)).map_err(storage)?;
    }
    let chunks_before: Vec<_> = tree
        .scan_prefix([CHUNK])
        .collect::<std::result::Result<_, _>>()
        .map_err(storage)?;
    migrate(&tree, || Ok(()))?;
    assert!(tree.scan_prefix([LOG]).next().is_none());
    let chunks_after: Vec<_> = tree
        .scan_prefix([CHUNK])
        .collect::<std::result::Result<_, _>>()
        .map_err(storage)?;
    assert_eq!(
        chunks_after, chunks_before,
        "whole chunks are not written again"
    );
    assert_eq!(read_back(&tree, 0, 5_000)?, events);

    // An older log with a hole in its positions is refused, naming the first missing one,
    // and nothing is written.
    let (_db, tree) = temporary()?;
    write_legacy(&tree, &events[..10])?;
    write_legacy(&tree, &events[11..20])?;
    assert!(matches!(
        migrate(&tree, || Ok(())),
        Err(EventLogError::Corrupt { position: 10, .. })
    ));
    assert_eq!(
        (chunk_count(&tree), tree.scan_prefix([LOG]).count()),
        (0, 19)
    );
    Ok(())
}

#[tokio::test]
async fn a_log_written_before_chunks_opens_with_its_events_and_takes_more() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| EventLogError::Storage(e.to_string()))?;
    let events: Vec<_> = (0..40).map(|p| event(p, 20)).collect();
    {
        // No flusher thread, which would hold the file lock a moment after the drop.
        let db = sled::Config::new()
            .path(dir.path())
            .flush_every_ms(None)
            .open()
            .map_err(storage)?;
        let tree = db.open_tree("events").map_err(storage)?;
        write_legacy(&tree, &events)?;
        for event in &events {
            tree.insert(
                super::super::keys::stream_key(&event.stream, event.stream_version),
                &event.position.to_be_bytes(),
            )
            .map_err(storage)?;
            tree.insert(
                super::super::keys::id_key(event.id),
                super::super::ids::entry(event.position, event.stream_version),
            )
            .map_err(storage)?;
        }
        db.flush().map_err(storage)?;
    }
    let log = SledEventLog::open(dir.path(), SledOptions::default())?;
    assert_eq!(log.head(), 40);
    assert_eq!(log.read_all(0, 100).await?, events);
    assert_eq!(log.read_stream("s-1", 0, 100).await?.len(), 13);
    // A retry of a stored event is answered from the moved event.
    let retry = NewEvent {
        id: events[7].id,
        event_type: events[7].event_type.clone(),
        payload: events[7].payload.clone(),
    };
    let outcome = log.append("s-1", ExpectedVersion::Any, vec![retry]).await?;
    assert!(outcome.deduplicated && outcome.first_position == 7);
    let new = NewEvent {
        id: Uuid::now_v7(),
        event_type: "podium.test.B".into(),
        payload: vec![1],
    };
    let outcome = log
        .append("s-1", ExpectedVersion::Exact(12), vec![new])
        .await?;
    assert_eq!((outcome.first_position, outcome.first_version), (40, 13));
    log.close()?;
    drop(log);
    let log = SledEventLog::open(dir.path(), SledOptions::default())?;
    assert_eq!(log.read_all(0, 100).await?.len(), 41);
    log.close()
}

#[test]
fn a_chunk_of_small_events_ends_at_sixteen() -> Result<()> {
    let (_db, tree) = temporary()?;
    let mut chunks = Chunks::default();
    for position in 0..40 {
        chunks.push(position, &[]);
    }
    let mut batch = sled::Batch::default();
    chunks.write(&mut batch);
    tree.apply_batch(batch).map_err(storage)?;
    assert_eq!(chunk_count(&tree), 3);
    assert_packed(&tree)?;
    assert_eq!(next_position(&tree)?, 40);
    Ok(())
}

#[test]
fn a_lost_first_or_last_chunk_is_damage_not_a_short_page() -> Result<()> {
    let events: Vec<_> = (0..40).map(|p| event(p, 300)).collect();
    for lost in ["first", "last"] {
        let (_db, tree) = temporary()?;
        append(&tree, &events)?;
        let chunk = if lost == "first" {
            tree.scan_prefix([CHUNK]).next()
        } else {
            tree.scan_prefix([CHUNK]).next_back()
        };
        let (key, _) = chunk.expect("a chunk").map_err(storage)?;
        let at = be_u64(&key[1..])?;
        tree.remove(&key).map_err(storage)?;
        // Read as far as the head the writer knew.
        assert!(
            matches!(
                range(&tree, at, 40),
                Err(EventLogError::Corrupt { position, .. }) if position == at
            ),
            "the {lost} chunk lost"
        );
    }
    Ok(())
}

/// The chunks of the database in `dir`, once whoever held it has let go.
fn stored_chunks(dir: &std::path::Path) -> Result<(usize, u64)> {
    let (store, _) = Store::open(dir, 1 << 20)?;
    assert_packed(&store.tree)?;
    Ok((chunk_count(&store.tree), next_position(&store.tree)?))
}

#[tokio::test]
async fn the_writer_and_an_import_pack_events_into_chunks() -> Result<()> {
    let written = tempfile::tempdir().map_err(|e| EventLogError::Storage(e.to_string()))?;
    let log = SledEventLog::open(written.path(), SledOptions::default())?;
    // One event a group, as a quiet conference writes them.
    for n in 0..100u64 {
        let new = NewEvent {
            id: Uuid::now_v7(),
            event_type: "podium.test.A".into(),
            payload: vec![1; 20],
        };
        log.append(&format!("s-{}", n % 7), ExpectedVersion::Any, vec![new])
            .await?;
    }
    let events = log.read_all(0, 100).await?;
    log.close()?;
    drop(log);
    let (chunks, head) = stored_chunks(written.path())?;
    assert_eq!(head, 100);
    assert!(chunks * 4 <= 100, "{chunks} chunks for 100 events");

    let imported = tempfile::tempdir().map_err(|e| EventLogError::Storage(e.to_string()))?;
    let mut import = SledImport::create(imported.path())?;
    for event in &events {
        import.push(event)?;
    }
    assert_eq!(import.finish()?, 100);
    assert_eq!(stored_chunks(imported.path())?, (chunks, 100));
    Ok(())
}
