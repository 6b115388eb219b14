//! The rooms board of the moderator console: every session's status as `Stage/WatchStatus`
//! gives it (the same publisher as gRPC watchers), folded into one table, rendered on the
//! server and sent again over Server-Sent Events whenever it changes, at most ten times a
//! second.

use std::{
    collections::{BTreeMap, BTreeSet},
    convert::Infallible,
    sync::Arc,
};

use askama::Template;
use axum::{
    extract::State,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{FutureExt, StreamExt};
use podium_proto::v1::{self as pb, stage_server::Stage};

use crate::{Web, attendee::on_behalf, frame::Frame, i18n::Text, reply, session::Visitor};

/// One speaker's link, written out.
#[derive(Debug, Clone)]
pub struct LinkView {
    pub name: String,
    pub state: &'static str,
    pub figures: String,
}

/// A source a moderator may put on air.
#[derive(Debug, Clone)]
pub struct Choice {
    /// `speaker`, `recording`, `backup` or `slate`.
    pub kind: &'static str,
    pub speaker_id: String,
    pub label: String,
}

/// One session on the board.
#[derive(Debug, Clone)]
pub struct Row {
    pub session_id: String,
    pub title: String,
    pub room: String,
    pub state: &'static str,
    pub scheduled: bool,
    pub live: bool,
    pub on_air: String,
    pub cause: &'static str,
    pub pinned: bool,
    pub links: Vec<LinkView>,
    pub alerts: Vec<String>,
    pub choices: Vec<Choice>,
    /// What the room's program output really shows, from its playout bridge.
    pub program: String,
    /// A bridge reports for the room and the output does not show what podium decided.
    pub program_alert: bool,
    /// The bridge's problems and the output's health.
    pub program_notes: Vec<String>,
}

/// The program output beside the decision: confirmed (with the delay), not confirmed, a
/// manual override, or no bridge; whether to alert; then problems and output health.
fn program(t: &Text, status: &pb::SessionStatus) -> (String, bool, Vec<String>) {
    let Some(o) = &status.output else {
        return (t.program_none.to_owned(), false, Vec::new());
    };
    let ok = o.bridge_connected && o.confirmed && !o.manual_override && o.decided == status.source;
    let headline = if !o.bridge_connected {
        format!("{} ({})", t.program_offline, o.bridge)
    } else if o.manual_override {
        format!("{}: {}", t.program_override, o.scene)
    } else if ok {
        let cursor = if o.media_state.is_empty() {
            String::new()
        } else {
            let s = o.media_cursor_ms / 1000;
            format!(" {}:{:02}", s / 60, s % 60)
        };
        format!(
            "{}: {}{cursor} (+{} ms)",
            t.program_confirmed, o.scene, o.delay_ms
        )
    } else {
        format!("{} {}", t.program_not_confirmed, o.scene)
    };
    let mut notes: Vec<String> = o.problems.iter().map(|p| p.message.clone()).collect();
    if let Some(h) = &o.health {
        if h.reconnecting {
            notes.push(t.program_reconnecting.to_owned());
        } else if h.streaming {
            notes.push(format!(
                "{}: {:.0} %, {} {}",
                t.program_streaming,
                h.congestion * 100.0,
                h.skipped_frames,
                t.program_skipped
            ));
        }
    }
    (headline, !ok, notes)
}

/// Names the board needs that status does not carry: rooms and speakers, by id.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub rooms: BTreeMap<String, String>,
    pub speakers: BTreeMap<String, String>,
}

impl Names {
    /// The names a conference gives.
    pub fn of(conference: &pb::Conference) -> Self {
        Names {
            rooms: conference
                .rooms
                .iter()
                .map(|r| (r.id.clone(), r.name.clone()))
                .collect(),
            speakers: conference
                .speakers
                .iter()
                .map(|s| (s.id.clone(), s.name.clone()))
                .collect(),
        }
    }

