//! The log's figures for operators, through the `metrics` facade (podiumd renders them at
//! `/metrics`; without a recorder they cost nothing): what each group commit wrote and how long
//! its flush took, the durable head, and how far the read models are behind it.

use std::time::Duration;

/// Events made durable (a deduplicated retry is not counted again).
pub const EVENTS_APPENDED: &str = "podium_log_events_appended_total";
/// Group commits flushed.
pub const GROUP_COMMITS: &str = "podium_log_group_commits_total";
/// Events per group commit.
pub const GROUP_COMMIT_EVENTS: &str = "podium_log_group_commit_events";
/// Time from a group's first write to its last fsync.
pub const FLUSH_SECONDS: &str = "podium_log_flush_duration_seconds";
/// Group commits whose write or flush failed; their appends were not acknowledged.
pub const COMMIT_FAILURES: &str = "podium_log_commit_failures_total";
/// The position after the last durable event.
pub const HEAD: &str = "podium_log_head_position";
/// Durable events the read models have not applied yet.
pub const READ_MODEL_LAG: &str = "podium_read_model_lag_events";

/// Times the NATS log's live tail followed again on a new consumer, by `cause`.
pub const TAIL_RESTARTS: &str = "podium_log_tail_restarts_total";
/// `cause` of a restart: the client connected to a NATS server anew.
pub const TAIL_RECONNECTED: &str = "reconnected";
/// `cause` of a restart: the consumer delivered nothing while the stream moved on.
pub const TAIL_STALLED: &str = "stalled";
/// `cause` of a restart: the consumer failed or ended.
pub const TAIL_FAILED: &str = "failed";

/// 1 while this node holds the status engine's lease (several nodes on a NATS log), else 0.
pub const ENGINE_LEASE_HELD: &str = "podium_status_engine_lease_held";

/// Describes the log's metrics to the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(EVENTS_APPENDED, "Events made durable in the log.");
    describe_counter!(GROUP_COMMITS, "Group commits flushed to disk.");
    describe_histogram!(
        GROUP_COMMIT_EVENTS,
        Unit::Count,
        "Events written by one group commit."
    );
    describe_histogram!(
        FLUSH_SECONDS,
        Unit::Seconds,
        "Time to write and fsync one group commit."
    );
    describe_counter!(
        COMMIT_FAILURES,
        "Group commits that failed; their appends were refused."
    );
    describe_gauge!(HEAD, "The position after the last durable event.");
    describe_gauge!(
        READ_MODEL_LAG,
        "Durable events the read models have not applied yet."
    );
    describe_gauge!(
        ENGINE_LEASE_HELD,
        "1 while this node runs the status engine for the cluster (holds its lease)."
    );
    describe_counter!(
        TAIL_RESTARTS,
        "Times the NATS log's live tail followed again on a new consumer, by cause."
    );
    // Rendered from the start, at 0, so alerts on them see a series.
    metrics::counter!(COMMIT_FAILURES).increment(0);
    metrics::gauge!(READ_MODEL_LAG).set(0.0);
}

/// Records a group commit of `events` new events, flushed in `flush`, leaving the head at `head`.
pub(crate) fn group_committed(events: usize, flush: Duration, head: u64) {
    metrics::counter!(GROUP_COMMITS).increment(1);
    metrics::counter!(EVENTS_APPENDED).increment(events as u64);
    metrics::histogram!(GROUP_COMMIT_EVENTS).record(events as f64);
    metrics::histogram!(FLUSH_SECONDS).record(flush.as_secs_f64());
    metrics::gauge!(HEAD).set(head as f64);
}

/// Renders the tail's restarts at 0 for every cause, so that a rate over them sees the first.
pub(crate) fn tail_restarts_from_zero() {
    for cause in [TAIL_RECONNECTED, TAIL_STALLED, TAIL_FAILED] {
        metrics::counter!(TAIL_RESTARTS, "cause" => cause).increment(0);
    }
}

/// Records one restart of the tail, for `cause`.
pub(crate) fn tail_restarted(cause: &'static str) {
    metrics::counter!(TAIL_RESTARTS, "cause" => cause).increment(1);
}

/// Records whether this node holds the status engine's lease.
pub(crate) fn lease_held(held: bool) {
    metrics::gauge!(ENGINE_LEASE_HELD).set(if held { 1.0 } else { 0.0 });
}
