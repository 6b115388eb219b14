//! podium's web face: pages for attendees and the projector, rendered on the server from
//! templates checked at compile time, with embedded, content-hashed assets and live parts over
//! Server-Sent Events. podiumd mounts [`Web::router`] beside its gRPC services on one listener.
//!
//! The pages call the same service objects as gRPC does, with the principal of the session
//! cookie, so a page can do exactly what that role may do through the API: the same checks,
//! rate limits and text policy, in one place.

#![forbid(unsafe_code)]

pub mod assets;
mod attendee;
mod board;
mod console;
mod forms;
mod frame;
mod green_room;
pub mod i18n;
mod live;
mod privacy;
mod projector;
mod reply;
pub mod session;
mod speaker;
mod speaker_live;
mod streams;
mod views;

use std::sync::Arc;

use axum::{
    Router,
    extract::{DefaultBodyLimit, FromRef},
    http::{HeaderValue, Request, header},
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
};
use podium_access::{AccessService, TokenKeys};
use podium_agenda::AgendaService;
use podium_feedback::{PollsService, QuestionsService, RatingsService};
use podium_status::{PresenceService, StageService};
use tower_http::compression::CompressionLayer;

pub use session::SessionKeys;

/// The largest form a page accepts: an open-text answer of 1,000 Khmer characters is about
/// 9 KiB once form-encoded, so 64 KiB leaves room and refuses anything else.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Live streams one sign-in may hold at once unless podiumd says otherwise.
pub const DEFAULT_LIVE_STREAMS: u32 = 32;

/// The services the pages call, shared with the gRPC servers.
#[derive(Clone)]
pub struct Services {
    pub keys: Arc<TokenKeys>,
    pub access: Arc<AccessService>,
    pub agenda: Arc<AgendaService>,
    pub polls: Arc<PollsService>,
    pub questions: Arc<QuestionsService>,
    pub ratings: Arc<RatingsService>,
    /// The status service, for the moderator console's board and actions; absent on a node
    /// that does not run it.
    pub stage: Option<Arc<StageService>>,
    /// The presence service, for the speaker page's green-room test; absent with `stage`.
    pub presence: Option<Arc<PresenceService>>,
    /// The privacy service (podiumd's), for an attendee's own data page.
    pub privacy: Arc<dyn podium_proto::v1::privacy_server::Privacy>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

/// The pages' state: the services and the cookie settings.
#[derive(Clone, Debug)]
pub struct Web {
    services: Services,
    session: SessionKeys,
    /// Results fragments rendered once per poll, update and language.
    fragments: Arc<live::Fragments>,
    /// The live streams each sign-in holds open.
    live_streams: Arc<streams::LiveStreams>,
}

impl FromRef<Web> for SessionKeys {
    fn from_ref(web: &Web) -> SessionKeys {
        web.session.clone()
    }
}

impl Web {
    /// `secure`: podiumd serves TLS, so cookies are marked Secure.
    pub fn new(services: Services, secure: bool) -> Self {
        let session = SessionKeys {
            keys: services.keys.clone(),
            secure,
            public: None,
        };
        Self {
            services,
            session,
            fragments: Arc::default(),
            live_streams: streams::LiveStreams::new(DEFAULT_LIVE_STREAMS as usize),
        }
    }

    /// Live streams (one per open page) one sign-in may hold at once; a newer one ends the
    /// oldest.
    pub fn with_live_stream_limit(mut self, limit: usize) -> Self {
        self.live_streams = streams::LiveStreams::new(limit);
        self
    }

    /// The origin attendees reach podiumd by (for example `https://podium.example.org`, behind
    /// a proxy that terminates TLS), for the projector's join link and QR code. Without it they
    /// use the scheme podiumd serves and the request's Host. An `https` origin marks cookies
    /// Secure, as TLS served by podiumd itself does.
    pub fn with_public_url(mut self, url: Option<String>) -> Self {
        if let Some(url) = &url {
            self.session.secure |= secure_origin(url);
            self.session.public = Some(session::PublicUrl::new(url));
        }
        self
    }

