//! The attendee's pages: join by code, the conference (on now, open polls, agenda), a
//! session (its polls, questions and rating), and the forms behind them. Every form is a POST
//! with the CSRF value; after it, the reader is sent back to a GET of the page they were on.

use std::time::Duration;

use askama::Template;
use axum::{
    body::Bytes,
    extract::{Path, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use chrono::Utc;
use futures::StreamExt;
use podium_proto::v1::{
    self as pb, access_server::Access, agenda_server::Agenda as _, polls_server::Polls,
    questions_server::Questions, ratings_server::Ratings,
};
use tonic::Code;

use crate::{
    Web,
    frame::{Frame, render},
    i18n::{Lang, Text},
    reply,
    session::{Visitor, check_post},
    views::{PollKind, PollView, QuestionView, SessionView, localized},
};

/// A service request on behalf of the visitor: the same principal the gRPC interceptor would
/// put in, or none, which every service refuses with UNAUTHENTICATED where it needs one.
pub fn on_behalf<T>(visitor: &Visitor, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(principal) = &visitor.principal {
        request.extensions_mut().insert(principal.clone());
    }
    request
}

/// A form's fields, in order; a name may repeat (checkboxes).
#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Reads a POSTed form and checks it was sent by one of podium's own pages: the body within
/// [`crate::MAX_FORM_BYTES`], well-formed, with the visitor's CSRF value and a same-site origin.
pub fn accept(
    visitor: &Visitor,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Fields, Box<Response>> {
    let t = visitor.text();
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            t.error_too_large
        } else {
            t.error_invalid
        };
        Box::new(reply::error(visitor, status, message, None))
    })?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).map_err(|e| {
        Box::new(reply::error(
            visitor,
            StatusCode::BAD_REQUEST,
            t.error_invalid,
            Some(e.to_string()),
        ))
    })?;
    let fields = Fields(fields);
    check_post(headers, visitor, fields.get("csrf"))
        .map_err(|why| Box::new(reply::forgery(visitor, why)))?;
    Ok(fields)
}

#[derive(Template)]
#[template(path = "join.html")]
struct JoinPage {
    frame: Frame,
    code: String,
    error: Option<&'static str>,
}

fn join_page(
    visitor: &Visitor,
    code: &str,
    error: Option<&'static str>,
    status: StatusCode,
) -> Response {
    let page = JoinPage {
        frame: Frame::new(visitor, "/"),
        code: code.to_owned(),
        error,
    };
    render(visitor, status, &page)
}

/// `GET /j/{code}`: the join form with the projector's code filled in. Joining itself is a
/// POST, so opening the link changes nothing.
pub async fn join_form_with_code(visitor: Visitor, Path(code): Path<String>) -> Response {
    join_page(&visitor, &code, None, StatusCode::OK)
}

/// `POST /join`: exchanges the code for an attendee token, kept in the session cookie.
pub async fn join(
    State(web): State<Web>,
    mut visitor: Visitor,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let fields = match accept(&visitor, &headers, body) {
        Ok(fields) => fields,
        Err(refused) => return *refused,
    };
    let code = fields.get("code").trim().to_owned();
    let request = tonic::Request::new(pb::JoinRequest {
        join_code: code.clone(),
        display_name: fields.get("name").trim().to_owned(),
    });
    match web.services.access.join(request).await {
        Ok(joined) => {
            visitor.sign_in(joined.into_inner().token);
            reply::see_other(&visitor, "/")
        }
        Err(status) if status.code() == Code::NotFound => join_page(
            &visitor,
            &code,
            Some(visitor.text().join_code_unknown),
            StatusCode::NOT_FOUND,
        ),
        Err(status) => reply::refused(&visitor, &status),
    }
}

/// `POST /sign-out`: clears the session cookie.
pub async fn sign_out(
    mut visitor: Visitor,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(refused) = accept(&visitor, &headers, body) {
        return *refused;
    }
    visitor.sign_out();
    reply::see_other(&visitor, "/")
}

/// `POST /lang`: remembers the language chosen and returns to the page.
pub async fn switch_language(
    mut visitor: Visitor,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let fields = match accept(&visitor, &headers, body) {
        Ok(fields) => fields,
        Err(refused) => return *refused,
    };
    if let Some(lang) = Lang::from_tag(fields.get("lang")) {
        visitor.remember_lang(lang);
    }
    reply::see_other(&visitor, fields.get("back"))
}

