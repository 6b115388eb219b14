//! What the engine does when the log answers an append: answer the command (and its retries),
//! count the switch, and on a failure read the session again from its stream.

use podium_eventlog::EventLogError;

use super::{Done, Engine, Key};
use crate::domain::StatusEvent;

impl Engine {
    /// The log answered an append.
    pub(super) async fn appended(&mut self, done: Done) {
        let Done {
            key: k,
            generation,
            events,
            reply,
            request,
            first_version,
            result,
        } = done;
        let current = self
            .slots
            .get(&k)
            .is_some_and(|slot| slot.generation == generation);
        match result {
            Ok(outcome) => {
                // The log found these events' ids stored elsewhere in the stream: a command
                // sent again that the engine no longer remembered, decided again, which the
                // stream does not hold. (Found where they were to go, they are this append's
                // own, stored by an earlier try of it inside the log.)
                let stale = outcome.deduplicated && outcome.first_version != first_version;
                for event in events.iter().filter(|_| !stale) {
                    if let StatusEvent::Switched { to, cause, .. } = event {
                        crate::metrics::switched(to.kind, *cause);
                        tracing::info!(conference = %k.0, session = %k.1, source = ?to.kind, offset_ms = to.offset_ms, cause = ?cause, "source switched");
                    }
                }
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(outcome.last_position));
                }
                if let (Some(request), Some(slot)) = (request, self.slots.get_mut(&k))
                    && current
                {
                    slot.commands.stored(request, outcome.last_position);
                }
                // Stored although an earlier append of the stream failed (the machine there now
                // did not count on it), or stale: either way the machine is read again.
                if !current || stale {
                    if self.slots.contains_key(&k) {
                        self.reload(&k, !stale).await;
                    }
                    return;
                }
                if let Some(slot) = self.slots.get_mut(&k) {
                    slot.in_flight = slot.in_flight.saturating_sub(1);
                    if slot.in_flight == 0 {
                        // The log answers appends in order, but they may be polled out of it:
                        // the head covers every one of them.
                        let head = self.log.head().saturating_sub(1);
                        for reply in slot.waiting.drain(..) {
                            let _ = reply.send(Ok(head));
                        }
                    }
                }
                self.refile(&k);
            }
            Err(error) => {
                // A command refused for its request id (used for something else) says nothing
                // of the agents: its session is read again without the reconnect grace.
                let refused_id = matches!(
                    error,
                    EventLogError::ReusedId { .. } | EventLogError::PartialDuplicate { .. }
                );
                if current
                    && matches!(error, EventLogError::Conflict { .. })
                    && self.lease.is_some()
                {
                    crate::metrics::fenced();
                    tracing::warn!(conference = %k.0, session = %k.1, %error, "status append refused: another node's engine wrote this session's status; decision dropped");
                } else if current {
                    tracing::error!(conference = %k.0, session = %k.1, %error, "status append failed; decision dropped");
                } else {
                    // Pipelined behind the append that failed: it could not succeed either.
                    tracing::debug!(conference = %k.0, session = %k.1, %error, "pipelined status append failed");
                }
                if let Some(reply) = reply {
                    let _ = reply.send(Err(error.into()));
                }
                if let (Some(request), Some(slot)) = (request, self.slots.get_mut(&k))
                    && current
                {
                    slot.commands.failed(request);
                }
                if current {
                    self.reload(&k, !refused_id).await;
                }
            }
        }
    }

    /// After an append failed: the machine must not keep a decision that was not stored, so it
    /// is read again from its stream and, like after a restart, gets the reconnect grace (when
    /// `grace`: not after a command refused for its request id). What it knew of live links
    /// (connections, heartbeat times) stays: the agents are still there.
    pub(super) async fn reload(&mut self, k: &Key, grace: bool) {
        let read = match Self::read_stream(self.log.clone(), k).await {
            Ok(read) if self.term.as_ref().is_some_and(|t| read.moved > t.number) => {
                let moved = read.moved;
                // Another node took the engine over while this one was not looking (or the
                // lease lost its record of terms): the lease is told, and gives itself up.
                // Until then, this session is left to the other node.
                tracing::warn!(conference = %k.0, session = %k.1, term = moved, "a newer term runs this session; dropped here");
                if let Some(lease) = &self.lease {
                    lease.outranked(moved);
                }
                self.remove(k);
                return;
            }
            Ok(read) => read,
            Err(error) => {
                // Read it on its next input instead.
                tracing::error!(conference = %k.0, session = %k.1, %error, "status stream could not be read again; slot dropped");
                self.remove(k);
                return;
            }
        };
        self.generations += 1;
        let generation = self.generations;
        let Some(slot) = self.slots.get_mut(k) else {
            return;
        };
        let mut machine = read.machine;
        machine.monitor = std::mem::take(&mut slot.machine.monitor);
        if grace {
            machine.restarted(self.clock.now(), self.grace);
        }
        slot.machine = machine;
        slot.version = read.version;
        slot.commands.abandon();
        slot.commands = read.commands;
        slot.generation = generation;
        slot.in_flight = 0;
        slot.chain = None;
        for reply in slot.waiting.drain(..) {
            let _ = reply.send(Ok(self.log.head().saturating_sub(1)));
        }
        let grace_ms = if grace { self.grace } else { 0 };
        tracing::warn!(conference = %k.0, session = %k.1, grace_ms, "status read again from the log after an append that did not store what the engine decided");
        self.refile(k);
    }
}
