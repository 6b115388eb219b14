//! Appends: the expected version is checked against the stream's last message, and the publish
//! is fenced by that message's sequence (`Nats-Expected-Last-Subject-Sequence` on the stream's
//! filter), so two nodes appending to one stream at once cannot both win. A batch of several
//! events is one JetStream atomic batch: all of it is stored, or none.
//!
//! **Idempotency for ever.** JetStream drops a message whose `Nats-Msg-Id` it saw within its
//! duplicate window (two minutes), and forgets it after. So before publishing, each event id is
//! *claimed* in a key-value bucket: `<id>` → `<version> <first> <stream>`, where it is about to
//! land and where its append begins. A later append of that id reads the claim and looks at
//! that very place in the log:
//!
//! - the message there has the id: the id is stored there, for ever (the stream denies
//!   deletes);
//! - another message is there, or at the place where its append begins (an atomic batch lands
//!   whole or not at all): the claimant lost the race for those versions, and its claim is
//!   stale, free to take over;
//! - nothing is there yet: the claimant may still be publishing. Until the claim is older than
//!   the duplicate window (plus a publish's timeout) it is *pending*: a retry of the same batch
//!   publishes to the very same place, where JetStream's window tells the two apart; an append
//!   of the id anywhere else waits, and is refused as in flight if the claim stays pending.
//!   After that the claimant's publish can no longer land unseen, and the claim is stale.
//!
//! The log, not the bucket, is the truth; the bucket says where to look.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use async_nats::jetstream::context::PublishErrorKind;
use futures::future::try_join_all;
use uuid::Uuid;

use super::{
    Inner,
    claims::{Claim, claim_id, point_claim, resolve},
    read::{jetstream_code, lost_a_race, nats},
    subjects,
};
use crate::{AppendOutcome, EventLogError, ExpectedVersion, NewEvent, Result};

/// How long an append keeps trying after losing races (a claim, the fence, a batch in flight)
/// or meeting a cluster that is electing a leader, before it gives up with the last error.
const DEADLINE: Duration = Duration::from_secs(15);
/// How long an append of an id claimed elsewhere waits for that claim's publish to land or
/// fail before it is refused as in flight (the caller tries again later).
const PENDING_WAIT: Duration = Duration::from_secs(2);
/// The first pause between attempts; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const MAX_PAUSE: Duration = Duration::from_millis(250);
/// Refusals that sending again does not change: a message over the stream's size limit, a
/// batch over the server's limit, atomic batches turned off.
const MESSAGE_TOO_LARGE: u64 = 10054;
const BATCH_TOO_LARGE: u64 = 10199;
const BATCH_DISABLED: u64 = 10174;

