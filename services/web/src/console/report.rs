//! The console's report page (`/m/report`): the pre-flight report of every session that has
//! not ended (test connections, recordings, local hours), the ratings of each session with
//! their comments, and the open-data export as CSV and JSON, the same document as
//! `podium export` ([`podium_proto::export`]).

use askama::Template;
use axum::{
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use podium_proto::{
    export::Feedback,
    v1::{
        self as pb, polls_server::Polls as _, questions_server::Questions as _,
        ratings_server::Ratings as _,
    },
};

use super::staff_or_refuse;
use crate::{
    Web,
    attendee::{conference_and_sessions, first_results, on_behalf},
    frame::{Frame, render},
    reply,
    session::Visitor,
    views::SessionView,
};

/// One session of the pre-flight report.
#[derive(Debug, Clone)]
pub struct ReadinessView {
    pub title: String,
    pub lang: Option<String>,
    pub start: String,
    pub ready: bool,
    pub recordings: u32,
    pub speakers: Vec<pb::SpeakerReadiness>,
    /// The service's reasons, in English.
    pub reasons: Vec<String>,
}

/// One rated session.
#[derive(Debug, Clone)]
pub struct RatingView {
    pub title: String,
    pub lang: Option<String>,
    pub count: u64,
    pub mean: String,
    /// (point, count), from 1 to 5.
    pub distribution: Vec<(usize, u64)>,
    pub comments: Vec<String>,
}

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage {
    frame: Frame,
    /// None where this node does not run the status service.
    preflight: Option<Vec<ReadinessView>>,
    ratings: Vec<RatingView>,
}

/// `GET /m/report`.
pub async fn page(State(web): State<Web>, visitor: Visitor) -> Response {
    let conference_id = match staff_or_refuse(&visitor) {
        Ok(id) => id,
        Err(refused) => return *refused,
    };
    let result = async {
        let (conference, sessions) =
            conference_and_sessions(&web, &visitor, &conference_id, "").await?;
        let view = |id: &str| {
            sessions
                .iter()
                .find(|s| s.id == id)
                .map(|s| SessionView::new(s, visitor.lang, &conference.default_language))
        };
        let preflight = crate::speaker::preflight(&web, &visitor, &conference_id)
            .await?
            .map(|sessions| {
                sessions
                    .into_iter()
                    .map(|r| {
                        let session = view(&r.session_id);
                        ReadinessView {
                            title: session
                                .as_ref()
                                .map_or(r.title.clone(), |s| s.title.clone()),
                            lang: session.as_ref().and_then(|s| s.lang.clone()),
                            start: session
                                .as_ref()
                                .map(|s| s.start_local.clone())
                                .unwrap_or_default(),
                            ready: r.readiness == pb::Readiness::Ready as i32,
                            recordings: r.recordings,
                            speakers: r.speakers,
                            reasons: r.reasons,
                        }
                    })
                    .collect()
            });
        let request = pb::GetRatingsRequest {
            conference_id: conference_id.clone(),
            session_id: String::new(),
        };
        let rated = web
            .services
            .ratings
            .get_ratings(on_behalf(&visitor, request))
            .await?
            .into_inner()
            .sessions;
        let ratings = rated
            .into_iter()
            .filter_map(|r| {
                let summary = r.summary?;
                let session = view(&r.session_id);
                Some(RatingView {
                    title: session
                        .as_ref()
                        .map_or(r.session_id.clone(), |s| s.title.clone()),
                    lang: session.and_then(|s| s.lang),
                    count: summary.count,
                    mean: format!("{:.1}", summary.mean),
                    distribution: summary
                        .distribution
                        .iter()
                        .enumerate()
                        .map(|(i, n)| (i + 1, *n))
                        .collect(),
                    comments: r.comments,
                })
            })
            .collect();
        Ok::<_, tonic::Status>((preflight, ratings))
    }
    .await;
    match result {
        Ok((preflight, ratings)) => {
            let page = ReportPage {
                frame: Frame::new(&visitor, "/m/report"),
                preflight,
                ratings,
            };
            render(&visitor, StatusCode::OK, &page)
        }
        Err(status) => reply::refused(&visitor, &status),
    }
}

/// The export's parts, read through the services as the visitor.
async fn gather(
    web: &Web,
    visitor: &Visitor,
    conference_id: &str,
) -> Result<Feedback, tonic::Status> {
    let (conference, sessions) = conference_and_sessions(web, visitor, conference_id, "").await?;
    let mut feedback = Feedback {
        conference,
        sessions,
        ..Default::default()
    };
    let request = pb::ListPollsRequest {
        conference_id: conference_id.to_owned(),
        session_id: String::new(),
        language: String::new(),
    };
    let polls = web
        .services
        .polls
        .list_polls(on_behalf(visitor, request))
        .await?
        .into_inner()
        .polls;
    for poll in polls
        .into_iter()
        .filter(|p| p.state() != pb::PollState::Draft)
    {
        if let Some(results) = first_results(web, visitor, conference_id, &poll.id).await {
            feedback.polls.push((poll, results));
        }
    }
    let request = pb::GetRatingsRequest {
        conference_id: conference_id.to_owned(),
        session_id: String::new(),
    };
    feedback.ratings = web
        .services
        .ratings
        .get_ratings(on_behalf(visitor, request))
        .await?
        .into_inner()
        .sessions;
    for session in &feedback.sessions {
        let request = pb::ListQuestionsRequest {
            conference_id: conference_id.to_owned(),
            session_id: session.id.clone(),
        };
        let listed = web
            .services
            .questions
            .list_questions(on_behalf(visitor, request))
            .await?
            .into_inner();
        feedback.questions.extend(listed.questions);
    }
    Ok(feedback)
}

/// `GET /m/export.csv` and `GET /m/export.json`: a download of the open-data export.
pub async fn export(
    State(web): State<Web>,
    visitor: Visitor,
    Path(file): Path<String>,
) -> Response {
    let conference_id = match staff_or_refuse(&visitor) {
        Ok(id) => id,
        Err(refused) => return *refused,
    };
    let (format, content_type) = match file.as_str() {
        "export.csv" => ("csv", "text/csv; charset=utf-8"),
        "export.json" => ("json", "application/json"),
        _ => {
            return reply::error(
                &visitor,
                StatusCode::NOT_FOUND,
                visitor.text().error_not_found,
                None,
            );
        }
    };
    let feedback = match gather(&web, &visitor, &conference_id).await {
        Ok(feedback) => feedback,
        Err(status) => return reply::refused(&visitor, &status),
    };
    let body = if format == "csv" {
        feedback.csv()
    } else {
        feedback.json()
    };
    let name = crate::views::path_segment(&conference_id);
    visitor.finish(
        (
            [
                (header::CONTENT_TYPE, content_type.to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}-feedback.{format}\""),
                ),
            ],
            body,
        )
            .into_response(),
    )
}
