//! [`Lease`] on the cluster: one key of a JetStream key-value bucket, `<prefix>-lease`, holds the
//! holder's term as `<number> <node>`, and its revision is what every change is fenced on.
//!
//! - The holder renews the key every third of the time-to-live (a compare-and-set on the
//!   revision it wrote last). Refused, it reads the key: still its own term there, an earlier
//!   renewal of its own that it timed out on has landed, and it goes on from that revision;
//!   anything else, it lost the lease. Unable to renew for a whole time-to-live, it gives it
//!   up (it may have lost it without hearing so).
//! - Every other node reads the key every [`POLL`] and times how long the same revision has
//!   stood. Once it has stood for a whole time-to-live, the node takes the lease with a
//!   compare-and-set on that revision, as term number + 1: of several nodes trying, one wins.
//!   A released lease (`<number> ` with no node) is taken at once.
//! - A holder told that the log holds a later term than its own ([`Lease::outranked`]: the
//!   key was deleted, or the cluster restored without this bucket, and numbering began again)
//!   gives the lease up, written as released at that term, so the next term passes the log's.
//! - Messages for the holder go to the core NATS subject `<prefix>.engine.<term>`, which only
//!   the holder of that term listens to: a holder frozen and deposed hears nothing meant for
//!   its successor.
//!
//! Times are each node's own: no two nodes' clocks are compared.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::{self, kv};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
    time::Instant,
};

use super::{
    key_value_bucket,
    read::{lost_a_race, nats},
};
use crate::{
    EventLogError, Result,
    lease::{ASK_WAIT, Delivery, Lease, Term},
};

mod announce;

use announce::{announced, hear};

/// How often a node that does not hold the lease reads it.
pub const POLL: Duration = Duration::from_millis(200);

/// The bucket's one key.
const KEY: &str = "status-engine";

/// The lease of the status engine on a NATS cluster.
pub struct NatsLease {
    node: String,
    ttl: Duration,
    client: async_nats::Client,
    prefix: String,
    held: watch::Receiver<Option<Term>>,
    holder: watch::Receiver<Option<Term>>,
    /// Until when this node's hold is certain.
    valid_until: Arc<Mutex<Option<Instant>>>,
    listener: Arc<Mutex<Option<JoinHandle<()>>>>,
    deliveries: Mutex<Option<mpsc::Receiver<Delivery>>>,
    /// The latest term the log showed to be later than this node's (see [`Lease::outranked`]).
    outranked: watch::Sender<u64>,
    announcements: Mutex<Option<mpsc::Receiver<Bytes>>>,
    /// The task handing what is announced to `announcements`.
    hearing: JoinHandle<()>,
    keeper: JoinHandle<()>,
}

impl NatsLease {
    /// Opens the bucket (creating it where it does not exist, with `replicas` copies) and
    /// starts keeping the lease for `node`.
    pub(super) async fn start(
        client: async_nats::Client,
        prefix: String,
        replicas: usize,
        node: String,
        ttl: Duration,
    ) -> Result<Self> {
        if node.is_empty() || node.contains(char::is_whitespace) {
            return Err(EventLogError::InvalidAppend(format!(
                "the node name {node:?} must be non-empty, with no spaces"
            )));
        }
        let js = jetstream::new(client.clone());
        let bucket = format!("{prefix}-lease");
        let description = "which podiumd node runs the status engine";
        let store = key_value_bucket(&js, &bucket, description, replicas).await?;
        let (held_tx, held) = watch::channel(None);
        let (holder_tx, holder) = watch::channel(None);
        let (deliver, deliveries) = mpsc::channel(4096);
        let valid_until = Arc::new(Mutex::new(None));
        let listener = Arc::new(Mutex::new(None));
        let (outranked, outranked_rx) = watch::channel(0);
        let (hearing, announcements) = hear(&client, &prefix).await?;
        let keeper = Keeper {
            valid_until: valid_until.clone(),
            listener: listener.clone(),
            store,
            client: client.clone(),
            prefix: prefix.clone(),
            node: node.clone(),
            ttl,
            held: held_tx,
            holder: holder_tx,
            deliver,
        };
        crate::metrics::lease_held(false);
        let keeper = tokio::spawn(keeper.run(outranked_rx));
        Ok(Self {
            node,
            ttl,
            client,
            prefix,
            held,
            holder,
            valid_until,
            listener,
            deliveries: Mutex::new(Some(deliveries)),
            outranked,
            announcements: Mutex::new(Some(announcements)),
            hearing,
            keeper,
        })
    }

