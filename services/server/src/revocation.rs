//! A token that stops working also ends the calls it opened. The token interceptor refuses a
//! revoked, expired or rotated-out token on every new call; this layer watches the calls
//! already open (gRPC and gRPC-Web streams in either direction, and the pages' Server-Sent
//! Events) and, when the token a call was opened with no longer verifies (revoked, expired, or
//! its key rotated out with no grace or past its grace), ends it: a gRPC response stream with UNAUTHENTICATED in its trailers, a request stream with
//! UNAUTHENTICATED as its next message (the handler's answer follows), an event stream by
//! closing it (the browser's reconnect is then refused like any request).
//!
//! A call is looked at again only when a token is revoked or the key rotated (the register
//! and the keys count them), and when its own token would end by itself (its expiry, or the
//! end of its key's grace): the cost while nothing happens is one flag and one timer per open
//! stream. One task per server waits for revocations and rotations and raises every open
//! call's flag ([`Calls`]); a call polls only its own flag and timer, so that a frame on one of
//! 20,000 open streams takes no lock the others share. (Each call once polled the register's
//! and the keys' watch channels itself, two locks every stream shared on every frame: a tenth
//! of podiumd's time in the 20,000-watcher fan-out.)

use std::{
    collections::{HashMap, HashSet},
    pin::Pin,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use futures::task::AtomicWaker;
use http::{HeaderMap, header};
use http_body::Frame;
use podium_access::TokenKeys;
use podium_web::session::{CookieScope, session_token};
use tokio::sync::watch;
use tonic::{Status, body::Body};
use tower::{Layer, Service};

/// Watches the token of every streaming call.
#[derive(Clone)]
pub struct RevocationLayer {
    keys: Arc<TokenKeys>,
    /// Paths of the gRPC methods that stream, in either direction.
    streaming: Arc<HashSet<String>>,
    /// Paths of the gRPC methods whose requests stream.
    client_streaming: Arc<HashSet<String>>,
    calls: Arc<Calls>,
    /// The scope of the pages' session cookie a `--public-url` fixes.
    cookie_scope: Option<CookieScope>,
}

impl RevocationLayer {
    pub fn new(
        keys: Arc<TokenKeys>,
        descriptor_sets: &[&[u8]],
    ) -> Result<Self, prost::DecodeError> {
        let streaming = crate::limits::methods(descriptor_sets, |m| {
            m.server_streaming() || m.client_streaming()
        })?;
        let client_streaming = crate::limits::methods(descriptor_sets, |m| m.client_streaming())?;
        let revisions = keys.register().map(|register| register.read().revisions());
        // podiumd attaches the register first (`Podium::open`); without it no call is watched.
        if revisions.is_none() {
            tracing::error!("the token register is not attached: open calls are not watched");
        }
        let calls = Arc::new(Calls::default());
        tokio::spawn(wake_on_changes(
            Arc::downgrade(&calls),
            revisions,
            keys.rotations(),
        ));
        Ok(Self {
            keys,
            streaming: Arc::new(streaming),
            client_streaming: Arc::new(client_streaming),
            calls,
            cookie_scope: None,
        })
    }

    /// A page's session cookie is read by its name in the scope a `--public-url` fixes, as the
    /// pages read it.
    pub fn with_cookie_scope(mut self, scope: Option<CookieScope>) -> Self {
        self.cookie_scope = scope;
        self
    }
}

/// The open calls whose tokens are watched, each with the flag that tells it to look again.
#[derive(Default)]
struct Calls {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Flag>>>,
}

/// Raised when a call's token may no longer verify; wakes the call's task.
#[derive(Default)]
struct Flag {
    raised: AtomicBool,
    waker: AtomicWaker,
}

impl Calls {
    fn register(self: &Arc<Self>) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let flag = Arc::new(Flag::default());
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, flag.clone());
        Registration {
            calls: self.clone(),
            id,
            flag,
        }
    }

    fn raise_all(&self) {
        // Woken outside the lock, so that calls opening and closing meanwhile do not wait.
        let flags: Vec<Arc<Flag>> = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for flag in flags {
            flag.raise();
        }
    }
}

impl Flag {
    fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Whether the flag was raised since the last look, lowering it; when not, a raise wakes
    /// the task of `cx`. The waker is registered before the flag is read, so that a raise in
    /// between is not missed.
    fn poll_raised(&self, cx: &mut Context<'_>) -> bool {
        self.waker.register(cx.waker());
        self.raised.swap(false, Ordering::AcqRel)
    }
}

