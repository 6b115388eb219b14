//! podium's load generator: scenarios a person runs to measure podium, each printing its figures
//! beside their targets (README, "Targets"). Tests run the scenarios with a handful of
//! iterations to check that they work; they never assert a time.
//!
//! Every scenario measures a podiumd on loopback: by default one it starts itself
//! ([`podiumd::LocalPodiumd`], the `podiumd` built next to this binary, in a temporary data
//! directory), or one named with `--addr` and an admin token. Its clients live in this process,
//! so that every instant of a measurement comes from one clock.
//!
//! Scenarios today:
//!
//! - [`failover`]: the time from a speaker's link dropping to a watcher seeing the recording on
//!   air, beyond the `failover_after` the session waits by design.
//! - [`votes`]: durable ballots per second as a ratio to the no-op `Ping` of the same podiumd.
//! - [`fanout`]: many watchers on one poll; the p99 from a ballot acknowledged to every watcher
//!   updated, and podiumd's memory per idle watcher; with `--baseline`, the same fan-out
//!   through a bare tonic server ([`baseline`]) in the same run, and podium's p99 as a ratio;
//!   with `--web` ([`fanout::web`]), the same figures over the browsers' transport (SSE over
//!   HTTP/1.1, one connection per watcher), printed beside the gRPC ones.
//! - [`soak`]: a whole conference at accelerated pace; podiumd's memory, open files, threads
//!   and tasks after each day, and every tally checked against the ballots cast.
//! - [`startup`]: podiumd's time to SERVING on a log of many events, without and with snapshots.
//! - [`backup`]: a backup of a podiumd on a log of many events while appends go on (their p99
//!   as a ratio to the idle node's), and its restore, compared event for event.
//!
//! Each scenario is a module with a `Config`, an async `run(&Podium, &Config, ...)` returning a
//! `Report` whose `Display` prints the figures, and a subcommand in `main.rs`.
//! [`stats::Distribution`] is the one place percentiles are computed.

#![forbid(unsafe_code)]

pub mod backup;
pub mod baseline;
pub mod failover;
pub mod fanout;
pub mod podiumd;
pub mod soak;
pub mod startup;
pub mod stats;
pub mod votes;

/// `prefix`, a dash and twelve hex digits: a name no earlier run used. They are the tail of a
/// request id (a UUID v7, whose head is a timestamp): 32 random bits, after the low bits of a
/// counter that differs between ids made in the same millisecond.
pub fn fresh_name(prefix: &str) -> String {
    let id = podium_client::Client::request_id();
    format!("{prefix}-{}", &id[id.len() - 12..])
}

/// The podiumd a scenario measures: its address and an admin token.
#[derive(Debug, Clone)]
pub struct Podium {
    pub addr: String,
    pub admin_token: String,
}

#[cfg(test)]
mod tests {
    /// Names made within the same millisecond, whose request ids share their timestamp, still
    /// differ.
    #[test]
    fn fresh_names_differ_even_when_made_together() {
        let names: std::collections::HashSet<String> =
            (0..1000).map(|_| super::fresh_name("loadgen")).collect();
        assert_eq!(names.len(), 1000);
        assert!(names.iter().all(|name| name.len() == "loadgen-".len() + 12));
    }
}
