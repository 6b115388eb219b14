//! Several podiumd nodes behind one client. Calls go to one node at a time; when it cannot be
//! reached (the connection is refused or breaks) or answers `UNAVAILABLE` at once (it is
//! draining, or still behind the log), the next call goes to the next node. The call that
//! failed is answered with its error: a write sent again with its request id gets its first
//! answer from whichever node it reaches.
//!
//! Every response names the log position its node had reached; a request to another node than
//! the one that named the highest carries it, so that node answers only once it has applied
//! everything this client wrote or read (read-your-writes across nodes). The node that named it
//! has it already, so a client of one node never waits.

use std::{
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use podium_proto::{
    LOG_POSITION_HEADER, MIN_POSITION_HEADER, POSITION_UNREACHED_HEADER, parse_position,
};
use tonic::{
    Code, Status,
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
    seen: Mutex<Seen>,
}

/// The highest log position a node answered with, and the node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Seen {
    position: u64,
    node: usize,
}

impl Seen {
    /// What a request to `node` should ask for, given what its caller asked for (`None`: nothing;
    /// `Some(None)`: a value that is not a position, which the node will name): `Some` to set.
    fn to_ask(self, node: usize, asked: Option<Option<u64>>) -> Option<u64> {
        match asked {
            Some(None) => None,
            Some(Some(asked)) => (asked < self.position).then_some(self.position),
            None => (self.position > 0 && node != self.node).then_some(self.position),
        }
    }

    /// Takes in a node's answer: its position, and whether it refused the position asked for
    /// as beyond its own log.
    fn answered(&mut self, node: usize, position: Option<u64>, unreached: Option<u64>) {
        if let Some(head) = unreached {
            // Asked for a position of another log: start again from this one's.
            *self = Seen {
                position: head,
                node,
            };
        } else if let Some(position) = position
            && position >= self.position
        {
            *self = Seen { position, node };
        }
    }
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
                seen: Mutex::default(),
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
        self.shared.seen().position
    }
}

impl Shared {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

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
fn header(response: &http::Response<Body>, name: &str) -> Option<u64> {
    parse_position(response.headers().get(name)?.to_str().ok()?)
}

fn unavailable_at_once(response: &http::Response<Body>) -> bool {
    Status::from_header_map(response.headers()).is_some_and(|s| s.code() == Code::Unavailable)
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
        let asked = request
            .headers()
            .get(MIN_POSITION_HEADER)
            .map(|v| v.to_str().ok().and_then(parse_position));
        if let Some(position) = shared.seen().to_ask(at, asked) {
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
                    shared.seen().answered(
                        at,
                        header(&response, LOG_POSITION_HEADER),
                        header(&response, POSITION_UNREACHED_HEADER),
                    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_another_node_is_asked_for_the_position_and_a_callers_higher_one_is_kept() {
        let seen = Seen {
            position: 40,
            node: 0,
        };
        assert_eq!(seen.to_ask(0, None), None, "the node that named it has it");
        assert_eq!(seen.to_ask(1, None), Some(40));
        assert_eq!(
            seen.to_ask(1, Some(Some(50))),
            None,
            "the caller's higher one"
        );
        assert_eq!(seen.to_ask(0, Some(Some(30))), Some(40), "never lower");
        assert_eq!(
            seen.to_ask(1, Some(None)),
            None,
            "the node names a bad value"
        );
        assert_eq!(Seen::default().to_ask(1, None), None, "nothing seen yet");
    }

    #[test]
    fn the_highest_answer_is_kept_unless_a_node_says_it_is_from_another_log() {
        let mut seen = Seen::default();
        seen.answered(0, Some(40), None);
        seen.answered(1, Some(35), None);
        assert_eq!(
            seen,
            Seen {
                position: 40,
                node: 0
            }
        );
        seen.answered(1, Some(40), None);
        assert_eq!(
            seen,
            Seen {
                position: 40,
                node: 1
            },
            "node 1 has it too now"
        );
        seen.answered(0, None, None);
        assert_eq!(seen.position, 40);
        seen.answered(0, Some(12), Some(12));
        assert_eq!(
            seen,
            Seen {
                position: 12,
                node: 0
            }
        );
    }
}