/// A call's place in [`Calls`], left when the call ends.
struct Registration {
    calls: Arc<Calls>,
    id: u64,
    flag: Arc<Flag>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.calls
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// Raises every open call's flag whenever a token is revoked or the keys rotate. Ends once the
/// register and the keys are gone, or at the first change after the server (its `Calls`) is.
async fn wake_on_changes(
    calls: Weak<Calls>,
    mut revisions: Option<watch::Receiver<u64>>,
    rotations: watch::Receiver<u64>,
) {
    let mut rotations = Some(rotations);
    loop {
        let changed = tokio::select! {
            Some(changed) = next(&mut revisions) => changed,
            Some(changed) = next(&mut rotations) => changed,
            else => return,
        };
        let Some(calls) = calls.upgrade() else { return };
        if changed {
            calls.raise_all();
        }
    }
}

/// Whether `changes` changed (false: it closed, and is no longer watched), or `None` when it is
/// not watched.
async fn next(changes: &mut Option<watch::Receiver<u64>>) -> Option<bool> {
    let changed = changes.as_mut()?.changed().await.is_ok();
    if !changed {
        *changes = None;
    }
    Some(changed)
}

impl<S> Layer<S> for RevocationLayer {
    type Service = Revocation<S>;

    fn layer(&self, inner: S) -> Revocation<S> {
        Revocation {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Revocation<S> {
    inner: S,
    layer: RevocationLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The bearer token of a gRPC call.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    podium_access::grpc::bearer_token(value).map(str::to_owned)
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

impl<S> Service<http::Request<Body>> for Revocation<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path();
        let grpc_stream = self.layer.streaming.contains(path);
        let client_streaming = self.layer.client_streaming.contains(path);
        let keys = self.layer.keys.clone();
        let calls = self.layer.calls.clone();
        // A gRPC stream's token is checked now, before its handler runs: one that does not
        // verify is refused by the interceptor. A page's cookie is looked at only if the
        // answer turns out to be an event stream.
        let (watch, cookie) = if grpc_stream {
            (
                bearer(request.headers()).and_then(|t| Watch::start(&keys, &calls, t)),
                None,
            )
        } else {
            let scope = self.layer.cookie_scope;
            (None, session_token(scope, request.uri(), request.headers()))
        };
        let request = match (&watch, client_streaming) {
            (Some(watch), true) => request.map(|body| {
                Body::new(Revocable {
                    inner: body,
                    watch: watch.clone(),
                    end: End::Error,
                    done: false,
                })
            }),
            _ => request,
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let response = inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let (watch, end) = match (watch, cookie) {
                (Some(watch), _) => (watch, End::Trailers),
                (None, Some(cookie)) if is_event_stream(response.headers()) => {
                    match Watch::start(&keys, &calls, cookie) {
                        Some(watch) => (watch, End::Close),
                        // A visitor whose cookie does not verify is served as one without.
                        None => return Ok(response),
                    }
                }
                _ => return Ok(response),
            };
            Ok(response.map(|body| {
                Body::new(Revocable {
                    inner: body,
                    watch,
                    end,
                    done: false,
                })
            }))
        })
    }
}

/// A call's token, and what wakes a look at it again.
struct Watch {
    keys: Arc<TokenKeys>,
    token: Arc<str>,
    /// Raised on a revocation or a rotation.
    registration: Registration,
    /// When the token ends by itself.
    expiry: Pin<Box<tokio::time::Sleep>>,
}

/// A timer for `until` (a wall-clock time, timed on the monotonic clock: after a suspend or a
/// step of the wall clock it fires late, and the next look catches up), or for a year away
/// when there is none. A time already past is looked at again a second later, not at once,
/// so that a token in its last second is not looked at in a loop.
fn timer(until: Option<SystemTime>) -> Pin<Box<tokio::time::Sleep>> {
    const FAR: Duration = Duration::from_secs(365 * 24 * 3600);
    let wait = until.map_or(FAR, |until| match until.duration_since(SystemTime::now()) {
        Ok(left) if !left.is_zero() => left.min(FAR),
        _ => Duration::from_secs(1),
    });
    Box::pin(tokio::time::sleep(wait))
}

impl Clone for Watch {
    fn clone(&self) -> Self {
        let registration = self.registration.calls.register();
        // Raised from the start: a revocation just before the clone registered is looked for.
        registration.flag.raise();
        Self {
            keys: self.keys.clone(),
            token: self.token.clone(),
            registration,
            expiry: Box::pin(tokio::time::sleep_until(self.expiry.deadline())),
        }
    }
}

impl Watch {
    /// Watches `token` if it verifies now. The call is registered before the check, so that a
    /// revocation between the two still wakes it.
    fn start(keys: &Arc<TokenKeys>, calls: &Arc<Calls>, token: String) -> Option<Self> {
        keys.register()?;
        let registration = calls.register();
        let (_, until) = keys.inspect_until(&token).ok()?;
        Some(Self {
            keys: keys.clone(),
            token: token.into(),
            registration,
            expiry: timer(until),
        })
    }

