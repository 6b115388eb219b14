//! The `podium.v1.Stage` service: moderators start and end sessions, switch and pin the source;
//! boards and switchers watch the status stream; organisers run the pre-flight report.

use std::{pin::Pin, sync::Arc};

use chrono::{DateTime, Duration, Utc};
use futures::Stream;
use podium_access::{MODERATORS, Principal, Role, STAFF, caller};
use podium_core::{Hours, zoned};
use podium_eventlog::{EventLog, Projector, RequestId};
use podium_proto::{
    time,
    v1::{self as pb, stage_server::Stage},
};
use prost::Name;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::{
    codec::{
        alert_to_proto, cause_to_proto, figures_to_proto, link_state_to_proto, source_to_proto,
        timestamp,
    },
    domain::{Lifecycle, LinkState, SessionLive, Target},
    engine::{Command, EngineHandle},
    model::{ConferenceFacts, StatusModel},
    publisher::StatusPublishers,
};

pub struct StageService {
    engine: EngineHandle,
    model: Projector<StatusModel>,
    publishers: StatusPublishers,
    shutdown: watch::Receiver<bool>,
}

impl StageService {
    /// The status stream follows `model` through shared publishers; `_log` is no longer read
    /// here, and stays in the signature for the callers.
    pub fn new(
        engine: EngineHandle,
        model: Projector<StatusModel>,
        _log: Arc<dyn EventLog>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            engine,
            publishers: StatusPublishers::new(model.clone()),
            model,
            shutdown,
        }
    }

    /// Runs a moderator command and answers with the session's status once the read model
    /// shows it. A retry (the same `request_id`) of a command carried out is answered with
    /// the session's status, not carried out again.
    async fn command(
        &self,
        principal: &Principal,
        conference_id: &str,
        session_id: &str,
        request_id: &str,
        command: Command,
        action: &str,
    ) -> Result<pb::SessionStatus, Status> {
        principal.require(conference_id, MODERATORS, action)?;
        let request = RequestId::parse_or_new("request_id", request_id)?;
        self.session_exists(conference_id, session_id).await?;
        let position = self
            .engine
            .command(conference_id, session_id, command, request, &principal.id)
            .await?;
        self.model.wait_for(position).await?;
        let model = self.model.read();
        let conference = model
            .conference(conference_id)
            .ok_or_else(|| Status::not_found(format!("conference {conference_id} not found")))?;
        session_status(conference, session_id)
            .ok_or_else(|| Status::not_found(format!("session {session_id} not found")))
    }

    /// The session is the conference's; on a miss the read model first catches up with the
    /// log, so a session the agenda has just added is found.
    async fn session_exists(&self, conference_id: &str, session_id: &str) -> Result<(), Status> {
        self.model
            .catch_up_unless(|m| m.session(conference_id, session_id).is_some())
            .await?;
        self.find_session(conference_id, session_id)
    }

    fn find_session(&self, conference_id: &str, session_id: &str) -> Result<(), Status> {
        let model = self.model.read();
        let conference = model
            .conference(conference_id)
            .ok_or_else(|| Status::not_found(format!("conference {conference_id} not found")))?;
        if conference.sessions.contains_key(session_id) {
            Ok(())
        } else {
            Err(Status::not_found(format!(
                "session {session_id} not found in conference {conference_id}"
            )))
        }
    }
}