    /// Every page, asset and live stream, with the security headers, and compression for all
    /// but the live streams. Requests no route matches get a page that says so, or
    /// UNIMPLEMENTED when they are gRPC calls.
    ///
    /// The live streams (Server-Sent Events) are never compressed (`tower-http` passes
    /// `text/event-stream` through), and they stay outside the compression layer: its body
    /// wrapper holds room for every encoder's state, about 5 KiB that each open stream, one per
    /// attendee's phone, would carry for nothing (`podium-loadgen fanout --web`).
    pub fn router(self) -> Router {
        let live = Router::new()
            .route("/live/results", get(live::results))
            .route("/live/board", get(board::live))
            .route("/live/speaker", get(speaker_live::live));
        Router::new()
            .route("/", get(attendee::home))
            .route("/j/{code}", get(attendee::join_form_with_code))
            .route("/join", post(forms::join))
            .route("/sign-out", post(forms::sign_out))
            .route("/me", get(privacy::page))
            .route("/me/erase", post(privacy::erase))
            .route("/lang", post(forms::switch_language))
            .route("/session/{id}", get(attendee::session_page))
            .route("/poll/{id}/ballot", post(forms::cast_ballot))
            .route("/session/{id}/questions", post(forms::ask))
            .route("/question/{id}/upvote", post(forms::upvote))
            .route("/session/{id}/rating", post(forms::rate))
            .route("/p/{conference}/{room}", get(projector::page))
            .route("/m/", get(console::page))
            .route("/m/confirm/{action}/{session}", get(console::confirm))
            .route("/m/stage/{action}/{session}", post(console::stage))
            .route("/m/questions/{id}/{action}", post(console::moderate))
            .route("/m/polls", post(console::create_poll))
            .route("/m/report", get(console::report))
            .route("/m/{file}", get(console::export))
            .route("/m/polls/{id}/{action}", post(console::poll_action))
            .route("/s/", get(speaker::page))
            .route("/s/session/{file}", get(speaker::calendar))
            .route("/s/test/{session}", post(green_room::test))
            .route("/assets/{name}", get(assets::serve))
            .fallback(reply::not_found)
            .layer(CompressionLayer::new())
            .merge(live)
            .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
            .layer(middleware::from_fn(security_headers))
            .layer(middleware::map_request(host_from_authority))
            .with_state(self)
    }
}

/// Whether `url` (a `--public-url`) is reached over https, so cookies are marked Secure.
pub fn secure_origin(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// The Content-Security-Policy of every page: nothing inline, nothing from elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";
/// The projector may be framed (a dashboard, a browser source): it shows no names and offers
/// no action.
const CSP_PROJECTOR: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                             img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                             form-action 'self'; frame-ancestors *";

/// Gives a request whose URI names a host that host as its `Host` header. A browser speaking
/// HTTP/2 (what it chooses when podiumd serves TLS itself) names the host in the `:authority`
/// pseudo-header, which hyper puts in the URI, and sends no `Host`; the pages read `Host` for
/// the origin check of every form (without it every POST was refused as from another site) and
/// for the projector's join link (which said `localhost`). Where both are sent the URI's wins,
/// as HTTP/1.1 says for an absolute-form target; user information in it is left out.
async fn host_from_authority<B>(mut request: Request<B>) -> Request<B> {
    let host = request
        .uri()
        .authority()
        .and_then(|authority| authority.as_str().rsplit('@').next())
        .and_then(|host| HeaderValue::from_str(host).ok());
    if let Some(host) = host {
        request.headers_mut().insert(header::HOST, host);
    }
    request
}

async fn security_headers(request: Request<axum::body::Body>, next: Next) -> Response {
    let projector = request.uri().path().starts_with("/p/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let csp = if projector { CSP_PROJECTOR } else { CSP };
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it browsers send `Origin: null` with a form's POST, and the
    // origin check could not tell our own forms from forged ones. Other sites get no referrer.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !projector {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        // Pages carry a CSRF value and personal state: never cached by a shared cache.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Host a page sees of a request for `uri` that carried `host`.
    async fn host_seen(uri: &str, host: Option<&str>) -> Option<String> {
        let mut request = Request::builder().uri(uri);
        if let Some(host) = host {
            request = request.header(header::HOST, host);
        }
        let seen = host_from_authority(request.body(()).unwrap()).await;
        let host = seen.headers().get(header::HOST)?;
        Some(host.to_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn an_http2_request_gets_the_host_of_its_authority() {
        // As hyper hands over an HTTP/2 request: the authority in the URI, no Host header.
        let http2 = host_seen("https://podium.example.org:8443/lang", None).await;
        assert_eq!(http2.as_deref(), Some("podium.example.org:8443"));
        // An HTTP/1.1 request's own Host header is kept.
        let http1 = host_seen("/lang", Some("127.0.0.1:7700")).await;
        assert_eq!(http1.as_deref(), Some("127.0.0.1:7700"));
        // The URI's authority wins over a Host sent beside it, without user information.
        let both = host_seen(
            "https://someone@podium.example.org/lang",
            Some("elsewhere.example"),
        )
        .await;
        assert_eq!(both.as_deref(), Some("podium.example.org"));
        assert_eq!(host_seen("/", None).await, None);
    }
}
