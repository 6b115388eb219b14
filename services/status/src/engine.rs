//! The engine: the one task that owns every session's [`Machine`], feeds it heartbeats, closes,
//! commands and timer ticks, and appends what it decides to the session's status stream before
//! anyone sees it; and the [`Clock`] it reads the time from.
//!
//! The engine is the only writer of `conference/<c>/session/<s>/status`; it loads a machine
//! from that stream the first time it needs it and appends with the exact expected version. It
//! sleeps until the earliest deadline any machine reports (kept in an index, so finding it does
//! not cost a scan of every session), so a rule fires at its time, not at the next poll.
//!
//! **The engine never waits for a flush before reading its next input.** An append is started
//! and kept in flight while the engine goes on; appends to one stream are pipelined with the
//! expected version advanced as if the earlier ones succeed. Decisions of many sessions that
//! fall due together are therefore in flight together, and the log's writer puts them in one
//! group commit. Inputs carry the time they were handed over, not the time the engine read
//! them, so silence is timed from a heartbeat's arrival. A session's slot leaves once the
//! session is over and nothing of it is pending.
//!
//! **Several nodes** (`term.rs`): given a [`Lease`], the engine runs only while its node holds
//! the lease. Taking it, it loads every live session, appends a `StatusEngineMoved` event to
//! each (so an engine of an older term is refused by the log) and gives each speaker a whole
//! `failover_after` to be heard from again; losing it, it drops every machine. Other nodes
//! forward their inputs to it (`relay.rs`).

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use futures::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use podium_eventlog::{
    AppendOutcome, EventLog, EventLogError, ExpectedVersion, Lease, Projector, Term,
};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::{
    codec::{encode, status_stream},
    domain::{Context, Lifecycle, Machine, Millis, Refusal, StatusEvent},
    error::StatusError,
    model::StatusModel,
};

mod appended;
mod commands;
mod handle;
mod read;
mod relay;
mod term;
mod unknown;

use commands::Commands;
pub use handle::{Clock, Command, EngineHandle};
use handle::{Input, Key, Reply, key};
use read::Read;
pub use relay::Replaced;
use unknown::Unknown;

struct Slot {
    machine: Machine,
    /// Version of the last event of the status stream, counting appends still in flight.
    version: Option<u64>,
    /// Which load of the stream this is: completions of appends started before a reload are
    /// not this machine's.
    generation: u64,
    /// Appends of this generation not yet answered by the log.
    in_flight: usize,
    /// Commands that decided nothing but must not be answered before the appends in flight
    /// ahead of them, so that their caller reads a status that includes them.
    waiting: Vec<Reply>,
    /// The machine's next deadline, as filed in `Engine::deadlines`.
    deadline: Option<Millis>,
    /// Several nodes: the outcome of this generation's last append started. The next one
    /// waits for it and is not sent if it failed (see `decide`).
    chain: Option<oneshot::Receiver<bool>>,
    /// The session's recent commands, so that a retry is answered, not carried out again.
    commands: Commands,
}

/// An append the log has answered.
struct Done {
    key: Key,
    generation: u64,
    events: Vec<StatusEvent>,
    reply: Option<Reply>,
    /// The request id of the command that decided these events.
    request: Option<Uuid>,
    /// The stream version the engine expected the first event to take.
    first_version: u64,
    result: Result<AppendOutcome, EventLogError>,
}

/// What woke the engine's loop.
enum Step {
    Input(Option<Input>),
    /// Commands of one session back from waiting for the read model (see [`Unknown`]).
    CaughtUp((Vec<Input>, Result<(), String>)),
    Appended(Done),
    Tick,
    /// The lease's term for this node changed (or the lease ended: `None`).
    Term(Option<Option<Term>>),
}

/// The engine task's state.
pub struct Engine {
    log: Arc<dyn EventLog>,
    model: Projector<StatusModel>,
    clock: Clock,
    /// The reconnect grace, given at start-up and to a session whose append failed.
    grace: Millis,
    slots: HashMap<Key, Slot>,
    /// Every slot's next deadline, earliest first.
    deadlines: BTreeSet<(Millis, Key)>,
    appends: FuturesUnordered<BoxFuture<'static, Done>>,
    /// Commands for sessions the read model did not know when they came, waiting for it.
    unknown: Unknown,
    generations: u64,
    /// Several nodes: the lease that says whether this node runs the engine.
    lease: Option<Arc<dyn Lease>>,
    held: Option<watch::Receiver<Option<Term>>>,
    /// The term this node runs the engine for; always `None` without a lease.
    term: Option<Term>,
    /// While running for a term: when to look again for live sessions without a machine (one
    /// that could not be read at the take-over, or went live just before it).
    next_scan: Option<tokio::time::Instant>,
}