    /// The ids of rooms and speakers `status` names that these names lack: a session changed
    /// after they were read may be in a room, or have a speaker, added since.
    pub fn unknown<'a>(&self, status: &'a pb::SessionStatus) -> Vec<&'a str> {
        let room = Some(status.room_id.as_str()).filter(|id| !self.rooms.contains_key(*id));
        let speakers = status
            .links
            .iter()
            .map(|l| l.speaker_id.as_str())
            .filter(|id| !self.speakers.contains_key(*id));
        room.into_iter().chain(speakers).collect()
    }

    fn speaker(&self, id: &str) -> String {
        self.speakers
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_owned())
    }
}

fn source_label(t: &Text, names: &Names, source: Option<&pb::Source>) -> String {
    let Some(source) = source else {
        return t.source_none.to_owned();
    };
    match pb::SourceKind::try_from(source.kind).unwrap_or_default() {
        pb::SourceKind::Speaker => format!(
            "{}: {}",
            t.source_speaker,
            names.speaker(&source.speaker_id)
        ),
        pb::SourceKind::BackupSpeaker => {
            format!("{}: {}", t.source_backup, names.speaker(&source.speaker_id))
        }
        pb::SourceKind::Recording => {
            format!("{} ({} s)", t.source_recording, source.offset_ms / 1000)
        }
        pb::SourceKind::Slate => t.source_slate.to_owned(),
        pb::SourceKind::Unspecified => t.source_none.to_owned(),
    }
}

fn cause(t: &Text, cause: i32) -> &'static str {
    match pb::Cause::try_from(cause).unwrap_or_default() {
        pb::Cause::Moderator => t.cause_moderator,
        pb::Cause::HeartbeatTimeout => t.cause_heartbeat,
        pb::Cause::StreamClosed => t.cause_closed,
        pb::Cause::PoorLink => t.cause_poor,
        pb::Cause::LinkStable => t.cause_stable,
        pb::Cause::SessionStarted => t.cause_started,
        pb::Cause::Unspecified => "",
    }
}

/// An alert in the reader's words, naming the speaker; one stored before alerts named their
/// speaker reads as it was written (English, with ids).
fn alert(t: &Text, names: &Names, alert: &pb::Alert) -> String {
    if alert.speaker_id.is_empty() {
        return alert.message.clone();
    }
    let what = match pb::AlertKind::try_from(alert.kind).unwrap_or_default() {
        pb::AlertKind::NoRecording => t.alert_no_recording,
        pb::AlertKind::Failover | pb::AlertKind::Unspecified => t.alert_failover,
    };
    format!("{}: {what}", names.speaker(&alert.speaker_id))
}

impl LinkView {
    pub fn new(t: &Text, names: &Names, link: &pb::SpeakerLink) -> Self {
        LinkView {
            name: names.speaker(&link.speaker_id),
            state: match link.state() {
                pb::LinkState::Healthy => t.link_healthy,
                pb::LinkState::Poor => t.link_poor,
                pb::LinkState::Lost => t.link_lost,
                pb::LinkState::Offline | pb::LinkState::Unspecified => t.link_offline,
            },
            figures: link.figures.as_ref().map_or_else(String::new, |f| {
                format!(
                    "{} {}, {:.1} % {}, {} kbit/s",
                    f.round_trip_ms,
                    t.milliseconds,
                    f.packet_loss_percent,
                    t.packet_loss,
                    f.upstream_kbps
                )
            }),
        }
    }
}

/// A session's state in words.
pub fn state_text(t: &Text, state: pb::SessionState) -> &'static str {
    match state {
        pb::SessionState::Live => t.session_live,
        pb::SessionState::Ended => t.session_ended,
        pb::SessionState::Scheduled | pb::SessionState::Unspecified => t.session_scheduled,
    }
}

/// What a session has on air, while it is live; empty otherwise.
pub fn on_air(t: &Text, names: &Names, status: &pb::SessionStatus) -> String {
    if status.state() == pb::SessionState::Live {
        source_label(t, names, status.source.as_ref())
    } else {
        String::new()
    }
}

