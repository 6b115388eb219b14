//! The `podium.v1.Polls` service: moderators create, open and close polls and hide words;
//! attendees vote; everyone reads polls and watches their results, which the publisher
//! (`publisher`) updates at most ten times a second per poll.

use std::{pin::Pin, sync::Arc};

use futures::Stream;
use podium_access::{Action, EVERYONE, Principal, RateLimits, Role, caller};
use podium_eventlog::{EventLog, Projector, RequestId};
use podium_proto::v1::{self as pb, polls_server::Polls};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::{
    MODERATORS,
    publisher::{Channels, spawn_publisher, subscribe},
};
use crate::{
    commands::{Writer, polls::PollCommands},
    domain::poll::{Answer, CastBallot, HIDDEN_WORD, NewPoll, State, Transition},
    error::PollError,
    store::{
        FeedbackModel, VoterKeys, kind_from_proto, results, spec_to_proto, texts,
        visibility_from_proto,
    },
};

impl TryFrom<pb::CreatePollRequest> for NewPoll {
    type Error = PollError;

    fn try_from(r: pb::CreatePollRequest) -> Result<Self, PollError> {
        Ok(Self {
            request_id: RequestId::parse_or_new("request_id", &r.request_id)?,
            conference_id: r.conference_id.trim().to_owned(),
            session_id: r.session_id.trim().to_owned(),
            question: texts(r.question),
            kind: kind_from_proto(r.kind),
            options: r.options.into_iter().map(|o| texts(Some(o))).collect(),
            max_choices: r.max_choices,
            scale_min: r.scale_min,
            scale_max: r.scale_max,
            visibility: visibility_from_proto(r.visibility),
            lock_ballots: r.lock_ballots,
            anonymous: r.anonymous,
            publishable: r.publishable,
            survey: r.survey,
        })
    }
}

impl TryFrom<pb::CastBallotRequest> for CastBallot {
    type Error = PollError;

    fn try_from(r: pb::CastBallotRequest) -> Result<Self, PollError> {
        Ok(Self {
            ballot_id: RequestId::parse("ballot_id", &r.ballot_id)?,
            conference_id: r.conference_id.trim().to_owned(),
            poll_id: r.poll_id.trim().to_owned(),
            answer: Answer {
                option_ids: r.option_ids.iter().map(|s| s.trim().to_owned()).collect(),
                rating: r.rating,
                text: r.text,
            },
        })
    }
}

/// What the publisher shares with every watcher of a poll: the position and results of each
/// audience, encoded once per update, so a watcher's update costs a copy and not an encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub state: State,
    /// For admins, organisers and moderators.
    pub moderator: pb::SharedResults,
    /// For everyone else; without results while they may not see them.
    pub public: pb::SharedResults,
}

fn publish(
    model: &FeedbackModel,
    conference_id: &str,
    poll_id: &str,
    position: u64,
) -> Option<Published> {
    let poll = model.poll(conference_id, poll_id)?;
    let moderator = results(model, conference_id, poll_id, true, "");
    let public = results(model, conference_id, poll_id, false, "");
    Some(Published {
        state: poll.state,
        moderator: pb::SharedResults::encode(position, moderator.as_ref()),
        public: pb::SharedResults::encode(position, public.as_ref()),
    })
}

pub struct PollsService {
    commands: PollCommands,
    model: Projector<FeedbackModel>,
    channels: Channels<Published>,
    shutdown: watch::Receiver<bool>,
    limits: Option<Arc<RateLimits>>,
}

impl PollsService {
    /// The results publisher runs on `publishing`: podiumd's [`crate::PublishingThread`]; a
    /// test's own runtime (`Handle::current()`) will do.
    pub fn new(
        log: Arc<dyn EventLog>,
        model: Projector<FeedbackModel>,
        keys: Arc<VoterKeys>,
        shutdown: watch::Receiver<bool>,
        publishing: &tokio::runtime::Handle,
    ) -> Self {
        let channels = Channels::default();
        let (dirty, changed) = {
            let m = model.read();
            (m.dirty.clone(), m.changed.clone())
        };
        spawn_publisher(
            publishing,
            model.clone(),
            dirty,
            changed,
            channels.clone(),
            shutdown.clone(),
            |m, key| publish(m, &key.0, &key.1, m.position),
        );
        Self {
            commands: PollCommands::new(Writer::new(log, model.clone()), keys),
            model,
            channels,
            shutdown,
            limits: None,
        }
    }

