//! The forms behind the attendee's pages. Every one is a POST with the CSRF value, read by
//! [`accept`]; after it, the reader is sent back to a GET of the page they were on, so a reload
//! does not send it again, and a form sent twice (a double click, a retry over bad Wi-Fi)
//! carries the same request id and gets its first answer.

use axum::{
    body::Bytes,
    extract::{Path, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use podium_proto::v1::{
    self as pb, access_server::Access, polls_server::Polls, questions_server::Questions,
    ratings_server::Ratings,
};
use tonic::Code;

use crate::{
    Web,
    attendee::{join_page, on_behalf},
    i18n::Lang,
    reply,
    session::{Visitor, check_post},
};

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
        Box::new(reply::error(
            visitor,
            status,
            message,
            Some(rejection.body_text()),
        ))
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
            let joined = joined.into_inner();
            let expires = joined
                .principal
                .and_then(|p| p.expires_at)
                .and_then(|at| u64::try_from(at.seconds).ok())
                .map(|seconds| std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds));
            visitor.sign_in_until(joined.token, expires);
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

/// An attendee's form: checked by [`accept`], from a signed-in visitor, with their conference.
fn signed_in_post(
    visitor: &Visitor,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Fields, String), Box<Response>> {
    let fields = accept(visitor, headers, body)?;
    let conference_id =
        conference_of(visitor).ok_or_else(|| Box::new(reply::sign_in_first(visitor)))?;
    Ok((fields, conference_id))
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
    let (fields, conference_id) = match signed_in_post(&visitor, &headers, body) {
        Ok(posted) => posted,
        Err(refused) => return *refused,
    };
    let rating = match rating_of(&visitor, &fields) {
        Ok(rating) => rating,
        Err(refused) => return *refused,
    };
    let ballot = pb::CastBallotRequest {
        conference_id,
        poll_id,
        ballot_id: match fields.get("ballot_id") {
            "" => uuid::Uuid::now_v7().to_string(),
            id => id.to_owned(),
        },
        option_ids: fields.all("option"),
        rating,
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
pub fn request_id(fields: &Fields) -> String {
    match fields.get("request_id") {
        "" => uuid::Uuid::now_v7().to_string(),
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
    let (fields, conference_id) = match signed_in_post(&visitor, &headers, body) {
        Ok(posted) => posted,
        Err(refused) => return *refused,
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
    let (fields, conference_id) = match signed_in_post(&visitor, &headers, body) {
        Ok(posted) => posted,
        Err(refused) => return *refused,
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

/// A form's `rating`: none chosen is 0, which the services refuse with their own reason; text
/// that is not a whole number is refused here (422) rather than read as 0.
fn rating_of(visitor: &Visitor, fields: &Fields) -> Result<i32, Box<Response>> {
    match fields.get("rating") {
        "" => Ok(0),
        text => text.parse().map_err(|_| {
            Box::new(reply::error(
                visitor,
                StatusCode::UNPROCESSABLE_ENTITY,
                visitor.text().error_invalid,
                Some(format!("rating {text:?} is not a whole number")),
            ))
        }),
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
    let (fields, conference_id) = match signed_in_post(&visitor, &headers, body) {
        Ok(posted) => posted,
        Err(refused) => return *refused,
    };
    let rating = match rating_of(&visitor, &fields) {
        Ok(rating) => rating,
        Err(refused) => return *refused,
    };
    let request = pb::RateSessionRequest {
        request_id: request_id(&fields),
        conference_id,
        session_id: session_id.clone(),
        rating,
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
    fn forms_return_only_to_local_pages() {
        assert_eq!(
            with_done("/session/a?done=vote", "rating"),
            "/session/a?done=rating"
        );
        assert_eq!(with_done("//evil", "vote"), "/?done=vote");
    }
}
