//! Status events to and from their `podium.v1` protobuf form, and the conversions beneath them:
//! domain values to protobuf views (`*_to_proto`), stored facts back to domain values, Unix
//! milliseconds to and from timestamps, and the names of the streams status events live in.
//!
//! This is the lowest layer of the crate's storage side: [`crate::model`] folds what this
//! decodes and [`crate::engine`] appends what this encodes; this module imports neither.

use podium_core::{Failback, FailoverPolicy};
use podium_eventlog::{NewEvent, RecordedEvent};
use podium_proto::{time, v1 as pb};
use prost_types::Timestamp;
use uuid::Uuid;

use crate::domain::{
    Alert, AlertKind, Cause, Figures, LinkState, Millis, Source, SourceKind, StatusEvent,
};

/// The stream of a speaker's green-room test connections.
pub fn presence_stream(conference_id: &str, speaker_id: &str) -> String {
    format!("conference/{conference_id}/speaker/{speaker_id}/presence")
}

/// The stream of a session's status events.
pub fn status_stream(conference_id: &str, session_id: &str) -> String {
    format!("conference/{conference_id}/session/{session_id}/status")
}

// ---- Domain <-> protobuf ----

pub fn source_kind_to_proto(kind: SourceKind) -> pb::SourceKind {
    match kind {
        SourceKind::Speaker => pb::SourceKind::Speaker,
        SourceKind::Recording => pb::SourceKind::Recording,
        SourceKind::BackupSpeaker => pb::SourceKind::BackupSpeaker,
        SourceKind::Slate => pb::SourceKind::Slate,
    }
}

pub fn source_to_proto(s: &Source) -> pb::Source {
    pb::Source {
        kind: source_kind_to_proto(s.kind) as i32,
        speaker_id: s.speaker_id.clone(),
        recording_id: s.recording_id.clone(),
        offset_ms: s.offset_ms,
        recording_sha256: s.sha256.clone(),
        since: Some(timestamp(s.since)),
    }
}

fn source_from_proto(s: Option<pb::Source>) -> Result<Source, String> {
    let s = s.ok_or("source missing")?;
    let kind = match pb::SourceKind::try_from(s.kind).map_err(|_| "unknown source kind")? {
        pb::SourceKind::Speaker => SourceKind::Speaker,
        pb::SourceKind::Recording => SourceKind::Recording,
        pb::SourceKind::BackupSpeaker => SourceKind::BackupSpeaker,
        pb::SourceKind::Slate => SourceKind::Slate,
        pb::SourceKind::Unspecified => return Err("source kind unspecified".into()),
    };
    Ok(Source {
        kind,
        speaker_id: s.speaker_id,
        recording_id: s.recording_id,
        offset_ms: s.offset_ms,
        sha256: s.recording_sha256,
        since: millis(&s.since),
    })
}

pub fn cause_to_proto(cause: Cause) -> pb::Cause {
    match cause {
        Cause::Moderator => pb::Cause::Moderator,
        Cause::HeartbeatTimeout => pb::Cause::HeartbeatTimeout,
        Cause::StreamClosed => pb::Cause::StreamClosed,
        Cause::PoorLink => pb::Cause::PoorLink,
        Cause::LinkStable => pb::Cause::LinkStable,
        Cause::SessionStarted => pb::Cause::SessionStarted,
    }
}

fn cause_from_proto(cause: i32) -> Result<Cause, String> {
    Ok(
        match pb::Cause::try_from(cause).map_err(|_| "unknown cause")? {
            pb::Cause::Moderator => Cause::Moderator,
            pb::Cause::HeartbeatTimeout => Cause::HeartbeatTimeout,
            pb::Cause::StreamClosed => Cause::StreamClosed,
            pb::Cause::PoorLink => Cause::PoorLink,
            pb::Cause::LinkStable => Cause::LinkStable,
            pb::Cause::SessionStarted => Cause::SessionStarted,
            pb::Cause::Unspecified => return Err("cause unspecified".into()),
        },
    )
}

