//! The speaker's page (`/s/`, opened from a link carrying the speaker's token): their
//! sessions with times in their own zone and the conference's, and an iCalendar file for each
//! (RFC 5545), so a speaker in New York does not have to work out when 09:00 in Phnom Penh is;
//! each session's pre-flight state (test connection, recording uploaded, local hours) and the
//! green-room test ([`crate::green_room`]).

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use podium_access::Role;
use podium_proto::v1::{self as pb, stage_server::Stage as _};
use serde::Deserialize;

use crate::{
    Web,
    attendee::{conference_and_sessions, on_behalf},
    board::Names,
    frame::{Frame, render},
    reply,
    session::Visitor,
    speaker_live::{self, LiveView},
    views::{SessionView, wall_span},
};

/// One of the speaker's sessions.
#[derive(Debug, Clone)]
pub struct SpeakerSession {
    pub id: String,
    /// How many times an organiser has changed it: its calendar file's SEQUENCE.
    pub revision: u32,
    pub title: String,
    pub lang: Option<String>,
    pub room: String,
    pub backup: bool,
    pub start_utc: String,
    pub start_local: String,
    pub end_local: String,
    pub zone: String,
    pub own_start: String,
    pub own_end: String,
    pub own_zone: String,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// The pre-flight report's view of this session, where the status service runs.
    pub preflight: Option<Preflight>,
    /// Whether it is live, what is on air and the speaker's link, where the status service runs.
    pub live: Option<LiveView>,
}

/// What the pre-flight report says of one of the speaker's sessions.
#[derive(Debug, Clone, Default)]
pub struct Preflight {
    pub ready: bool,
    pub tested: bool,
    pub within_hours: bool,
    pub recordings: u32,
}

#[derive(Template)]
#[template(path = "speaker.html")]
struct SpeakerPage {
    frame: Frame,
    sessions: Vec<SpeakerSession>,
    /// The position to follow the live stream (`/live/speaker`) from, when any session has a
    /// live part: the one its live parts were read at.
    live_from: Option<u64>,
    /// The session just tested and its round trip, after a green-room test.
    tested: Option<(String, u32)>,
}

#[derive(Debug, Deserialize)]
pub struct SpeakerQuery {
    #[serde(default)]
    token: String,
    #[serde(default)]
    tested: String,
    #[serde(default)]
    ms: u32,
}

/// The visitor's conference and speaker id, if they are a speaker.
pub(crate) fn speaker_of(visitor: &Visitor) -> Option<(String, String)> {
    let principal = visitor.principal.as_ref()?;
    if principal.role != Role::Speaker {
        return None;
    }
    Some((
        principal.conference_id.clone()?,
        principal.speaker_id.clone()?,
    ))
}

/// The speaker's sessions; `with_state` (the page, not a calendar file) adds each one's
/// pre-flight report and live state, and the position that live state reflects.
async fn sessions(
    web: &Web,
    visitor: &Visitor,
    conference_id: &str,
    speaker_id: &str,
    with_state: bool,
) -> Result<(Vec<SpeakerSession>, u64), tonic::Status> {
    // The live state is read before the sessions: a session the speaker is taken off after
    // it is read is either not listed or told so by the page's stream, which follows on from
    // this position.
    let statuses = match with_state {
        true => Some(speaker_live::now(web, visitor, conference_id).await),
        false => None,
    };
    let (conference, listed) =
        conference_and_sessions(web, visitor, conference_id, speaker_id).await?;
    let (report, position, mut live) = match statuses {
        Some((position, statuses)) => {
            // The sessions do not need the report: without it, no pre-flight shows.
            let report = preflight(web, visitor, conference_id)
                .await
                .inspect_err(|status| tracing::warn!(%status, "speaker page without pre-flight"))
                .ok()
                .flatten();
            let names = Names::of(&conference);
            let live = speaker_live::views(visitor.text(), &names, &statuses, speaker_id);
            (report, position, live)
        }
        None => (None, 0, Default::default()),
    };
    let sessions = listed
        .iter()
        .map(|session| {
            let view = SessionView::new(session, visitor.lang, &conference.default_language);
            let mine = session.speakers.iter().find(|s| s.speaker_id == speaker_id);
            let (own_start, own_end) = wall_span(
                mine.and_then(|s| s.start.as_ref()),
                mine.and_then(|s| s.end.as_ref()),
                visitor.lang,
            );
            SpeakerSession {
                revision: session.revision,
                id: view.id,
                title: view.title,
                lang: view.lang,
                room: view.room,
                backup: mine.is_some_and(|s| s.backup),
                start_utc: view.start_utc,
                start_local: view.start_local,
                end_local: view.end_local,
                zone: view.zone,
                own_start,
                own_end,
                own_zone: mine.map(|s| s.time_zone.clone()).unwrap_or_default(),
                start: view.start,
                end: view.end,
                // Ended sessions are not in the report, and need no test.
                preflight: report.as_ref().and_then(|sessions| {
                    sessions
                        .iter()
                        .find(|r| r.session_id == session.id)
                        .map(|r| Preflight::of(r, speaker_id))
                }),
                live: live.remove(&session.id),
            }
        })
        .collect();
    Ok((sessions, position))
}

