//! Read-your-writes across nodes. Every response carries the log position the answering node had
//! reached ([`LOG_POSITION_HEADER`]); a request that carries a position ([`MIN_POSITION_HEADER`])
//! waits until every read model of this node has applied the log below it, so a client that
//! wrote through one node and reads through another sees its write. `podium-client` sends the
//! highest position it has been given to any node other than the one that gave it. The read
//! models all move with the node's one follower of the log, so its position is theirs.
//!
//! The position answered is the log's head, not the write's own position: a write is
//! acknowledged only once stored, so its position lies below the head, and one number serves
//! reads and writes alike. The head may include events the reader's node has still to apply,
//! which it waits for too (milliseconds, unless the node is busy writing its snapshots).
//!
//! Pages have no header to send, so a page's write carries its position in a cookie instead
//! ([`PAGE_POSITION_COOKIE`]): a form's answer that redirects (the write was taken) sets it to
//! the head, and the next page the browser navigates to waits, on whichever node it reaches,
//! until that node has applied the log below it, for at most [`CATCH_UP_WAIT`], then is shown
//! anyway (a page is never refused for it), and the cookie is cleared. So an attendee who voted
//! through one node and is sent to another sees their vote. Only navigations wait and clear
//! it: not assets, live streams or `/metrics`, nor a browser's own fetches.
//!
//! Health and reflection never wait, and the wait is outside the transport guard, so requests
//! held here take none of its permits. A request refused because the node's log itself has not
//! reached the position (one from another log, say, restored from an older backup) says so in
//! [`POSITION_UNREACHED_HEADER`], and the client starts again from this node's position instead
//! of asking for it for ever.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::HeaderValue;
use podium_eventlog::EventLog;
use podium_proto::{
    LOG_POSITION_HEADER, MIN_POSITION_HEADER, POSITION_UNREACHED_HEADER, parse_position,
};
use podium_web::session::CookieScope;
use tokio::sync::watch;
use tonic::{Status, body::Body};
use tower::{Layer, Service};

/// How long a request waits for this node to reach the position it asks for.
pub const CATCH_UP_WAIT: Duration = Duration::from_secs(5);

/// The cookie that carries the position of a page's write to the page shown after it.
pub const PAGE_POSITION_COOKIE: &str = "podium_at";

/// How long the position cookie lives if no page comes to clear it.
const PAGE_POSITION_MAX_AGE: Duration = Duration::from_secs(60);

/// How far past this node's head a page's position may lie and still be waited for: a node
/// behind the cluster is behind by its unapplied backlog, never by this much, so a position
/// further on is not this log's (a cookie forged, or of another podiumd on the same host).
const PAGE_POSITION_MAX_AHEAD: u64 = 1_000_000;

/// Paths under which no request is a page navigation.
const NOT_PAGES: [&str; 3] = ["/assets/", "/live/", "/metrics"];

/// Adds the log position to responses and holds requests until their position is applied.
#[derive(Clone)]
pub struct PositionLayer {
    log: Arc<dyn EventLog>,
    /// The position below which every read model has applied the log (the follower's).
    applied: watch::Receiver<u64>,
    /// The position cookie is marked Secure (the pages are served over https).
    secure: bool,
    /// The scope of the position cookie's name a `--public-url` fixes.
    scope: Option<CookieScope>,
}

impl PositionLayer {
    /// `secure`: the pages are served over https (TLS, or an https `--public-url`), so the
    /// position cookie is marked Secure like the pages' own.
    pub fn new(log: Arc<dyn EventLog>, applied: watch::Receiver<u64>, secure: bool) -> Self {
        Self {
            log,
            applied,
            secure,
            scope: None,
        }
    }

    /// The position cookie is named in the scope a `--public-url` fixes, as the pages' session
    /// cookie is (see [`CookieScope`]).
    pub fn with_cookie_scope(mut self, scope: Option<CookieScope>) -> Self {
        self.scope = scope;
        self
    }

    fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits until every read model has applied the log below `position`.
    async fn reach(&self, position: u64) -> Result<(), Status> {
        let mut applied = self.applied.clone();
        let reached = applied.wait_for(|&at| at >= position);
        match tokio::time::timeout(CATCH_UP_WAIT, reached).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Status::unavailable("this node is shutting down")),
            Err(_) => Err(Status::unavailable(format!(
                "this node has applied the log up to position {}, not yet to {position} \
                 ({MIN_POSITION_HEADER}); try again, or another node",
                self.applied()
            ))),
        }
    }
}

impl<S> Layer<S> for PositionLayer {
    type Service = Positioned<S>;

