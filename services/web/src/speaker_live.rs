//! The live part of the speaker's page: for each of their sessions, whether it is live, what is
//! on air, and their own link as podium sees it. It comes from `Stage/WatchStatus`, which gives
//! a speaker the sessions they speak in or back up (the same publisher as the console's board),
//! is rendered on the server with the page, and is sent again over Server-Sent Events
//! (`GET /live/speaker`) whenever a session of theirs changes.

use std::{collections::BTreeMap, convert::Infallible, sync::Arc};

use askama::Template;
use axum::{
    extract::{Query, State},
    http::HeaderMap,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{FutureExt, StreamExt};
use podium_proto::v1 as pb;
use serde::Deserialize;

use crate::{
    Web,
    board::{self, LinkView, Names, fold},
    frame::Frame,
    i18n::Text,
    reply,
    session::Visitor,
};

/// One session's live state, for the speaker it belongs to.
#[derive(Debug, Clone)]
pub struct LiveView {
    pub session_id: String,
    pub state: &'static str,
    /// What is on air, while the session is live.
    pub on_air: String,
    /// The speaker's own link.
    pub link: Option<LinkView>,
    /// The speaker's agent is not connected to a session that has not ended, they still speak
    /// in it, and they are not its backup: the page says how to connect.
    pub connect: bool,
    /// An organiser took the speaker off the session since the page was loaded (the status no
    /// longer names them): the page says so instead.
    pub removed: bool,
}

impl LiveView {
    pub fn of(t: &Text, names: &Names, status: &pb::SessionStatus, speaker_id: &str) -> Self {
        let mine = status.links.iter().find(|l| l.speaker_id == speaker_id);
        let offline = mine.is_none_or(|l| {
            matches!(
                l.state(),
                pb::LinkState::Offline | pb::LinkState::Unspecified
            )
        });
        let ended = status.state() == pb::SessionState::Ended;
        Self {
            session_id: status.session_id.clone(),
            state: board::state_text(t, status.state()),
            on_air: board::on_air(t, names, status),
            link: mine.map(|l| LinkView::new(t, names, l)),
            connect: offline && !ended && mine.is_some_and(|l| !l.backup),
            removed: mine.is_none(),
        }
    }
}

/// One session's live part, as the page holds it and as the stream sends it again.
#[derive(Template)]
#[template(path = "speaker_live.html")]
pub struct LiveFragment<'a> {
    pub frame: &'a Frame,
    pub view: &'a LiveView,
}

/// The status of every session of the speaker's, by session id, and the position it reflects
/// (the page's stream follows on from it); empty where this node does not run the status
/// service or it cannot answer (the page shows the rest).
pub async fn now(
    web: &Web,
    visitor: &Visitor,
    conference_id: &str,
) -> (u64, BTreeMap<String, pb::SessionStatus>) {
    if web.services.stage.is_none() {
        return Default::default();
    }
    crate::board::snapshot(web, visitor, conference_id)
        .await
        .inspect_err(|status| tracing::warn!(%status, "speaker page without live state"))
        .unwrap_or_default()
}

/// Each status's live part, for speaker `speaker_id`, by session id.
pub fn views(
    t: &Text,
    names: &Names,
    statuses: &BTreeMap<String, pb::SessionStatus>,
    speaker_id: &str,
) -> BTreeMap<String, LiveView> {
    statuses
        .iter()
        .map(|(id, s)| (id.clone(), LiveView::of(t, names, s, speaker_id)))
        .collect()
}

/// The query of `GET /live/speaker`.
#[derive(Debug, Default, Deserialize)]
pub struct LiveQuery {
    /// The position the page's live parts reflect (the page writes it into its stream's
    /// address); 0, or none: the sessions as they are now.
    #[serde(default)]
    from: u64,
}

