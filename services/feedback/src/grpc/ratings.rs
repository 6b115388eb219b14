//! The `podium.v1.Ratings` service: attendees rate sessions that have gone live; moderators
//! read the aggregates.

use std::sync::Arc;

use podium_access::{Role, caller};
use podium_eventlog::{EventLog, Projector, RequestId};
use podium_proto::v1::{self as pb, ratings_server::Ratings};
use tonic::{Request, Response, Status};

use super::MODERATORS;
use crate::{
    commands::{
        Writer,
        ratings::{RateSession, RatingCommands},
    },
    domain::rating::check,
    error::{RatingError, session_not_found},
    store::FeedbackModel,
};

impl TryFrom<pb::RateSessionRequest> for RateSession {
    type Error = RatingError;

    fn try_from(r: pb::RateSessionRequest) -> Result<Self, RatingError> {
        Ok(Self {
            request_id: RequestId::parse_or_new("request_id", &r.request_id)?,
            comment: check(r.rating, &r.comment)?,
            rating: r.rating,
            conference_id: r.conference_id.trim().to_owned(),
            session_id: r.session_id.trim().to_owned(),
        })
    }
}

pub struct RatingsService {
    commands: RatingCommands,
    model: Projector<FeedbackModel>,
}

impl RatingsService {
    pub fn new(log: Arc<dyn EventLog>, model: Projector<FeedbackModel>) -> Self {
        Self {
            commands: RatingCommands::new(Writer::new(log, model.clone())),
            model,
        }
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
        principal.require(
            r.conference_id.trim(),
            &[Role::Attendee],
            "rate sessions; attendees rate after joining with the conference's join code",
        )?;
        let rate = RateSession::try_from(r)?;
        let (replaced, position) = self.commands.rate(&principal.id, rate).await?;
        Ok(Response::new(pb::RateSessionResponse {
            replaced,
            position,
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
        let conference = model.conferences.get(conference_id).ok_or_else(|| {
            RatingError::NotFound(format!("conference {conference_id} not found"))
        })?;
        if !session_id.is_empty() && !conference.sessions.contains(session_id) {
            return Err(RatingError::NotFound(session_not_found(conference_id, session_id)).into());
        }
        let sessions = model.ratings.aggregates(
            conference_id,
            (!session_id.is_empty()).then_some(session_id),
        );
        Ok(Response::new(pb::GetRatingsResponse { sessions }))
    }
}