impl Engine {
    /// Loads every live session's machine, gives each the reconnect grace, and starts the task.
    /// With a `lease` (several nodes on one log), it does so only once its node holds the
    /// lease, and the handle forwards inputs to the node that holds it.
    pub async fn spawn(
        log: Arc<dyn EventLog>,
        model: Projector<StatusModel>,
        clock: Clock,
        grace: Millis,
        lease: Option<Arc<dyn Lease>>,
    ) -> Result<EngineHandle, StatusError> {
        let mut engine = Engine {
            log,
            model,
            clock,
            grace,
            slots: HashMap::new(),
            deadlines: BTreeSet::new(),
            appends: FuturesUnordered::new(),
            unknown: Unknown::default(),
            generations: 0,
            held: lease.as_ref().map(|l| l.held()),
            lease: lease.clone(),
            term: None,
            next_scan: None,
        };
        let (inputs, rx) = mpsc::channel(1024);
        let handle = EngineHandle {
            inputs,
            clock,
            lease,
            replaced: tokio::sync::broadcast::channel(64).0,
        };
        if let Some(lease) = &engine.lease {
            if let Some(deliveries) = lease.deliveries() {
                tokio::spawn(relay::serve(deliveries, handle.clone()));
            }
            if let Some(announcements) = lease.announcements() {
                let replaced = handle.replaced.clone();
                tokio::spawn(relay::hear_replaced(announcements, replaced));
            }
            // The first term is taken in the task, like every later one.
            if let Some(held) = &mut engine.held {
                held.mark_changed();
            }
            tokio::spawn(engine.run(rx));
            return Ok(handle);
        }
        let live = engine.live_sessions();
        let now = clock.now();
        for k in &live {
            engine.load(k).await?;
            if let Some(slot) = engine.slots.get_mut(k) {
                slot.machine.restarted(now, grace);
            }
            engine.refile(k);
        }
        if !live.is_empty() {
            tracing::info!(
                sessions = live.len(),
                grace_ms = grace,
                "live sessions restored; reconnect grace before any failover"
            );
        }
        tokio::spawn(engine.run(rx));
        Ok(handle)
    }