impl Preflight {
    fn of(report: &pb::SessionReadiness, speaker_id: &str) -> Self {
        let me = report.speakers.iter().find(|s| s.speaker_id == speaker_id);
        Preflight {
            ready: report.readiness == pb::Readiness::Ready as i32,
            tested: me.is_some_and(|s| s.tested),
            within_hours: me.is_some_and(|s| s.within_hours),
            recordings: report.recordings,
        }
    }
}

/// The pre-flight report of the visitor's sessions that have not ended (all of them for staff,
/// a speaker's own for a speaker); none where this node does not run the status service.
pub(crate) async fn preflight(
    web: &Web,
    visitor: &Visitor,
    conference_id: &str,
) -> Result<Option<Vec<pb::SessionReadiness>>, tonic::Status> {
    let Some(stage) = &web.services.stage else {
        return Ok(None);
    };
    let request = pb::PreflightRequest {
        conference_id: conference_id.to_owned(),
        within_hours: 0,
        all: true,
    };
    let report = stage.preflight(on_behalf(visitor, request)).await?;
    Ok(Some(report.into_inner().sessions))
}

/// `GET /s/`.
pub async fn page(
    State(web): State<Web>,
    mut visitor: Visitor,
    Query(query): Query<SpeakerQuery>,
) -> Response {
    if !query.token.is_empty() {
        return crate::projector::exchange_token(
            &web,
            &mut visitor,
            &query.token,
            "/s/",
            &[Role::Speaker],
        );
    }
    let Some((conference_id, speaker_id)) = speaker_of(&visitor) else {
        return reply::not_for(&visitor);
    };
    match sessions(&web, &visitor, &conference_id, &speaker_id, true).await {
        Ok((sessions, position)) => {
            let tested = sessions
                .iter()
                .find(|s| s.id == query.tested)
                .map(|s| (s.id.clone(), query.ms));
            let page = SpeakerPage {
                frame: Frame::new(&visitor, "/s/"),
                live_from: sessions
                    .iter()
                    .any(|s| s.live.is_some())
                    .then_some(position),
                sessions,
                tested,
            };
            render(&visitor, StatusCode::OK, &page)
        }
        Err(status) => reply::refused(&visitor, &status),
    }
}