pub fn link_state_to_proto(state: LinkState) -> pb::LinkState {
    match state {
        LinkState::Offline => pb::LinkState::Offline,
        LinkState::Healthy => pb::LinkState::Healthy,
        LinkState::Poor => pb::LinkState::Poor,
        LinkState::Lost => pb::LinkState::Lost,
    }
}

fn link_state_from_proto(state: i32) -> Result<LinkState, String> {
    Ok(
        match pb::LinkState::try_from(state).map_err(|_| "unknown link state")? {
            pb::LinkState::Offline | pb::LinkState::Unspecified => LinkState::Offline,
            pb::LinkState::Healthy => LinkState::Healthy,
            pb::LinkState::Poor => LinkState::Poor,
            pb::LinkState::Lost => LinkState::Lost,
        },
    )
}

pub fn figures_to_proto(f: &Figures) -> pb::LinkFigures {
    pb::LinkFigures {
        round_trip_ms: f.round_trip_ms,
        packet_loss_percent: f.loss_percent,
        upstream_kbps: f.upstream_kbps,
    }
}

pub fn figures_from_proto(f: Option<pb::LinkFigures>) -> Figures {
    let f = f.unwrap_or_default();
    let loss = if f.packet_loss_percent.is_finite() {
        f.packet_loss_percent.clamp(0.0, 100.0)
    } else {
        0.0
    };
    Figures {
        round_trip_ms: f.round_trip_ms,
        loss_percent: loss,
        upstream_kbps: f.upstream_kbps,
    }
}

pub fn alert_to_proto(a: &Alert) -> pb::Alert {
    pb::Alert {
        kind: match a.kind {
            AlertKind::NoRecording => pb::AlertKind::NoRecording,
            AlertKind::Failover => pb::AlertKind::Failover,
        } as i32,
        message: a.message.clone(),
        at: Some(timestamp(a.at)),
        speaker_id: a.speaker_id.clone(),
    }
}

fn alert_from_proto(a: Option<pb::Alert>) -> Result<Alert, String> {
    let a = a.ok_or("alert missing")?;
    let kind = match pb::AlertKind::try_from(a.kind).map_err(|_| "unknown alert kind")? {
        pb::AlertKind::NoRecording => AlertKind::NoRecording,
        pb::AlertKind::Failover | pb::AlertKind::Unspecified => AlertKind::Failover,
    };
    Ok(Alert {
        kind,
        message: a.message,
        at: millis(&a.at),
        speaker_id: a.speaker_id,
    })
}

/// The stored form of a status event.
pub fn encode(id: Uuid, conference_id: &str, session_id: &str, event: &StatusEvent) -> NewEvent {
    let (c, s) = (conference_id.to_owned(), session_id.to_owned());
    match event {
        StatusEvent::WentLive { source, at, by } => NewEvent::new(
            id,
            &pb::SessionWentLive {
                conference_id: c,
                session_id: s,
                source: Some(source_to_proto(source)),
                at: Some(timestamp(*at)),
                by: by.clone(),
            },
        ),
        StatusEvent::Ended { at, by } => NewEvent::new(
            id,
            &pb::SessionEnded {
                conference_id: c,
                session_id: s,
                at: Some(timestamp(*at)),
                by: by.clone(),
            },
        ),
        StatusEvent::Switched {
            from,
            to,
            cause,
            figures,
            at,
            by,
        } => NewEvent::new(
            id,
            &pb::SourceSwitched {
                conference_id: c,
                session_id: s,
                from: Some(source_to_proto(from)),
                to: Some(source_to_proto(to)),
                cause: cause_to_proto(*cause) as i32,
                figures: Some(figures_to_proto(figures)),
                at: Some(timestamp(*at)),
                by: by.clone(),
            },
        ),
        StatusEvent::Pinned { pinned, at, by } => NewEvent::new(
            id,
            &pb::SourcePinned {
                conference_id: c,
                session_id: s,
                pinned: *pinned,
                at: Some(timestamp(*at)),
                by: by.clone(),
            },
        ),
        StatusEvent::Link {
            speaker_id,
            state,
            figures,
            at,
        } => NewEvent::new(
            id,
            &pb::LinkChanged {
                conference_id: c,
                session_id: s,
                speaker_id: speaker_id.clone(),
                state: link_state_to_proto(*state) as i32,
                figures: Some(figures_to_proto(figures)),
                at: Some(timestamp(*at)),
            },
        ),
        StatusEvent::Alert(alert) => NewEvent::new(
            id,
            &pb::AlertRaised {
                conference_id: c,
                session_id: s,
                alert: Some(alert_to_proto(alert)),
            },
        ),
    }
}