    /// Limits each attendee's ballots (podiumd's `--rate-ballots`); unlimited without.
    pub fn with_rate_limits(mut self, limits: Arc<RateLimits>) -> Self {
        self.limits = Some(limits);
        self
    }

    fn default_language(&self, conference_id: &str) -> String {
        self.model
            .read()
            .conferences
            .get(conference_id)
            .map_or_else(|| "en".to_owned(), |c| c.default_language.clone())
    }

    /// The poll as `principal` may see it, once they may read the conference's polls;
    /// attendees and speakers do not see drafts.
    fn poll_view(
        &self,
        principal: &Principal,
        conference_id: &str,
        poll_id: &str,
        language: &str,
    ) -> Result<pb::Poll, Status> {
        principal.require(conference_id, EVERYONE, "read polls")?;
        let model = self.model.read();
        let default_language = model
            .conferences
            .get(conference_id)
            .map_or("en", |c| c.default_language.as_str());
        let poll = model
            .poll(conference_id, poll_id)
            .filter(|p| p.state != State::Draft || MODERATORS.contains(&principal.role))
            .ok_or_else(|| PollError::poll_not_found(poll_id))?;
        Ok(spec_to_proto(
            &poll.spec,
            poll.state,
            language,
            default_language,
        ))
    }

    async fn transition(
        &self,
        principal: &Principal,
        conference_id: &str,
        poll_id: &str,
        transition: Transition,
    ) -> Result<pb::Poll, Status> {
        let action = match transition {
            Transition::Open => "open polls",
            Transition::Close => "close polls",
        };
        principal.require(conference_id, MODERATORS, action)?;
        self.commands
            .transition(conference_id, poll_id, transition)
            .await?;
        self.poll_view(principal, conference_id, poll_id, "")
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResultsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Polls for PollsService {
    type WatchResultsStream = WatchStream;

    async fn create_poll(
        &self,
        request: Request<pb::CreatePollRequest>,
    ) -> Result<Response<pb::CreatePollResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        principal.require(r.conference_id.trim(), MODERATORS, "create polls")?;
        let new = NewPoll::try_from(r)?;
        let conference_id = new.conference_id.clone();
        let poll_id = self.commands.create(&principal.id, new).await?;
        let poll = self.poll_view(&principal, &conference_id, &poll_id, "")?;
        Ok(Response::new(pb::CreatePollResponse { poll: Some(poll) }))
    }

    async fn open_poll(
        &self,
        request: Request<pb::OpenPollRequest>,
    ) -> Result<Response<pb::OpenPollResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let (conference_id, poll_id) = (r.conference_id.trim(), r.poll_id.trim());
        let poll = self
            .transition(&principal, conference_id, poll_id, Transition::Open)
            .await?;
        Ok(Response::new(pb::OpenPollResponse { poll: Some(poll) }))
    }