/// `GET /live/speaker`: each of the speaker's sessions' live part, again whenever it changes.
/// It starts from the position the page was rendered at (`?from=`), or, for a browser
/// reconnecting, from the last one it saw (`Last-Event-ID`), and sends the sessions changed
/// since: one the speaker was taken off meanwhile among them.
pub async fn live(
    State(web): State<Web>,
    visitor: Visitor,
    headers: HeaderMap,
    Query(query): Query<LiveQuery>,
) -> Response {
    let Some((conference_id, speaker_id)) = crate::speaker::speaker_of(&visitor) else {
        return reply::not_for(&visitor);
    };
    let from = crate::live::last_event_id(&headers).unwrap_or(query.from);
    let (names, permit, mut updates) =
        match crate::board::watch(&web, &visitor, conference_id, from).await {
            Ok(watching) => watching,
            Err(refused) => return *refused,
        };
    let frame = Arc::new(Frame::new(&visitor, "/s/"));
    let t = visitor.text();
    let events = async_stream::stream! {
        let mut statuses = BTreeMap::new();
        // The board's pace: about ten renders a second at most.
        let mut pace = podium_feedback::Pace::default();
        while let Some(Ok(update)) = updates.next().await {
            pace.ready().await;
            let mut position = update.position;
            let mut changed = changed_by(&update);
            fold(&mut statuses, update);
            while let Some(Some(Ok(more))) = updates.next().now_or_never() {
                position = more.position;
                changed.extend(changed_by(&more));
                fold(&mut statuses, more);
            }
            changed.sort();
            changed.dedup();
            let rendered: Vec<_> = changed
                .into_iter()
                .filter_map(|session_id| {
                    let view = LiveView::of(t, &names, statuses.get(&session_id)?, &speaker_id);
                    let html = (LiveFragment { frame: &frame, view: &view }).render().ok()?;
                    Some(format!("live-{session_id}\n{html}"))
                })
                .collect();
            // Only the batch's last event carries its position: a browser cut off in the middle
            // resumes from the batch before, and is sent the whole batch again.
            let last = rendered.len().saturating_sub(1);
            for (i, data) in rendered.into_iter().enumerate() {
                let event = Event::default().event("update").data(data);
                yield Ok::<_, Infallible>(match i == last {
                    true => event.id(position.to_string()),
                    false => event,
                });
            }
        }
    };
    visitor.finish(
        Sse::new(crate::streams::holding(events, permit))
            .keep_alive(KeepAlive::default())
            .into_response(),
    )
}

/// The sessions an update changes: every one for a snapshot.
fn changed_by(update: &pb::WatchStatusResponse) -> Vec<String> {
    match &update.update {
        Some(pb::watch_status_response::Update::Snapshot(s)) => {
            s.sessions.iter().map(|s| s.session_id.clone()).collect()
        }
        Some(pb::watch_status_response::Update::Changed(s)) => vec![s.session_id.clone()],
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Lang;

    #[test]
    fn a_speaker_sees_their_own_link_and_is_told_to_connect_only_when_they_should() {
        let names = Names {
            speakers: [
                ("spk-1".to_owned(), "Sokha Chan".to_owned()),
                ("spk-2".to_owned(), "Dara Sok".to_owned()),
            ]
            .into(),
            ..Names::default()
        };
        let link = |id: &str, state: pb::LinkState, backup: bool| pb::SpeakerLink {
            speaker_id: id.into(),
            state: state as i32,
            backup,
            ..Default::default()
        };
        // Sokha speaks; Dara backs her up, with the same link state.
        let status = |state: pb::SessionState, both: pb::LinkState| pb::SessionStatus {
            session_id: "ses-1".into(),
            state: state as i32,
            links: vec![link("spk-1", both, false), link("spk-2", both, true)],
            ..Default::default()
        };
        let t = Lang::En.text();
        let waiting = LiveView::of(
            t,
            &names,
            &status(pb::SessionState::Scheduled, pb::LinkState::Offline),
            "spk-1",
        );
        assert_eq!(waiting.state, t.session_scheduled);
        assert_eq!(waiting.link.as_ref().map(|l| l.state), Some(t.link_offline));
        assert!(waiting.connect);
        // The backup, whose own link is the second, is not told to connect.
        let backup = LiveView::of(
            t,
            &names,
            &status(pb::SessionState::Scheduled, pb::LinkState::Offline),
            "spk-2",
        );
        assert_eq!(backup.link.as_ref().map(|l| l.state), Some(t.link_offline));
        assert!(!backup.connect);
        let live = LiveView::of(
            t,
            &names,
            &status(pb::SessionState::Live, pb::LinkState::Healthy),
            "spk-1",
        );
        assert_eq!(live.state, t.session_live);
        assert!(!live.connect);
        let ended = LiveView::of(
            t,
            &names,
            &status(pb::SessionState::Ended, pb::LinkState::Offline),
            "spk-1",
        );
        assert_eq!(ended.state, t.session_ended);
        assert!(!ended.connect);
        assert!(!live.removed && !backup.removed);
        // Taken off the session: the status names her no more, and she is not told to connect.
        let without = pb::SessionStatus {
            links: vec![link("spk-2", pb::LinkState::Offline, true)],
            ..status(pb::SessionState::Scheduled, pb::LinkState::Offline)
        };
        let removed = LiveView::of(t, &names, &without, "spk-1");
        assert!(removed.removed && !removed.connect && removed.link.is_none());
    }
}
