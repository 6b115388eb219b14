//! Live parts over Server-Sent Events, fed by the same coalesced publishers as the gRPC
//! streams. Each event carries the server-rendered fragment that replaces the live region and
//! the log position as its id: a browser that reconnects sends `Last-Event-ID`, and an update
//! it already shows is not sent again. The services' publishers coalesce to at most ten updates
//! a second and keep only the newest between them, so a slow phone gets the latest results,
//! not a backlog; the pages add no delay of their own (a second timer here, out of phase with
//! the publisher's, once cost up to 100 ms per update). The publisher encodes each update once
//! for every watcher, and [`Fragments`] renders it once per language, so a thousand phones cost
//! one render.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
};

use askama::Template;
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{Stream, StreamExt, stream::BoxStream};
use podium_proto::v1::{self as pb, polls_server::Polls, questions_server::Questions};
use tonic::codegen::Bytes;

use crate::{
    Web,
    attendee::on_behalf,
    frame::Frame,
    i18n::{Lang, Text},
    reply,
    session::Visitor,
    views::{QuestionView, ResultsView},
};

/// What a results fragment needs of a page's frame: the reader's strings, nothing personal,
/// so one fragment serves every reader of a language.
struct Strings {
    t: &'static Text,
}

#[derive(Template)]
#[template(path = "fragment.html")]
struct Fragment<'a> {
    frame: &'a Strings,
    results: Option<ResultsView>,
}

/// The newest event data of each poll in each language, shared by all of its watchers. Keyed
/// by conference too: poll ids are unique only within one.
#[derive(Debug, Default)]
pub struct Fragments(Mutex<HashMap<(String, String, Lang), Vec<Rendered>>>);

/// Renders kept per poll and language: one per audience the publisher encodes for (moderators
/// and attendees see different bytes once words are hidden), so they do not evict each other.
const AUDIENCES: usize = 2;

#[derive(Debug, Clone)]
struct Rendered {
    /// The publisher's encoding this was rendered from.
    shared: Bytes,
    position: u64,
    data: Arc<str>,
}

type Key<'a> = (&'a str, &'a str, Lang);

impl Fragments {
    /// The position and event data already rendered from `shared`, if any.
    fn get(&self, (conference, poll, lang): Key<'_>, shared: &Bytes) -> Option<(u64, Arc<str>)> {
        let fragments = self.0.lock().ok()?;
        let kept = fragments.get(&(conference.to_owned(), poll.to_owned(), lang))?;
        kept.iter()
            .find(|r| r.shared == *shared)
            .map(|r| (r.position, r.data.clone()))
    }

    fn put(&self, (conference, poll, lang): Key<'_>, rendered: Rendered) {
        if let Ok(mut fragments) = self.0.lock() {
            let kept = fragments
                .entry((conference.to_owned(), poll.to_owned(), lang))
                .or_default();
            if kept.len() >= AUDIENCES {
                kept.remove(0);
            }
            kept.push(rendered);
        }
    }

    /// The position and event data of `update` for readers of `lang`: rendered once per
    /// language and shared encoding, however many watchers ask.
    fn event_data(
        &self,
        (conference, poll_id, lang): Key<'_>,
        poll: &pb::Poll,
        update: pb::WatchResultsResponse,
    ) -> Option<(u64, Arc<str>)> {
        let shared = update.shared().cloned();
        let key = (conference, poll_id, lang);
        if let Some(hit) = shared.as_ref().and_then(|bytes| self.get(key, bytes)) {
            return Some(hit);
        }
        let update = update.resolved();
        let fragment = Fragment {
            frame: &Strings { t: lang.text() },
            results: update.results.as_ref().map(|r| ResultsView::new(r, poll)),
        };
        let html = fragment.render().ok()?;
        let data: Arc<str> = format!("{poll_id}\n{html}").into();
        if let Some(shared) = shared {
            let rendered = Rendered {
                shared,
                position: update.position,
                data: data.clone(),
            };
            self.put(key, rendered);
        }
        Some((update.position, data))
    }
}

/// The position a reconnecting browser last saw.
pub(crate) fn last_event_id(headers: &HeaderMap) -> Option<u64> {
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

/// The questions of a session as a live part: the session page's list, or the projector's
/// pinned question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuestionsPart {
    List,
    Pinned,
}

impl QuestionsPart {
    /// The name of the query parameter, the event's first line and the page's `data-poll`.
    fn key(self) -> &'static str {
        match self {
            QuestionsPart::List => "questions",
            QuestionsPart::Pinned => "pinned",
        }
    }
}

#[derive(Template)]
#[template(path = "questions.html")]
struct QuestionsFragment<'a> {
    frame: &'a Frame,
    questions: Vec<QuestionView>,
}

#[derive(Template)]
#[template(path = "pinned.html")]
struct PinnedFragment {
    pinned: Option<String>,
}