    async fn close_poll(
        &self,
        request: Request<pb::ClosePollRequest>,
    ) -> Result<Response<pb::ClosePollResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let (conference_id, poll_id) = (r.conference_id.trim(), r.poll_id.trim());
        let poll = self
            .transition(&principal, conference_id, poll_id, Transition::Close)
            .await?;
        let results = results(&self.model.read(), conference_id, poll_id, true, "");
        Ok(Response::new(pb::ClosePollResponse {
            poll: Some(poll),
            results,
        }))
    }

    async fn get_poll(
        &self,
        request: Request<pb::GetPollRequest>,
    ) -> Result<Response<pb::GetPollResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let poll = self.poll_view(
            &principal,
            r.conference_id.trim(),
            r.poll_id.trim(),
            r.language.trim(),
        )?;
        Ok(Response::new(pb::GetPollResponse { poll: Some(poll) }))
    }

    async fn list_polls(
        &self,
        request: Request<pb::ListPollsRequest>,
    ) -> Result<Response<pb::ListPollsResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let conference_id = r.conference_id.trim();
        principal.require(conference_id, EVERYONE, "read polls")?;
        let model = self.model.read();
        let default_language = model
            .conferences
            .get(conference_id)
            .map_or("en", |c| c.default_language.as_str());
        let mut polls: Vec<pb::Poll> = model
            .polls
            .iter()
            .filter(|((c, _), p)| {
                c == conference_id
                    && (r.session_id.trim().is_empty() || p.spec.session_id == r.session_id.trim())
            })
            .filter(|(_, p)| p.state != State::Draft || MODERATORS.contains(&principal.role))
            .map(|(_, p)| spec_to_proto(&p.spec, p.state, r.language.trim(), default_language))
            .collect();
        polls.sort_by(|a, b| {
            (a.created_at.map(|t| t.seconds), &a.id).cmp(&(b.created_at.map(|t| t.seconds), &b.id))
        });
        Ok(Response::new(pb::ListPollsResponse { polls }))
    }

    async fn cast_ballot(
        &self,
        request: Request<pb::CastBallotRequest>,
    ) -> Result<Response<pb::CastBallotResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        principal.require(
            r.conference_id.trim(),
            &[Role::Attendee],
            "vote; attendees vote after joining with the conference's join code",
        )?;
        if let Some(limits) = &self.limits {
            limits.check(Action::Ballot, &principal.id)?;
        }
        let cast = CastBallot::try_from(r)?;
        let counted = self.commands.cast_ballot(&principal.id, cast).await?;
        Ok(Response::new(pb::CastBallotResponse {
            replaced: counted.replaced,
            position: counted.position,
        }))
    }

    async fn watch_results(
        &self,
        request: Request<pb::WatchResultsRequest>,
    ) -> Result<Response<Self::WatchResultsStream>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let (conference_id, poll_id, language) = (
            r.conference_id.trim().to_owned(),
            r.poll_id.trim().to_owned(),
            r.language.trim().to_owned(),
        );
        let poll_view = self.poll_view(&principal, &conference_id, &poll_id, &language)?;
        let moderator = MODERATORS.contains(&principal.role);
        let key = (conference_id.clone(), poll_id.clone());
        let mut receiver = subscribe(&self.channels, &self.shutdown, key, || {
            let model = self.model.read();
            publish(&model, &conference_id, &poll_id, model.position)
                .ok_or_else(|| PollError::poll_not_found(&poll_id))
        })?;
        let model = self.model.clone();
        let default_language = self.default_language(&conference_id);
        let stream = async_stream::try_stream! {
            let mut state = None;
            loop {
                let published = receiver.latest();
                // The poll itself only when its state changed, in the watcher's language.
                let poll = if state != Some(published.state) {
                    state = Some(published.state);
                    let m = model.read();
                    m.poll(&conference_id, &poll_id).map(|p| spec_to_proto(&p.spec, p.state, &language, &default_language)).or_else(|| Some(poll_view.clone()))
                } else {
                    None
                };
                let shared = if moderator { &published.moderator } else { &published.public };
                yield pb::WatchResultsResponse::from_shared(shared, poll);
                // Ends with UNAVAILABLE when podiumd shuts down (the channel closes).
                receiver.changed().await?;
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn hide_word(
        &self,
        request: Request<pb::HideWordRequest>,
    ) -> Result<Response<pb::HideWordResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let (conference_id, poll_id) = (r.conference_id.trim(), r.poll_id.trim());
        principal.require(conference_id, MODERATORS, "hide words")?;
        let word = podium_text::clean("word", &r.word, &HIDDEN_WORD).map_err(PollError::from)?;
        self.commands
            .hide_word(conference_id, poll_id, &word, r.hidden)
            .await?;
        let results = results(&self.model.read(), conference_id, poll_id, true, "");
        Ok(Response::new(pb::HideWordResponse { results }))
    }
}
