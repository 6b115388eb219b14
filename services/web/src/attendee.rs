//! The attendee's pages: join by code, the conference (on now, open polls, agenda), a
//! session (its polls, questions and rating), and the forms behind them. Every form is a POST
//! with the CSRF value; after it, the reader is sent back to a GET of the page they were on.

use std::time::Duration;

use askama::Template;
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use chrono::Utc;
use futures::StreamExt;
use podium_proto::v1::{
    self as pb, agenda_server::Agenda as _, polls_server::Polls, questions_server::Questions,
};

use crate::{
    Web,
    frame::{Frame, render},
    i18n::Text,
    reply,
    session::Visitor,
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

#[derive(Template)]
#[template(path = "join.html")]
struct JoinPage {
    frame: Frame,
    code: String,
    error: Option<&'static str>,
    notice: Option<&'static str>,
}

pub fn join_page(
    visitor: &Visitor,
    code: &str,
    error: Option<&'static str>,
    status: StatusCode,
) -> Response {
    join_page_with(visitor, code, error, None, status)
}

/// The join page, with a notice above the form (after a form that signed the visitor out).
fn join_page_with(
    visitor: &Visitor,
    code: &str,
    error: Option<&'static str>,
    notice: Option<&'static str>,
    status: StatusCode,
) -> Response {
    let page = JoinPage {
        frame: Frame::new(visitor, "/"),
        code: code.to_owned(),
        error,
        notice,
    };
    render(visitor, status, &page)
}

/// `GET /j/{code}`: the join form with the projector's code filled in. Joining itself is a
/// POST, so opening the link changes nothing.
pub async fn join_form_with_code(visitor: Visitor, Path(code): Path<String>) -> Response {
    join_page(&visitor, &code, None, StatusCode::OK)
}

/// A notice after a form, named in the query (`?done=vote`), in the reader's language.
fn flash(t: &'static Text, query: Option<&str>) -> Option<&'static str> {
    let done = query?.split('&').find_map(|p| p.strip_prefix("done="))?;
    Some(match done {
        "vote" => t.vote_saved,
        "vote-changed" => t.vote_replaced,
        "question" => t.question_sent,
        "rating" => t.rating_saved,
        "erased" => t.erased_done,
        _ => return None,
    })
}

/// The conference, its rooms and sessions, in the visitor's language.
struct Agenda {
    conference: pb::Conference,
    sessions: Vec<SessionView>,
}

/// The conference and its sessions (only `speaker_id`'s, when given), as the services give
/// them to this visitor.
pub async fn conference_and_sessions(
    web: &Web,
    visitor: &Visitor,
    conference_id: &str,
    speaker_id: &str,
) -> Result<(pb::Conference, Vec<pb::Session>), tonic::Status> {
    let conference = conference(web, visitor, conference_id).await?;
    let sessions = web
        .services
        .agenda
        .list_sessions(on_behalf(
            visitor,
            pb::ListSessionsRequest {
                conference_id: conference_id.to_owned(),
                speaker_id: speaker_id.to_owned(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .sessions;
    Ok((conference, sessions))
}

/// The conference, as `visitor` may see it.
pub async fn conference(
    web: &Web,
    visitor: &Visitor,
    conference_id: &str,
) -> Result<pb::Conference, tonic::Status> {
    web.services
        .agenda
        .get_conference(on_behalf(
            visitor,
            pb::GetConferenceRequest {
                conference_id: conference_id.to_owned(),
            },
        ))
        .await?
        .into_inner()
        .conference
        .ok_or_else(|| tonic::Status::not_found("conference"))
}

async fn agenda(
    web: &Web,
    visitor: &Visitor,
    conference_id: &str,
) -> Result<Agenda, tonic::Status> {
    let (conference, sessions) = conference_and_sessions(web, visitor, conference_id, "").await?;
    let sessions = sessions
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
    first.ok()??.ok()?.resolved().results
}

#[derive(Template)]
#[template(path = "conference.html")]
struct ConferencePage {
    frame: Frame,
    title: String,
    title_lang: Option<String>,
    flash: Option<&'static str>,
    rooms: Vec<RoomNow>,
    live_url: String,
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
        // A notice: signed out by a form, e.g. after erasing their data.
        return join_page_with(
            &visitor,
            "",
            visitor.bad_session.then_some(visitor.text().error_sign_in),
            flash(visitor.text(), uri.query()),
            status,
        );
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
        live_url: crate::views::live_url(&polls, &[]),
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
    live_url: String,
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
        live_url: crate::views::live_url(&polls, &[("questions", &session_id)]),
        polls,
        questions: listed
            .questions
            .iter()
            .map(|q| QuestionView::new(q, visitor.lang))
            .collect(),
        question_max: podium_feedback::domain::qa::MAX_QUESTION_CHARS,
        allow_anonymous: listed.settings.is_none_or(|s| s.allow_anonymous),
        ask_id: uuid::Uuid::now_v7().to_string(),
        rate_id: uuid::Uuid::now_v7().to_string(),
    };
    render(&visitor, StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Lang;

    #[test]
    fn a_notice_is_named_in_the_query_and_unknown_names_show_nothing() {
        let t = Lang::Km.text();
        assert_eq!(flash(t, Some("done=vote")), Some(t.vote_saved));
        assert_eq!(flash(t, Some("x=1&done=question")), Some(t.question_sent));
        assert_eq!(flash(t, Some("done=<script>")), None);
    }
}