    /// Every session that is live now.
    fn live_sessions(&self) -> Vec<Key> {
        self.model
            .read()
            .conferences
            .values()
            .flat_map(|c| {
                c.live
                    .iter()
                    .filter(|(_, l)| l.lifecycle == Lifecycle::Live)
                    .map(|(s, _)| key(&c.id, s))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn remove(&mut self, k: &Key) {
        if let Some(mut slot) = self.slots.remove(k) {
            slot.commands.abandon();
            if let Some(at) = slot.deadline {
                self.deadlines.remove(&(at, k.clone()));
            }
            for reply in slot.waiting {
                let _ = reply.send(Ok(self.log.head().saturating_sub(1)));
            }
        }
    }

    /// Files the slot's next deadline in the index, or removes the slot when its session is
    /// over (or gone) and nothing of it is pending.
    fn refile(&mut self, k: &Key) {
        let ctx = self.model.read().context(&k.0, &k.1);
        let Some(slot) = self.slots.get_mut(k) else {
            return;
        };
        let next = ctx.as_ref().and_then(|ctx| slot.machine.next_deadline(ctx));
        if next != slot.deadline {
            if let Some(at) = slot.deadline {
                self.deadlines.remove(&(at, k.clone()));
            }
            if let Some(at) = next {
                self.deadlines.insert((at, k.clone()));
            }
            slot.deadline = next;
        }
        let idle = slot.in_flight == 0
            && slot.deadline.is_none()
            && slot.machine.live.lifecycle == Lifecycle::Ended
            && slot
                .machine
                .monitor
                .tracks
                .values()
                .all(|t| t.connection.is_none());
        if (ctx.is_none() && slot.in_flight == 0) || idle {
            self.remove(k);
        }
    }

    async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        loop {
            let wake = self
                .deadlines
                .first()
                .map(|(at, _)| self.clock.instant(*at))
                .filter(|_| self.runs())
                .into_iter()
                .chain(self.next_scan)
                .min();
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let held = &mut self.held;
            let held = async move {
                match held.as_mut() {
                    Some(held) => match held.changed().await {
                        Ok(()) => Some(held.borrow_and_update().clone()),
                        Err(_) => None,
                    },
                    None => std::future::pending().await,
                }
            };
            let step = tokio::select! {
                biased;
                term = held => Step::Term(term),
                Some(done) = self.appends.next(), if !self.appends.is_empty() => Step::Appended(done),
                Some(caught) = self.unknown.next(), if !self.unknown.is_empty() => Step::CaughtUp(caught),
                input = inputs.recv() => Step::Input(input),
                () = sleep => Step::Tick,
            };
            match step {
                Step::Term(term) => self.term_changed(term).await,
                Step::Appended(done) => self.appended(done).await,
                Step::Input(Some(input)) => self.handle(input, true).await,
                Step::CaughtUp((commands, caught_up)) => {
                    for command in commands {
                        match &caught_up {
                            Ok(()) => self.handle(command, false).await,
                            Err(error) => {
                                if let Input::Command { reply, .. } = command {
                                    let _ =
                                        reply.send(Err(StatusError::Unavailable(error.clone())));
                                }
                            }
                        }
                    }
                }
                Step::Input(None) => break,
                Step::Tick => {
                    self.tick();
                    self.scan().await;
                }
            }
        }
        // Answer whoever still waits for an append.
        while let Some(done) = self.appends.next().await {
            if let Some(reply) = done.reply {
                let _ = reply.send(done.result.map(|o| o.last_position).map_err(Into::into));
            }
        }
        tracing::debug!("status engine stopped");
    }

    /// The timer: every session whose deadline has come, all at once, so that their appends
    /// are in flight together.
    fn tick(&mut self) {
        if !self.runs() {
            // The hold lapsed: the lease's keeper says in a moment whether it is lost.
            return;
        }
        let now = self.clock.now();
        let mut due = Vec::new();
        while let Some((at, _)) = self.deadlines.first()
            && *at <= now
        {
            if let Some((_, k)) = self.deadlines.pop_first() {
                if let Some(slot) = self.slots.get_mut(&k) {
                    slot.deadline = None;
                }
                due.push(k);
            }
        }
        for k in due {
            let _ = self.decide(&k, None, None, |machine, ctx| Ok(machine.tick(ctx, now)));
        }
    }

    /// Handles one input; `may_wait`: a command for a session the read model does not know
    /// waits for it to catch up first (once), instead of being answered NOT_FOUND, and a later
    /// command of that session waits behind it.
    async fn handle(&mut self, input: Input, may_wait: bool) {
        if !self.runs() {
            self.refuse(input);
            return;
        }
        let key = match &input {
            Input::Slots { .. } => None,
            Input::Connected { key, .. }
            | Input::Heartbeat { key, .. }
            | Input::Closed { key, .. }
            | Input::Command { key, .. } => Some(key.clone()),
        };
        if let Some(key) = key {
            let known = self.model.read().context(&key.0, &key.1).is_some();
            if may_wait
                && matches!(input, Input::Command { .. })
                && (!known || self.unknown.holds(&key))
            {
                self.unknown.wait(key, input, &self.model);
                return;
            }
            let loaded = if known {
                self.load(&key).await
            } else {
                Err(StatusError::NotFound(format!(
                    "session {} not found",
                    key.1
                )))
            };
            if let Err(error) = loaded {
                if let Input::Command { reply, .. } = input {
                    let _ = reply.send(Err(error));
                }
                return;
            }
        }
        match input {
            Input::Slots { reply } => {
                let _ = reply.send(self.slots.len());
            }
            Input::Connected {
                key,
                speaker_id,
                connection,
                at,
            } => {
                let mut older = None;
                let _ = self.decide(&key, None, None, |m, _| {
                    older = m.connected(&speaker_id, connection, at);
                    Ok(Vec::new())
                });
                // The older agent may be on another node, which did not see this one connect.
                if let (Some(older), Some(lease)) = (older, &self.lease) {
                    relay::replaced(lease.clone(), &key, &speaker_id, older);
                }
            }
            Input::Heartbeat {
                key,
                speaker_id,
                connection,
                figures,
                at,
            } => {
                let _ = self.decide(&key, None, None, |m, ctx| {
                    Ok(m.heartbeat(ctx, &speaker_id, connection, figures, at))
                });
            }
            Input::Closed {
                key,
                speaker_id,
                connection,
                at,
            } => {
                let _ = self.decide(&key, None, None, |m, ctx| {
                    Ok(m.closed(ctx, &speaker_id, connection, at))
                });
            }
            Input::Command {
                key,
                command,
                request,
                by,
                at,
                reply,
            } => {
                // A retry of a command already carried out is answered, not carried out again.
                let reply = match self.slots.get_mut(&key) {
                    Some(slot) => match slot.commands.retry(request, reply) {
                        Some(reply) => reply,
                        None => return,
                    },
                    None => reply,
                };
                let refused =
                    self.decide(&key, Some(reply), Some(request), |m, ctx| match &command {
                        Command::Start => m.start(ctx, at, &by),
                        Command::End => m.end(ctx, at, &by),
                        Command::Switch(target) => m.switch(ctx, target, at, &by),
                        Command::Pin(pinned) => Ok(m.pin(ctx, *pinned, at, &by)),
                    });
                if let Err((reply, error)) = refused {
                    let _ = reply.send(Err(error));
                }
            }
        }
    }

    /// Runs `f` on the session's (loaded) machine and starts the append of what it decided;
    /// `reply` is answered with the position of the last event once it is stored (or with the
    /// log head when nothing was decided, after the appends already in flight). A refusal is
    /// handed back with the reply. What a command (`request`) decides is stored under its
    /// request id.
    fn decide(
        &mut self,
        k: &Key,
        reply: Option<Reply>,
        request: Option<Uuid>,
        f: impl FnOnce(&mut Machine, &Context) -> Result<Vec<StatusEvent>, Refusal>,
    ) -> Result<(), (Reply, StatusError)> {
        let ctx = self.model.read().context(&k.0, &k.1);
        let (Some(ctx), Some(slot)) = (ctx, self.slots.get_mut(k)) else {
            // The session is gone from the agenda: its slot with it.
            self.remove(k);
            return match reply {
                Some(reply) => Err((
                    reply,
                    StatusError::NotFound(format!("session {} not found", k.1)),
                )),
                None => Ok(()),
            };
        };
        let decided = f(&mut slot.machine, &ctx).map_err(|refusal| match refusal {
            Refusal::UnknownSpeaker(m) | Refusal::UnknownRecording(m) => StatusError::NotFound(m),
            other => StatusError::FailedPrecondition(other.to_string()),
        });
        let events = match decided {
            Ok(events) => events,
            Err(error) => {
                self.refile(k);
                return match reply {
                    Some(reply) => Err((reply, error)),
                    None => Ok(()),
                };
            }
        };
        if events.is_empty() {
            let head = self.log.head().saturating_sub(1);
            if let Some(request) = request {
                slot.commands.unchanged(request, head);
            }
            if let Some(reply) = reply {
                if slot.in_flight == 0 {
                    let _ = reply.send(Ok(head));
                } else {
                    slot.waiting.push(reply);
                }
            }
            self.refile(k);
            return Ok(());
        }
        let expected = slot
            .version
            .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        // Optimistic: the next decision of this session is pipelined behind this one.
        let first_version = slot.version.map_or(0, |v| v + 1);
        slot.version = Some(first_version + events.len() as u64 - 1);
        slot.in_flight += 1;
        let generation = slot.generation;
        if let Some(request) = request {
            slot.commands.sent(request);
        }
        let batch = events
            .iter()
            .zip(commands::event_ids(request))
            .map(|(e, id)| encode(id, &k.0, &k.1, e))
            .collect();
        let log = self.log.clone();
        let key = k.clone();
        let stream = status_stream(&k.0, &k.1);
        // On several nodes an append waits for the one before it, and is not sent if that one
        // failed: pipelined, it would expect the version the failed one was to make, which a
        // new holder's fence makes too, and land after the fence.
        let (after, chained) = match self.lease {
            Some(_) => {
                let (tx, rx) = oneshot::channel();
                (slot.chain.replace(rx), Some(tx))
            }
            None => (None, None),
        };
        self.appends.push(Box::pin(async move {
            let before = match after {
                Some(before) => before.await.unwrap_or(false),
                None => true,
            };
            let result = match before {
                true => log.append(&stream, expected, batch).await,
                false => Err(EventLogError::Storage(
                    "an earlier decision of this session was not stored".into(),
                )),
            };
            if let Some(chained) = chained {
                let _ = chained.send(result.is_ok());
            }
            Done {
                key,
                generation,
                events,
                reply,
                request,
                first_version,
                result,
            }
        }));
        self.refile(k);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
