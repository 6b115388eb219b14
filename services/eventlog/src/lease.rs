//! Which one of several nodes on one log runs a task that must run exactly once (the status
//! engine), and how the other nodes reach it.
//!
//! A [`Lease`] is held by one node at a time, for a [`Term`]; a new holder's term is the last
//! one plus one. The holder keeps renewing it; when it stops (killed, frozen, cut off), another
//! node takes it once a whole time-to-live has passed with no renewal. A lease alone cannot stop
//! a holder that was frozen and wakes up believing it still holds: what it writes must be
//! fenced by the log (the status engine appends with each stream's expected version, and a new
//! holder first appends to every stream it takes over, so the old holder's appends are
//! refused).
//!
//! Nodes that do not hold the lease forward their inputs to the holder: [`Lease::tell`] for
//! messages that need no answer (lost while no node holds the lease), [`Lease::ask`] for those
//! that do. The holder takes them from [`Lease::deliveries`].
//!
//! Only the NATS backend has several nodes; a sled log is one process's, which runs everything
//! itself and needs no lease.

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::Result;

/// How long [`Lease::ask`] waits, for a holder and then its answer: as long as a holder may
/// take over a command of its own (an append that retries), and less than a request's 10 s,
/// so that the caller hears why rather than a bare deadline.
pub const ASK_WAIT: std::time::Duration = std::time::Duration::from_secs(8);

/// One node's hold of a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// The holder's name.
    pub node: String,
    /// Grows by one with each new holder.
    pub number: u64,
}

/// A message another node forwarded to the holder; `reply` is there when it waits for an
/// answer.
#[derive(Debug)]
pub struct Delivery {
    pub payload: Bytes,
    pub reply: Option<oneshot::Sender<Bytes>>,
}

/// A lease on one task of a cluster of nodes, and the way to the node that holds it.
#[async_trait]
pub trait Lease: Send + Sync + 'static {
    /// This node's name.
    fn node(&self) -> &str;

    /// The term this node holds: `Some` from when it takes the lease until it learns it lost
    /// it (or could not renew it for a whole time-to-live).
    fn held(&self) -> watch::Receiver<Option<Term>>;

    /// Whether this node's hold is certain now, by its own clock: it holds a term and renewed
    /// it less than a time-to-live ago (another node takes the lease only after seeing it
    /// stand unrenewed for a whole time-to-live). A holder acts only while this is true.
    fn valid(&self) -> bool;

    /// Whoever holds the lease, as far as this node knows.
    fn holder(&self) -> Option<Term>;

    /// Sends `payload` to the holder's deliveries, without waiting for an answer. Lost when no
    /// node holds the lease.
    async fn tell(&self, payload: Bytes) -> Result<()>;

    /// Sends `payload` to the holder and waits for its answer. While no node holds the lease
    /// (the holder died and its lease has not run out yet), waits for the next holder, up to
    /// one time-to-live and a second. A holder that does not answer within [`ASK_WAIT`]
    /// gives [`EventLogError::Unanswered`]: it may still act on the message.
    ///
    /// [`EventLogError::Unanswered`]: crate::EventLogError::Unanswered
    async fn ask(&self, payload: Bytes) -> Result<Bytes>;

    /// What other nodes send to this one while it holds the lease. There is one receiver; the
    /// first call takes it.
    fn deliveries(&self) -> Option<mpsc::Receiver<Delivery>>;

    /// Sends `payload` to every node's [`announcements`](Self::announcements), this one's
    /// too, without waiting: what the holder's task tells the whole cluster. Lost on a node
    /// that is not listening.
    async fn announce(&self, payload: Bytes) -> Result<()>;

    /// What was announced to every node. There is one receiver; the first call takes it.
    fn announcements(&self) -> Option<mpsc::Receiver<Bytes>>;

    /// The log holds term `term` of this lease, later than the one this node holds. Either
    /// this node was deposed and has not heard yet, or the lease's own record of its terms was
    /// lost (its key deleted, or the cluster restored without its bucket) and numbering began
    /// again at 1. A holder gives the lease up, recorded as released at `term`, so that
    /// whichever node takes it next holds a term later than any in the log; a node that does
    /// not hold the lease, or holds `term` or a later one, ignores it.
    fn outranked(&self, term: u64);
}