/// A session's status as boards show it.
pub fn session_status(conference: &ConferenceFacts, session_id: &str) -> Option<pb::SessionStatus> {
    let facts = conference.sessions.get(session_id)?;
    let scheduled = SessionLive::default();
    let live = conference.live.get(session_id).unwrap_or(&scheduled);
    let speakers = facts.speaker_ids.iter().map(|id| (id, false));
    let backups = facts.backup_speaker_ids.iter().map(|id| (id, true));
    let links = speakers
        .chain(backups)
        .map(|(speaker_id, backup)| {
            let link = live.links.get(speaker_id);
            pb::SpeakerLink {
                speaker_id: speaker_id.clone(),
                state: link_state_to_proto(link.map_or(LinkState::Offline, |l| l.state)) as i32,
                figures: link.map(|l| figures_to_proto(&l.figures)),
                changed_at: link.map(|l| timestamp(l.changed_at)),
                figures_at: link.map(|l| timestamp(l.figures_at)),
                backup,
            }
        })
        .collect();
    Some(pb::SessionStatus {
        session_id: session_id.to_owned(),
        room_id: facts.room_id.clone(),
        state: match live.lifecycle {
            Lifecycle::Scheduled => pb::SessionState::Scheduled,
            Lifecycle::Live => pb::SessionState::Live,
            Lifecycle::Ended => pb::SessionState::Ended,
        } as i32,
        source: live.source.as_ref().map(source_to_proto),
        pinned: live.pinned,
        links,
        alerts: live.alerts.iter().map(alert_to_proto).collect(),
        went_live_at: live.went_live_at.map(timestamp),
        cause: live.cause.map_or(pb::Cause::Unspecified, cause_to_proto) as i32,
        title: facts.title.clone(),
        output: conference.output_of(session_id).cloned(),
        recordings: conference.recordings.get(session_id).map_or(0, Vec::len) as u32,
    })
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchStatusResponse, Status>> + Send>>;

fn target(kind: i32, speaker_id: String, recording_id: String) -> Result<Target, Status> {
    Ok(match pb::SourceKind::try_from(kind) {
        Ok(pb::SourceKind::Speaker) => Target::Speaker(speaker_id),
        Ok(pb::SourceKind::BackupSpeaker) => Target::BackupSpeaker(speaker_id),
        Ok(pb::SourceKind::Recording) => Target::Recording(recording_id),
        Ok(pb::SourceKind::Slate) => Target::Slate,
        _ => {
            return Err(Status::invalid_argument(
                "kind: must be SPEAKER, RECORDING, BACKUP_SPEAKER or SLATE",
            ));
        }
    })
}

#[tonic::async_trait]
impl Stage for StageService {
    type WatchStatusStream = WatchStream;

    async fn start_session(
        &self,
        request: Request<pb::StartSessionRequest>,
    ) -> Result<Response<pb::StartSessionResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let status = self
            .command(
                &principal,
                r.conference_id.trim(),
                r.session_id.trim(),
                &r.request_id,
                Command::Start,
                "start sessions",
            )
            .await?;
        Ok(Response::new(pb::StartSessionResponse {
            status: Some(status),
        }))
    }

    async fn end_session(
        &self,
        request: Request<pb::EndSessionRequest>,
    ) -> Result<Response<pb::EndSessionResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let status = self
            .command(
                &principal,
                r.conference_id.trim(),
                r.session_id.trim(),
                &r.request_id,
                Command::End,
                "end sessions",
            )
            .await?;
        Ok(Response::new(pb::EndSessionResponse {
            status: Some(status),
        }))
    }

    async fn switch_source(
        &self,
        request: Request<pb::SwitchSourceRequest>,
    ) -> Result<Response<pb::SwitchSourceResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        // Who may switch before what to: a caller who may not gets PERMISSION_DENIED, whatever
        // the request says.
        principal.require(r.conference_id.trim(), MODERATORS, "switch sources")?;
        let target = target(
            r.kind,
            r.speaker_id.trim().to_owned(),
            r.recording_id.trim().to_owned(),
        )?;
        let status = self
            .command(
                &principal,
                r.conference_id.trim(),
                r.session_id.trim(),
                &r.request_id,
                Command::Switch(target),
                "switch sources",
            )
            .await?;
        // The switch itself is logged with its cause when the log has it ("source switched").
        tracing::info!(conference = %r.conference_id.trim(), session = %r.session_id.trim(), kind = r.kind, by = %principal.id, "moderator switch asked");
        Ok(Response::new(pb::SwitchSourceResponse {
            status: Some(status),
        }))
    }

    async fn pin(
        &self,
        request: Request<pb::PinRequest>,
    ) -> Result<Response<pb::PinResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let status = self
            .command(
                &principal,
                r.conference_id.trim(),
                r.session_id.trim(),
                &r.request_id,
                Command::Pin(r.pinned),
                "pin sources",
            )
            .await?;
        tracing::info!(conference = %r.conference_id.trim(), session = %r.session_id.trim(), pinned = r.pinned, by = %principal.id, "sources pinned");
        Ok(Response::new(pb::PinResponse {
            status: Some(status),
        }))
    }

    async fn watch_status(
        &self,
        request: Request<pb::WatchStatusRequest>,
    ) -> Result<Response<Self::WatchStatusStream>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let conference_id = r.conference_id.trim().to_owned();
        let speaker = staff_or_speaker(&principal, &conference_id, "watch the status")?;
        let room = r.room_id.trim().to_owned();
        // A conference or room created through another node a moment ago is waited for. A room
        // with no sessions yet, or none left, is still a room: its bridge watches it.
        let known = |m: &StatusModel| {
            m.conference(&conference_id)
                .is_some_and(|c| room.is_empty() || c.has_room(&room))
        };
        self.model.catch_up_unless(known).await?;
        // The first watcher of a conference starts its publisher; NOT_FOUND if there is none.
        let mut published = self.publishers.subscribe(&conference_id)?;
        if !room.is_empty() && !known(&self.model.read()) {
            return Err(Status::not_found(format!(
                "room {room} not found in conference {conference_id}"
            )));
        }
        let (position, snapshot) = {
            let p = published.borrow_and_update();
            let mut sessions: Vec<_> = p
                .sessions
                .iter()
                .filter(|(_, e)| e.concerns(&room, speaker.as_deref(), r.from_position))
                .filter(|(_, e)| r.from_position == 0 || e.changed >= r.from_position)
                .collect();
            sessions.sort_by_key(|(id, e)| (e.start, *id));
            let snapshot: Vec<_> = sessions
                .into_iter()
                .map(|(_, e)| e.status.clone())
                .collect();
            (p.position, snapshot)
        };
        // Copied out of the shared statuses once the publisher's channel is no longer held.
        let snapshot: Vec<_> = snapshot
            .iter()
            .map(|s| shown(speaker.as_deref(), s))
            .collect();
        let mut shutdown = self.shutdown.clone();
        let stream = async_stream::try_stream! {
            yield pb::WatchStatusResponse { position, update: Some(pb::watch_status_response::Update::Snapshot(pb::StatusSnapshot { sessions: snapshot })) };
            // Every session changed at or after this has still to be sent.
            let mut since = position;
            loop {
                let next = tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => None,
                    changed = published.changed() => Some(changed.is_ok()),
                };
                match next {
                    None => Err(Status::unavailable("podiumd is shutting down; reconnect with from_position"))?,
                    Some(false) => Err(Status::unavailable("event log closed; reconnect with from_position"))?,
                    Some(true) => {}
                }
                let changes = {
                    let p = published.borrow_and_update();
                    let changes = p.since(&room, speaker.as_deref(), since);
                    since = p.position;
                    changes
                };
                for (position, status) in changes {
                    yield pb::WatchStatusResponse { position, update: Some(pb::watch_status_response::Update::Changed(shown(speaker.as_deref(), &status))) };
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn preflight(
        &self,
        request: Request<pb::PreflightRequest>,
    ) -> Result<Response<pb::PreflightResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let conference_id = r.conference_id.trim().to_owned();
        let speaker = staff_or_speaker(&principal, &conference_id, "run the pre-flight report")?;
        let hours = match r.within_hours {
            0 => 24,
            h if h <= 744 => h,
            _ => {
                return Err(Status::invalid_argument(
                    "within_hours: at most 744 (31 days)",
                ));
            }
        };
        let now = DateTime::<Utc>::from_timestamp_millis(self.engine.clock().now() as i64)
            .unwrap_or_default();
        let model = self.model.read();
        let conference = model
            .conference(&conference_id)
            .ok_or_else(|| Status::not_found(format!("conference {conference_id} not found")))?;
        let mut sessions: Vec<_> = conference
            .sessions
            .values()
            .filter(|s| {
                conference
                    .live
                    .get(&s.id)
                    .is_none_or(|l| l.lifecycle != Lifecycle::Ended)
            })
            .filter(|s| speaker.as_ref().is_none_or(|id| s.has_speaker(id)))
            .filter(|s| {
                r.all || (s.start >= now && s.start <= now + Duration::hours(i64::from(hours)))
            })
            .collect();
        sessions.sort_by_key(|s| (s.start, s.id.clone()));
        let report = sessions
            .into_iter()
            .map(|s| readiness(conference, s))
            .collect();
        Ok(Response::new(pb::PreflightResponse { sessions: report }))
    }
}

