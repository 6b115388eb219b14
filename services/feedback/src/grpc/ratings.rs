//! The `podium.v1.Ratings` service: attendees rate sessions that have gone live; moderators
//! read the aggregates.

use std::sync::Arc;

use podium_access::{Role, caller};
use podium_eventlog::{EventLog, ExpectedVersion, NewEvent, Projector};
use podium_proto::v1::{self as pb, ratings_server::Ratings};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::MODERATORS;
use crate::{
    domain::rating::{RatingError, check},
    store::{FeedbackModel, ratings::rating_stream},
};

fn refused(e: RatingError) -> Status {
    match e {
        e @ RatingError::Invalid { .. } => Status::invalid_argument(e.to_string()),
        RatingError::NotStarted(m) => Status::failed_precondition(m),
    }
}

pub struct RatingsService {
    log: Arc<dyn EventLog>,
    model: Projector<FeedbackModel>,
}

impl RatingsService {
    pub fn new(log: Arc<dyn EventLog>, model: Projector<FeedbackModel>) -> Self {
        Self { log, model }
    }
}

#[tonic::async_trait]
impl Ratings for RatingsService {
    async fn rate_session(
        &self,
        request: Request<pb::RateSessionRequest>,
    ) -> Result<Response<pb::RateSessionResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let (conference_id, session_id) = (r.conference_id.trim(), r.session_id.trim());
        principal.require(
            conference_id,
            &[Role::Attendee],
            "rate sessions; attendees rate after joining with the conference's join code",
        )?;
        let id = if r.request_id.trim().is_empty() {
            Uuid::new_v4()
        } else {
            Uuid::parse_str(r.request_id.trim())
                .map_err(|_| Status::invalid_argument("request_id: must be a UUID"))?
        };
        let comment = check(r.rating, &r.comment).map_err(refused)?;
        // The status service may have taken the session live a moment ago: catch up with the
        // log before answering that it has not started.
        let started = self.model.read().ratings.started(conference_id, session_id);
        if !started && let Some(last) = self.log.head().checked_sub(1) {
            self.model.wait_for(last).await?;
        }
        let replaced = {
            let model = self.model.read();
            let known = model
                .conferences
                .get(conference_id)
                .is_some_and(|c| c.sessions.contains(session_id));
            if !known {
                return Err(Status::not_found(format!(
                    "session {session_id} not found in conference {conference_id}"
                )));
            }
            if !model.ratings.started(conference_id, session_id) {
                return Err(refused(RatingError::NotStarted(format!(
                    "session {session_id} has not started yet: rate it once it is live"
                ))));
            }
            model
                .ratings
                .session(conference_id, session_id)
                .is_some_and(|s| s.has(&principal.id))
        };
        let event = NewEvent::new(
            id,
            &pb::SessionRated {
                conference_id: conference_id.to_owned(),
                session_id: session_id.to_owned(),
                rater: principal.id.clone(),
                rating: r.rating,
                comment,
                at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
            },
        );
        let outcome = self
            .log
            .append(
                &rating_stream(conference_id, session_id, &principal.id),
                ExpectedVersion::Any,
                vec![event],
            )
            .await?;
        self.model.wait_for(outcome.last_position).await?;
        Ok(Response::new(pb::RateSessionResponse {
            replaced,
            position: outcome.last_position,
        }))
    }

    async fn get_ratings(
        &self,
        request: Request<pb::GetRatingsRequest>,
    ) -> Result<Response<pb::GetRatingsResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let (conference_id, session_id) = (r.conference_id.trim(), r.session_id.trim());
        principal.require(conference_id, MODERATORS, "read ratings")?;
        let model = self.model.read();
        let conference = model
            .conferences
            .get(conference_id)
            .ok_or_else(|| Status::not_found(format!("conference {conference_id} not found")))?;
        if !session_id.is_empty() && !conference.sessions.contains(session_id) {
            return Err(Status::not_found(format!(
                "session {session_id} not found in conference {conference_id}"
            )));
        }
        let sessions = model.ratings.aggregates(
            conference_id,
            (!session_id.is_empty()).then_some(session_id),
        );
        Ok(Response::new(pb::GetRatingsResponse { sessions }))
    }
}
