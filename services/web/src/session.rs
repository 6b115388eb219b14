//! Who is asking and in which language: the cookies the pages keep, the CSRF check on every
//! POST, and the exchange of a token arriving in a link for a cookie.
//!
//! - `podium_session`: the bearer token, HttpOnly, SameSite=Strict, Secure under TLS. It is
//!   verified on every request exactly as the gRPC interceptor verifies a bearer token. Its
//!   name carries the port the browser reached podiumd on, when the address names one
//!   (`podium_session_7700`): see [`CookieScope`].
//! - `podium_csrf`: a random value, HttpOnly; every form carries it in a hidden field and a POST
//!   whose field does not match the cookie is refused (double submit), as is a POST whose
//!   `Origin` is another site.
//! - `podium_lang`: the language chosen with the switcher.
//!
//! podiumd's position layer (services/server/src/positions.rs) keeps one more, `podium_at`: the
//! log position of the visitor's last write, for the next page asked of another node. It is
//! scoped by port like the session.

use std::{borrow::Cow, sync::Arc};

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{HeaderMap, HeaderValue, Uri, header, request::Parts, uri::Authority},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use podium_access::{Principal, TokenKeys};

use crate::i18n::{Lang, Text};

pub const SESSION: &str = "podium_session";
pub const CSRF: &str = "podium_csrf";
pub const LANG: &str = "podium_lang";

/// Which podiumd of a host a cookie belongs to. Browsers keep cookies per host, not per port
/// (RFC 6265, section 8.5), so without it two podiumd on one machine (the live one on `:7700`,
/// a rehearsal on `:7701`) share one session cookie: the rehearsal's pages find a token signed
/// by another key and clear it, signing the moderator out of the live console, and signing in to
/// one replaces the other's token. The cookies that hold one podiumd's own state (the session
/// and the position of the last write) therefore carry the port of the address the browser
/// reached it by, when that address names one: `podium_session_7701`. Behind a proxy on the
/// scheme's own port the names are the plain ones, and every node of a cluster behind one
/// address shares them. A `--public-url` fixes the scope to its own port, whatever `Host` a proxy
/// passes on. The language and the CSRF value are the browser's, not a podiumd's, and are shared
/// by every podiumd of a host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CookieScope {
    port: Option<u16>,
}

impl CookieScope {
    /// The scope a `--public-url` (an origin, `https://podium.example.org:8443`) fixes.
    pub fn of_public_url(url: &str) -> Self {
        let port = Uri::try_from(url)
            .ok()
            .and_then(|uri| uri.authority().and_then(Authority::port_u16));
        Self { port }
    }

    /// The scope of a request: `public`'s (see [`CookieScope::of_public_url`]) if podiumd has
    /// one, else the port of the request's URI authority (HTTP/2 names the host there), else
    /// of its `Host` header.
    pub fn of(public: Option<Self>, uri: &Uri, headers: &HeaderMap) -> Self {
        if let Some(public) = public {
            return public;
        }
        let port = match uri.authority() {
            Some(authority) => authority.port_u16(),
            None => headers
                .get(header::HOST)
                .and_then(|host| Authority::try_from(host.as_bytes()).ok())
                .and_then(|authority| authority.port_u16()),
        };
        Self { port }
    }

    /// The name of cookie `base` in this scope.
    pub fn name(self, base: &str) -> Cow<'_, str> {
        match self.port {
            Some(port) => Cow::Owned(format!("{base}_{port}")),
            None => Cow::Borrowed(base),
        }
    }
}

/// What a `--public-url` fixes for the pages: the origin their forms come from (whatever `Host`
/// a proxy passes on), the projector's join link, and the scope of the cookies' names.
#[derive(Debug, Clone)]
pub struct PublicUrl {
    pub origin: Arc<str>,
    pub scope: CookieScope,
}

impl PublicUrl {
    /// `url`: an origin, as podiumd's configuration checked it (`https://podium.example.org`).
    pub fn new(url: &str) -> Self {
        Self {
            origin: url.into(),
            scope: CookieScope::of_public_url(url),
        }
    }
}