fn zoned_proto(at: DateTime<Utc>, zone: chrono_tz::Tz) -> pb::ZonedTime {
    let view = zoned(at, zone);
    pb::ZonedTime {
        utc: Some(time::timestamp(at)),
        time_zone: view.zone.name().to_owned(),
        local: view.local,
        label: view.label,
    }
}

/// A session's status as a watcher sees it: staff (`None`) all of it. A speaker watches the
/// sessions they speak in or back up (each is among its links), without the room's program
/// output: until the bridge carries out the session's first decision it describes the room's
/// session before, and it lists every recording the playout machine holds. A session they were
/// taken off is sent once more with its id, room, title and state only (what is on air, its
/// recordings and its other speakers are no longer theirs to see): no link names them.
fn shown(speaker: Option<&str>, status: &pb::SessionStatus) -> pb::SessionStatus {
    match speaker {
        None => status.clone(),
        Some(id) if names_speaker(status, id) => pb::SessionStatus {
            output: None,
            ..status.clone()
        },
        Some(_) => pb::SessionStatus {
            session_id: status.session_id.clone(),
            room_id: status.room_id.clone(),
            title: status.title.clone(),
            state: status.state,
            ..Default::default()
        },
    }
}

/// Whether `speaker_id` speaks in or backs up the session of `status` (each is among its links).
pub(crate) fn names_speaker(status: &pb::SessionStatus, speaker_id: &str) -> bool {
    status.links.iter().any(|l| l.speaker_id == speaker_id)
}