    /// Why the token no longer verifies, once a revocation, a rotation or the token's own end
    /// (its expiry, its key's end of grace) has made it so.
    fn poll_ended(&mut self, cx: &mut Context<'_>) -> Option<String> {
        let mut woken = self.registration.flag.poll_raised(cx);
        if self.expiry.as_mut().poll(cx).is_ready() {
            woken = true;
        }
        if !woken {
            return None;
        }
        match self.keys.inspect_until(&self.token) {
            Err(e) => Some(e.to_string()),
            Ok((_, until)) => {
                // Still good: a rotation may have given it a grace end, so time it again, and
                // poll the new timer once so that it wakes this task.
                self.expiry = timer(until);
                let _ = self.expiry.as_mut().poll(cx);
                None
            }
        }
    }
}

/// How a watched body ends when its token stops verifying.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// A gRPC response: UNAUTHENTICATED in trailers.
    Trailers,
    /// A gRPC request stream: an UNAUTHENTICATED error, which the handler reads as its next
    /// message.
    Error,
    /// An event stream: closed.
    Close,
}

/// A body that ends when its call's token stops verifying.
struct Revocable {
    inner: Body,
    watch: Watch,
    end: End,
    /// The inner body has ended (its trailers, if any, are sent), or this one has.
    done: bool,
}

impl http_body::Body for Revocable {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(reason) = this.watch.poll_ended(cx) {
            this.done = true;
            // Ends the call's task now, not when the connection closes.
            this.inner = Body::empty();
            tracing::info!(%reason, "an open call ended: its token no longer verifies");
            let status = Status::unauthenticated(reason);
            return Poll::Ready(match this.end {
                End::Close => None,
                End::Error => Some(Err(status)),
                End::Trailers => {
                    let mut trailers = HeaderMap::new();
                    // An invalid message is sent percent-encoded: adding it cannot fail.
                    let _ = status.add_header(&mut trailers);
                    Some(Ok(Frame::trailers(trailers)))
                }
            });
        }
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = &frame {
            this.done = true;
        }
        if let Poll::Ready(Some(Ok(frame))) = &frame
            && frame.is_trailers()
        {
            this.done = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        if self.done {
            http_body::SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use super::*;

    /// Resolves once `registration`'s flag is raised, as a call's poll sees it.
    async fn raised(registration: &Registration) {
        poll_fn(|cx| {
            if registration.flag.poll_raised(cx) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_revocation_or_a_rotation_wakes_every_open_call_and_an_ended_call_leaves() {
        let wait = Duration::from_secs(10);
        let calls = Arc::new(Calls::default());
        let (revoke, revisions) = watch::channel(0);
        let (rotate, rotations) = watch::channel(0);
        let task = tokio::spawn(wake_on_changes(
            Arc::downgrade(&calls),
            Some(revisions),
            rotations,
        ));
        let (a, b) = (calls.register(), calls.register());
        let ended = calls.register();
        drop(ended);
        assert_eq!(calls.open.lock().unwrap().len(), 2, "an ended call leaves");

        revoke.send_replace(1);
        tokio::time::timeout(wait, raised(&a))
            .await
            .expect("a revocation wakes a");
        tokio::time::timeout(wait, raised(&b)).await.expect("and b");
        rotate.send_replace(1);
        tokio::time::timeout(wait, raised(&a))
            .await
            .expect("a rotation wakes a");

        // Without the register and the keys, nothing more can change: the task ends.
        drop((revoke, rotate));
        tokio::time::timeout(wait, task)
            .await
            .expect("the task ends with the server")
            .unwrap();
    }
}
