//! The public event feed (`podium.v1.EventFeed`): a conference's events from a position,
//! stored then live, with no gap, for dashboards and video-switcher bridges.

use std::{pin::Pin, sync::Arc};

use futures::{Stream, StreamExt};
use podium_access::{Directory, STAFF, caller};
use podium_agenda::conference_prefix;
use podium_eventlog::{
    EventLog, Filter, Projector, SubscriptionItem,
    personal::{self, PersonKind, PersonalKeys},
    subscribe,
};
use podium_proto::v1::{self as pb, event_feed_server::EventFeed};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

/// Most event types one subscription may name.
const MAX_TYPES: usize = 64;

/// Events that say what one attendee chose, asked or rated (with their id, even for anonymous
/// polls and questions): they stay inside podium. Integrators get results, not ballots.
fn private(event_type: &str) -> bool {
    use prost::Name;
    [
        pb::BallotCast::full_name(),
        pb::QuestionAsked::full_name(),
        pb::QuestionUpvoted::full_name(),
        pb::SessionRated::full_name(),
    ]
    .iter()
    .any(|t| t == event_type)
}

/// An attendee's erasure: it names their id, which the feed never shows (a speaker's erasure
/// is delivered, so that integrators drop the name they kept).
fn attendee_erasure(event: &podium_eventlog::RecordedEvent) -> bool {
    event.is::<pb::PersonErased>() && personal::erased(event, PersonKind::Speaker).is_none()
}

pub struct FeedService {
    log: Arc<dyn EventLog>,
    directory: Projector<Directory>,
    /// Opens the personal fields of the events delivered (a speaker's name): integrators get
    /// them in the clear, or "[erased]", never ciphertext.
    personal: Arc<PersonalKeys>,
    shutdown: watch::Receiver<bool>,
}

impl FeedService {
    pub fn new(
        log: Arc<dyn EventLog>,
        directory: Projector<Directory>,
        personal: Arc<PersonalKeys>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            log,
            directory,
            personal,
            shutdown,
        }
    }
}

type FeedStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EventFeed for FeedService {
    type SubscribeStream = FeedStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let conference_id = r.conference_id.trim().to_owned();
        principal.require(&conference_id, STAFF, "follow the event feed")?;
        // A conference just created may not be in the directory yet.
        self.directory
            .catch_up_unless(|d| d.has_conference(&conference_id))
            .await?;
        if !self.directory.read().has_conference(&conference_id) {
            return Err(Status::not_found(format!(
                "conference {conference_id} not found"
            )));
        }
        if r.types.len() > MAX_TYPES || r.types.iter().any(|t| t.is_empty() || t.len() > 200) {
            return Err(Status::invalid_argument(format!(
                "types: at most {MAX_TYPES} names of 1 to 200 characters, like \"podium.v1.SessionScheduled\""
            )));
        }
        let filter = Filter {
            stream_prefix: Some(conference_prefix(&conference_id)),
            event_types: r.types,
        };
        let events = subscribe(self.log.clone(), r.from_position, filter);
        let mut shutdown = self.shutdown.clone();
        let personal = self.personal.clone();
        tracing::info!(conference = %conference_id, from = r.from_position, principal = %principal.id, "feed subscribed");
        let stream = async_stream::try_stream! {
            futures::pin_mut!(events);
            loop {
                let next = tokio::select! {
                    // Ends the stream with a status, so an open feed never holds podiumd open.
                    _ = shutdown.wait_for(|stopping| *stopping) => None,
                    item = events.next() => Some(item),
                };
                let item = match next {
                    None => Err(Status::unavailable("podiumd is shutting down; reconnect and resume from your last position + 1")),
                    Some(None) => Err(Status::unavailable("event log closed; reconnect and resume")),
                    Some(Some(item)) => item.map_err(Status::from),
                }?;
                if let SubscriptionItem::Event(event) = &item
                    && (private(&event.event_type) || attendee_erasure(event))
                {
                    continue;
                }
                yield pb::SubscribeResponse {
                    item: Some(match item {
                        SubscriptionItem::Event(event) => {
                            personal.fetch_missing(&event).await;
                            let opened = personal.open_event(&event);
                            pb::subscribe_response::Item::Event(opened.as_ref().unwrap_or(&event).to_proto())
                        }
                        SubscriptionItem::CaughtUp(position) => {
                            pb::subscribe_response::Item::CaughtUp(pb::CaughtUp { position })
                        }
                    }),
                };
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }
}