/// Staff see every session of a conference (`None`); a speaker sees their own (their id).
fn staff_or_speaker(
    principal: &Principal,
    conference_id: &str,
    action: &str,
) -> Result<Option<String>, Status> {
    match (principal.role, &principal.speaker_id) {
        (Role::Speaker, Some(speaker_id)) => {
            principal.require(conference_id, &[Role::Speaker], action)?;
            Ok(Some(speaker_id.clone()))
        }
        _ => {
            principal.require(conference_id, STAFF, action)?;
            Ok(None)
        }
    }
}

/// READY, or AT_RISK with the reasons, for one session.
fn readiness(
    conference: &ConferenceFacts,
    session: &crate::model::SessionFacts,
) -> pb::SessionReadiness {
    // Each concern with its English reason, in the order they are found.
    let mut reasons: Vec<(pb::ReadinessConcern, String)> = Vec::new();
    let mut speakers = Vec::new();
    for (speaker_id, backup) in session
        .speaker_ids
        .iter()
        .map(|s| (s, false))
        .chain(session.backup_speaker_ids.iter().map(|s| (s, true)))
    {
        let Some(speaker) = conference.speakers.get(speaker_id) else {
            continue;
        };
        let tested = conference.tested.contains(speaker_id);
        let about = |kind: pb::ReadinessConcernKind| pb::ReadinessConcern {
            kind: kind as i32,
            speaker_id: speaker_id.clone(),
            ..Default::default()
        };
        if !tested && !backup {
            reasons.push((
                about(pb::ReadinessConcernKind::NotTested),
                format!("{} has not done a test connection", speaker.name),
            ));
        }
        // Hours are checked when a speaker is added; should a stored pair not make hours, the
        // session is not called within them.
        let within_hours = match Hours::new(speaker.available_from, speaker.available_until) {
            Err(_) => {
                reasons.push((
                    about(pb::ReadinessConcernKind::NoValidHours),
                    format!("{} has no valid hours", speaker.name),
                ));
                false
            }
            Ok(hours) => match hours.conflict(speaker.zone, session.start, session.end) {
                None => true,
                Some(conflict) => {
                    let described = hours.describe();
                    let at = if conflict.ends {
                        session.end
                    } else {
                        session.start
                    };
                    reasons.push((
                        pb::ReadinessConcern {
                            at: Some(zoned_proto(at, speaker.zone)),
                            ends: conflict.ends,
                            hours: described.clone(),
                            ..about(pb::ReadinessConcernKind::OutsideHours)
                        },
                        format!(
                            "{conflict} for {} in {}, outside their hours {described}",
                            speaker.name,
                            speaker.zone.name(),
                        ),
                    ));
                    false
                }
            },
        };
        speakers.push(pb::SpeakerReadiness {
            speaker_id: speaker_id.clone(),
            name: speaker.name.clone(),
            backup,
            tested,
            within_hours,
            start: Some(zoned_proto(session.start, speaker.zone)),
        });
    }
    let recordings = conference.recordings.get(&session.id).map_or(0, Vec::len) as u32;
    let plain = |kind: pb::ReadinessConcernKind| pb::ReadinessConcern {
        kind: kind as i32,
        ..Default::default()
    };
    if recordings == 0 {
        reasons.push((
            plain(pb::ReadinessConcernKind::NoRecording),
            "no verified recording".to_owned(),
        ));
    }
    if session.backup_speaker_ids.is_empty() {
        reasons.push((
            plain(pb::ReadinessConcernKind::NoBackup),
            "no backup speaker named".to_owned(),
        ));
    }
    // Once a bridge reports for the room, the primary recording must be on its machine.
    let bridge = conference.outputs.get(&session.room_id);
    let primary = conference
        .recordings
        .get(&session.id)
        .and_then(|r| r.first());
    let recording_on_playout = match (bridge, primary) {
        (Some(output), Some(primary)) => output.recordings_held.contains(&primary.id),
        _ => false,
    };
    if bridge.is_some() && primary.is_some() && !recording_on_playout {
        reasons.push((
            plain(pb::ReadinessConcernKind::NotOnPlayout),
            "recording not on the playout machine".to_owned(),
        ));
    }
    // The primary's length against the slot, and what its file is (probed on upload; earlier
    // uploads were not).
    if let Some(primary) = primary {
        let slot_ms = (session.end - session.start).num_milliseconds().max(0) as u64;
        reasons.extend(crate::recordings::playout_concerns(
            primary.duration_ms,
            primary.media.as_ref(),
            slot_ms,
        ));
    }
    let (concerns, reasons): (Vec<_>, Vec<_>) = reasons.into_iter().unzip();
    pb::SessionReadiness {
        session_id: session.id.clone(),
        title: session.title.clone(),
        start: Some(zoned_proto(session.start, conference.zone)),
        readiness: if reasons.is_empty() {
            pb::Readiness::Ready
        } else {
            pb::Readiness::AtRisk
        } as i32,
        reasons,
        recordings,
        speakers,
        playout_bridge: bridge.is_some(),
        recording_on_playout,
        concerns,
    }
}

/// The type name of every status event, for feeds that want only those.
pub fn status_event_types() -> Vec<String> {
    vec![
        pb::SessionWentLive::full_name(),
        pb::SessionEnded::full_name(),
        pb::SourceSwitched::full_name(),
        pb::SourcePinned::full_name(),
        pb::LinkChanged::full_name(),
        pb::AlertRaised::full_name(),
        pb::ProgramOutputReported::full_name(),
    ]
}