/// What every handler knows about the request: its language, its CSRF value, and the signed-in
/// principal if the session cookie holds a valid token.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub lang: Lang,
    pub csrf: String,
    pub principal: Option<Principal>,
    /// The session cookie was present but its token did not verify (expired, tampered, signed
    /// by a dropped key).
    pub bad_session: bool,
    /// Cookies this response must set (a new CSRF value, a cleared bad session).
    pub set_cookies: Vec<String>,
    pub secure: bool,
    /// The podiumd of this host the session cookie is for.
    pub scope: CookieScope,
    /// The `--public-url`, whose pages' forms are this podiumd's.
    pub public_origin: Option<Arc<str>>,
}

/// What [`Visitor`] needs from the router's state.
#[derive(Clone)]
pub struct SessionKeys {
    pub keys: Arc<TokenKeys>,
    /// Cookies get `Secure` when podiumd serves TLS.
    pub secure: bool,
    /// The `--public-url`, if podiumd has one.
    pub public: Option<PublicUrl>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("secure", &self.secure)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl Visitor {
    pub fn text(&self) -> &'static Text {
        self.lang.text()
    }

    /// A cookie with podium's flags: HttpOnly, SameSite=Strict, path `/`, Secure under TLS.
    pub fn cookie(&self, name: &str, value: String, max_age: CookieDuration) -> String {
        let mut cookie = Cookie::new(name, value);
        cookie.set_http_only(true);
        cookie.set_same_site(SameSite::Strict);
        cookie.set_path("/");
        cookie.set_secure(self.secure);
        cookie.set_max_age(max_age);
        cookie.to_string()
    }

    /// Signs in: the token goes into the session cookie, kept as long as the token is valid.
    pub fn sign_in(&mut self, token: String) {
        self.sign_in_until(token, None);
    }

    /// Signs in with a cookie that ends when the token does (`None`: a year).
    pub fn sign_in_until(&mut self, token: String, expires: Option<std::time::SystemTime>) {
        let seconds = expires
            .and_then(|at| at.duration_since(std::time::SystemTime::now()).ok())
            .map_or(365 * 24 * 3600, |left| left.as_secs());
        let max_age = CookieDuration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX));
        let cookie = self.cookie(&self.scope.name(SESSION), token, max_age);
        self.set_cookies.push(cookie);
    }

    /// Signs out: the session cookie is cleared.
    pub fn sign_out(&mut self) {
        let cookie = self.cookie(
            &self.scope.name(SESSION),
            String::new(),
            CookieDuration::ZERO,
        );
        self.set_cookies.push(cookie);
        self.principal = None;
    }

    pub fn remember_lang(&mut self, lang: Lang) {
        self.lang = lang;
        let cookie = self.cookie(LANG, lang.tag().to_owned(), CookieDuration::days(400));
        self.set_cookies.push(cookie);
    }

    /// Adds this visitor's pending cookies to a response.
    pub fn finish(&self, response: impl IntoResponse) -> Response {
        let mut response = response.into_response();
        for cookie in &self.set_cookies {
            if let Ok(value) = HeaderValue::from_str(cookie) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
        }
        response
    }
}

impl<S> FromRequestParts<S> for Visitor
where
    SessionKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let keys = SessionKeys::from_ref(state);
        Ok(visitor(&parts.uri, &parts.headers, &keys))
    }
}

fn cookies(headers: &HeaderMap) -> impl Iterator<Item = Cookie<'_>> {
    headers
        .get_all(header::COOKIE)
        .into_iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
}

