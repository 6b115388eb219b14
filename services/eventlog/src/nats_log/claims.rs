//! The claims of event ids in the ids bucket, by which an append is idempotent for ever: what
//! a claim says, where the id really is ([`resolve`]), and writing a claim. How appends use
//! them is in [`super::append`].

use std::time::{Duration, SystemTime};

use async_nats::jetstream::{
    kv::{CreateErrorKind, UpdateErrorKind},
    stream::LastRawMessageErrorKind,
};
use uuid::Uuid;

use super::{
    Inner,
    read::{lost_a_race, nats},
    subjects,
};
use crate::{EventLogError, Result};

/// How long after its claim a publish can still land: the client's publish timeout and then
/// some. A claim older than the duplicate window plus this, with nothing at its place, is
/// stale.
pub const PUBLISH_GRACE: Duration = Duration::from_secs(10);

/// What the log knows of an event id.
pub(super) enum Claim {
    /// Never claimed.
    Free,
    /// Claimed, but the claimant's publish cannot land any more: free to take over, at this
    /// revision of the claim.
    Stale(u64),
    /// Claimed for this place moments ago, and nothing is there yet: the claimant may still be
    /// publishing. `in_place`: young enough (within the duplicate window) for a retry to
    /// publish to the same place, where JetStream tells the two publishes apart.
    Pending {
        stream: String,
        version: u64,
        in_place: bool,
    },
    /// Stored: in this stream, at this position and version.
    Stored {
        stream: String,
        position: u64,
        version: u64,
    },
}

/// Where `id` is, by its claim and the log.
pub(super) async fn resolve(log: &Inner, id: Uuid) -> Result<Claim> {
    let Some((revision, claimed_at, claim)) = read_claim(log, id).await? else {
        return Ok(Claim::Free);
    };
    let Some((version, first, stream)) = claim else {
        return Ok(Claim::Stale(revision)); // a deleted key
    };
    let subject = subjects::at_version(&log.prefix, &stream, version);
    match log.reader.last_on(&subject).await? {
        Some(message) if subjects::message_id(&message) == Some(id) => Ok(Claim::Stored {
            stream,
            position: message.sequence - 1,
            version,
        }),
        // Another event took the place: the claimant's fenced publish was refused.
        Some(_) => Ok(Claim::Stale(revision)),
        None if first < version
            && log
                .reader
                .last_on(&subjects::at_version(&log.prefix, &stream, first))
                .await?
                .is_some() =>
        {
            // Its append's first place is taken. Read this place again: had that append been
            // this claim's, it landed whole before the first place was read, and the id is here
            // now; if it is not, that append did not land, and cannot now.
            match log.reader.last_on(&subject).await? {
                Some(message) if subjects::message_id(&message) == Some(id) => Ok(Claim::Stored {
                    stream,
                    position: message.sequence - 1,
                    version,
                }),
                _ => Ok(Claim::Stale(revision)),
            }
        }
        None => {
            // The claim's time is the server's; this machine's clock against it. A clock that
            // is far off shifts when claims count as stale (ARCHITECTURE.md says so).
            let age = SystemTime::now()
                .duration_since(claimed_at)
                .unwrap_or_default();
            if age > log.duplicate_window + PUBLISH_GRACE {
                Ok(Claim::Stale(revision))
            } else {
                Ok(Claim::Pending {
                    stream,
                    version,
                    in_place: age < log.duplicate_window,
                })
            }
        }
    }
}

/// The claim of `id`: its revision, when it was written, and what it says (version, its
/// append's first version, stream; `None` for a deleted key). Read from the bucket's leader (`STREAM.MSG.GET`), not any replica: a replica
/// may not have the claim another append wrote a moment ago, and one that froze answers
/// nothing at all.
async fn read_claim(log: &Inner, id: Uuid) -> Result<Option<(u64, SystemTime, Option<Place>)>> {
    let subject = format!("$KV.{}.{id}", log.bucket);
    let entry = match log
        .ids_stream
        .get_last_raw_message_by_subject(&subject)
        .await
    {
        Ok(entry) => entry,
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
        Err(e) => return Err(nats(e)),
    };
    if entry.payload.is_empty() {
        return Ok(Some((entry.sequence, entry.time.into(), None)));
    }
    let claim = std::str::from_utf8(&entry.payload)
        .ok()
        .and_then(|v| {
            let mut parts = v.splitn(3, ' ');
            let version = parts.next()?.parse::<u64>().ok()?;
            let first = parts.next()?.parse::<u64>().ok()?;
            Some((version, first, parts.next()?.to_owned()))
        })
        .ok_or_else(|| {
            EventLogError::Storage(format!("the claim of event id {id} is unreadable"))
        })?;
    Ok(Some((entry.sequence, entry.time.into(), Some(claim))))
}

/// What a claim says: the version, the first version of its append, the stream.
type Place = (u64, u64, String);

/// Claims `id` for `(version, first version of the append)` of `stream`; false if another
/// append claimed it first.
pub(super) async fn claim_id(
    log: &Inner,
    id: Uuid,
    claim: &Claim,
    stream: &str,
    (version, first): (u64, u64),
) -> Result<bool> {
    let value = claim_value(stream, version, first);
    let key = id.to_string();
    let (raced, written) = match claim {
        Claim::Free => match log.ids.create(&key, value).await {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => return Ok(false),
            Err(e) => (lost_a_race(&e), nats(e)),
        },
        Claim::Stale(revision) => match log.ids.update(&key, value, *revision).await {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => return Ok(false),
            Err(e) => (lost_a_race(&e), nats(e)),
        },
        Claim::Pending { .. } | Claim::Stored { .. } => return Ok(false),
    };
    // A create or update that raced another one can come back as another error (JetStream's
    // 10164, "wrong last sequence" of a write in flight): if the claim is no longer what this
    // append read, it lost a race, which passes.
    let before = match claim {
        Claim::Stale(revision) => Some(*revision),
        _ => None,
    };
    match read_claim(log, id).await? {
        Some((revision, _, _)) if Some(revision) != before => Ok(false),
        // The other write is still in flight: look again in a moment.
        _ if raced => Ok(false),
        _ => Err(written),
    }
}

fn claim_value(stream: &str, version: u64, first: u64) -> bytes::Bytes {
    format!("{version} {first} {stream}").into_bytes().into()
}

/// Makes the claim of `id` say where it is stored, whatever it says now.
pub(super) async fn point_claim(
    log: &Inner,
    id: Uuid,
    stream: &str,
    (version, first): (u64, u64),
) -> Result<()> {
    for _ in 0..8 {
        let outcome = match read_claim(log, id).await? {
            Some((_, _, Some((v, f, s)))) if v == version && f == first && s == stream => {
                return Ok(());
            }
            Some((revision, _, _)) => log
                .ids
                .update(
                    id.to_string(),
                    claim_value(stream, version, first),
                    revision,
                )
                .await
                .map(|_| ())
                .map_err(|e| e.kind() == UpdateErrorKind::WrongLastRevision),
            None => log
                .ids
                .create(id.to_string(), claim_value(stream, version, first))
                .await
                .map(|_| ())
                .map_err(|e| e.kind() == CreateErrorKind::AlreadyExists),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(true) => continue, // it moved meanwhile: read it again
            Err(false) => break,
        }
    }
    Err(EventLogError::Storage(format!(
        "could not point the claim of event id {id} at {stream} version {version}"
    )))
}