/// `GET /s/session/{id}.ics`: one session as an iCalendar event. Times are in UTC (`Z`), which
/// every calendar converts to its own zone exactly; the description also gives both wall
/// clocks in words.
pub async fn calendar(
    State(web): State<Web>,
    visitor: Visitor,
    Path(file): Path<String>,
) -> Response {
    let Some((conference_id, speaker_id)) = speaker_of(&visitor) else {
        return reply::sign_in_first(&visitor);
    };
    let Some(session_id) = file.strip_suffix(".ics") else {
        return reply::error(
            &visitor,
            StatusCode::NOT_FOUND,
            visitor.text().error_not_found,
            None,
        );
    };
    let sessions = match sessions(&web, &visitor, &conference_id, &speaker_id, false).await {
        Ok((sessions, _)) => sessions,
        Err(status) => return reply::refused(&visitor, &status),
    };
    let Some(session) = sessions.iter().find(|s| s.id == session_id) else {
        return reply::error(
            &visitor,
            StatusCode::NOT_FOUND,
            visitor.text().error_not_found,
            None,
        );
    };
    let body = ics(session, &conference_id, Utc::now());
    (
        [
            (
                header::CONTENT_TYPE,
                "text/calendar; charset=utf-8".to_owned(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{session_id}.ics\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// Escapes a TEXT value (RFC 5545, 3.3.11).
fn escape(text: &str) -> String {
    text.replace('\r', "")
        .replace('\\', "\\\\")
        .replace(';', "\\;")
        .replace(',', "\\,")
        .replace('\n', "\\n")
}

/// Folds a content line at 75 octets (RFC 5545, 3.1), never inside a UTF-8 character.
fn fold(line: &str) -> String {
    let mut out = String::new();
    let mut width = 0;
    for c in line.chars() {
        if width + c.len_utf8() > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += c.len_utf8();
    }
    out
}

fn ics(session: &SpeakerSession, conference_id: &str, now: DateTime<Utc>) -> String {
    let stamp = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    let lines = [
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        "PRODID:-//podium//speaker page//EN".to_owned(),
        "METHOD:PUBLISH".to_owned(),
        "BEGIN:VEVENT".to_owned(),
        format!("UID:{}.{conference_id}@podium", session.id),
        format!("DTSTAMP:{}", stamp(now)),
        // The session's revision, which every change raises: a calendar that has the event
        // takes a copy with a higher SEQUENCE as the newer one (RFC 5546, 2.1.5), so a session
        // moved since the speaker first added it is moved there too.
        format!("SEQUENCE:{}", session.revision),
        format!("DTSTART:{}", session.start.map(stamp).unwrap_or_default()),
        format!("DTEND:{}", session.end.map(stamp).unwrap_or_default()),
        format!("SUMMARY:{}", escape(&session.title)),
        format!("LOCATION:{}", escape(&session.room)),
        format!(
            "DESCRIPTION:{}",
            escape(&format!(
                "{} – {} ({}); {} – {} ({})",
                session.own_start,
                session.own_end,
                session.own_zone,
                session.start_local,
                session.end_local,
                session.zone
            ))
        ),
        "END:VEVENT".to_owned(),
        "END:VCALENDAR".to_owned(),
    ];
    lines.iter().map(|l| fold(l) + "\r\n").collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_in_utc_escaped_and_folded() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let session = SpeakerSession {
            id: "ses-1".into(),
            revision: 2,
            title: "Open data, for whom; and why".into(),
            lang: None,
            room: "Main hall".into(),
            backup: false,
            start_utc: String::new(),
            start_local: "Thu 14 Nov 09:00".into(),
            end_local: "09:45".into(),
            zone: "Asia/Phnom_Penh".into(),
            own_start: "Wed 13 Nov 21:00".into(),
            own_end: "21:45".into(),
            own_zone: "America/New_York".into(),
            start: Some(at("2024-11-14T09:00:00+07:00")),
            end: Some(at("2024-11-14T09:45:00+07:00")),
            preflight: None,
            live: None,
        };
        let ics = ics(&session, "odc2024", at("2024-11-01T00:00:00Z"));
        assert!(ics.contains("DTSTART:20241114T020000Z\r\n"), "{ics}");
        assert!(ics.contains("DTEND:20241114T024500Z\r\n"), "{ics}");
        assert!(ics.contains("SEQUENCE:2\r\n"), "{ics}");
        assert!(
            ics.contains("SUMMARY:Open data\\, for whom\\; and why\r\n"),
            "{ics}"
        );
        assert!(ics.lines().all(|l| l.len() <= 75), "{ics}");
        assert!(ics.ends_with("END:VCALENDAR\r\n"));
    }
}
