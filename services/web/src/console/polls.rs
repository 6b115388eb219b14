//! The console's poll forms: create a poll in English and Khmer, open or close it, hide a word
//! of its cloud.

use std::collections::BTreeMap;

use axum::{
    body::Bytes,
    extract::{Path, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use podium_proto::v1::{self as pb, polls_server::Polls as _};

use super::staff_post;
use crate::{Web, attendee::on_behalf, reply, session::Visitor};

/// `POST /m/polls/{id}/{action}`: open or close a poll, or hide a word of its cloud.
pub async fn poll_action(
    State(web): State<Web>,
    visitor: Visitor,
    Path((poll_id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (fields, conference_id) = match staff_post(&visitor, &headers, body) {
        Ok(posted) => posted,
        Err(refused) => return *refused,
    };
    let polls = &web.services.polls;
    let done = match action.as_str() {
        "open" => polls
            .open_poll(on_behalf(
                &visitor,
                pb::OpenPollRequest {
                    conference_id,
                    poll_id,
                },
            ))
            .await
            .map(drop),
        "close" => polls
            .close_poll(on_behalf(
                &visitor,
                pb::ClosePollRequest {
                    conference_id,
                    poll_id,
                },
            ))
            .await
            .map(drop),
        "hide" => polls
            .hide_word(on_behalf(
                &visitor,
                pb::HideWordRequest {
                    conference_id,
                    poll_id,
                    word: fields.get("word").to_owned(),
                    hidden: true,
                },
            ))
            .await
            .map(drop),
        _ => {
            return reply::error(
                &visitor,
                StatusCode::NOT_FOUND,
                visitor.text().error_not_found,
                None,
            );
        }
    };
    match done {
        Ok(()) => reply::see_other(&visitor, "/m/?done=ok"),
        Err(status) => reply::refused(&visitor, &status),
    }
}

/// `POST /m/polls`: creates a poll (a draft, opened from the list), in English and, when
/// given, Khmer.
pub async fn create_poll(
    State(web): State<Web>,
    visitor: Visitor,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (fields, conference_id) = match staff_post(&visitor, &headers, body) {
        Ok(posted) => posted,
        Err(refused) => return *refused,
    };
    let localized = |en: &str, km: &str| {
        let mut text = BTreeMap::new();
        text.insert("en".to_owned(), en.trim().to_owned());
        if !km.trim().is_empty() {
            text.insert("km".to_owned(), km.trim().to_owned());
        }
        pb::LocalizedText {
            text: text.into_iter().collect(),
        }
    };
    let lines = |text: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let kind = match fields.get("kind") {
        "multiple" => pb::PollKind::MultipleChoice,
        "rating" => pb::PollKind::Rating,
        "words" => pb::PollKind::WordCloud,
        "text" => pb::PollKind::OpenText,
        _ => pb::PollKind::SingleChoice,
    };
    let (en, km) = (
        lines(fields.get("options_en")),
        lines(fields.get("options_km")),
    );
    let options = match kind {
        pb::PollKind::SingleChoice | pb::PollKind::MultipleChoice => en
            .iter()
            .enumerate()
            .map(|(i, label)| localized(label, km.get(i).map_or("", String::as_str)))
            .collect(),
        _ => Vec::new(),
    };
    let request = pb::CreatePollRequest {
        request_id: crate::forms::request_id(&fields),
        conference_id,
        session_id: fields.get("session").to_owned(),
        question: Some(localized(
            fields.get("question_en"),
            fields.get("question_km"),
        )),
        kind: kind as i32,
        options,
        visibility: pb::ResultVisibility::Live as i32,
        ..Default::default()
    };
    match web
        .services
        .polls
        .create_poll(on_behalf(&visitor, request))
        .await
    {
        Ok(_) => reply::see_other(&visitor, "/m/?done=ok"),
        Err(status) => reply::refused(&visitor, &status),
    }
}