pub async fn append(
    log: &Inner,
    stream: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<AppendOutcome> {
    let deadline = Instant::now() + DEADLINE;
    let mut pause = FIRST_PAUSE;
    let mut last_error = None;
    let started = Instant::now();
    // Whether the last read found some of the ids stored and others not.
    let mut looked_again = false;
    for attempt in 0.. {
        if attempt > 0 {
            if Instant::now() + pause > deadline {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
        let filter = subjects::of_stream(&log.prefix, stream);
        // The stream's last message before the claims: a batch that lands in between is then
        // seen in the claims (stored), never only in the stream (a retry called a conflict).
        let read = async {
            let last = log.reader.last_on(&filter).await?;
            let claims = try_join_all(events.iter().map(|e| resolve(log, e.id))).await?;
            Ok::<_, EventLogError>((claims, last))
        };
        let (claims, last) = match read.await {
            Ok(read) => read,
            Err(error) => {
                // A timeout or an election: it passes.
                last_error = Some(error);
                continue;
            }
        };
        let stored = claims
            .iter()
            .filter(|c| matches!(c, Claim::Stored { .. }))
            .count();
        let mixed = (1..claims.len()).contains(&stored);
        let pending = claims.iter().any(|c| matches!(c, Claim::Pending { .. }));
        if mixed && pending {
            // Read while a batch was landing: some of it seen, some not yet. Look again.
            continue;
        }
        if mixed && !looked_again {
            // The ids are read side by side, not in one snapshot: one read as free before its
            // claim was written, another as stored once the batch had landed whole. The next
            // read sees all of it; still mixed then (or at the deadline), a partial duplicate.
            looked_again = true;
            last_error = Some(EventLogError::PartialDuplicate {
                stream: stream.to_owned(),
            });
            continue;
        }
        looked_again = mixed;
        if let Some(answer) = answered(stream, events, &claims) {
            return answer;
        }
        let (current, fence) = match last {
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
            let conflict = EventLogError::Conflict {
                stream: stream.to_owned(),
                expected,
                actual: current,
            };
            // With a claim pending, this may be a retry of an append landing right now: it is
            // answered as the first once that one is seen.
            if pending && started.elapsed() < PENDING_WAIT {
                last_error = Some(conflict);
                continue;
            }
            return Err(conflict);
        }
        let first_version = current.map_or(0, |v| v + 1);
        if let Some((id, owner)) = pending_elsewhere(stream, first_version, events, &claims) {
            // Its claimant may still be publishing it: wait a little for its outcome.
            let error = EventLogError::Storage(format!(
                "event id {id} is being appended to stream {owner} at this moment; try again"
            ));
            if started.elapsed() > PENDING_WAIT {
                return Err(error);
            }
            last_error = Some(error);
            continue;
        }
        // Claims pending for these very places (a retry of an append still in flight) are kept;
        // the others are claimed for them.
        let claimed = try_join_all(events.iter().zip(&claims).enumerate().map(
            |(i, (event, claim))| async move {
                if matches!(claim, Claim::Pending { .. }) {
                    return Ok(true);
                }
                let place = (first_version + i as u64, first_version);
                claim_id(log, event.id, claim, stream, place).await
            },
        ))
        .await;
        match claimed {
            Ok(claimed) if claimed.contains(&false) => continue, // claimed meanwhile: look again
            Ok(_) => {}
            Err(error) => {
                last_error = Some(error);
                continue;
            }
        }
        // The claims are this append's, or pending for these very places: the fence and the
        // duplicate window tell two publishes apart.
        match publish(log, stream, first_version, fence, events).await {
            Ok(ack) if ack.duplicate => {
                return first_publish(log, stream, events, ack.sequence).await;
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
            Err(Published::Fenced) => {} // the stream moved: check `expected` again
            Err(Published::Again(error)) => last_error = Some(error),
            Err(Published::Refused(error)) => return Err(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        EventLogError::Storage(format!(
            "gave up appending to {stream} after {DEADLINE:?} of appends racing it"
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
            Claim::Free | Claim::Stale(_) | Claim::Pending { .. } => None,
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

/// The first id whose claim is pending somewhere this append would not put it, with that
/// stream: this append must not take it over while its claimant may still publish.
fn pending_elsewhere(
    stream: &str,
    first_version: u64,
    events: &[NewEvent],
    claims: &[Claim],
) -> Option<(Uuid, String)> {
    // A retry of an append in flight goes to the same places: a claim pending anywhere else is
    // another append's, or too old to publish again in place.
    events
        .iter()
        .zip(claims)
        .enumerate()
        .find_map(|(i, (event, claim))| match claim {
            Claim::Pending {
                stream: owner,
                version,
                in_place,
            } if owner != stream || *version != first_version + i as u64 || !in_place => {
                Some((event.id, owner.clone()))
            }
            _ => None,
        })
}

/// The answer to a publish JetStream dropped as a duplicate of one that ended at sequence
/// `last_seq`: the first publish's place, or [`EventLogError::ReusedId`] if it went to another
/// stream. The claims are pointed at where the events really are, so that the answer stays the
/// same once the duplicate window has passed.
async fn first_publish(
    log: &Inner,
    stream: &str,
    events: &[NewEvent],
    last_seq: u64,
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
    let first_version = stored[0].stream_version;
    for event in &stored {
        let place = (event.stream_version, first_version);
        point_claim(log, event.id, &event.stream, place).await?;
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
    /// Nothing stored, for a reason that passes: a timeout, a leader election, a duplicate id
    /// inside an atomic batch whose first publish is in flight.
    Again(EventLogError),
    /// Nothing stored, and sending it again changes nothing.
    Refused(EventLogError),
}

/// Publishes `events` as versions `first_version..` of `stream`, fenced by `fence`, the
/// sequence of the stream's last message (0 for none): one message, or one atomic batch. The
/// last message of every append says so, for the tail to move the head only to whole appends.
async fn publish(
    log: &Inner,
    stream: &str,
    first_version: u64,
    fence: u64,
    events: &[NewEvent],
) -> std::result::Result<async_nats::jetstream::publish::PublishAck, Published> {
    let again = |e: &dyn std::fmt::Display| Published::Again(nats(e));
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
        }
        let subject = subjects::at_version(&log.prefix, stream, first_version + i as u64);
        let body = subjects::body(stream, first_version + i as u64, event).into();
        if i < last {
            // The batch's messages before its commit get no reply of their own: the commit's
            // acknowledgement (or error) answers for the whole batch.
            log.client
                .publish_with_headers(subject, headers, body)
                .await
                .map_err(|e| match e.kind() {
                    async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
                        Published::Refused(EventLogError::InvalidAppend(format!(
                            "an event of this append is larger than the NATS servers' max_payload: {e}"
                        )))
                    }
                    _ => again(&e),
                })?;
            continue;
        }
        if last > 0 {
            headers.insert("Nats-Batch-Commit", "1");
        }
        headers.insert(subjects::LAST_OF_APPEND, "1");
        let ack = log
            .js
            .publish_with_headers(subject, headers, body)
            .await
            .map_err(|e| again(&e))?;
        return ack.await.map_err(|e| match (e.kind(), jetstream_code(&e)) {
            (PublishErrorKind::MaxPayloadExceeded, _)
            | (_, Some(MESSAGE_TOO_LARGE | BATCH_TOO_LARGE | BATCH_DISABLED)) => {
                Published::Refused(EventLogError::InvalidAppend(format!(
                    "an event of this append is larger than the NATS servers' max_payload: {e}"
                )))
            }
            _ if lost_a_race(&e) => Published::Fenced,
            _ => again(&e),
        });
    }
    unreachable!("a batch holds at least one event")
}