impl Row {
    pub fn new(t: &Text, names: &Names, status: &pb::SessionStatus) -> Self {
        let state = pb::SessionState::try_from(status.state).unwrap_or_default();
        let links = status
            .links
            .iter()
            .map(|link| LinkView::new(t, names, link))
            .collect();
        // A switch to each speaker and backup the session has now: the links follow every
        // change an organiser makes to its speakers.
        let mut choices = Vec::new();
        for link in &status.links {
            let speaker = names.speaker(&link.speaker_id);
            let (kind, label) = match link.backup {
                true => ("backup", format!("{}: {speaker}", t.source_backup)),
                false => ("speaker", format!("{}: {speaker}", t.source_speaker)),
            };
            choices.push(Choice {
                kind,
                speaker_id: link.speaker_id.clone(),
                label,
            });
        }
        // A session with no recording has none to put on air (the engine would refuse).
        if status.recordings > 0 {
            choices.push(Choice {
                kind: "recording",
                speaker_id: String::new(),
                label: t.source_recording.to_owned(),
            });
        }
        let (program, program_alert, program_notes) = program(t, status);
        choices.push(Choice {
            kind: "slate",
            speaker_id: String::new(),
            label: t.source_slate.to_owned(),
        });
        Self {
            session_id: status.session_id.clone(),
            title: status.title.clone(),
            room: names
                .rooms
                .get(&status.room_id)
                .cloned()
                .unwrap_or_else(|| status.room_id.clone()),
            state: state_text(t, state),
            scheduled: state == pb::SessionState::Scheduled,
            live: state == pb::SessionState::Live,
            on_air: on_air(t, names, status),
            cause: if state == pb::SessionState::Live {
                cause(t, status.cause)
            } else {
                ""
            },
            pinned: status.pinned,
            links,
            alerts: status
                .alerts
                .iter()
                .rev()
                .take(3)
                .map(|a| alert(t, names, a))
                .collect(),
            choices,
            program,
            program_alert,
            program_notes,
        }
    }
}

#[derive(Template)]
#[template(path = "board.html")]
pub struct BoardFragment<'a> {
    pub frame: &'a Frame,
    pub rows: Vec<Row>,
}

/// The board's rows from the statuses, live sessions first, then scheduled, then ended.
pub fn rows(t: &Text, names: &Names, statuses: &BTreeMap<String, pb::SessionStatus>) -> Vec<Row> {
    let mut rows: Vec<Row> = statuses.values().map(|s| Row::new(t, names, s)).collect();
    rows.sort_by_key(|r| (!r.live, !r.scheduled, r.room.clone(), r.title.clone()));
    rows
}

/// Folds one `WatchStatus` update into the statuses.
pub fn fold(statuses: &mut BTreeMap<String, pb::SessionStatus>, update: pb::WatchStatusResponse) {
    match update.update {
        Some(pb::watch_status_response::Update::Snapshot(snapshot)) => {
            statuses.clear();
            for status in snapshot.sessions {
                statuses.insert(status.session_id.clone(), status);
            }
        }
        Some(pb::watch_status_response::Update::Changed(status)) => {
            statuses.insert(status.session_id.clone(), status);
        }
        None => {}
    }
}

/// The statuses now, by session id: the snapshot that opens a `WatchStatus` stream, with the
/// position it reflects (a live stream that follows the page resumes from it, so a change made
/// while the page loaded is not missed).
pub async fn snapshot(
    web: &Web,
    visitor: &Visitor,
    conference_id: &str,
) -> Result<(u64, BTreeMap<String, pb::SessionStatus>), tonic::Status> {
    let Some(stage) = &web.services.stage else {
        return Err(tonic::Status::unavailable(
            "the status service does not run here",
        ));
    };
    let request = on_behalf(
        visitor,
        pb::WatchStatusRequest {
            conference_id: conference_id.to_owned(),
            ..Default::default()
        },
    );
    let mut stream = stage.watch_status(request).await?.into_inner();
    let mut statuses = BTreeMap::new();
    let mut position = 0;
    if let Some(first) = stream.next().await {
        let first = first?;
        position = first.position;
        fold(&mut statuses, first);
    }
    Ok((position, statuses))
}

