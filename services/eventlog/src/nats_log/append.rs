//! Appends: the expected version is checked against the stream's last message, and the publish
//! is fenced by that message's sequence (`Nats-Expected-Last-Subject-Sequence` on the stream's
//! filter), so two nodes appending to one stream at once cannot both win. A batch of several
//! events is one JetStream atomic batch: all of it is stored, or none.
//!
//! **Idempotency for ever.** JetStream drops a message whose `Nats-Msg-Id` it saw within its
//! duplicate window (two minutes), and forgets it after. So before publishing, each event id is
//! *claimed* in a key-value bucket: `<id>` → `<version> <stream>`, where it is about to land.
//! A later append of that id reads the claim and looks at that very place in the log: if the
//! message there has the id, the id is stored there, for ever (the stream denies deletes). If
//! not, the claim is stale (its publish failed or never happened) and is taken over. The log,
//! not the bucket, is the truth; the window covers two appends of one id racing each other.

use std::sync::atomic::Ordering;

use async_nats::jetstream::{
    context::PublishErrorKind,
    kv::{CreateErrorKind, UpdateErrorKind},
    stream::LastRawMessageErrorKind,
};
use futures::future::try_join_all;
use uuid::Uuid;

use super::{Inner, read::nats, subjects};
use crate::{AppendOutcome, EventLogError, ExpectedVersion, NewEvent, Result};

/// How often an append starts again after losing a race (a claim or the fence) before it
/// gives up.
const ATTEMPTS: usize = 64;

/// What the log knows of an event id.
pub(super) enum Claim {
    /// Never claimed.
    Free,
    /// Claimed, but no event with this id is where the claim says: free to take over, at this
    /// revision of the claim.
    Stale(u64),
    /// Stored: in this stream, at this position and version.
    Stored {
        stream: String,
        position: u64,
        version: u64,
    },
}

pub async fn append(
    log: &Inner,
    stream: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<AppendOutcome> {
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        let claims = try_join_all(events.iter().map(|e| resolve(log, e.id))).await?;
        if let Some(answer) = answered(stream, events, &claims) {
            return answer;
        }
        let filter = subjects::of_stream(&log.prefix, stream);
        let (current, fence) = match log.reader.last_on(&filter).await? {
            Some(last) => (
                Some(subjects::recorded(&last)?.stream_version),
                last.sequence,
            ),
            None => (None, 0),
        };
        let fits = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current.is_none(),
            ExpectedVersion::Exact(v) => current == Some(v),
        };
        if !fits {
            return Err(EventLogError::Conflict {
                stream: stream.to_owned(),
                expected,
                actual: current,
            });
        }
        let first_version = current.map_or(0, |v| v + 1);
        let claimed = try_join_all(events.iter().zip(&claims).enumerate().map(
            |(i, (event, claim))| claim_id(log, event.id, claim, stream, first_version + i as u64),
        ))
        .await?;
        let Some(revisions) = claimed.into_iter().collect::<Option<Vec<u64>>>() else {
            continue; // another append claimed one of the ids meanwhile: look again
        };
        match publish(log, stream, first_version, fence, events).await {
            Ok(ack) if ack.duplicate => {
                // Within the duplicate window, the first publish of these ids is stored: answer
                // with it, and point the claims back at it.
                return first_publish(log, stream, events, ack.sequence, &revisions).await;
            }
            Ok(ack) => {
                let last_seq = ack.sequence;
                log.head.fetch_max(last_seq, Ordering::AcqRel);
                let n = events.len() as u64;
                return Ok(AppendOutcome {
                    first_version,
                    last_version: first_version + n - 1,
                    first_position: last_seq - n,
                    last_position: last_seq - 1,
                    deduplicated: false,
                });
            }
            Err(Published::Fenced) => continue, // the stream moved: check `expected` again
            Err(Published::Failed(error)) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        EventLogError::Storage(format!(
            "gave up appending to {stream} after {ATTEMPTS} attempts lost to concurrent appends"
        ))
    }))
}

/// The answer to an append whose ids are already stored, as the sled backend gives it: the
/// first answer again, a reused id refused, a half-stored batch refused.
fn answered(stream: &str, events: &[NewEvent], claims: &[Claim]) -> Option<Result<AppendOutcome>> {
    let mut seen = Vec::with_capacity(claims.len());
    for (event, claim) in events.iter().zip(claims) {
        seen.push(match claim {
            Claim::Stored {
                stream: owner,
                position,
                version,
            } => {
                if owner != stream {
                    return Some(Err(EventLogError::ReusedId {
                        id: event.id,
                        stream: stream.to_owned(),
                        owner: owner.clone(),
                    }));
                }
                Some((*position, *version))
            }
            Claim::Free | Claim::Stale(_) => None,
        });
    }
    match (
        seen.first().copied().flatten(),
        seen.last().copied().flatten(),
    ) {
        (Some(first), Some(last)) if seen.iter().all(Option::is_some) => Some(Ok(AppendOutcome {
            first_version: first.1,
            last_version: last.1,
            first_position: first.0,
            last_position: last.0,
            deduplicated: true,
        })),
        _ if seen.iter().any(Option::is_some) => Some(Err(EventLogError::PartialDuplicate {
            stream: stream.to_owned(),
        })),
        _ => None,
    }
}

