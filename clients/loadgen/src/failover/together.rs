//! The failover scenario at a venue: `--rooms` sessions, one per room, each with a speaker agent
//! of its own, and one watcher of the whole conference. For each drop every agent stops its
//! heartbeats at the same instant (`--together`, the venue's uplink failing) or one after
//! another 37 ms apart, and the sample of each room is the time from its own last heartbeat
//! to the watcher receiving its recording on air, minus `failover_after`.
//!
//! The agents' heartbeats are lined up before each drop (all resumed at one instant), so that
//! together their sessions fall due within a millisecond of each other: the case where podiumd
//! must decide and store 50 failovers at once.

use std::{collections::HashMap, time::Duration};

use anyhow::{Context, anyhow, bail};
use futures::{StreamExt, future::try_join_all};
use podium_client::{Client, StatusUpdate, pb};
use tokio::{sync::mpsc, time::Instant};

use super::{
    Config, DropMode, PATIENCE, Podium, connect,
    link::{Agent, Stamp},
    setup::{Show, end_show, healthy, on_air, set_up_venue, switch_to_speaker},
};
use crate::stats::Distribution;

/// Apart, when the links do not drop together.
const STAGGER: Duration = Duration::from_millis(37);

/// What a venue run measured.
#[derive(Debug, Clone)]
pub struct VenueReport {
    pub rooms: usize,
    pub together: bool,
    /// Every room's `t_seen − t_drop − failover_after` of every drop, in microseconds.
    pub latency: Distribution,
    /// Per drop, the slowest room's.
    pub slowest: Distribution,
}

/// Follows every session of the conference on one stream, keeping the newest status of each
/// with the instant it arrived.
struct VenueWatcher {
    statuses: mpsc::Receiver<Result<(Stamp, pb::SessionStatus), String>>,
    latest: HashMap<String, (Stamp, pb::SessionStatus)>,
}

impl VenueWatcher {
    fn start(client: Client, conference_id: &str) -> Self {
        let (tx, statuses) = mpsc::channel(4096);
        let updates = client.watch_status(conference_id, "");
        tokio::spawn(async move {
            futures::pin_mut!(updates);
            while let Some(update) = updates.next().await {
                let at = Stamp::now();
                let sessions = match update {
                    Ok(StatusUpdate::Snapshot { sessions, .. }) => sessions,
                    Ok(StatusUpdate::Changed { session, .. }) => vec![*session],
                    Err(status) => {
                        let _ = tx.send(Err(status.message().to_owned())).await;
                        return;
                    }
                };
                for s in sessions {
                    if tx.send(Ok((at, s))).await.is_err() {
                        return;
                    }
                }
            }
        });
        Self {
            statuses,
            latest: HashMap::new(),
        }
    }

    /// Waits until every session of `shows` satisfies `what`; returns, per session, the instant
    /// the first status that did arrived (or the newest one's, if it already did).
    async fn until_all(
        &mut self,
        waiting_for: &str,
        within: Duration,
        shows: &[Show],
        what: impl Fn(&pb::SessionStatus) -> bool,
    ) -> anyhow::Result<HashMap<String, Stamp>> {
        let mut met: HashMap<String, Stamp> = shows
            .iter()
            .filter_map(|show| {
                self.latest
                    .get(&show.session_id)
                    .filter(|(_, s)| what(s))
                    .map(|(at, _)| (show.session_id.clone(), *at))
            })
            .collect();
        let deadline = Instant::now() + within;
        while met.len() < shows.len() {
            let next = tokio::time::timeout_at(deadline, self.statuses.recv())
                .await
                .map_err(|_| {
                    anyhow!(
                        "gave up after {within:?} waiting for {waiting_for} ({} of {} rooms)",
                        met.len(),
                        shows.len()
                    )
                })?;
            let (at, status) = match next {
                Some(Ok(stamped)) => stamped,
                Some(Err(message)) => bail!("the status stream failed: {message}"),
                None => bail!("the status stream ended"),
            };
            if what(&status) {
                met.entry(status.session_id.clone()).or_insert(at);
            }
            self.latest.insert(status.session_id.clone(), (at, status));
        }
        Ok(met)
    }
}

