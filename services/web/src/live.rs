//! Live parts over Server-Sent Events, fed by the same coalesced publishers as the gRPC
//! streams. Each event carries the server-rendered fragment that replaces the live region and
//! the log position as its id: a browser that reconnects sends `Last-Event-ID`, and an update
//! it already shows is not sent again. At most ten updates a second leave for each poll a
//! watcher follows; between them the publisher keeps only the newest, so a slow phone gets the
//! latest results, not a backlog.

use std::{convert::Infallible, sync::Arc, time::Duration};

use askama::Template;
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::StreamExt;
use podium_proto::v1::{self as pb, polls_server::Polls};

use crate::{Web, attendee::on_behalf, frame::Frame, reply, session::Visitor, views::ResultsView};

/// The shortest time between two updates to one watcher: ten a second.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Template)]
#[template(path = "fragment.html")]
struct Fragment<'a> {
    frame: &'a Frame,
    results: Option<ResultsView>,
}

/// The position a reconnecting browser last saw.
fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The most polls one page follows.
const MAX_POLLS: usize = 50;

/// `GET /live/results?poll=A&poll=B`: the results of every poll on a page, as they change,
/// on one connection (a browser opens at most six HTTP/1.1 connections to a server, and a page
/// may show more polls than that). Each event's data is the poll's id on the first line, then
/// the fragment that replaces its live region.
pub async fn results(
    State(web): State<Web>,
    visitor: Visitor,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some(conference_id) = visitor
        .principal
        .as_ref()
        .and_then(|p| p.conference_id.clone())
    else {
        return reply::sign_in_first(&visitor);
    };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
    let polls: Vec<String> = pairs
        .into_iter()
        .filter(|(name, _)| name == "poll")
        .map(|(_, id)| id)
        .collect();
    if polls.is_empty() || polls.len() > MAX_POLLS {
        let detail = format!("between 1 and {MAX_POLLS} poll ids, as ?poll=ID&poll=ID");
        return reply::error(
            &visitor,
            StatusCode::BAD_REQUEST,
            visitor.text().error_invalid,
            Some(detail),
        );
    }
    // A browser resuming a single poll is not sent the update it shows; with several, each
    // poll's newest results are sent again, which is what the page needs after a gap.
    let seen = if polls.len() == 1 {
        last_event_id(&headers)
    } else {
        None
    };
    let frame = Arc::new(Frame::new(&visitor, "/"));
    let mut streams = Vec::new();
    for poll_id in polls {
        let request = on_behalf(
            &visitor,
            pb::WatchResultsRequest {
                conference_id: conference_id.clone(),
                poll_id: poll_id.clone(),
                language: visitor.lang.tag().to_owned(),
            },
        );
        match web.services.polls.watch_results(request).await {
            Ok(stream) => streams.push(Box::pin(events(
                poll_id,
                stream.into_inner(),
                frame.clone(),
                seen,
            ))),
            Err(status) => return reply::refused(&visitor, &status),
        }
    }
    let merged = futures::stream::select_all(streams);
    visitor.finish(
        Sse::new(merged)
            .keep_alive(KeepAlive::default())
            .into_response(),
    )
}

/// One poll's updates as events, at most one per [`MIN_INTERVAL`].
fn events<S>(
    poll_id: String,
    mut updates: S,
    frame: Arc<Frame>,
    seen: Option<u64>,
) -> impl futures::Stream<Item = Result<Event, Infallible>>
where
    S: futures::Stream<Item = Result<pb::WatchResultsResponse, tonic::Status>> + Unpin,
{
    async_stream::stream! {
        let mut poll: Option<pb::Poll> = None;
        while let Some(Ok(update)) = updates.next().await {
            let update = update.resolved();
            if update.poll.is_some() {
                poll = update.poll;
            }
            if seen == Some(update.position) {
                continue;
            }
            let Some(poll) = &poll else { continue };
            let fragment = Fragment {
                frame: &frame,
                results: update.results.as_ref().map(|r| ResultsView::new(r, poll)),
            };
            let Ok(html) = fragment.render() else { break };
            yield Ok(Event::default()
                .event("update")
                .id(update.position.to_string())
                .data(format!("{poll_id}\n{html}")));
            tokio::time::sleep(MIN_INTERVAL).await;
        }
    }
}
