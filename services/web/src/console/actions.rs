//! The console's stage actions: the confirmation page of a start, end, switch, pin or unpin, and
//! the form it sends, which carries the page's request id so that sending it twice acts once.
//! When the answer does not come (the node that runs the status engine did not answer in time,
//! or none could be reached), the page comes back with the same form to send it again.

use askama::Template;
use axum::{
    body::Bytes,
    extract::{Path, Query, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use podium_proto::v1::{self as pb, stage_server::Stage as _};
use serde::Deserialize;
use tonic::Code;

use super::{names, staff_conference, staff_post};
use crate::{
    Web,
    attendee::on_behalf,
    board,
    frame::{Frame, render},
    i18n::Text,
    reply,
    session::Visitor,
};

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    frame: Frame,
    question: &'static str,
    subject: String,
    action: String,
    fields: Vec<(String, String)>,
    /// Why the page is shown again, after a form that got no answer.
    notice: Option<&'static str>,
    /// The button's label.
    button: &'static str,
}

/// The question a confirmation page asks before `action`; `None` for no such action.
fn question(t: &Text, action: &str) -> Option<&'static str> {
    Some(match action {
        "start" => t.confirm_start,
        "end" => t.confirm_end,
        "switch" => t.confirm_switch,
        "pin" => t.confirm_pin,
        "unpin" => t.confirm_unpin,
        _ => return None,
    })
}

#[derive(Debug, Deserialize, Default)]
pub struct SwitchQuery {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    speaker: String,
}

/// `GET /m/confirm/{action}/{session}`: what will happen, and the one button that does it.
pub async fn confirm(
    State(web): State<Web>,
    visitor: Visitor,
    Path((action, session_id)): Path<(String, String)>,
    Query(query): Query<SwitchQuery>,
) -> Response {
    let Some(conference_id) = staff_conference(&visitor) else {
        return reply::error(
            &visitor,
            StatusCode::FORBIDDEN,
            visitor.text().error_forbidden,
            None,
        );
    };
    let t = visitor.text();
    let Some(question) = question(t, &action) else {
        return reply::error(&visitor, StatusCode::NOT_FOUND, t.error_not_found, None);
    };
    let names = names(&web, &visitor, &conference_id)
        .await
        .unwrap_or_default();
    let statuses = board::snapshot(&web, &visitor, &conference_id)
        .await
        .unwrap_or_default();
    // The form's action is built from the path: only a session the board knows, and a source
    // kind and speaker from the lists, may go into it.
    let Some(title) = statuses.get(&session_id).map(|s| s.title.clone()) else {
        return reply::error(&visitor, StatusCode::NOT_FOUND, t.error_not_found, None);
    };
    let known_kind = ["", "speaker", "backup", "recording", "slate"].contains(&query.kind.as_str());
    if !known_kind || !(query.speaker.is_empty() || names.speakers.contains_key(&query.speaker)) {
        return reply::error(&visitor, StatusCode::NOT_FOUND, t.error_not_found, None);
    }
    let subject = match action.as_str() {
        "switch" => {
            let choice = match query.kind.as_str() {
                "recording" => t.source_recording.to_owned(),
                "slate" => t.source_slate.to_owned(),
                "backup" => format!(
                    "{}: {}",
                    t.source_backup,
                    names
                        .speakers
                        .get(&query.speaker)
                        .cloned()
                        .unwrap_or_default()
                ),
                _ => format!(
                    "{}: {}",
                    t.source_speaker,
                    names
                        .speakers
                        .get(&query.speaker)
                        .cloned()
                        .unwrap_or_default()
                ),
            };
            format!("{choice} ({title})")
        }
        _ => title,
    };
    let page = ConfirmPage {
        frame: Frame::new(&visitor, "/m/"),
        question,
        subject,
        action: format!("/m/stage/{action}/{session_id}"),
        fields: vec![
            ("kind".to_owned(), query.kind),
            ("speaker".to_owned(), query.speaker),
            ("request_id".to_owned(), uuid::Uuid::now_v7().to_string()),
        ],
        notice: None,
        button: t.confirm,
    };
    render(&visitor, StatusCode::OK, &page)
}