/// Runs the venue scenario; `progress` hears each drop's slowest room (drop number from 1, µs).
pub async fn run(
    podium: &Podium,
    config: &Config,
    mut progress: impl FnMut(usize, i64),
) -> anyhow::Result<VenueReport> {
    let admin = connect(podium, &podium.admin_token).await?;
    let shows = set_up_venue(&admin, config.failover_after, config.rooms).await?;
    let conference_id = shows
        .first()
        .map(|s| s.conference_id.clone())
        .context("no rooms")?;
    let mut watcher =
        VenueWatcher::start(connect(podium, &podium.admin_token).await?, &conference_id);
    let mut agents = try_join_all(shows.iter().map(|show| Agent::connect(podium, show))).await?;
    let healthy_speaker =
        |s: &pb::SessionStatus| s.links.first().is_some_and(|l| healthy(s, &l.speaker_id));
    watcher
        .until_all(
            "every speaker's link healthy",
            PATIENCE,
            &shows,
            healthy_speaker,
        )
        .await?;
    try_join_all(shows.iter().map(|show| async {
        admin
            .stage()
            .start_session(pb::StartSessionRequest {
                request_id: podium_client::Client::request_id(),
                conference_id: show.conference_id.clone(),
                session_id: show.session_id.clone(),
            })
            .await
    }))
    .await
    .context("cannot start the sessions")?;

    let failover_us = config.failover_after.as_micros() as i64;
    let (mut samples, mut slowest) = (Vec::new(), Vec::new());
    for drop in 1..=config.drops {
        // Line the heartbeats up: every agent stops and starts again at one instant.
        // (An agent just connected may not have sent a heartbeat yet: nothing to stop then.)
        futures::future::join_all(agents.iter_mut().map(Agent::stop)).await;
        try_join_all(agents.iter_mut().map(Agent::resume)).await?;
        let back: Vec<&Show> = shows
            .iter()
            .filter(|show| {
                watcher
                    .latest
                    .get(&show.session_id)
                    .is_none_or(|(_, s)| on_air(s) != pb::SourceKind::Speaker)
            })
            .collect();
        try_join_all(back.into_iter().map(|show| switch_to_speaker(&admin, show))).await?;
        watcher
            .until_all(
                "every speaker on air with a healthy link",
                PATIENCE,
                &shows,
                |s| {
                    on_air(s) == pb::SourceKind::Speaker
                        && s.state() == pb::SessionState::Live
                        && healthy_speaker(s)
                },
            )
            .await?;
        tokio::time::sleep(super::keep_alive(drop)).await;

        let stops = if config.together {
            try_join_all(agents.iter_mut().map(Agent::stop)).await?
        } else {
            let mut stops = Vec::with_capacity(agents.len());
            for agent in &mut agents {
                tokio::time::sleep(STAGGER).await;
                stops.push(agent.stop().await?);
            }
            stops
        };
        let drops: HashMap<String, Stamp> = shows
            .iter()
            .map(|show| show.session_id.clone())
            .zip(stops)
            .collect();
        if config.mode == DropMode::Close {
            for agent in &mut agents {
                agent.close().await;
            }
        }
        let seen = watcher
            .until_all(
                "every recording on air after the links dropped",
                config.failover_after + PATIENCE,
                &shows,
                |s| on_air(s) != pb::SourceKind::Speaker,
            )
            .await?;
        let mut worst = i64::MIN;
        for show in &shows {
            let (Some(t_drop), Some(t_seen)) =
                (drops.get(&show.session_id), seen.get(&show.session_id))
            else {
                continue;
            };
            if let Some((_, status)) = watcher.latest.get(&show.session_id)
                && on_air(status) != pb::SourceKind::Recording
            {
                bail!(
                    "drop {drop}: {:?} went on air in session {} instead of the recording",
                    on_air(status),
                    show.session_id
                );
            }
            if t_seen.at < t_drop.at {
                bail!(
                    "drop {drop}: session {} fell back before its link dropped",
                    show.session_id
                );
            }
            let sample = (t_seen.at - t_drop.at).as_micros() as i64 - failover_us;
            worst = worst.max(sample);
            samples.push(sample);
        }
        slowest.push(worst);
        progress(drop, worst);

        if config.mode == DropMode::Close {
            agents = try_join_all(shows.iter().map(|show| Agent::connect(podium, show))).await?;
        } else {
            try_join_all(agents.iter_mut().map(Agent::resume)).await?;
        }
    }

    for agent in &mut agents {
        agent.close().await;
    }
    for show in &shows {
        end_show(&admin, show).await;
    }
    Ok(VenueReport {
        rooms: config.rooms,
        together: config.together,
        latency: Distribution::new(samples),
        slowest: Distribution::new(slowest),
    })
}

impl VenueReport {
    pub fn meets_target(&self) -> bool {
        self.latency
            .percentile(99.0)
            .is_some_and(|p99| p99 < super::TARGET_MARGIN.as_micros() as i64)
    }
}

impl std::fmt::Display for VenueReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "rooms           {} ({})",
            self.rooms,
            if self.together {
                "every link drops at the same instant"
            } else {
                "the links drop 37 ms apart"
            }
        )?;
        writeln!(f, "drops           {}", self.slowest.len())?;
        writeln!(
            f,
            "link drop -> watcher sees the recording, minus failover_after, every room (ms):"
        )?;
        writeln!(f, "                {}", self.latency)?;
        writeln!(f, "slowest room of each drop (ms):")?;
        writeln!(f, "                {}", self.slowest)?;
        write!(
            f,
            "target          p99 within failover_after + {} ms for every room, i.e. p99 above < {} ms: {}",
            super::TARGET_MARGIN.as_millis(),
            super::TARGET_MARGIN.as_millis(),
            if self.meets_target() { "met" } else { "MISSED" }
        )
    }
}