/// `GET /live/results?poll=A&poll=B&questions=S`: the live parts of one page, as they change,
/// on one connection (a browser opens at most six HTTP/1.1 connections to a server, and a page
/// may show more polls than that): the results of each `poll`, and the questions of session
/// `questions` (the session page's list, as the visitor sees it) or the pinned question of
/// session `pinned` (the projector). Each event's data is the part's key on the first line (a
/// poll id, `questions` or `pinned`), then the fragment that replaces its region.
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
    let wanted = |name: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, id)| id.clone())
            .collect()
    };
    let polls = wanted("poll");
    let mut questions: Vec<(QuestionsPart, String)> = Vec::new();
    for part in [QuestionsPart::List, QuestionsPart::Pinned] {
        questions.extend(wanted(part.key()).into_iter().map(|id| (part, id)));
    }
    if polls.len() + questions.len() == 0 || polls.len() > MAX_POLLS || questions.len() > 1 {
        let detail = format!(
            "between 1 and {MAX_POLLS} poll ids and at most one session, as ?poll=ID&poll=ID&questions=SESSION"
        );
        return reply::error(
            &visitor,
            StatusCode::BAD_REQUEST,
            visitor.text().error_invalid,
            Some(detail),
        );
    }
    // A browser resuming a single poll is not sent the update it shows; with several parts,
    // each one's newest state is sent again, which is what the page needs after a gap.
    let seen = if polls.len() == 1 && questions.is_empty() {
        last_event_id(&headers)
    } else {
        None
    };
    let permit = crate::streams::admit(&web, &visitor);
    let mut streams: Vec<BoxStream<'static, Result<Event, Infallible>>> = Vec::new();
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
            Ok(stream) => streams.push(
                events(
                    web.fragments.clone(),
                    conference_id.clone(),
                    poll_id,
                    visitor.lang,
                    stream.into_inner(),
                    seen,
                )
                .boxed(),
            ),
            Err(status) => return reply::refused(&visitor, &status),
        }
    }
    for (part, session_id) in questions {
        let request = on_behalf(
            &visitor,
            pb::WatchQuestionsRequest {
                conference_id: conference_id.clone(),
                session_id: session_id.clone(),
            },
        );
        match web.services.questions.watch_questions(request).await {
            Ok(stream) => {
                // Upvote forms in the list carry the visitor's CSRF value and return to the
                // session page.
                let frame = Frame::new(&visitor, &format!("/session/{session_id}"));
                streams
                    .push(question_events(part, stream.into_inner(), frame, visitor.lang).boxed());
            }
            Err(status) => return reply::refused(&visitor, &status),
        }
    }
    let merged = crate::streams::holding(futures::stream::select_all(streams), permit);
    visitor.finish(
        Sse::new(merged)
            .keep_alive(KeepAlive::default())
            .into_response(),
    )
}

/// A session's questions as events, rendered for one visitor (their own questions and upvotes
/// show), as `WatchQuestions` coalesces them.
fn question_events<S>(
    part: QuestionsPart,
    mut updates: S,
    frame: Frame,
    lang: Lang,
) -> impl Stream<Item = Result<Event, Infallible>>
where
    S: Stream<Item = Result<pb::WatchQuestionsResponse, tonic::Status>> + Unpin,
{
    async_stream::stream! {
        while let Some(Ok(update)) = updates.next().await {
            let html = match part {
                QuestionsPart::List => QuestionsFragment {
                    frame: &frame,
                    questions: update.questions.iter().map(|q| QuestionView::new(q, lang)).collect(),
                }
                .render(),
                QuestionsPart::Pinned => PinnedFragment {
                    pinned: update.questions.into_iter().find(|q| q.pinned).map(|q| q.text),
                }
                .render(),
            };
            let Ok(html) = html else { break };
            yield Ok(Event::default()
                .event("update")
                .id(update.position.to_string())
                .data(format!("{}\n{html}", part.key())));
        }
    }
}

/// One poll's updates as events, as the results publisher coalesces them.
fn events<S>(
    fragments: Arc<Fragments>,
    conference_id: String,
    poll_id: String,
    lang: Lang,
    mut updates: S,
    seen: Option<u64>,
) -> impl Stream<Item = Result<Event, Infallible>>
where
    S: Stream<Item = Result<pb::WatchResultsResponse, tonic::Status>> + Unpin,
{
    async_stream::stream! {
        let mut poll: Option<pb::Poll> = None;
        while let Some(Ok(mut update)) = updates.next().await {
            if let Some(p) = update.poll.take() {
                poll = Some(p);
            }
            let Some(poll) = &poll else { continue };
            let key = (conference_id.as_str(), poll_id.as_str(), lang);
            let Some((position, data)) = fragments.event_data(key, poll, update) else {
                break;
            };
            if seen == Some(position) {
                continue;
            }
            yield Ok(Event::default()
                .event("update")
                .id(position.to_string())
                .data(&*data));
        }
    }
}