    fn layer(&self, inner: S) -> Positioned<S> {
        Positioned {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Positioned<S> {
    inner: S,
    layer: PositionLayer,
}

/// The position a request asks for: None without one, an error for one that is not a number.
fn asked(headers: &http::HeaderMap) -> Result<Option<u64>, Status> {
    let Some(value) = headers.get(MIN_POSITION_HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(parse_position)
        .map(Some)
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "{MIN_POSITION_HEADER} must be a log position (a whole number), as returned in \
                 {LOG_POSITION_HEADER}"
            ))
        })
}

/// What a request is to read-your-writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A gRPC call (gRPC-Web ones are gRPC by the time they get here) other than health and
    /// reflection: waits for the position in its header.
    Call,
    /// Health or reflection: never waits.
    Probe,
    /// A browser's navigation to a page: waits a while for the position cookie, and clears it.
    PageRead,
    /// A form sent: its redirect carries the head in the position cookie.
    PageWrite,
    /// An asset, a live stream, `/metrics`, a browser's own fetch: nothing to do with positions.
    Other,
}

impl Kind {
    fn of<B>(request: &http::Request<B>) -> Self {
        let grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        let path = request.uri().path();
        // Browsers name a navigation; clients that do not (older ones, scripts) are taken at
        // their word that they asked for a page.
        let navigation = request
            .headers()
            .get("sec-fetch-mode")
            .is_none_or(|mode| mode == "navigate");
        match (grpc, request.method()) {
            (true, _) if path.starts_with("/grpc.") => Self::Probe,
            (true, _) => Self::Call,
            (false, &http::Method::GET | &http::Method::HEAD)
                if navigation && !NOT_PAGES.iter().any(|p| path.starts_with(p)) =>
            {
                Self::PageRead
            }
            (false, &http::Method::GET | &http::Method::HEAD) => Self::Other,
            (false, _) => Self::PageWrite,
        }
    }
}

/// The position in the request's [`PAGE_POSITION_COOKIE`] (by its name in `scope`), if it has
/// one that is a number. Of several (one set for another domain of the site, say), the lowest:
/// podiumd sets one only.
fn page_position(headers: &http::HeaderMap, scope: CookieScope) -> Option<u64> {
    let name = scope.name(PAGE_POSITION_COOKIE);
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .filter(|c| c.name() == name)
        .filter_map(|c| parse_position(c.value()))
        .min()
}