/// Where `id` is, by its claim and the log.
pub(super) async fn resolve(log: &Inner, id: Uuid) -> Result<Claim> {
    // The leader's copy (`STREAM.MSG.GET`), not any replica's: a replica may not have the
    // claim another append wrote a moment ago, and one that froze answers nothing at all.
    let subject = format!("$KV.{}.{id}", log.bucket);
    let entry = match log
        .ids_stream
        .get_last_raw_message_by_subject(&subject)
        .await
    {
        Ok(entry) => entry,
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(Claim::Free),
        Err(e) => return Err(nats(e)),
    };
    let revision = entry.sequence;
    if entry.payload.is_empty() {
        return Ok(Claim::Stale(revision)); // a deleted key
    }
    let claim = std::str::from_utf8(&entry.payload)
        .ok()
        .and_then(|v| v.split_once(' '))
        .and_then(|(version, stream)| Some((version.parse::<u64>().ok()?, stream.to_owned())));
    let Some((version, stream)) = claim else {
        return Err(EventLogError::Storage(format!(
            "the claim of event id {id} is unreadable"
        )));
    };
    let subject = subjects::at_version(&log.prefix, &stream, version);
    match log.reader.last_on(&subject).await? {
        Some(message) if subjects::message_id(&message) == Some(id) => Ok(Claim::Stored {
            stream,
            position: message.sequence - 1,
            version,
        }),
        _ => Ok(Claim::Stale(revision)),
    }
}

/// Claims `id` for version `version` of `stream`: the claim's new revision, or `None` if
/// another append claimed it first.
async fn claim_id(
    log: &Inner,
    id: Uuid,
    claim: &Claim,
    stream: &str,
    version: u64,
) -> Result<Option<u64>> {
    let value = claim_value(stream, version);
    let key = id.to_string();
    match claim {
        Claim::Free => match log.ids.create(&key, value).await {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(nats(e)),
        },
        Claim::Stale(revision) => match log.ids.update(&key, value, *revision).await {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(nats(e)),
        },
        Claim::Stored { .. } => Ok(None),
    }
}

fn claim_value(stream: &str, version: u64) -> bytes::Bytes {
    format!("{version} {stream}").into_bytes().into()
}

/// The answer to a publish JetStream dropped as a duplicate of one that ended at sequence
/// `last_seq`: the first publish's place, or [`EventLogError::ReusedId`] if it went to another
/// stream. The claims this append wrote (at `revisions`) are pointed back at where the events
/// really are, so that the answer stays the same once the duplicate window has passed.
async fn first_publish(
    log: &Inner,
    stream: &str,
    events: &[NewEvent],
    last_seq: u64,
    revisions: &[u64],
) -> Result<AppendOutcome> {
    let n = events.len() as u64;
    let stored = log
        .reader
        .positions(last_seq.saturating_sub(n), last_seq)
        .await?
        .iter()
        .map(subjects::recorded)
        .collect::<Result<Vec<_>>>()?;
    if !stored.iter().map(|e| e.id).eq(events.iter().map(|e| e.id)) {
        return Err(EventLogError::Storage(format!(
            "JetStream called an append to {stream} a duplicate of sequence {last_seq}, which holds other events"
        )));
    }
    for (event, revision) in stored.iter().zip(revisions) {
        let value = claim_value(&event.stream, event.stream_version);
        if let Err(error) = log.ids.update(event.id.to_string(), value, *revision).await {
            tracing::debug!(%error, id = %event.id, "the claim moved on; the next look finds the event");
        }
    }
    let (first, last) = (&stored[0], &stored[stored.len() - 1]);
    if first.stream != stream {
        return Err(EventLogError::ReusedId {
            id: first.id,
            stream: stream.to_owned(),
            owner: first.stream.clone(),
        });
    }
    Ok(AppendOutcome {
        first_version: first.stream_version,
        last_version: last.stream_version,
        first_position: first.position,
        last_position: last.position,
        deduplicated: true,
    })
}

/// Why a publish stored nothing.
enum Published {
    /// The stream's last sequence is no longer the fence.
    Fenced,
    Failed(EventLogError),
}

/// Publishes `events` as versions `first_version..` of `stream`, fenced by `fence`, the
/// sequence of the stream's last message (0 for none): one message, or one atomic batch.
async fn publish(
    log: &Inner,
    stream: &str,
    first_version: u64,
    fence: u64,
    events: &[NewEvent],
) -> std::result::Result<async_nats::jetstream::publish::PublishAck, Published> {
    let failed = |e: &dyn std::fmt::Display| Published::Failed(nats(e));
    // A batch id of its own for every attempt: one left unfinished by a process that died
    // mid-batch is still open on the server for a while, and must not be continued.
    let batch_id = Uuid::new_v4().simple().to_string();
    let last = events.len() - 1;
    for (i, event) in events.iter().enumerate() {
        let mut headers = subjects::headers(event.id);
        if i == 0 {
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                fence.to_string().as_str(),
            );
            headers.insert(
                "Nats-Expected-Last-Subject-Sequence-Subject",
                subjects::of_stream(&log.prefix, stream).as_str(),
            );
        }
        if last > 0 {
            headers.insert("Nats-Batch-Id", batch_id.as_str());
            headers.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
            if i == last {
                headers.insert("Nats-Batch-Commit", "1");
            }
        }
        let subject = subjects::at_version(&log.prefix, stream, first_version + i as u64);
        let body = subjects::body(stream, first_version + i as u64, event).into();
        if i < last {
            // The batch's messages before its commit get no reply of their own: the commit's
            // acknowledgement (or error) answers for the whole batch.
            log.client
                .publish_with_headers(subject, headers, body)
                .await
                .map_err(|e| failed(&e))?;
            continue;
        }
        let ack = log
            .js
            .publish_with_headers(subject, headers, body)
            .await
            .map_err(|e| failed(&e))?;
        return ack.await.map_err(|e| match e.kind() {
            PublishErrorKind::WrongLastSequence => Published::Fenced,
            _ => failed(&e),
        });
    }
    unreachable!("a batch holds at least one event")
}
