//! The moderator console (`/m/`): the rooms board, live; starting, ending and switching
//! sessions and pinning what is on air, each after a confirmation page; the questions of the
//! live sessions to publish, answer, dismiss with a reason or pin; and the conference's polls
//! to create (every kind, English and Khmer text), open, close and clean of unwanted words.
//! Moderators, organisers and admins of the conference; the services check every action again.

mod actions;
mod polls;
mod report;

pub use actions::{confirm, stage};
pub use polls::{create_poll, poll_action};
pub use report::{export, page as report};

use askama::Template;
use axum::{
    body::Bytes,
    extract::{Path, Query, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use podium_access::{MODERATORS, Role};
use podium_proto::v1::{self as pb, polls_server::Polls as _, questions_server::Questions as _};
use serde::Deserialize;

use crate::{
    Web,
    attendee::{conference, first_results, on_behalf},
    board::{self, Names, Row},
    forms::{Fields, accept},
    frame::{Frame, render},
    reply,
    session::Visitor,
    views::{QuestionView, ResultsView, localized},
};

/// The conference of a visitor who may run it.
pub fn staff_conference(visitor: &Visitor) -> Option<String> {
    let principal = visitor.principal.as_ref()?;
    MODERATORS
        .contains(&principal.role)
        .then(|| principal.conference_id.clone())
        .flatten()
}

/// The conference of a visitor who may run it, or the page that tells them why not: sign in
/// first, or their role may not.
pub(crate) fn staff_or_refuse(visitor: &Visitor) -> Result<String, Box<Response>> {
    staff_conference(visitor).ok_or_else(|| Box::new(reply::not_for(visitor)))
}

/// A console form: checked by [`accept`], from a visitor who may run the conference.
pub(crate) fn staff_post(
    visitor: &Visitor,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Fields, String), Box<Response>> {
    let fields = accept(visitor, headers, body)?;
    let conference_id = staff_conference(visitor).ok_or_else(|| {
        Box::new(reply::error(
            visitor,
            StatusCode::FORBIDDEN,
            visitor.text().error_forbidden,
            None,
        ))
    })?;
    Ok((fields, conference_id))
}

/// Names of the conference's rooms and speakers.
pub async fn names(
    web: &Web,
    visitor: &Visitor,
    conference_id: &str,
) -> Result<Names, tonic::Status> {
    Ok(Names::of(&conference(web, visitor, conference_id).await?))
}

/// One poll as the console lists it.
#[derive(Debug, Clone)]
pub struct ConsolePoll {
    pub id: String,
    pub label: String,
    pub lang: Option<String>,
    pub state: &'static str,
    pub draft: bool,
    pub open: bool,
    pub words: bool,
    pub results: Option<ResultsView>,
}

/// The questions of one session, for moderation.
#[derive(Debug, Clone)]
pub struct Queue {
    pub title: String,
    pub questions: Vec<QuestionView>,
}

#[derive(Template)]
#[template(path = "console.html")]
struct ConsolePage<'a> {
    frame: &'a Frame,
    rows: Vec<Row>,
    flash: Option<&'static str>,
    queues: Vec<Queue>,
    polls: Vec<ConsolePoll>,
    sessions: Vec<(String, String)>,
    request_id: String,
}

#[derive(Debug, Deserialize)]
pub struct ConsoleQuery {
    #[serde(default)]
    token: String,
    #[serde(default)]
    done: String,
}

/// `GET /m/`.
pub async fn page(
    State(web): State<Web>,
    mut visitor: Visitor,
    Query(query): Query<ConsoleQuery>,
) -> Response {
    if !query.token.is_empty() {
        return crate::projector::exchange_token(
            &web,
            &mut visitor,
            &query.token,
            "/m/",
            &[Role::Organiser, Role::Moderator],
        );
    }
    let conference_id = match staff_or_refuse(&visitor) {
        Ok(id) => id,
        Err(refused) => return *refused,
    };
    let t = visitor.text();
    let result = async {
        let names = names(&web, &visitor, &conference_id).await?;
        let (_, statuses) = board::snapshot(&web, &visitor, &conference_id)
            .await
            .unwrap_or_default();
        let mut queues = Vec::new();
        for status in statuses
            .values()
            .filter(|s| s.state == pb::SessionState::Live as i32)
        {
            let listed = web
                .services
                .questions
                .list_questions(on_behalf(
                    &visitor,
                    pb::ListQuestionsRequest {
                        conference_id: conference_id.clone(),
                        session_id: status.session_id.clone(),
                    },
                ))
                .await?
                .into_inner();
            queues.push(Queue {
                title: status.title.clone(),
                questions: listed
                    .questions
                    .iter()
                    .map(|q| QuestionView::new(q, visitor.lang))
                    .collect(),
            });
        }
        let listed = web
            .services
            .polls
            .list_polls(on_behalf(
                &visitor,
                pb::ListPollsRequest {
                    conference_id: conference_id.clone(),
                    session_id: String::new(),
                    language: visitor.lang.tag().to_owned(),
                },
            ))
            .await?
            .into_inner()
            .polls;
        let mut polls = Vec::new();
        for poll in &listed {
            let state = pb::PollState::try_from(poll.state).unwrap_or_default();
            let results = first_results(&web, &visitor, &conference_id, &poll.id).await;
            let (_, lang) = localized(poll.question.as_ref(), visitor.lang, "en");
            polls.push(ConsolePoll {
                id: poll.id.clone(),
                label: poll.label.clone(),
                lang: lang.filter(|l| l != visitor.lang.tag()),
                state: match state {
                    pb::PollState::Open => t.poll_open,
                    pb::PollState::Closed => t.poll_closed_state,
                    pb::PollState::Draft | pb::PollState::Unspecified => t.poll_draft,
                },
                draft: state == pb::PollState::Draft,
                open: state == pb::PollState::Open,
                words: poll.kind == pb::PollKind::WordCloud as i32,
                results: results.as_ref().map(|r| ResultsView::new(r, poll)),
            });
        }
        let mut sessions: Vec<(String, String)> = statuses
            .values()
            .map(|s| (s.session_id.clone(), s.title.clone()))
            .collect();
        sessions.sort_by(|a, b| a.1.cmp(&b.1));
        Ok::<_, tonic::Status>((names, statuses, queues, polls, sessions))
    }
    .await;
    let (names, statuses, queues, polls, sessions) = match result {
        Ok(parts) => parts,
        Err(status) => return reply::refused(&visitor, &status),
    };
    let frame = Frame::new(&visitor, "/m/");
    let page = ConsolePage {
        rows: board::rows(t, &names, &statuses),
        frame: &frame,
        flash: (query.done == "ok").then_some(t.done),
        queues,
        polls,
        sessions,
        request_id: uuid::Uuid::now_v7().to_string(),
    };
    render(&visitor, StatusCode::OK, &page)
}

/// `POST /m/questions/{id}/{action}`: publish, answer, dismiss, pin or unpin a question.
pub async fn moderate(
    State(web): State<Web>,
    visitor: Visitor,
    Path((question_id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (fields, conference_id) = match staff_post(&visitor, &headers, body) {
        Ok(posted) => posted,
        Err(refused) => return *refused,
    };
    let action = match action.as_str() {
        "publish" => pb::ModerationAction::Publish,
        "answer" => pb::ModerationAction::Answer,
        "dismiss" => pb::ModerationAction::Dismiss,
        "pin" => pb::ModerationAction::Pin,
        "unpin" => pb::ModerationAction::Unpin,
        _ => {
            return reply::error(
                &visitor,
                StatusCode::NOT_FOUND,
                visitor.text().error_not_found,
                None,
            );
        }
    };
    let request = pb::ModerateQuestionRequest {
        request_id: crate::forms::request_id(&fields),
        conference_id,
        question_id,
        action: action as i32,
        reason: fields.get("reason").to_owned(),
    };
    match web
        .services
        .questions
        .moderate_question(on_behalf(&visitor, request))
        .await
    {
        Ok(_) => reply::see_other(&visitor, "/m/?done=ok"),
        Err(status) => reply::refused(&visitor, &status),
    }
}
