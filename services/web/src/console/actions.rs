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
    let form = Form {
        action,
        session_id,
        kind: query.kind,
        speaker: query.speaker,
        request_id: uuid::Uuid::now_v7().to_string(),
    };
    match form.page(&web, &visitor, None).await {
        Ok(page) => render(&visitor, StatusCode::OK, &page),
        Err(refused) => *refused,
    }
}

/// What a confirmation page's form sends.
struct Form {
    action: String,
    session_id: String,
    kind: String,
    speaker: String,
    request_id: String,
}

impl Form {
    /// The confirmation page of this form, with `notice` when it is shown again after no
    /// answer came. The form's action is built from the path: only a session the board knows,
    /// and a source kind and speaker from the lists, may go into it.
    async fn page(
        self,
        web: &Web,
        visitor: &Visitor,
        notice: Option<&'static str>,
    ) -> Result<ConfirmPage, Box<Response>> {
        let t = visitor.text();
        let refuse = |status, message| Box::new(reply::error(visitor, status, message, None));
        let Some(conference_id) = staff_conference(visitor) else {
            return Err(refuse(StatusCode::FORBIDDEN, t.error_forbidden));
        };
        let Some(question) = question(t, &self.action) else {
            return Err(refuse(StatusCode::NOT_FOUND, t.error_not_found));
        };
        let names = names(web, visitor, &conference_id)
            .await
            .unwrap_or_default();
        let (_, statuses) = board::snapshot(web, visitor, &conference_id)
            .await
            .unwrap_or_default();
        let Some(title) = statuses.get(&self.session_id).map(|s| s.title.clone()) else {
            return Err(refuse(StatusCode::NOT_FOUND, t.error_not_found));
        };
        let known_kind =
            ["", "speaker", "backup", "recording", "slate"].contains(&self.kind.as_str());
        let known_speaker = self.speaker.is_empty() || names.speakers.contains_key(&self.speaker);
        if !known_kind || !known_speaker {
            return Err(refuse(StatusCode::NOT_FOUND, t.error_not_found));
        }
        let speaker = || {
            names
                .speakers
                .get(&self.speaker)
                .cloned()
                .unwrap_or_default()
        };
        let subject = match self.action.as_str() {
            "switch" => {
                let choice = match self.kind.as_str() {
                    "recording" => t.source_recording.to_owned(),
                    "slate" => t.source_slate.to_owned(),
                    "backup" => format!("{}: {}", t.source_backup, speaker()),
                    _ => format!("{}: {}", t.source_speaker, speaker()),
                };
                format!("{choice} ({title})")
            }
            _ => title,
        };
        Ok(ConfirmPage {
            frame: Frame::new(visitor, "/m/"),
            question,
            subject,
            action: format!("/m/stage/{}/{}", self.action, self.session_id),
            fields: vec![
                ("kind".to_owned(), self.kind),
                ("speaker".to_owned(), self.speaker),
                ("request_id".to_owned(), self.request_id),
            ],
            button: notice.map_or(t.confirm, |_| t.send_again),
            notice,
        })
    }
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
    let again = Form {
        action: action.clone(),
        session_id: session_id.clone(),
        kind: fields.get("kind").to_owned(),
        speaker: fields.get("speaker").to_owned(),
        request_id: request_id.clone(),
    };
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
            send_again(&web, &visitor, again, &status).await
        }
        Err(status) => reply::refused(&visitor, &status),
    }
}

/// A stage action that got no answer: its confirmation page again, saying what happened, with
/// the same form (the same request id), so that one tap sends it again and it is carried out
/// once however many times it arrives. The refusal's own page when the board cannot say what
/// the form was for.
async fn send_again(web: &Web, visitor: &Visitor, form: Form, status: &tonic::Status) -> Response {
    let t = visitor.text();
    let (code, notice) = match status.code() {
        // The node that runs the status engine heard it and did not answer in time.
        Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, t.send_again_unanswered),
        _ => (StatusCode::SERVICE_UNAVAILABLE, t.send_again_unavailable),
    };
    match form.page(web, visitor, Some(notice)).await {
        Ok(page) => render(visitor, code, &page),
        Err(_) => reply::refused(visitor, status),
    }
}
