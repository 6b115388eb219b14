//! Moderators' commands sent again: each carries a request id, and the engine answers a retry of
//! a command it already carried out instead of carrying it out a second time.
//!
//! A command's first event is stored under its request id (the others under ids derived from
//! it), so the session's status stream itself says which commands were carried out: after a
//! restart or a change of node, the engine that reads the stream knows them again. In memory,
//! each session keeps its last [`REMEMBERED`] commands (those that changed nothing too), and
//! retries of a command whose append is still in flight wait for it. A refused command is not
//! remembered: sent again, it is decided again.

use std::collections::VecDeque;

use podium_eventlog::{EventLogError, RecordedEvent};
use uuid::Uuid;

use super::handle::Reply;
use crate::{domain::StatusEvent, error::StatusError};

/// How many commands of each session are remembered: more than a session's moderators send in
/// a day, and at most about 100 KiB a session. (A few in tests, to reach the end of it.)
pub(super) const REMEMBERED: usize = if cfg!(test) { 4 } else { 4096 };

/// The ids of a decision's events: a command's (`request`) are its request id, then ids
/// derived from it; a rule's are fresh.
pub(super) fn event_ids(request: Option<Uuid>) -> impl Iterator<Item = Uuid> {
    (0u32..).map(move |i| match (request, i) {
        (Some(request), 0) => request,
        (Some(request), i) => derived(request, i),
        (None, _) => Uuid::now_v7(),
    })
}

/// The id of a command's event after its first.
fn derived(request: Uuid, index: u32) -> Uuid {
    Uuid::new_v5(&request, &index.to_be_bytes())
}

/// One session's recent commands.
#[derive(Default)]
pub(super) struct Commands {
    /// By request id: the log position that answered each, `None` while its append is in
    /// flight. Oldest first.
    recent: VecDeque<(Uuid, Option<u64>)>,
    /// Retries of a command whose append is in flight, answered with it.
    retries: Vec<(Uuid, Reply)>,
}

impl Commands {
    /// A retry of a command carried out (or being carried out) is answered here: now, with the
    /// position of the first answer, or with the first's own answer once it comes. `reply`
    /// comes back if `request` is a new command.
    pub(super) fn retry(&mut self, request: Uuid, reply: Reply) -> Option<Reply> {
        match self.recent.iter().find(|(id, _)| *id == request) {
            None => Some(reply),
            Some((_, Some(position))) => {
                let _ = reply.send(Ok(*position));
                None
            }
            Some((_, None)) => {
                self.retries.push((request, reply));
                None
            }
        }
    }

    /// The command's events are on their way to the log.
    pub(super) fn sent(&mut self, request: Uuid) {
        self.remember(request, None);
    }

    /// The command changed nothing, and was answered with `position`.
    pub(super) fn unchanged(&mut self, request: Uuid, position: u64) {
        self.remember(request, Some(position));
    }

    /// The command's events are stored, the last at `position`: its retries are answered.
    pub(super) fn stored(&mut self, request: Uuid, position: u64) {
        if let Some(entry) = self.recent.iter_mut().find(|(id, _)| *id == request) {
            entry.1 = Some(position);
        }
        self.answer(request, || Ok(position));
    }

    /// The command's append failed: it is forgotten (a retry decides it again), and the
    /// retries waiting for it hear that its outcome is not known.
    pub(super) fn failed(&mut self, request: Uuid) {
        self.recent.retain(|(id, _)| *id != request);
        self.answer(request, || Err(unknown()));
    }

    /// Every retry still waiting, when the session's machine is read again or leaves: the
    /// engine will not hear how their commands' appends went.
    pub(super) fn abandon(&mut self) {
        for (request, reply) in std::mem::take(&mut self.retries) {
            self.recent.retain(|(id, _)| *id != request);
            let _ = reply.send(Err(unknown()));
        }
    }

    fn answer(&mut self, request: Uuid, answer: impl Fn() -> Result<u64, StatusError>) {
        let (answered, waiting) = std::mem::take(&mut self.retries)
            .into_iter()
            .partition(|(id, _)| *id == request);
        self.retries = waiting;
        for (_, reply) in answered {
            let _ = reply.send(answer());
        }
    }

    fn remember(&mut self, request: Uuid, position: Option<u64>) {
        if self.recent.len() == REMEMBERED {
            self.recent.pop_front();
        }
        self.recent.push_back((request, position));
    }
}

/// The commands of a session's status stream, read event by event beside its machine: each
/// event a person caused (a moderator's start, end, switch or pin) begins one, under its request
/// id, and the events after it under ids derived from that are its too; a command is answered
/// with its last event's position.
#[derive(Default)]
pub(super) struct Reading {
    commands: Commands,
    /// The command being read, and the index of its next event.
    current: Option<(Uuid, u32)>,
}

impl Reading {
    /// The next event of the stream, and what it says when it is a status event.
    pub(super) fn event(&mut self, event: &RecordedEvent, status: Option<&StatusEvent>) {
        if let Some((request, next)) = self.current.as_mut()
            && event.id == derived(*request, *next)
        {
            *next += 1;
            self.commands.stored(*request, event.position);
            return;
        }
        self.current = None;
        if status.is_some_and(caused_by_person) {
            self.commands.remember(event.id, Some(event.position));
            self.current = Some((event.id, 1));
        }
    }

    pub(super) fn done(self) -> Commands {
        self.commands
    }
}

/// A waiting retry's answer when its command's outcome will not be heard of.
fn unknown() -> StatusError {
    StatusError::Log(EventLogError::Unanswered(
        "the command's outcome is not known: send it again with the same request_id".into(),
    ))
}

/// Whether a moderator (not a rule of the machine) caused the event.
fn caused_by_person(event: &StatusEvent) -> bool {
    match event {
        StatusEvent::WentLive { by, .. }
        | StatusEvent::Ended { by, .. }
        | StatusEvent::Switched { by, .. }
        | StatusEvent::Pinned { by, .. } => !by.is_empty(),
        StatusEvent::Link { .. } | StatusEvent::Alert(_) => false,
    }
}