    /// Stops keeping the lease. A holder releases it first, so that another node takes it at
    /// once instead of after a time-to-live.
    pub async fn release(&self) {
        self.keeper.abort();
        stop(&self.listener);
        if let Ok(mut until) = self.valid_until.lock() {
            *until = None;
        }
        let Some(term) = self.held.borrow().clone() else {
            return;
        };
        let js = jetstream::new(self.client.clone());
        let Ok(store) = js.get_key_value(format!("{}-lease", self.prefix)).await else {
            return;
        };
        if let Ok(Some(entry)) = store.entry(KEY).await
            && parse(&entry.value).as_ref() == Some(&term)
        {
            let released = format!("{} ", term.number);
            match store.update(KEY, released.into(), entry.revision).await {
                Ok(_) => tracing::info!(term = term.number, "status engine lease released"),
                Err(error) => tracing::warn!(%error, "status engine lease not released"),
            }
        }
    }
}

impl Drop for NatsLease {
    fn drop(&mut self) {
        self.keeper.abort();
        self.hearing.abort();
        stop(&self.listener);
    }
}

fn stop(listener: &Mutex<Option<JoinHandle<()>>>) {
    if let Some(task) = listener.lock().ok().and_then(|mut l| l.take()) {
        task.abort();
    }
}

fn subject(prefix: &str, term: u64) -> String {
    format!("{prefix}.engine.{term}")
}

/// A term as the key holds it; a released lease has no node.
fn parse(value: &[u8]) -> Option<Term> {
    let text = std::str::from_utf8(value).ok()?;
    let (number, node) = text.split_once(' ')?;
    Some(Term {
        number: number.parse().ok()?,
        node: node.to_owned(),
    })
}

fn no_holder() -> EventLogError {
    EventLogError::Storage("no podiumd node runs the status engine right now".into())
}

#[async_trait]
impl Lease for NatsLease {
    fn node(&self) -> &str {
        &self.node
    }

    fn held(&self) -> watch::Receiver<Option<Term>> {
        self.held.clone()
    }

    fn valid(&self) -> bool {
        self.valid_until
            .lock()
            .is_ok_and(|until| until.is_some_and(|until| Instant::now() < until))
    }

    fn holder(&self) -> Option<Term> {
        self.holder.borrow().clone()
    }

    async fn tell(&self, payload: Bytes) -> Result<()> {
        let term = self.holder().ok_or_else(no_holder)?;
        self.client
            .publish(subject(&self.prefix, term.number), payload)
            .await
            .map_err(nats)
    }

