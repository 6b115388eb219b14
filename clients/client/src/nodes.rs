//! Several podiumd nodes behind one client. Calls go to one node at a time; when it cannot be
//! reached (the connection is refused or breaks) or answers `UNAVAILABLE` at once (it is
//! draining, or still behind the log), the next call goes to the next node. The call that
//! failed is answered with its error: a write sent again with its request id gets its first
//! answer from whichever node it reaches.
//!
//! Every response names the log position its node had reached; every request carries the
//! highest one seen, so a node answers only once it has applied everything this client wrote
//! or read, whichever node that was through (read-your-writes across nodes).

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use podium_proto::{LOG_POSITION_HEADER, MIN_POSITION_HEADER};
use tonic::{
    Code,
    body::Body,
    codegen::{Service, http},
    transport::Channel,
};

/// The nodes one client talks to. Cheap to clone; clones share the connections, the node in
/// use and the position.
#[derive(Clone)]
pub struct Nodes {
    shared: Arc<Shared>,
}

struct Shared {
    /// Each node's address (as given) and channel.
    nodes: Vec<(String, Channel)>,
    /// The node calls go to.
    current: AtomicUsize,
    /// The highest log position any node answered with.
    position: AtomicU64,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nodes")
            .field("current", &self.current())
            .field("position", &self.position())
            .finish_non_exhaustive()
    }
}

impl Nodes {
    /// `nodes` in the order they are tried; calls start at `first`.
    pub(crate) fn new(nodes: Vec<(String, Channel)>, first: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                nodes,
                current: AtomicUsize::new(first),
                position: AtomicU64::new(0),
            }),
        }
    }

    /// The address of the node calls go to now.
    pub fn current(&self) -> &str {
        let at = self.shared.current.load(Ordering::Relaxed);
        &self.shared.nodes[at].0
    }

    /// The highest log position a node has answered with: the next call is answered only by a
    /// node that has applied the log below it.
    pub fn position(&self) -> u64 {
        self.shared.position.load(Ordering::Relaxed)
    }
}

impl Shared {
    /// Calls go to the node after `failed`, unless another call has moved them already.
    fn move_on(&self, failed: usize) {
        let next = (failed + 1) % self.nodes.len();
        if self
            .current
            .compare_exchange(failed, next, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
            && next != failed
        {
            tracing::info!(
                from = %self.nodes[failed].0,
                to = %self.nodes[next].0,
                "podiumd node unavailable; moving to the next"
            );
        }
    }
}

/// A gRPC answer with no message, only a status (a "trailers-only" response), of `UNAVAILABLE`.
fn unavailable_at_once(response: &http::Response<Body>) -> bool {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .is_some_and(|code| Code::from(code) == Code::Unavailable)
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl Service<http::Request<Body>> for Nodes {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    /// Always ready: each call waits for its node's channel.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        let at = shared.current.load(Ordering::Acquire);
        let position = shared.position.load(Ordering::Acquire);
        // A position the caller set itself is kept when it is the higher, or not a number (the
        // node then says what is wrong with it).
        let asked = request
            .headers()
            .get(MIN_POSITION_HEADER)
            .map(|v| v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()));
        let keep = match asked {
            Some(Some(asked)) => asked >= position,
            Some(None) => true,
            None => position == 0,
        };
        if !keep {
            request
                .headers_mut()
                .insert(MIN_POSITION_HEADER, http::HeaderValue::from(position));
        }
        let mut channel = shared.nodes[at].1.clone();
        Box::pin(async move {
            let answer = async {
                futures::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
                channel.call(request).await
            };
            match answer.await {
                Ok(response) => {
                    let answered = response
                        .headers()
                        .get(LOG_POSITION_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    if let Some(answered) = answered {
                        shared.position.fetch_max(answered, Ordering::AcqRel);
                    }
                    if unavailable_at_once(&response) {
                        shared.move_on(at);
                    }
                    Ok(response)
                }
                Err(error) => {
                    shared.move_on(at);
                    Err(error)
                }
            }
        })
    }
}
