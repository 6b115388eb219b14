//! Reading a session's status stream into the engine: its machine, its version, the last term
//! that moved the engine and its recent commands, filed in a slot.

use std::sync::Arc;

use podium_eventlog::{EventLog, read_whole_stream};

use super::{
    Engine, Key, Slot,
    commands::{self, Commands},
    term,
};
use crate::{
    codec::{decode, status_stream},
    domain::Machine,
    error::StatusError,
};

/// A session's status stream, as the engine reads it.
pub(super) struct Read {
    pub(super) machine: Machine,
    /// The version of the stream's last event (`None`: no stream yet).
    pub(super) version: Option<u64>,
    /// The last lease term that moved the engine in the session (0 for none).
    pub(super) moved: u64,
    pub(super) commands: Commands,
}

impl Engine {
    /// The session's machine as its stream holds it, with the stream's version, the last term
    /// that moved the engine and the recent commands (an associated function: the engine is
    /// not `Sync`, so a borrow of it may not live across the read).
    pub(super) async fn read_stream(log: Arc<dyn EventLog>, k: &Key) -> Result<Read, StatusError> {
        let events = read_whole_stream(log.as_ref(), &status_stream(&k.0, &k.1)).await?;
        let mut machine = Machine::default();
        let mut moved = 0;
        let mut commands = commands::Reading::default();
        for event in &events {
            if let Some(term) = term::moved_term(event) {
                moved = term;
                commands.event(event, None);
                continue;
            }
            let status = match decode(event) {
                Ok(Some((_, _, status))) => Some(status),
                Ok(None) => None,
                Err(error) => {
                    tracing::error!(position = event.position, %error, "skipping status event");
                    None
                }
            };
            if let Some(status) = &status {
                machine.live.apply(status);
            }
            commands.event(event, status.as_ref());
        }
        Ok(Read {
            machine,
            version: events.last().map(|e| e.stream_version),
            moved,
            commands: commands.done(),
        })
    }

    pub(super) async fn load(&mut self, k: &Key) -> Result<(), StatusError> {
        if self.slots.contains_key(k) {
            return Ok(());
        }
        let read = match &self.term {
            Some(term) => {
                let lease = self.lease.clone();
                Self::read_fenced(self.log.clone(), lease, k, term.clone(), self.clock.now())
                    .await?
            }
            None => Self::read_stream(self.log.clone(), k).await?,
        };
        self.insert(k, read);
        Ok(())
    }

    pub(super) fn insert(&mut self, k: &Key, read: Read) {
        self.generations += 1;
        self.slots.insert(
            k.clone(),
            Slot {
                machine: read.machine,
                version: read.version,
                generation: self.generations,
                in_flight: 0,
                waiting: Vec::new(),
                deadline: None,
                chain: None,
                commands: read.commands,
            },
        );
    }
}