    async fn ask(&self, payload: Bytes) -> Result<Bytes> {
        let asked_at = Instant::now();
        // The whole ask, holder found or not, ends within ASK_WAIT: inside a request's time.
        let answered_by = asked_at + ASK_WAIT;
        let deadline = (asked_at + self.ttl + Duration::from_secs(1)).min(answered_by);
        let mut holder = self.holder.clone();
        loop {
            let term = holder.borrow_and_update().clone();
            if let Some(term) = term {
                let left = answered_by.saturating_duration_since(Instant::now());
                let request = async_nats::Request::new()
                    .payload(payload.clone())
                    .timeout(Some(left.max(Duration::from_millis(1))));
                let asked = self
                    .client
                    .send_request(subject(&self.prefix, term.number), request)
                    .await;
                match asked {
                    Ok(answer) => return Ok(answer.payload),
                    // The holder died or was deposed: wait for the next.
                    Err(error)
                        if matches!(error.kind(), async_nats::RequestErrorKind::NoResponders) => {}
                    // It heard, and may act yet: not to be sent again blindly.
                    Err(error)
                        if matches!(error.kind(), async_nats::RequestErrorKind::TimedOut) =>
                    {
                        return Err(EventLogError::Unanswered(format!(
                            "the status engine (node {}, term {}) did not answer within {} s of \
                             the command; it may still take effect: send it again with the same \
                             request id, or look at the session first",
                            term.node,
                            term.number,
                            ASK_WAIT.as_secs()
                        )));
                    }
                    Err(error) => return Err(nats(error)),
                }
            }
            if Instant::now() >= deadline {
                return Err(no_holder());
            }
            // A new holder, or another look after a while.
            let _ = tokio::time::timeout(POLL, holder.changed()).await;
        }
    }

    fn deliveries(&self) -> Option<mpsc::Receiver<Delivery>> {
        self.deliveries.lock().ok()?.take()
    }

    async fn announce(&self, payload: Bytes) -> Result<()> {
        self.client
            .publish(announced(&self.prefix), payload)
            .await
            .map_err(nats)
    }

    fn announcements(&self) -> Option<mpsc::Receiver<Bytes>> {
        self.announcements.lock().ok()?.take()
    }

    fn outranked(&self, term: u64) {
        // Always a wake-up, even for a term told before: a node may hold again, under a term
        // numbered again, after it gave the lease up at this one. The keeper compares with the
        // term it holds.
        self.outranked
            .send_modify(|latest| *latest = (*latest).max(term));
    }
}

/// The task that keeps the lease.
struct Keeper {
    store: kv::Store,
    client: async_nats::Client,
    prefix: String,
    node: String,
    ttl: Duration,
    held: watch::Sender<Option<Term>>,
    holder: watch::Sender<Option<Term>>,
    valid_until: Arc<Mutex<Option<Instant>>>,
    /// The task listening on the held term's subject.
    listener: Arc<Mutex<Option<JoinHandle<()>>>>,
    deliver: mpsc::Sender<Delivery>,
}

/// What the keeper knows of the key.
struct Seen {
    revision: u64,
    term: Option<Term>,
    /// When this node first saw this revision.
    since: Instant,
}