/// The domain form of a stored status event, with its conference and session; `None` for
/// other types.
pub fn decode(event: &RecordedEvent) -> Result<Option<(String, String, StatusEvent)>, String> {
    let e = |e: podium_eventlog::DecodeError| e.to_string();
    let decoded = if event.is::<pb::SessionWentLive>() {
        let m = event.decode::<pb::SessionWentLive>().map_err(e)?;
        (
            m.conference_id,
            m.session_id,
            StatusEvent::WentLive {
                source: source_from_proto(m.source)?,
                at: millis(&m.at),
                by: m.by,
            },
        )
    } else if event.is::<pb::SessionEnded>() {
        let m = event.decode::<pb::SessionEnded>().map_err(e)?;
        (
            m.conference_id,
            m.session_id,
            StatusEvent::Ended {
                at: millis(&m.at),
                by: m.by,
            },
        )
    } else if event.is::<pb::SourceSwitched>() {
        let m = event.decode::<pb::SourceSwitched>().map_err(e)?;
        let switched = StatusEvent::Switched {
            from: source_from_proto(m.from)?,
            to: source_from_proto(m.to)?,
            cause: cause_from_proto(m.cause)?,
            figures: figures_from_proto(m.figures),
            at: millis(&m.at),
            by: m.by,
        };
        (m.conference_id, m.session_id, switched)
    } else if event.is::<pb::SourcePinned>() {
        let m = event.decode::<pb::SourcePinned>().map_err(e)?;
        (
            m.conference_id,
            m.session_id,
            StatusEvent::Pinned {
                pinned: m.pinned,
                at: millis(&m.at),
                by: m.by,
            },
        )
    } else if event.is::<pb::LinkChanged>() {
        let m = event.decode::<pb::LinkChanged>().map_err(e)?;
        let link = StatusEvent::Link {
            speaker_id: m.speaker_id,
            state: link_state_from_proto(m.state)?,
            figures: figures_from_proto(m.figures),
            at: millis(&m.at),
        };
        (m.conference_id, m.session_id, link)
    } else if event.is::<pb::AlertRaised>() {
        let m = event.decode::<pb::AlertRaised>().map_err(e)?;
        (
            m.conference_id,
            m.session_id,
            StatusEvent::Alert(alert_from_proto(m.alert)?),
        )
    } else {
        return Ok(None);
    };
    Ok(Some(decoded))
}

// ---- Time and policy ----

/// Unix milliseconds of a stored timestamp, as the machine counts them: 0 when it is missing
/// or before the epoch (the machine's clock never goes there).
pub fn millis(t: &Option<Timestamp>) -> Millis {
    Millis::try_from(time::millis(t)).unwrap_or(0)
}

/// The timestamp of a time the machine decided.
pub fn timestamp(at: Millis) -> Timestamp {
    time::timestamp_from_millis(i64::try_from(at).unwrap_or(i64::MAX))
}

/// The policy a stored `SessionScheduled` names, every 0 its default. Unlike the agenda's own
/// decoding, an unknown failback mode reads as sticky: the status service must still run the
/// session.
pub fn policy_from_proto(p: Option<pb::FailoverPolicy>) -> FailoverPolicy {
    let Some(p) = p else {
        return FailoverPolicy::default();
    };
    FailoverPolicy {
        failover_after_ms: p.failover_after_ms,
        failback: if p.failback == pb::FailbackMode::ReturnWhenStable as i32 {
            Failback::ReturnWhenStable
        } else {
            Failback::Sticky
        },
        clear_after_ms: p.clear_after_ms,
        max_loss_percent: p.max_loss_percent,
        max_round_trip_ms: p.max_round_trip_ms,
        poor_for_ms: p.poor_for_ms,
    }
    .or_defaults()
}