/// The token in a request's session cookie, if it has one: the last one sent, as the pages
/// read it.
pub fn session_token(
    public: Option<CookieScope>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<String> {
    let session = CookieScope::of(public, uri, headers).name(SESSION);
    let named = |name: &str| {
        cookies(headers)
            .filter(|cookie| cookie.name() == name && !cookie.value().is_empty())
            .last()
            .map(|cookie| cookie.value().to_owned())
    };
    // Or one of the plain name, as a page takes it (see `visitor`).
    named(&session).or_else(|| named(SESSION))
}

fn visitor(uri: &Uri, headers: &HeaderMap, keys: &SessionKeys) -> Visitor {
    let public = keys.public.as_ref();
    let scope = CookieScope::of(public.map(|p| p.scope), uri, headers);
    let session_name = scope.name(SESSION);
    let mut remembered = None;
    let mut csrf = None;
    let mut session = None;
    let mut unscoped = None;
    for cookie in cookies(headers) {
        match cookie.name() {
            LANG => remembered = Some(cookie.value().to_owned()),
            CSRF if !cookie.value().is_empty() => csrf = Some(cookie.value().to_owned()),
            name if name == session_name && !cookie.value().is_empty() => {
                session = Some(cookie.value().to_owned());
            }
            SESSION if !cookie.value().is_empty() => unscoped = Some(cookie.value().to_owned()),
            _ => {}
        }
    }
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    let scoped = session.as_deref().map(|token| keys.keys.verify(token));
    // A session cookie of the plain name, set before the names carried the port: an upgrade
    // must not sign every visitor out. One that verifies here is this podiumd's: it is cleared,
    // and moves to this podiumd's name unless that holds a valid token already (below). One
    // that does not verify is another podiumd's, and is left alone. (With no port in the scope
    // the plain name is the scoped one, read above, and `unscoped` stays empty.)
    let unscoped = unscoped.and_then(|token| keys.keys.verify(&token).ok().map(|p| (token, p)));
    let clear_unscoped = unscoped.is_some();
    let (principal, moved) = match (scoped, unscoped) {
        (Some(Ok(principal)), _) => (Some(Ok(principal)), None),
        (_, Some((token, principal))) => {
            let until = principal.expires_at;
            (Some(Ok(principal)), Some((token, until)))
        }
        (scoped, None) => (scoped, None),
    };
    let mut visitor = Visitor {
        lang: Lang::negotiate(remembered.as_deref(), accept),
        csrf: String::new(),
        bad_session: matches!(principal, Some(Err(_))),
        principal: principal.and_then(Result::ok),
        set_cookies: Vec::new(),
        secure: keys.secure,
        scope,
        public_origin: public.map(|p| p.origin.clone()),
    };
    visitor.csrf = match csrf {
        Some(value) => value,
        None => {
            let value =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
            let cookie = visitor.cookie(CSRF, value.clone(), CookieDuration::days(400));
            visitor.set_cookies.push(cookie);
            value
        }
    };
    if visitor.bad_session {
        visitor.sign_out();
    }
    if let Some((token, until)) = moved {
        visitor.sign_in_until(token, until);
    }
    if clear_unscoped {
        let cleared = visitor.cookie(SESSION, String::new(), CookieDuration::ZERO);
        visitor.set_cookies.push(cleared);
    }
    visitor
}

/// Why a POST was refused before it reached a service.
#[derive(Debug, PartialEq, Eq)]
pub enum Forgery {
    /// The form's `csrf` field is missing or differs from the cookie.
    Token,
    /// The request came from a page of another site.
    Origin,
}

/// Checks a POST: its `Origin` (when the browser sends one) is this host or the
/// `--public-url`, and its form's CSRF field equals the cookie's value. A visitor without a
/// CSRF cookie never passes, because the value [`Visitor`] made up for it is not in any form
/// yet.
pub fn check_post(headers: &HeaderMap, visitor: &Visitor, field: &str) -> Result<(), Forgery> {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        let public = visitor
            .public_origin
            .as_deref()
            .is_some_and(|public| public.eq_ignore_ascii_case(origin));
        if origin == "null" || !(origin_host == host || public) {
            // For the operator: a proxy that passes on a Host of its own (nginx's default)
            // makes every form look foreign until podiumd is given its --public-url.
            tracing::info!(
                origin,
                host,
                public_url = visitor.public_origin.as_deref(),
                "a form from another site: its Origin is neither this Host nor --public-url"
            );
            return Err(Forgery::Origin);
        }
    }
    let fresh = visitor
        .set_cookies
        .iter()
        .any(|c| c.starts_with(&format!("{CSRF}=")));
    if fresh || field.is_empty() || !constant_time_eq(field.as_bytes(), visitor.csrf.as_bytes()) {
        return Err(Forgery::Token);
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visitor_with(csrf: &str) -> Visitor {
        Visitor {
            lang: Lang::En,
            csrf: csrf.to_owned(),
            principal: None,
            bad_session: false,
            set_cookies: Vec::new(),
            secure: false,
            scope: CookieScope::default(),
            public_origin: None,
        }
    }

    #[test]
    fn a_post_needs_the_cookie_value_and_a_same_site_origin() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::HOST,
            HeaderValue::from_static("podium.example:8080"),
        );
        let visitor = visitor_with("abc");
        assert_eq!(check_post(&headers, &visitor, "abc"), Ok(()));
        assert_eq!(check_post(&headers, &visitor, ""), Err(Forgery::Token));
        assert_eq!(check_post(&headers, &visitor, "abd"), Err(Forgery::Token));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert_eq!(check_post(&headers, &visitor, "abc"), Err(Forgery::Origin));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://podium.example:8080"),
        );
        assert_eq!(check_post(&headers, &visitor, "abc"), Ok(()));
        // Behind a proxy that passes on a Host of its own: the public URL's pages are ours.
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7700"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://podium.example.org"),
        );
        assert_eq!(check_post(&headers, &visitor, "abc"), Err(Forgery::Origin));
        let mut behind_proxy = visitor_with("abc");
        behind_proxy.public_origin = Some("https://podium.example.org".into());
        assert_eq!(check_post(&headers, &behind_proxy, "abc"), Ok(()));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert_eq!(
            check_post(&headers, &behind_proxy, "abc"),
            Err(Forgery::Origin)
        );
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_under_tls() {
        let mut visitor = visitor_with("x");
        visitor.secure = true;
        visitor.sign_in("token".into());
        let cookie = &visitor.set_cookies[0];
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Strict"), "{cookie}");
        assert!(cookie.contains("Secure"), "{cookie}");
    }

    fn request_to(host: &'static str, cookie: &str) -> (Uri, HeaderMap) {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static(host));
        headers.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        (Uri::from_static("/m/"), headers)
    }

    #[test]
    fn a_podiumd_reached_by_a_port_keeps_its_own_session_cookie() {
        let (_, headers) = request_to("127.0.0.1:7701", "");
        let origin_form = Uri::from_static("/");
        assert_eq!(
            CookieScope::of(None, &origin_form, &headers).name(SESSION),
            "podium_session_7701"
        );
        let (_, headers) = request_to("[::1]:7700", "");
        assert_eq!(
            CookieScope::of(None, &origin_form, &headers).name(SESSION),
            "podium_session_7700"
        );
        // Behind a proxy on the scheme's port: the plain name.
        let (_, headers) = request_to("podium.example", "");
        assert_eq!(
            CookieScope::of(None, &origin_form, &headers).name(SESSION),
            SESSION
        );
        // A public URL fixes it, whatever Host a proxy passes on.
        for (url, name) in [
            ("https://podium.example.org", SESSION),
            ("https://podium.example.org:8443", "podium_session_8443"),
        ] {
            let public = Some(CookieScope::of_public_url(url));
            assert_eq!(
                CookieScope::of(public, &origin_form, &headers).name(SESSION),
                name
            );
        }
        // HTTP/2 names the host in the URI, not in a Host header.
        let h2 = Uri::from_static("https://127.0.0.1:7443/m/");
        assert_eq!(
            CookieScope::of(None, &h2, &HeaderMap::new()).name(SESSION),
            "podium_session_7443"
        );

        // The live podiumd on 7700 and a rehearsal on 7701 of the same host, each with a key of
        // its own; the browser sends both their cookies to each.
        let keys = |secret: &[u8]| SessionKeys {
            keys: Arc::new(TokenKeys::from_secret(secret, None)),
            secure: false,
            public: None,
        };
        let (live, rehearsal) = (keys(b"live"), keys(b"rehearsal"));
        let moderator = Principal {
            id: "mod-1".into(),
            name: "Sophea".into(),
            role: podium_access::Role::Moderator,
            conference_id: Some("odc-2024".into()),
            speaker_id: None,
            expires_at: None,
            token_id: None,
        };
        let day = std::time::Duration::from_secs(86_400);
        let live_token = live.keys.issue(&moderator, day).unwrap();
        let rehearsal_token = rehearsal.keys.issue(&moderator, day).unwrap();
        let both =
            format!("podium_session_7700={live_token}; podium_session_7701={rehearsal_token}");
        let (uri, headers) = request_to("127.0.0.1:7700", &both);
        assert_eq!(
            session_token(None, &uri, &headers),
            Some(live_token.clone())
        );
        let at_live = visitor(&uri, &headers, &live);
        assert_eq!(at_live.principal.map(|p| p.id), Some("mod-1".to_owned()));
        let (uri, headers) = request_to("127.0.0.1:7701", &both);
        let at_rehearsal = visitor(&uri, &headers, &rehearsal);
        assert!(at_rehearsal.principal.is_some());

        // A rehearsal that has not signed this browser in neither reads nor clears the live
        // one's cookie.
        let (uri, headers) = request_to(
            "127.0.0.1:7701",
            &format!("podium_session_7700={live_token}"),
        );
        let stranger = visitor(&uri, &headers, &rehearsal);
        assert!(stranger.principal.is_none() && !stranger.bad_session);
        assert!(
            !stranger
                .set_cookies
                .iter()
                .any(|c| c.starts_with("podium_session")),
            "{:?}",
            stranger.set_cookies
        );
        // A cookie of the plain name, from before the names carried the port, still signs its
        // own podiumd's visitor in, and moves to the scoped name; another podiumd leaves it.
        let (uri, headers) = request_to("127.0.0.1:7700", &format!("{SESSION}={live_token}"));
        let upgraded = visitor(&uri, &headers, &live);
        assert!(upgraded.principal.is_some() && !upgraded.bad_session);
        assert_eq!(
            session_token(None, &uri, &headers),
            Some(live_token.clone())
        );
        let (moved, cleared) = (&upgraded.set_cookies[1], &upgraded.set_cookies[2]);
        assert!(
            moved.starts_with(&format!("podium_session_7700={live_token};")),
            "{moved}"
        );
        assert!(
            cleared.starts_with("podium_session=;") && cleared.contains("Max-Age=0"),
            "{cleared}"
        );
        let (uri, headers) = request_to("127.0.0.1:7701", &format!("{SESSION}={live_token}"));
        let left = visitor(&uri, &headers, &rehearsal);
        assert!(left.principal.is_none() && !left.bad_session);
        assert!(
            !left
                .set_cookies
                .iter()
                .any(|c| c.starts_with("podium_session")),
            "{:?}",
            left.set_cookies
        );

        // Beside a valid scoped cookie, a plain one of this podiumd is cleared too, so that
        // signing out is not undone by it on the next request.
        let both = format!("podium_session_7700={live_token}; {SESSION}={live_token}");
        let (uri, headers) = request_to("127.0.0.1:7700", &both);
        let mut signing_out = visitor(&uri, &headers, &live);
        assert!(signing_out.principal.is_some());
        signing_out.sign_out();
        let cleared: Vec<_> = signing_out
            .set_cookies
            .iter()
            .filter(|c| c.starts_with("podium_session") && c.contains("Max-Age=0"))
            .collect();
        assert_eq!(cleared.len(), 2, "{:?}", signing_out.set_cookies);
        // A scoped cookie that does not verify beside a plain one that does: the plain one
        // moves at once.
        let (uri, headers) = request_to(
            "127.0.0.1:7700",
            &format!("podium_session_7700={live_token}x; {SESSION}={live_token}"),
        );
        let mended = visitor(&uri, &headers, &live);
        assert!(mended.principal.is_some() && !mended.bad_session);
        assert!(
            mended
                .set_cookies
                .iter()
                .any(|c| c.starts_with(&format!("podium_session_7700={live_token};"))),
            "{:?}",
            mended.set_cookies
        );

        // Signing in there sets its own.
        let mut stranger = stranger;
        stranger.sign_in(rehearsal_token);
        assert!(
            stranger
                .set_cookies
                .last()
                .unwrap()
                .starts_with("podium_session_7701="),
            "{:?}",
            stranger.set_cookies
        );
    }
}
