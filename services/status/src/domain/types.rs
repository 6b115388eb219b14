//! The failover machine's vocabulary: times, sources, link states and figures, causes, alerts,
//! the status events, the session context the machine is given, and what a moderator can ask
//! for or be refused. Plain data; the rules are in [`super::machine`], the fold in
//! [`super::live`].

use podium_core::FailoverPolicy;

/// Milliseconds since the Unix epoch, from the caller's clock.
pub type Millis = u64;

/// How long a podiumd restart keeps live sessions on their source before any rule fires.
pub const DEFAULT_RECONNECT_GRACE_MS: Millis = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SourceKind {
    Speaker,
    Recording,
    BackupSpeaker,
    Slate,
}

/// What is on air.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Source {
    pub kind: SourceKind,
    /// For speakers.
    pub speaker_id: String,
    /// For recordings.
    pub recording_id: String,
    pub offset_ms: Millis,
    pub sha256: String,
    pub since: Millis,
}

impl Source {
    pub fn speaker(kind: SourceKind, speaker_id: &str, since: Millis) -> Self {
        Self {
            kind,
            speaker_id: speaker_id.to_owned(),
            recording_id: String::new(),
            offset_ms: 0,
            sha256: String::new(),
            since,
        }
    }

    pub fn slate(since: Millis) -> Self {
        Self {
            kind: SourceKind::Slate,
            speaker_id: String::new(),
            recording_id: String::new(),
            offset_ms: 0,
            sha256: String::new(),
            since,
        }
    }

    pub(crate) fn live_speaker(&self) -> Option<&str> {
        matches!(self.kind, SourceKind::Speaker | SourceKind::BackupSpeaker)
            .then_some(self.speaker_id.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Lifecycle {
    Scheduled,
    Live,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LinkState {
    Offline,
    Healthy,
    Poor,
    Lost,
}

/// Link figures measured by a speaker agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Figures {
    pub round_trip_ms: u32,
    pub loss_percent: f32,
    pub upstream_kbps: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Cause {
    Moderator,
    HeartbeatTimeout,
    StreamClosed,
    PoorLink,
    LinkStable,
    SessionStarted,
}

impl Cause {
    pub(crate) fn automatic_failover(self) -> bool {
        matches!(
            self,
            Cause::HeartbeatTimeout | Cause::StreamClosed | Cause::PoorLink
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AlertKind {
    NoRecording,
    Failover,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub message: String,
    pub at: Millis,
    /// The speaker whose link failed.
    pub speaker_id: String,
}

/// What happened to a session's status. One-to-one with the `podium.v1` status events.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusEvent {
    WentLive {
        source: Source,
        at: Millis,
        by: String,
    },
    Ended {
        at: Millis,
        by: String,
    },
    Switched {
        from: Source,
        to: Source,
        cause: Cause,
        figures: Figures,
        at: Millis,
        by: String,
    },
    Pinned {
        pinned: bool,
        at: Millis,
        by: String,
    },
    Link {
        speaker_id: String,
        state: LinkState,
        figures: Figures,
        at: Millis,
    },
    Alert(Alert),
}

/// A recording the session can fall back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRef {
    pub id: String,
    pub sha256: String,
    pub duration_ms: Millis,
}

/// What the machine needs to know of the session beyond its own status.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub session_id: String,
    pub policy: FailoverPolicy,
    pub speakers: Vec<String>,
    pub backups: Vec<String>,
    /// In fallback order.
    pub recordings: Vec<RecordingRef>,
}

/// A command refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotLive(String),
    AlreadyLive(String),
    Ended(String),
    UnknownSpeaker(String),
    UnknownRecording(String),
    NoSpeaker(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotLive(s) => write!(f, "session {s} is not live; start it first"),
            Refusal::AlreadyLive(s) => write!(f, "session {s} is already live"),
            Refusal::Ended(s) => write!(f, "session {s} has ended"),
            Refusal::UnknownSpeaker(m) | Refusal::UnknownRecording(m) | Refusal::NoSpeaker(m) => {
                f.write_str(m)
            }
        }
    }
}

/// What a moderator can put on air.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A main speaker; the first if empty.
    Speaker(String),
    /// A backup speaker; the first if empty.
    BackupSpeaker(String),
    /// A recording; the primary if empty.
    Recording(String),
    Slate,
}
