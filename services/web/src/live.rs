//! Live parts over Server-Sent Events, fed by the same coalesced publishers as the gRPC
//! streams. Each event carries the server-rendered fragment that replaces the live region and
//! the log position as its id: a browser that reconnects sends `Last-Event-ID`, and an update
//! it already shows is not sent again. At most ten updates a second leave for one watcher;
//! between them the publisher keeps only the newest, so a slow phone gets the latest results,
//! not a backlog.

use std::{convert::Infallible, time::Duration};

use askama::Template;
use axum::{
    extract::{Path, State},
    http::HeaderMap,
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

/// `GET /live/results/{poll}`: the poll's results, as they change.
pub async fn results(
    State(web): State<Web>,
    visitor: Visitor,
    Path(poll_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(conference_id) = visitor
        .principal
        .as_ref()
        .and_then(|p| p.conference_id.clone())
    else {
        return reply::sign_in_first(&visitor);
    };
    let request = on_behalf(
        &visitor,
        pb::WatchResultsRequest {
            conference_id,
            poll_id,
            language: visitor.lang.tag().to_owned(),
        },
    );
    let mut updates = match web.services.polls.watch_results(request).await {
        Ok(stream) => stream.into_inner(),
        Err(status) => return reply::refused(&visitor, &status),
    };
    let seen = last_event_id(&headers);
    let frame = Frame::new(&visitor, "/");
    let events = async_stream::stream! {
        let mut poll: Option<pb::Poll> = None;
        while let Some(Ok(update)) = updates.next().await {
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
            yield Ok::<_, Infallible>(
                Event::default()
                    .event("update")
                    .id(update.position.to_string())
                    .data(html),
            );
            tokio::time::sleep(MIN_INTERVAL).await;
        }
    };
    visitor.finish(
        Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response(),
    )
}
