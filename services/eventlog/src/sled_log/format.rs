//! Which layout a database is in, so that a podiumd never reads (or writes into) a layout newer
//! than it knows.
//!
//! The layouts so far: one event per key with ids indexed per stream, then events packed into
//! chunks with one id index for the whole log (format 2, [`CURRENT`]). Opening moves an older
//! database forward (`chunks::migrate`, `ids::migrate`) and then marks it, as it marks a new
//! one, with the current format; so does a restore. A podiumd from before the mark does not
//! read it (one from before chunks sees a moved database as an empty log: the README says to
//! take a backup before upgrading), but every podiumd from this one on refuses a database
//! marked newer than it knows, naming both formats, instead of serving it as empty or
//! appending beside what it cannot read.

use crate::{EventLogError, Result};

use super::{keys::FORMAT as KEY, storage};

/// The layout this podiumd writes: events in chunks (`C`), the stream index (`S`), the id
/// index of the whole log (`J`).
pub(super) const CURRENT: u8 = 2;

/// Refuses a database marked with a format newer than [`CURRENT`]. An unmarked one is from
/// before the mark: opening moves it, as it always did.
pub(super) fn check(tree: &sled::Tree) -> Result<()> {
    let found = tree.get(KEY).map_err(storage)?;
    match found.as_deref() {
        None => Ok(()),
        Some(&[format]) if format <= CURRENT => Ok(()),
        Some(&[format]) => Err(EventLogError::Storage(format!(
            "the event log is in format {format}, written by a newer podiumd; this podiumd \
             reads formats up to {CURRENT}: run the newer podiumd, or restore a backup taken \
             with this one"
        ))),
        Some(other) => Err(EventLogError::Storage(format!(
            "the event log's format mark is {other:?}, not one byte: not a podium event log, \
             or a damaged one"
        ))),
    }
}

/// Marks the database with [`CURRENT`], once it is in that layout. The caller makes it
/// durable.
pub(super) fn mark(tree: &sled::Tree) -> Result<()> {
    if tree.get(KEY).map_err(storage)?.as_deref() != Some(&[CURRENT]) {
        tree.insert(KEY, &[CURRENT]).map_err(storage)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> sled::Tree {
        let db = sled::Config::new().temporary(true).open().unwrap();
        db.open_tree("events").unwrap()
    }

    #[test]
    fn an_unmarked_or_current_database_opens_and_a_newer_one_is_refused() {
        let tree = tree();
        check(&tree).expect("an unmarked database is from before the mark");
        mark(&tree).unwrap();
        assert_eq!(tree.get(KEY).unwrap().as_deref(), Some(&[CURRENT][..]));
        check(&tree).expect("the current format");

        tree.insert(KEY, &[CURRENT + 1]).unwrap();
        let refused = check(&tree).unwrap_err().to_string();
        assert!(
            refused.contains(&format!("format {}", CURRENT + 1))
                && refused.contains("newer podiumd"),
            "{refused}"
        );

        tree.insert(KEY, &b"two"[..]).unwrap();
        let refused = check(&tree).unwrap_err().to_string();
        assert!(refused.contains("format mark"), "{refused}");
    }
}