impl Keeper {
    async fn run(self, mut outranked: watch::Receiver<u64>) {
        let mut seen: Option<Seen> = None;
        // While held: the revision this node wrote last, and when.
        let mut mine: Option<(u64, Instant)> = None;
        loop {
            match mine.take() {
                Some((revision, renewed)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(renewed + self.ttl / 3) => {
                            mine = self.renew(revision, renewed).await;
                        }
                        Ok(()) = outranked.changed() => {
                            let later = *outranked.borrow_and_update();
                            mine = self.give_up_to(later, revision, renewed).await;
                        }
                    }
                }
                None => {
                    tokio::time::sleep(POLL).await;
                    mine = self.watch(&mut seen).await;
                }
            }
        }
    }

    /// Renews the lease this node holds; `None` once it is lost.
    async fn renew(&self, revision: u64, renewed: Instant) -> Option<(u64, Instant)> {
        let term = self.held.borrow().clone()?;
        if renewed.elapsed() >= self.ttl {
            // Frozen, or starved, for a whole time-to-live: another node may hold it now.
            tracing::warn!(
                term = term.number,
                "status engine lease not renewed for a whole time-to-live; giving it up"
            );
            self.step_down();
            return None;
        }
        let value = format!("{} {}", term.number, term.node);
        let started = Instant::now();
        // An answer after the hold lapsed is no use: by then it is given up.
        let renewal = self.store.update(KEY, value.into(), revision);
        let Ok(renewed_now) = tokio::time::timeout_at(renewed + self.ttl, renewal).await else {
            tracing::warn!(
                term = term.number,
                "status engine lease not renewed within its time-to-live; giving it up"
            );
            self.step_down();
            return None;
        };
        match renewed_now {
            Ok(revision) => {
                self.valid_for(Some(started));
                Some((revision, started))
            }
            // A wrong revision (10071), or another write in flight (10164): another node's, or
            // this node's own earlier renewal, which timed out here and landed (or is landing)
            // after all. Every renewal writes the same value, so the key tells them apart.
            Err(error) if lost_a_race(&error) => match self.still_mine(&term, renewed).await {
                Some(current) => {
                    tracing::debug!(
                        term = term.number,
                        "status engine lease: an earlier renewal of this node's landed late"
                    );
                    // Certain only from the last renewal known to have landed (`renewed`):
                    // the late one was sent after it, so counting from it is on the safe side.
                    tokio::time::sleep(POLL).await;
                    Some((current, renewed))
                }
                None => {
                    tracing::warn!(
                        term = term.number,
                        "status engine lease lost to another node"
                    );
                    self.step_down();
                    None
                }
            },
            Err(error) if renewed.elapsed() >= self.ttl => {
                tracing::warn!(term = term.number, %error, "status engine lease not renewed for a whole time-to-live; giving it up");
                self.step_down();
                None
            }
            Err(error) => {
                tracing::debug!(%error, "status engine lease renewal failed; trying again");
                tokio::time::sleep(POLL).await;
                Some((revision, renewed))
            }
        }
    }

    /// Gives the lease up when `later` passes the term held: written as released at `later`
    /// (a compare-and-set on this node's last revision), so that the next holder's term passes
    /// every term in the log. Refused, the key has moved on (another node's take, a deletion):
    /// this node steps down all the same, and an engine that meets a later term again says so.
    /// `None` once given up.
    async fn give_up_to(
        &self,
        later: u64,
        revision: u64,
        renewed: Instant,
    ) -> Option<(u64, Instant)> {
        let term = self.held.borrow().clone()?;
        if later <= term.number {
            return Some((revision, renewed));
        }
        let released = self.store.update(KEY, format!("{later} ").into(), revision);
        let release = match tokio::time::timeout_at(renewed + self.ttl, released).await {
            Ok(Ok(_)) => "written at the later term".to_owned(),
            Ok(Err(error)) => format!("not written: {error}"),
            Err(_) => "not written in time".to_owned(),
        };
        tracing::warn!(
            term = term.number,
            later,
            release,
            "the log holds a later term of the status engine than this node's (the lease's record was lost, or this node was deposed); lease given up"
        );
        self.step_down();
        None
    }

    /// The key's revision when it still holds `term` (this node's own write), else `None`: taken
    /// by another node, released, deleted, or not read before the hold renewed at `renewed`
    /// lapses. Read from the bucket's leader, not a replica, which may not have another node's
    /// take yet.
    async fn still_mine(&self, term: &Term, renewed: Instant) -> Option<u64> {
        let subject = format!("{}{KEY}", self.store.prefix);
        let read = self.store.stream.get_last_raw_message_by_subject(&subject);
        let message = tokio::time::timeout_at(renewed + self.ttl, read)
            .await
            .ok()?
            .ok()?;
        // A delete or purge has no value, so it parses as no term.
        (parse(&message.payload).as_ref() == Some(term)).then_some(message.sequence)
    }

    /// The hold is certain for a time-to-live from `since`, when the write that renewed it
    /// was sent.
    fn valid_for(&self, since: Option<Instant>) {
        if let Ok(mut until) = self.valid_until.lock() {
            *until = since.map(|since| since + self.ttl);
        }
    }

    fn step_down(&self) {
        stop(&self.listener);
        self.valid_for(None);
        // Whoever holds it now, it is not this node: learnt at the next read of the key.
        self.holder.send_if_modified(|holder| {
            let mine = holder.as_ref().is_some_and(|t| t.node == self.node);
            if mine {
                *holder = None;
            }
            mine
        });
        self.held.send_replace(None);
        crate::metrics::lease_held(false);
    }

    /// Reads the key; takes the lease when it is free, released, or has stood unrenewed for a
    /// whole time-to-live.
    async fn watch(&self, seen: &mut Option<Seen>) -> Option<(u64, Instant)> {
        let entry = match self.store.entry(KEY).await {
            Ok(entry) => entry,
            Err(error) => {
                tracing::debug!(%error, "status engine lease not read");
                return None;
            }
        };
        let now = Instant::now();
        let (last, number) = match entry {
            None => (None, 0),
            Some(entry) => {
                let term = parse(&entry.value).filter(|_| entry.operation == kv::Operation::Put);
                if seen.as_ref().is_none_or(|s| s.revision != entry.revision) {
                    let holder = term.clone().filter(|t| !t.node.is_empty());
                    self.holder.send_replace(holder);
                    *seen = Some(Seen {
                        revision: entry.revision,
                        term,
                        since: now,
                    });
                }
                let s = seen.as_ref()?;
                let free = s.term.as_ref().is_none_or(|t| t.node.is_empty());
                if !free && now.duration_since(s.since) < self.ttl {
                    return None;
                }
                (
                    Some(entry.revision),
                    s.term.as_ref().map_or(0, |t| t.number),
                )
            }
        };
        let term = Term {
            node: self.node.clone(),
            number: number + 1,
        };
        // Listening before the take: a node that reads the new term at once is heard.
        let listener = match self.listen(term.number).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for forwarded inputs; not taking the status engine");
                return None;
            }
        };
        let value: Bytes = format!("{} {}", term.number, term.node).into();
        let started = Instant::now();
        let took = match last {
            None => self
                .store
                .create(KEY, value)
                .await
                .map_err(|e| e.to_string()),
            Some(revision) => self
                .store
                .update(KEY, value, revision)
                .await
                .map_err(|e| e.to_string()),
        };
        match took {
            Ok(revision) => {
                tracing::info!(term = term.number, node = %term.node, "this node runs the status engine now");
                if let Ok(mut slot) = self.listener.lock() {
                    *slot = Some(listener);
                }
                self.valid_for(Some(started));
                self.holder.send_replace(Some(term.clone()));
                self.held.send_replace(Some(term));
                crate::metrics::lease_held(true);
                *seen = None;
                Some((revision, started))
            }
            Err(error) => {
                // Another node was quicker.
                listener.abort();
                tracing::debug!(%error, "status engine lease not taken");
                None
            }
        }
    }

    /// Hands what is sent to the term's subject to the deliveries while this node holds the
    /// term, and sends answers back.
    async fn listen(&self, term: u64) -> Result<JoinHandle<()>> {
        let mut messages = self
            .client
            .subscribe(subject(&self.prefix, term))
            .await
            .map_err(nats)?;
        // The subscription is registered once the server has seen it: flush, so that a node
        // that reads the new term is heard.
        self.client.flush().await.map_err(nats)?;
        let deliver = self.deliver.clone();
        let client = self.client.clone();
        let held = self.held.subscribe();
        Ok(tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                // Listening starts before the take, which another node may win: until this
                // node holds the term, what arrives is the winner's to answer.
                if held.borrow().as_ref().is_none_or(|t| t.number != term) {
                    continue;
                }
                let reply = message.reply.map(|to| {
                    let (tx, rx) = oneshot::channel::<Bytes>();
                    let client = client.clone();
                    tokio::spawn(async move {
                        if let Ok(answer) = rx.await {
                            let _ = client.publish(to, answer).await;
                        }
                    });
                    tx
                });
                let delivery = Delivery {
                    payload: message.payload,
                    reply,
                };
                if deliver.send(delivery).await.is_err() {
                    break;
                }
            }
        }))
    }
}
