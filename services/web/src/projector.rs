//! The projector page (`/p/{conference}/{room}`), for the big screen and for OBS as a browser
//! source: the join code with a QR code made on the server, the session on now, the pinned
//! question and the open polls' results, large and high-contrast, never an attendee's name.
//! `?bg=transparent` leaves the background clear for OBS to lay over video.

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, Uri, header},
    response::Response,
};
use chrono::Utc;
use podium_access::Role;
use podium_proto::v1::{self as pb, agenda_server::Agenda as _, questions_server::Questions as _};
use qrcode::{QrCode, render::svg};
use serde::Deserialize;

use crate::{
    Web,
    attendee::{on_behalf, open_polls},
    frame::{Frame, render},
    reply,
    session::Visitor,
    views::{PollView, SessionView},
};

#[derive(Debug, Deserialize)]
pub struct Options {
    #[serde(default)]
    bg: String,
    /// A token in the link: exchanged for the session cookie, then dropped from the URL.
    #[serde(default)]
    token: String,
}

#[derive(Template)]
#[template(path = "projector.html")]
struct ProjectorPage {
    frame: Frame,
    room: String,
    transparent: bool,
    qr: String,
    join_url: String,
    join_base: String,
    join_code: String,
    now: Option<SessionView>,
    pinned: Option<String>,
    live_url: String,
    polls: Vec<PollView>,
}

#[derive(Template)]
#[template(path = "exchange.html")]
struct Exchange {
    lang: &'static str,
    to: String,
}

/// A link carrying `?token=`: the token becomes the session cookie and the browser goes on
/// to `to`, a URL without it. The page between is same-site, so the Strict cookie is sent on
/// the next request even when the link was opened from another site (a mail, a chat).
///
/// Only a token of one of `roles` is taken: a link to the console signs in a moderator, never
/// an attendee in someone else's browser, and never the admin, whose secret must not travel
/// in links.
pub fn exchange_token(
    web: &Web,
    visitor: &mut Visitor,
    token: &str,
    to: &str,
    roles: &[Role],
) -> Response {
    match web.services.keys.verify(token.trim()) {
        Ok(principal) if roles.contains(&principal.role) => {
            visitor.sign_in_until(token.trim().to_owned(), principal.expires_at);
            let page = Exchange {
                lang: visitor.lang.tag(),
                to: crate::frame::local_path(to),
            };
            render(visitor, StatusCode::OK, &page)
        }
        Ok(_) => reply::error(
            visitor,
            StatusCode::FORBIDDEN,
            visitor.text().error_forbidden,
            None,
        ),
        Err(_) => reply::sign_in_first(visitor),
    }
}

/// Who may open the projector from a link: the conference's staff, not the admin.
pub const PROJECTOR_ROLES: &[Role] = &[Role::Organiser, Role::Moderator, Role::Integration];

/// The SVG of a QR code for `text`, without the XML declaration, to sit inside the page.
pub fn qr_svg(text: &str) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    let svg = code
        .render::<svg::Color<'_>>()
        .min_dimensions(240, 240)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    Some(match svg.find("<svg") {
        Some(start) => svg[start..].to_owned(),
        None => svg,
    })
}

/// `GET /p/{conference}/{room}`.
pub async fn page(
    State(web): State<Web>,
    mut visitor: Visitor,
    Path((conference_id, room_id)): Path<(String, String)>,
    Query(options): Query<Options>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let transparent = options.bg == "transparent";
    if !options.token.is_empty() {
        let to = if transparent {
            format!("{}?bg=transparent", uri.path())
        } else {
            uri.path().to_owned()
        };
        return exchange_token(&web, &mut visitor, &options.token, &to, PROJECTOR_ROLES);
    }
    if visitor.principal.is_none() {
        return reply::sign_in_first(&visitor);
    }
    let result = async {
        let conference = crate::attendee::conference(&web, &visitor, &conference_id).await?;
        let room = conference
            .rooms
            .iter()
            .find(|r| r.id == room_id || r.name == room_id)
            .cloned()
            .ok_or_else(|| tonic::Status::not_found(format!("room {room_id}")))?;
        let sessions = web
            .services
            .agenda
            .list_sessions(on_behalf(
                &visitor,
                pb::ListSessionsRequest {
                    conference_id: conference_id.clone(),
                    room_id: room.id.clone(),
                    ..Default::default()
                },
            ))
            .await?
            .into_inner()
            .sessions;
        let now = Utc::now();
        let on_now = sessions
            .iter()
            .map(|s| SessionView::new(s, visitor.lang, &conference.default_language))
            .find(|s| s.is_on(now));
        // The room's session's polls, and the conference-wide ones.
        let mut listed = open_polls(&web, &visitor, &conference_id, "").await?;
        listed.retain(|p| p.session_id.is_empty() || sessions.iter().any(|s| s.id == p.session_id));
        let pinned = match &on_now {
            Some(session) => web
                .services
                .questions
                .list_questions(on_behalf(
                    &visitor,
                    pb::ListQuestionsRequest {
                        conference_id: conference_id.clone(),
                        session_id: session.id.clone(),
                    },
                ))
                .await?
                .into_inner()
                .questions
                .into_iter()
                .find(|q| q.pinned)
                .map(|q| q.text),
            None => None,
        };
        Ok::<_, tonic::Status>((conference, room, on_now, listed, pinned))
    }
    .await;
    let (conference, room, now, polls, pinned) = match result {
        Ok(parts) => parts,
        Err(status) => return reply::refused(&visitor, &status),
    };
    let join_base = match &web.session.public {
        Some(public) => public.origin.to_string(),
        None => {
            let scheme = if visitor.secure { "https" } else { "http" };
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("{scheme}://{host}")
        }
    };
    let join_url = format!("{join_base}/j/{}", conference.join_code);
    // The pinned question follows the session on now; the next session needs a reload,
    // which the projector's operator does when the room changes over.
    let follow: Vec<(&str, &str)> = now
        .as_ref()
        .map(|s| ("pinned", s.id.as_str()))
        .into_iter()
        .collect();
    let live_url = crate::views::live_url(&polls, &follow);
    let page = ProjectorPage {
        frame: Frame::new(&visitor, uri.path()),
        room: room.name,
        transparent,
        qr: qr_svg(&join_url).unwrap_or_default(),
        join_url,
        join_base,
        join_code: conference.join_code,
        now,
        live_url,
        pinned,
        polls,
    };
    render(&visitor, StatusCode::OK, &page)
}