/// A notice after a form, named in the query (`?done=vote`), in the reader's language.
fn flash(t: &'static Text, query: Option<&str>) -> Option<&'static str> {
    let done = query?.split('&').find_map(|p| p.strip_prefix("done="))?;
    Some(match done {
        "vote" => t.vote_saved,
        "vote-changed" => t.vote_replaced,
        "question" => t.question_sent,
        "rating" => t.rating_saved,
        _ => return None,
    })
}

/// The conference, its rooms and sessions, in the visitor's language.
struct Agenda {
    conference: pb::Conference,
    sessions: Vec<SessionView>,
}

async fn agenda(
    web: &Web,
    visitor: &Visitor,
    conference_id: &str,
) -> Result<Agenda, tonic::Status> {
    let agenda = &web.services.agenda;
    let conference = agenda
        .get_conference(on_behalf(
            visitor,
            pb::GetConferenceRequest {
                conference_id: conference_id.to_owned(),
            },
        ))
        .await?
        .into_inner()
        .conference
        .ok_or_else(|| tonic::Status::not_found("conference"))?;
    let sessions = agenda
        .list_sessions(on_behalf(
            visitor,
            pb::ListSessionsRequest {
                conference_id: conference_id.to_owned(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .sessions
        .iter()
        .map(|s| SessionView::new(s, visitor.lang, &conference.default_language))
        .collect();
    Ok(Agenda {
        conference,
        sessions,
    })
}

/// The open polls of a conference (or of one session), each with its results when the
/// visitor may see them: the first message of the same results stream gRPC watchers get.
pub async fn open_polls(
    web: &Web,
    visitor: &Visitor,
    conference_id: &str,
    session_id: &str,
) -> Result<Vec<PollView>, tonic::Status> {
    let polls = web
        .services
        .polls
        .list_polls(on_behalf(
            visitor,
            pb::ListPollsRequest {
                conference_id: conference_id.to_owned(),
                session_id: session_id.to_owned(),
                language: visitor.lang.tag().to_owned(),
            },
        ))
        .await?
        .into_inner()
        .polls;
    let mut views = Vec::new();
    for poll in polls
        .iter()
        .filter(|p| p.state == pb::PollState::Open as i32)
    {
        let results = first_results(web, visitor, conference_id, &poll.id).await;
        views.push(PollView::new(poll, results.as_ref(), visitor.lang));
    }
    Ok(views)
}

/// A poll's results now, if the visitor may see them.
pub async fn first_results(
    web: &Web,
    visitor: &Visitor,
    conference_id: &str,
    poll_id: &str,
) -> Option<pb::Results> {
    let request = on_behalf(
        visitor,
        pb::WatchResultsRequest {
            conference_id: conference_id.to_owned(),
            poll_id: poll_id.to_owned(),
            language: visitor.lang.tag().to_owned(),
        },
    );
    let mut stream = web
        .services
        .polls
        .watch_results(request)
        .await
        .ok()?
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(2), stream.next()).await;
    first.ok()??.ok()?.results
}

#[derive(Template)]
#[template(path = "conference.html")]
struct ConferencePage {
    frame: Frame,
    title: String,
    title_lang: Option<String>,
    flash: Option<&'static str>,
    rooms: Vec<RoomNow>,
    polls: Vec<PollView>,
    agenda: Vec<SessionView>,
}

struct RoomNow {
    name: String,
    now: Option<SessionView>,
}

/// `GET /`: the join form, or the conference of the signed-in visitor.
pub async fn home(State(web): State<Web>, visitor: Visitor, uri: axum::http::Uri) -> Response {
    let Some(conference_id) = visitor
        .principal
        .as_ref()
        .and_then(|p| p.conference_id.clone())
    else {
        let status = if visitor.bad_session {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        let error = visitor.bad_session.then_some(visitor.text().error_sign_in);
        return join_page(&visitor, "", error, status);
    };
    let result = async {
        let agenda = agenda(&web, &visitor, &conference_id).await?;
        let polls = open_polls(&web, &visitor, &conference_id, "").await?;
        Ok::<_, tonic::Status>((agenda, polls))
    }
    .await;
    let (
        Agenda {
            conference,
            sessions,
        },
        polls,
    ) = match result {
        Ok(parts) => parts,
        Err(status) => return reply::refused(&visitor, &status),
    };
    let now = Utc::now();
    let (title, title_lang) = localized(
        conference.title.as_ref(),
        visitor.lang,
        &conference.default_language,
    );
    let page = ConferencePage {
        frame: Frame::new(&visitor, "/"),
        title,
        title_lang: title_lang.filter(|t| t != visitor.lang.tag()),
        flash: flash(visitor.text(), uri.query()),
        rooms: conference
            .rooms
            .iter()
            .map(|room| RoomNow {
                name: room.name.clone(),
                now: sessions
                    .iter()
                    .find(|s| s.room_id == room.id && s.is_on(now))
                    .cloned(),
            })
            .collect(),
        polls,
        agenda: sessions,
    };
    render(&visitor, StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "session.html")]
struct SessionPage {
    frame: Frame,
    session: SessionView,
    flash: Option<&'static str>,
    polls: Vec<PollView>,
    questions: Vec<QuestionView>,
    question_max: usize,
    allow_anonymous: bool,
    ask_id: String,
    rate_id: String,
    started: bool,
}

/// `GET /session/{id}`: one session's polls, questions and rating.
pub async fn session_page(
    State(web): State<Web>,
    visitor: Visitor,
    Path(session_id): Path<String>,
    uri: axum::http::Uri,
) -> Response {
    let Some(conference_id) = visitor
        .principal
        .as_ref()
        .and_then(|p| p.conference_id.clone())
    else {
        return reply::sign_in_first(&visitor);
    };
    let result = async {
        let Agenda { sessions, .. } = agenda(&web, &visitor, &conference_id).await?;
        let session = sessions
            .into_iter()
            .find(|s| s.id == session_id)
            .ok_or_else(|| tonic::Status::not_found(format!("session {session_id}")))?;
        let polls = open_polls(&web, &visitor, &conference_id, &session_id).await?;
        let listed = web
            .services
            .questions
            .list_questions(on_behalf(
                &visitor,
                pb::ListQuestionsRequest {
                    conference_id: conference_id.clone(),
                    session_id: session_id.clone(),
                },
            ))
            .await?
            .into_inner();
        Ok::<_, tonic::Status>((session, polls, listed))
    }
    .await;
    let (session, polls, listed) = match result {
        Ok(parts) => parts,
        Err(status) => return reply::refused(&visitor, &status),
    };
    let page = SessionPage {
        frame: Frame::new(&visitor, &format!("/session/{session_id}")),
        started: session.has_started(Utc::now()),
        session,
        flash: flash(visitor.text(), uri.query()),
        polls,
        questions: listed
            .questions
            .iter()
            .map(|q| QuestionView::new(q, visitor.lang))
            .collect(),
        question_max: podium_feedback::domain::qa::MAX_QUESTION_CHARS,
        allow_anonymous: listed.settings.is_none_or(|s| s.allow_anonymous),
        ask_id: uuid::Uuid::new_v4().to_string(),
        rate_id: uuid::Uuid::new_v4().to_string(),
    };
    render(&visitor, StatusCode::OK, &page)
}

/// The signed-in visitor's conference.
fn conference_of(visitor: &Visitor) -> Option<String> {
    visitor
        .principal
        .as_ref()
        .and_then(|p| p.conference_id.clone())
}

/// `POST /poll/{id}/ballot`: casts or changes the visitor's ballot.
pub async fn cast_ballot(
    State(web): State<Web>,
    visitor: Visitor,
    Path(poll_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let fields = match accept(&visitor, &headers, body) {
        Ok(fields) => fields,
        Err(refused) => return *refused,
    };
    let Some(conference_id) = conference_of(&visitor) else {
        return reply::sign_in_first(&visitor);
    };
    let rating = fields.get("rating");
    let ballot = pb::CastBallotRequest {
        conference_id,
        poll_id,
        ballot_id: String::new(),
        option_ids: fields.all("option"),
        rating: if rating.is_empty() {
            0
        } else {
            match rating.parse() {
                Ok(value) => value,
                Err(_) => {
                    return reply::error(
                        &visitor,
                        StatusCode::UNPROCESSABLE_ENTITY,
                        visitor.text().error_invalid,
                        Some(format!("rating {rating:?} is not a whole number")),
                    );
                }
            }
        },
        text: fields.get("text").to_owned(),
    };
    match web
        .services
        .polls
        .cast_ballot(on_behalf(&visitor, ballot))
        .await
    {
        Ok(cast) => {
            let done = if cast.into_inner().replaced {
                "vote-changed"
            } else {
                "vote"
            };
            reply::see_other(&visitor, &with_done(fields.get("back"), done))
        }
        Err(status)
            if status.code() == Code::FailedPrecondition && status.message().contains("closed") =>
        {
            reply::error(
                &visitor,
                StatusCode::CONFLICT,
                visitor.text().poll_closed,
                None,
            )
        }
        Err(status) => reply::refused(&visitor, &status),
    }
}

/// The form's request id, made when the page was rendered, so that sending the same form twice
/// (a double click, a retry over bad Wi-Fi) gets the first answer instead of a second question.
fn request_id(fields: &Fields) -> String {
    match fields.get("request_id") {
        "" => uuid::Uuid::new_v4().to_string(),
        id => id.to_owned(),
    }
}

fn with_done(back: &str, done: &str) -> String {
    let back = crate::frame::local_path(back);
    let path = back.split(['?', '#']).next().unwrap_or("/");
    format!("{path}?done={done}")
}

/// `POST /session/{id}/questions`: asks a question.
pub async fn ask(
    State(web): State<Web>,
    visitor: Visitor,
    Path(session_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let fields = match accept(&visitor, &headers, body) {
        Ok(fields) => fields,
        Err(refused) => return *refused,
    };
    let Some(conference_id) = conference_of(&visitor) else {
        return reply::sign_in_first(&visitor);
    };
    let request = pb::AskQuestionRequest {
        request_id: request_id(&fields),
        conference_id,
        session_id: session_id.clone(),
        text: fields.get("text").to_owned(),
        anonymous: !fields.get("anonymous").is_empty(),
    };
    match web
        .services
        .questions
        .ask_question(on_behalf(&visitor, request))
        .await
    {
        Ok(_) => reply::see_other(&visitor, &format!("/session/{session_id}?done=question")),
        Err(status) => reply::refused(&visitor, &status),
    }
}

/// `POST /question/{id}/upvote`.
pub async fn upvote(
    State(web): State<Web>,
    visitor: Visitor,
    Path(question_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let fields = match accept(&visitor, &headers, body) {
        Ok(fields) => fields,
        Err(refused) => return *refused,
    };
    let Some(conference_id) = conference_of(&visitor) else {
        return reply::sign_in_first(&visitor);
    };
    let request = pb::UpvoteQuestionRequest {
        conference_id,
        question_id,
    };
    match web
        .services
        .questions
        .upvote_question(on_behalf(&visitor, request))
        .await
    {
        Ok(_) => reply::see_other(&visitor, fields.get("back")),
        Err(status) => reply::refused(&visitor, &status),
    }
}

/// `POST /session/{id}/rating`.
pub async fn rate(
    State(web): State<Web>,
    visitor: Visitor,
    Path(session_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let fields = match accept(&visitor, &headers, body) {
        Ok(fields) => fields,
        Err(refused) => return *refused,
    };
    let Some(conference_id) = conference_of(&visitor) else {
        return reply::sign_in_first(&visitor);
    };
    let request = pb::RateSessionRequest {
        request_id: request_id(&fields),
        conference_id,
        session_id: session_id.clone(),
        rating: fields.get("rating").parse().unwrap_or(0),
        comment: fields.get("comment").to_owned(),
    };
    match web
        .services
        .ratings
        .rate_session(on_behalf(&visitor, request))
        .await
    {
        Ok(_) => reply::see_other(&visitor, &format!("/session/{session_id}?done=rating")),
        Err(status) => reply::refused(&visitor, &status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_is_named_in_the_query_and_unknown_names_show_nothing() {
        let t = Lang::Km.text();
        assert_eq!(flash(t, Some("done=vote")), Some(t.vote_saved));
        assert_eq!(flash(t, Some("x=1&done=question")), Some(t.question_sent));
        assert_eq!(flash(t, Some("done=<script>")), None);
        assert_eq!(
            with_done("/session/a?done=vote", "rating"),
            "/session/a?done=rating"
        );
        assert_eq!(with_done("//evil", "vote"), "/?done=vote");
    }
}