/// A `WatchStatus` stream, as the status service gives it.
pub type Updates = <podium_status::StageService as Stage>::WatchStatusStream;

/// What a live status page needs before its first event: the conference's names, the visitor's
/// stream permit and their `WatchStatus` stream from `from_position` (0: a whole snapshot
/// first); or the page that says why not.
pub async fn watch(
    web: &Web,
    visitor: &Visitor,
    conference_id: String,
    from_position: u64,
) -> Result<(Names, Option<crate::streams::Permit>, Updates), Box<Response>> {
    let Some(stage) = web.services.stage.clone() else {
        return Err(Box::new(reply::error(
            visitor,
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            visitor.text().error_unavailable,
            None,
        )));
    };
    let refused = |status: tonic::Status| Box::new(reply::refused(visitor, &status));
    let names = crate::console::names(web, visitor, &conference_id)
        .await
        .map_err(refused)?;
    let permit = crate::streams::admit(web, visitor);
    let request = on_behalf(
        visitor,
        pb::WatchStatusRequest {
            conference_id,
            from_position,
            ..Default::default()
        },
    );
    let updates = stage.watch_status(request).await.map_err(refused)?;
    Ok((names, permit, updates.into_inner()))
}

/// `GET /live/board`: the board, again whenever a session's status changes.
pub async fn live(State(web): State<Web>, visitor: Visitor) -> Response {
    let Some(conference_id) = crate::console::staff_conference(&visitor) else {
        return reply::error(
            &visitor,
            axum::http::StatusCode::FORBIDDEN,
            visitor.text().error_forbidden,
            None,
        );
    };
    let (mut names, permit, mut updates) =
        match watch(&web, &visitor, conference_id.clone(), 0).await {
            Ok(watching) => watching,
            Err(refused) => return *refused,
        };
    let frame = Arc::new(Frame::new(&visitor, "/m/"));
    let t = visitor.text();
    let reader = visitor.clone();
    let events = async_stream::stream! {
        let mut statuses = BTreeMap::new();
        let mut asked = BTreeSet::new();
        // About ten renders a second at most, a change the pace allows rendered at once.
        let mut pace = podium_feedback::Pace::default();
        while let Some(Ok(update)) = updates.next().await {
            pace.ready().await;
            let mut position = update.position;
            fold(&mut statuses, update);
            // Every change that came in meanwhile, folded into one render: the board never
            // falls behind, however many rooms change at once.
            while let Some(Some(Ok(more))) = updates.next().now_or_never() {
                position = more.position;
                fold(&mut statuses, more);
            }
            // A room or speaker added since the names were read: read them again, so that
            // the board names them (and offers a switch to a new speaker by name); once for
            // each id, should one stay unknown.
            let unknown: BTreeSet<String> =
                statuses.values().flat_map(|s| names.unknown(s)).map(str::to_owned).collect();
            if !unknown.is_subset(&asked) {
                match crate::console::names(&web, &reader, &conference_id).await {
                    Ok(read) => {
                        names = read;
                        asked.extend(unknown);
                    }
                    // Tried again at the next change.
                    Err(status) => tracing::warn!(%status, "board names not read again"),
                }
            }
            let fragment = BoardFragment { frame: &frame, rows: rows(t, &names, &statuses) };
            let Ok(html) = fragment.render() else { break };
            yield Ok::<_, Infallible>(
                Event::default().event("update").id(position.to_string()).data(format!("board\n{html}")),
            );
        }
    };
    visitor.finish(
        Sse::new(crate::streams::holding(events, permit))
            .keep_alive(KeepAlive::default())
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Lang;

    #[test]
    fn an_alert_names_the_speaker_in_the_reader_s_language() {
        let names = Names {
            speakers: [("spk-1".to_owned(), "Sokha Chan".to_owned())].into(),
            ..Names::default()
        };
        let lost = |kind: pb::AlertKind, speaker_id: &str| pb::Alert {
            kind: kind as i32,
            message: "ses-1 lost spk-1 (heartbeats stopped) and has no recording: slate on air"
                .into(),
            at: None,
            speaker_id: speaker_id.into(),
        };
        let no_recording = lost(pb::AlertKind::NoRecording, "spk-1");
        assert_eq!(
            alert(Lang::En.text(), &names, &no_recording),
            "Sokha Chan: link lost, and this session has no recording: the slate is on air"
        );
        let khmer = alert(Lang::Km.text(), &names, &no_recording);
        assert!(khmer.starts_with("Sokha Chan: "), "{khmer}");
        assert!(
            !khmer.contains("spk-1") && !khmer.contains("slate"),
            "{khmer}"
        );
        assert_eq!(
            alert(
                Lang::En.text(),
                &names,
                &lost(pb::AlertKind::Failover, "spk-1")
            ),
            "Sokha Chan: link lost: the recording is on air"
        );
        // Stored before alerts named their speaker: as it was written.
        assert_eq!(
            alert(
                Lang::En.text(),
                &names,
                &lost(pb::AlertKind::NoRecording, "")
            ),
            no_recording.message
        );
    }

    fn link(speaker_id: &str, backup: bool) -> pb::SpeakerLink {
        pb::SpeakerLink {
            speaker_id: speaker_id.into(),
            backup,
            ..Default::default()
        }
    }

    #[test]
    fn a_session_is_offered_its_recording_only_when_it_has_one() {
        let names = Names::default();
        let kinds = |recordings: u32| {
            let status = pb::SessionStatus {
                session_id: "ses-1".into(),
                links: vec![link("spk-1", false)],
                recordings,
                ..Default::default()
            };
            Row::new(Lang::En.text(), &names, &status)
                .choices
                .iter()
                .map(|c| c.kind)
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(0), ["speaker", "slate"]);
        assert_eq!(kinds(2), ["speaker", "recording", "slate"]);
    }

    #[test]
    fn a_session_offers_a_switch_to_each_speaker_it_has_now_and_names_the_unknown() {
        let names = Names {
            rooms: [("hall".to_owned(), "Main hall".to_owned())].into(),
            speakers: [
                ("spk-1".to_owned(), "Sokha Chan".to_owned()),
                ("spk-2".to_owned(), "Dara Sok".to_owned()),
            ]
            .into(),
        };
        let status = |room: &str, links: Vec<pb::SpeakerLink>| pb::SessionStatus {
            session_id: "ses-1".into(),
            room_id: room.into(),
            links,
            ..Default::default()
        };
        let choices = |status: &pb::SessionStatus| {
            Row::new(Lang::En.text(), &names, status)
                .choices
                .into_iter()
                .map(|c| (c.kind, c.speaker_id, c.label))
                .collect::<Vec<_>>()
        };
        let booked = status("hall", vec![link("spk-1", false), link("spk-2", true)]);
        assert_eq!(
            choices(&booked)[..2],
            [
                ("speaker", "spk-1".into(), "speaker: Sokha Chan".into()),
                ("backup", "spk-2".into(), "backup speaker: Dara Sok".into()),
            ]
        );
        assert!(names.unknown(&booked).is_empty());
        // Sokha withdrew: Sarah, added to the conference after the names were read, speaks.
        let handed_over = status("breakout", vec![link("spk-3", false), link("spk-2", true)]);
        assert_eq!(
            choices(&handed_over)[..2],
            [
                ("speaker", "spk-3".into(), "speaker: spk-3".into()),
                ("backup", "spk-2".into(), "backup speaker: Dara Sok".into()),
            ]
        );
        assert_eq!(names.unknown(&handed_over), ["breakout", "spk-3"]);
    }
}