/// The `Set-Cookie` value that sets the position cookie (by its name in `scope`) to `position`,
/// or clears it; with the flags of the pages' own cookies.
fn page_position_cookie(position: Option<u64>, secure: bool, scope: CookieScope) -> HeaderValue {
    let name = scope.name(PAGE_POSITION_COOKIE);
    let (value, max_age) = match position {
        Some(position) => (position.to_string(), PAGE_POSITION_MAX_AGE.as_secs()),
        None => (String::new(), 0),
    };
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::try_from(format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; \
         SameSite=Strict{secure}"
    ))
    .expect("a cookie of a name, a number and fixed attributes is a valid header")
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> Service<http::Request<Body>> for Positioned<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let layer = self.layer.clone();
        let kind = Kind::of(&request);
        let scope = CookieScope::of(self.layer.scope, request.uri(), request.headers());
        // The clone is ready only after poll_ready; the ready one handles this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let page_asked = match kind {
                Kind::PageRead => page_position(request.headers(), scope),
                _ => None,
            };
            if let Some(position) = page_asked
                && position <= layer.log.head().saturating_add(PAGE_POSITION_MAX_AHEAD)
                && let Err(status) = layer.reach(position).await
            {
                // Shown anyway: a page is never refused for it.
                tracing::debug!(
                    position,
                    applied = layer.applied(),
                    reason = status.message(),
                    "a page shown before this node reached the position of the visitor's last write"
                );
            }
            let asked = match kind {
                Kind::Call => asked(request.headers()),
                _ => Ok(None),
            };
            let reached = match asked {
                Ok(Some(position)) if position > layer.applied() => layer
                    .reach(position)
                    .await
                    .map_err(|status| (status, position)),
                Ok(_) => Ok(()),
                Err(status) => Err((status, 0)),
            };
            let (mut response, refused_at) = match reached {
                Ok(()) => (inner.call(request).await?, None),
                Err((status, position)) => (status.into_http(), Some(position)),
            };
            // One read of the head for both: a refusal beyond it says where this log ends.
            let head = layer.log.head();
            if refused_at.is_some_and(|position| position > head) {
                response
                    .headers_mut()
                    .insert(POSITION_UNREACHED_HEADER, HeaderValue::from(head));
            }
            response
                .headers_mut()
                .insert(LOG_POSITION_HEADER, HeaderValue::from(head));
            let cookie = match kind {
                Kind::PageRead if page_asked.is_some() => {
                    Some(page_position_cookie(None, layer.secure, scope))
                }
                Kind::PageWrite if response.status().is_redirection() => {
                    Some(page_position_cookie(Some(head), layer.secure, scope))
                }
                _ => None,
            };
            if let Some(cookie) = cookie {
                response
                    .headers_mut()
                    .append(http::header::SET_COOKIE, cookie);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_that_is_not_a_number_is_refused_naming_the_header() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(asked(&headers).unwrap(), None);
        headers.insert(MIN_POSITION_HEADER, HeaderValue::from_static(" 42"));
        assert_eq!(asked(&headers).unwrap(), Some(42));
        headers.insert(MIN_POSITION_HEADER, HeaderValue::from_static("forty-two"));
        let refused = asked(&headers).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains(MIN_POSITION_HEADER));
    }

    #[test]
    fn gets_of_pages_wait_for_the_cookie_forms_set_it_and_probes_never_wait() {
        let request = |method: http::Method, path: &str, content_type: Option<&str>| {
            let mut request = http::Request::builder().method(method).uri(path);
            if let Some(content_type) = content_type {
                request = request.header(http::header::CONTENT_TYPE, content_type);
            }
            Kind::of(&request.body(()).unwrap())
        };
        let grpc = Some("application/grpc+proto");
        let post = http::Method::POST;
        let get = http::Method::GET;
        assert_eq!(
            request(post.clone(), "/podium.v1.Polls/CastBallot", grpc),
            Kind::Call
        );
        assert_eq!(
            request(post.clone(), "/grpc.health.v1.Health/Check", grpc),
            Kind::Probe
        );
        assert_eq!(request(get.clone(), "/session/s-1", None), Kind::PageRead);
        assert_eq!(request(http::Method::HEAD, "/", None), Kind::PageRead);
        for path in ["/assets/app.js", "/live/results?poll=p-1", "/metrics"] {
            assert_eq!(request(get.clone(), path, None), Kind::Other, "{path}");
        }
        let fetched = http::Request::get("/session/s-1")
            .header("sec-fetch-mode", "cors")
            .body(())
            .unwrap();
        assert_eq!(Kind::of(&fetched), Kind::Other);
        let navigated = http::Request::get("/session/s-1")
            .header("sec-fetch-mode", "navigate")
            .body(())
            .unwrap();
        assert_eq!(Kind::of(&navigated), Kind::PageRead);
        let form = Some("application/x-www-form-urlencoded");
        assert_eq!(request(post, "/poll/p-1/ballot", form), Kind::PageWrite);

        let plain = CookieScope::default();
        let mut headers = http::HeaderMap::new();
        assert_eq!(page_position(&headers, plain), None);
        headers.append(
            http::header::COOKIE,
            HeaderValue::from_static("podium_csrf=x"),
        );
        headers.append(
            http::header::COOKIE,
            HeaderValue::from_static("podium_session=t; podium_at=42"),
        );
        assert_eq!(page_position(&headers, plain), Some(42));
        // One set for the whole site by another host beside ours does not win.
        headers.append(
            http::header::COOKIE,
            HeaderValue::from_static("podium_at=99999999999"),
        );
        assert_eq!(page_position(&headers, plain), Some(42));
        headers.insert(
            http::header::COOKIE,
            HeaderValue::from_static("podium_at=soon"),
        );
        assert_eq!(page_position(&headers, plain), None);

        let set = page_position_cookie(Some(42), false, plain);
        assert_eq!(
            set.to_str().unwrap(),
            "podium_at=42; Path=/; Max-Age=60; HttpOnly; SameSite=Strict"
        );
        let cleared = page_position_cookie(None, true, plain);
        assert_eq!(
            cleared.to_str().unwrap(),
            "podium_at=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure"
        );

        // A podiumd reached on port 7701 reads and sets its own, not the one of the podiumd on
        // another port of the same host.
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::HOST,
            HeaderValue::from_static("127.0.0.1:7701"),
        );
        headers.insert(
            http::header::COOKIE,
            HeaderValue::from_static("podium_at=42; podium_at_7700=9; podium_at_7701=7"),
        );
        let rehearsal = CookieScope::of(None, &http::Uri::from_static("/"), &headers);
        assert_eq!(page_position(&headers, rehearsal), Some(7));
        let set = page_position_cookie(Some(8), false, rehearsal);
        assert!(
            set.to_str().unwrap().starts_with("podium_at_7701=8;"),
            "{set:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_waits_for_its_position_and_gives_up_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(
            podium_eventlog::SledEventLog::open(dir.path().join("log"), Default::default())
                .unwrap(),
        );
        let (tx, rx) = watch::channel(3);
        let layer = PositionLayer::new(log, rx, false);
        layer.reach(3).await.unwrap();
        let waiting = tokio::spawn({
            let layer = layer.clone();
            async move { layer.reach(5).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send(5).unwrap();
        waiting.await.unwrap().unwrap();
        let refused = layer.reach(9).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert!(refused.message().contains("up to position 5, not yet to 9"));
    }
}
