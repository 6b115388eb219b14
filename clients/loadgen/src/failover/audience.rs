//! An audience beside the failover scenario (`--audience N`): N streams of a poll's results
//! (one attendee's token, 100 streams per connection, in a conference of their own) while
//! another attendee votes ten times a second, for as long as the drops go on. podiumd then
//! serves the failovers on the same runtime and cores as a venue's worth of results streams,
//! which is how a hall at a conference finds it: the speaker's link drops while the room votes.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures::StreamExt;
use podium_client::{Client, pb};
use tokio::task::{JoinError, JoinSet};

use crate::{
    Podium,
    votes::{poll_and_attendees, watch_results},
};

/// Results streams per connection, as the fan-out scenario opens them by default (podiumd
/// lets a connection carry 200 streams at once).
const PER_CONNECTION: usize = 100;

/// The watchers and the ballots; dropping it ends both (a `JoinSet` aborts its tasks).
pub struct Audience {
    watchers: usize,
    /// Updates received, summed over every watcher.
    received: Arc<AtomicU64>,
    /// Ballots acknowledged.
    cast: Arc<AtomicU64>,
    tasks: JoinSet<anyhow::Result<()>>,
    ballots: JoinSet<anyhow::Result<()>>,
}

impl Audience {
    /// Opens `watchers` results streams, waits until each has its first update and starts the
    /// ballots.
    pub async fn start(
        podium: &Podium,
        watchers: usize,
        mut progress: impl FnMut(&str),
    ) -> anyhow::Result<Self> {
        let (conference_id, poll, mut attendees) = poll_and_attendees(podium, 2, "audience")
            .await
            .context("cannot set up the audience's poll")?;
        let (voter, _) = attendees.pop().context("no voter")?;
        let (_, token) = attendees.pop().context("no watcher")?;
        let connections = watchers.div_ceil(PER_CONNECTION);
        let mut channels = Vec::with_capacity(connections);
        for _ in 0..connections {
            channels.push(Client::connect(&podium.addr, Some(token.clone())).await?);
        }
        let request = pb::WatchResultsRequest {
            conference_id: conference_id.clone(),
            poll_id: poll.id.clone(),
            language: String::new(),
        };
        let received = Arc::new(AtomicU64::new(0));
        let ready = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        for w in 0..watchers {
            let client = channels[w % connections].clone();
            let (request, received, ready) = (request.clone(), received.clone(), ready.clone());
            tasks.spawn(async move {
                let mut stream = watch_results(&client, request).await?;
                let mut first = true;
                while let Some(update) = stream.next().await {
                    update?;
                    received.fetch_add(1, Ordering::Relaxed);
                    if first {
                        first = false;
                        ready.fetch_add(1, Ordering::Relaxed);
                    }
                }
                anyhow::Ok(())
            });
            if w % 5000 == 4999 {
                progress(&format!("audience: {} watchers connecting", w + 1));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while ready.load(Ordering::Relaxed) < watchers {
            if let Some(ended) = tasks.try_join_next() {
                bail!(
                    "an audience watcher ended before its first update: {}",
                    why(ended)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "only {} of {watchers} audience watchers got their first update within 120 s",
                    ready.load(Ordering::Relaxed)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        progress(&format!(
            "audience: {watchers} watchers have their results; ballots at ten a second"
        ));
        let cast = Arc::new(AtomicU64::new(0));
        let mut ballots = JoinSet::new();
        ballots.spawn(vote(voter, conference_id, poll, cast.clone()));
        Ok(Self {
            watchers,
            received,
            cast,
            tasks,
            ballots,
        })
    }

    /// [`Audience::start`] for `watchers` above 0; progress on stderr.
    pub async fn start_if(podium: &Podium, watchers: usize) -> anyhow::Result<Option<Self>> {
        if watchers == 0 {
            return Ok(None);
        }
        let audience = Self::start(podium, watchers, |line| eprintln!("  {line}")).await?;
        Ok(Some(audience))
    }

    /// [`Audience::stop`] for an audience that was started.
    pub async fn stop_if(audience: Option<Self>) -> anyhow::Result<Option<AudienceReport>> {
        match audience {
            Some(audience) => Ok(Some(audience.stop().await?)),
            None => Ok(None),
        }
    }

    /// Stops the ballots and the watchers; what they did, for the report. An error if the
    /// ballots stopped early (a ballot refused) or a watcher's stream failed.
    pub async fn stop(mut self) -> anyhow::Result<AudienceReport> {
        self.ballots.abort_all();
        // Aborted, it ends cancelled; otherwise a ballot was refused, or the task panicked.
        match self.ballots.join_next().await {
            Some(Ok(Err(e))) => return Err(e.context("the audience's ballots stopped")),
            Some(Err(e)) if e.is_panic() => bail!("the audience's ballots panicked: {e}"),
            _ => {}
        }
        if let Some(ended) = self.tasks.try_join_next() {
            bail!(
                "an audience watcher's stream ended during the drops: {}",
                why(ended)
            );
        }
        Ok(AudienceReport {
            watchers: self.watchers,
            ballots: self.cast.load(Ordering::Relaxed),
            updates: self.received.load(Ordering::Relaxed),
        })
    }
}

/// What the audience did while the links dropped.
#[derive(Debug, Clone, Copy)]
pub struct AudienceReport {
    pub watchers: usize,
    /// Ballots acknowledged.
    pub ballots: u64,
    /// Results updates received, summed over the watchers (each includes its first).
    pub updates: u64,
}

impl AudienceReport {
    /// The command line's flag that asked for it, or nothing.
    pub fn flag(audience: &Option<Self>) -> String {
        audience
            .as_ref()
            .map(|a| format!(" --audience {}", a.watchers))
            .unwrap_or_default()
    }

    /// Prints its line of the report, if there was an audience.
    pub fn print(audience: &Option<Self>) {
        if let Some(audience) = audience {
            println!("{audience}");
        }
    }
}

impl std::fmt::Display for AudienceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "audience        {} watchers of a poll in another conference; {} ballots at ten a \
             second during the drops; {:.1} results updates per watcher received",
            self.watchers,
            self.ballots,
            self.updates as f64 / self.watchers.max(1) as f64
        )
    }
}

/// Why a watcher's task ended.
fn why(ended: Result<anyhow::Result<()>, JoinError>) -> String {
    match ended {
        Ok(Ok(())) => "podiumd ended the stream".to_owned(),
        Ok(Err(e)) => format!("{e:#}"),
        Err(e) => e.to_string(),
    }
}

/// One attendee changing their mind ten times a second until aborted.
async fn vote(
    voter: Client,
    conference_id: String,
    poll: pb::Poll,
    cast: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for i in 0.. {
        tick.tick().await;
        let option = &poll.options[i % poll.options.len()];
        voter
            .polls()
            .cast_ballot(pb::CastBallotRequest {
                conference_id: conference_id.clone(),
                poll_id: poll.id.clone(),
                ballot_id: Client::request_id(),
                option_ids: vec![option.id.clone()],
                ..Default::default()
            })
            .await
            .context("ballot refused")?;
        cast.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
