//! Live status's figures for operators, through the `metrics` facade (podiumd renders them at
//! `/metrics`): every change of source with its cause, failovers among them, speakers' agents
//! connected, and the bytes of recordings stored. Labels are kinds and causes, never ids.

use crate::{
    domain::{Cause, Lifecycle, SourceKind},
    model::StatusModel,
};

/// Changes of a live session's source, by the source put on air and why.
pub const SWITCHES: &str = "podium_source_switches_total";
/// Automatic failovers (a link lost or poor), by cause.
pub const FAILOVERS: &str = "podium_failovers_total";
/// Speakers' agents holding a presence stream now.
pub const AGENTS: &str = "podium_agents_connected";
/// Bytes of recordings in the store (each distinct content once).
pub const RECORDING_BYTES: &str = "podium_recordings_stored_bytes";
/// Live sessions by the source on air, counted at each scrape.
pub const ON_AIR: &str = "podium_sessions_on_air";
/// Times this node took the status engine over (several nodes on one log).
pub const ENGINE_MOVES: &str = "podium_status_engine_takeovers_total";
/// Status appends the log refused because another node's engine had written the session's
/// status since (this node's engine was deposed).
pub const FENCED: &str = "podium_status_appends_fenced_total";

/// Describes status's metrics to the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_counter!(
        SWITCHES,
        "Changes of a live session's source, by the source put on air and the cause."
    );
    describe_counter!(
        FAILOVERS,
        "Automatic failovers away from a speaker, by cause."
    );
    describe_gauge!(AGENTS, "Speakers' agents connected now.");
    describe_gauge!(ON_AIR, "Live sessions by the source on air.");
    describe_counter!(
        ENGINE_MOVES,
        "Times this node took the status engine over from another."
    );
    describe_counter!(
        FENCED,
        "Status appends refused because another node's engine had written the session since."
    );
    // Rendered from the start, at 0, so dashboards and alerts see a series.
    for cause in [
        Cause::HeartbeatTimeout,
        Cause::StreamClosed,
        Cause::PoorLink,
    ] {
        metrics::counter!(FAILOVERS, "cause" => cause_label(cause)).increment(0);
    }
    metrics::gauge!(AGENTS).increment(0.0);
    describe_gauge!(
        RECORDING_BYTES,
        Unit::Bytes,
        "Bytes of recordings stored, each distinct content once."
    );
}

/// Counts a change of source the log has acknowledged.
pub(crate) fn switched(to: SourceKind, cause: Cause) {
    let cause_label = cause_label(cause);
    metrics::counter!(SWITCHES, "to" => source_label(to), "cause" => cause_label).increment(1);
    if cause.automatic_failover() {
        metrics::counter!(FAILOVERS, "cause" => cause_label).increment(1);
    }
}

/// Counts a take-over of the status engine by this node.
pub(crate) fn engine_moved() {
    metrics::counter!(ENGINE_MOVES).increment(1);
}

/// Counts a status append refused by the log's fence.
pub(crate) fn fenced() {
    metrics::counter!(FENCED).increment(1);
}

/// Sets the on-air gauge from the read model: call it before rendering a scrape.
pub fn count_on_air(model: &StatusModel) {
    let mut counts = [0u32; 4];
    let kinds = [
        SourceKind::Speaker,
        SourceKind::BackupSpeaker,
        SourceKind::Recording,
        SourceKind::Slate,
    ];
    for live in model.conferences.values().flat_map(|c| c.live.values()) {
        if live.lifecycle == Lifecycle::Live
            && let Some(source) = &live.source
            && let Some(i) = kinds.iter().position(|k| *k == source.kind)
        {
            counts[i] += 1;
        }
    }
    for (kind, count) in kinds.into_iter().zip(counts) {
        metrics::gauge!(ON_AIR, "source" => source_label(kind)).set(f64::from(count));
    }
}

fn source_label(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Speaker => "speaker",
        SourceKind::Recording => "recording",
        SourceKind::BackupSpeaker => "backup_speaker",
        SourceKind::Slate => "slate",
    }
}

fn cause_label(cause: Cause) -> &'static str {
    match cause {
        Cause::Moderator => "moderator",
        Cause::HeartbeatTimeout => "heartbeat_timeout",
        Cause::StreamClosed => "stream_closed",
        Cause::PoorLink => "poor_link",
        Cause::LinkStable => "link_stable",
        Cause::SessionStarted => "session_started",
    }
}