/// `POST /m/stage/{action}/{session}`: start, end, switch, pin or unpin.
pub async fn stage(
    State(web): State<Web>,
    visitor: Visitor,
    Path((action, session_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (fields, conference_id) = match staff_post(&visitor, &headers, body) {
        Ok(posted) => posted,
        Err(refused) => return *refused,
    };
    let Some(stage) = &web.services.stage else {
        return reply::error(
            &visitor,
            StatusCode::SERVICE_UNAVAILABLE,
            visitor.text().error_unavailable,
            None,
        );
    };
    let (conference, session) = (conference_id.clone(), session_id.clone());
    // The confirmation page's request id: the same form sent twice (a double tap, a resend
    // after a timeout) is carried out once.
    let request_id = crate::forms::request_id(&fields);
    let again = vec![
        ("kind".to_owned(), fields.get("kind").to_owned()),
        ("speaker".to_owned(), fields.get("speaker").to_owned()),
        ("request_id".to_owned(), request_id.clone()),
    ];
    let done = match action.as_str() {
        "start" => stage
            .start_session(on_behalf(
                &visitor,
                pb::StartSessionRequest {
                    conference_id,
                    session_id,
                    request_id,
                },
            ))
            .await
            .map(drop),
        "end" => stage
            .end_session(on_behalf(
                &visitor,
                pb::EndSessionRequest {
                    conference_id,
                    session_id,
                    request_id,
                },
            ))
            .await
            .map(drop),
        "pin" | "unpin" => stage
            .pin(on_behalf(
                &visitor,
                pb::PinRequest {
                    conference_id,
                    session_id,
                    pinned: action == "pin",
                    request_id,
                },
            ))
            .await
            .map(drop),
        "switch" => {
            let kind = match fields.get("kind") {
                "recording" => pb::SourceKind::Recording,
                "slate" => pb::SourceKind::Slate,
                "backup" => pb::SourceKind::BackupSpeaker,
                _ => pb::SourceKind::Speaker,
            };
            let request = pb::SwitchSourceRequest {
                conference_id,
                session_id,
                kind: kind as i32,
                speaker_id: fields.get("speaker").to_owned(),
                recording_id: String::new(),
                request_id,
            };
            stage
                .switch_source(on_behalf(&visitor, request))
                .await
                .map(drop)
        }
        _ => {
            return reply::error(
                &visitor,
                StatusCode::NOT_FOUND,
                visitor.text().error_not_found,
                None,
            );
        }
    };
    tracing::info!(%conference, %session, %action, ok = done.is_ok(), "stage action from the console");
    match done {
        Ok(()) => reply::see_other(&visitor, "/m/?done=ok"),
        Err(status) if matches!(status.code(), Code::DeadlineExceeded | Code::Unavailable) => {
            let page = SendAgain {
                action,
                session_id: session,
                fields: again,
                status,
            };
            page.render(&web, &visitor).await
        }
        Err(status) => reply::refused(&visitor, &status),
    }
}

/// A stage action that got no answer: its confirmation page again, saying what happened, with
/// the same form (the same request id), so that one tap sends it again and it is carried out
/// once however many times it arrives.
struct SendAgain {
    action: String,
    session_id: String,
    fields: Vec<(String, String)>,
    status: tonic::Status,
}

impl SendAgain {
    async fn render(self, web: &Web, visitor: &Visitor) -> Response {
        let t = visitor.text();
        let Some(question) = question(t, &self.action) else {
            return reply::refused(visitor, &self.status);
        };
        let (code, notice) = match self.status.code() {
            // The node that runs the status engine heard it and did not answer in time.
            Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, t.send_again_unanswered),
            _ => (StatusCode::SERVICE_UNAVAILABLE, t.send_again_unavailable),
        };
        // The session's title when the board can be read now; its id when not.
        let conference_id = staff_conference(visitor).unwrap_or_default();
        let subject = board::snapshot(web, visitor, &conference_id)
            .await
            .ok()
            .and_then(|statuses| statuses.get(&self.session_id).map(|s| s.title.clone()))
            .unwrap_or_else(|| self.session_id.clone());
        let page = ConfirmPage {
            frame: Frame::new(visitor, "/m/"),
            question,
            subject,
            action: format!("/m/stage/{}/{}", self.action, self.session_id),
            fields: self.fields,
            notice: Some(notice),
            button: t.send_again,
        };
        render(visitor, code, &page)
    }
}
