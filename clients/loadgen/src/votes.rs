//! The vote storm: durable ballots per second through gRPC, as a ratio to the no-op `Ping`
//! served by the same podiumd to the same clients in the same run (target: at least 80 %).
//!
//! Each client is an attendee with a connection of its own, as phones in a hall are. A ballot
//! is acknowledged only once flushed to disk; a ping authenticates and returns.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use podium_client::{Client, pb};

use crate::{Podium, stats::Distribution};

pub mod spread;

/// Target (README, "Targets"): durable votes per second at least this share of the no-op rate.
pub const TARGET_RATIO: f64 = 0.8;

#[derive(Debug, Clone)]
pub struct Config {
    /// Concurrent attendees, each on its own connection.
    pub clients: usize,
    /// How long each phase runs.
    pub duration: Duration,
}

#[derive(Debug, Clone)]
pub struct Phase {
    pub calls: u64,
    pub seconds: f64,
    pub latency: Distribution,
}

impl Phase {
    pub fn per_second(&self) -> f64 {
        self.calls as f64 / self.seconds.max(f64::EPSILON)
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub clients: usize,
    pub ping: Phase,
    pub ballots: Phase,
}

impl Report {
    pub fn ratio(&self) -> f64 {
        self.ballots.per_second() / self.ping.per_second().max(f64::EPSILON)
    }

    pub fn meets_target(&self) -> bool {
        self.ratio() >= TARGET_RATIO
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "clients         {} attendees, one connection each",
            self.clients
        )?;
        writeln!(
            f,
            "no-op Ping      {:>9.0} calls/s   latency (ms): {}",
            self.ping.per_second(),
            self.ping.latency
        )?;
        writeln!(
            f,
            "durable ballots {:>9.0} calls/s   latency (ms): {}",
            self.ballots.per_second(),
            self.ballots.latency
        )?;
        write!(
            f,
            "ratio           {:.2} of the no-op rate; target at least {TARGET_RATIO:.2}: {}",
            self.ratio(),
            if self.meets_target() { "met" } else { "MISSED" }
        )
    }
}

/// A results stream. A real client retries a shed request (RESOURCE_EXHAUSTED) after a pause:
/// thousands of watchers opening at once can exceed podiumd's `--max-concurrent-requests`.
pub(crate) async fn watch_results(
    client: &Client,
    request: pb::WatchResultsRequest,
) -> anyhow::Result<tonic::Streaming<pb::WatchResultsResponse>> {
    let mut attempt = 0u32;
    loop {
        match client.polls().watch_results(request.clone()).await {
            Ok(response) => return Ok(response.into_inner()),
            Err(status) if status.code() == tonic::Code::ResourceExhausted && attempt < 50 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
            }
            Err(status) => return Err(status.into()),
        }
    }
}

/// A conference with an open single-choice poll, and `n` attendees who joined it (their
/// clients, each on its own connection, and their tokens).
pub(crate) async fn poll_and_attendees(
    podium: &Podium,
    n: usize,
    label: &str,
) -> anyhow::Result<(String, pb::Poll, Vec<(Client, String)>)> {
    let admin = Client::connect(&podium.addr, Some(podium.admin_token.clone())).await?;
    let conference_id = crate::fresh_name(&format!("loadgen-{label}"));
    let text = |t: &str| {
        Some(pb::LocalizedText {
            text: [("en".to_owned(), t.to_owned())].into(),
        })
    };
    let conference = admin
        .agenda()
        .create_conference(pb::CreateConferenceRequest {
            request_id: Client::request_id(),
            conference_id: conference_id.clone(),
            title: text("Load generator"),
            default_language: "en".into(),
            time_zone: "Asia/Phnom_Penh".into(),
            join_code: String::new(),
        })
        .await
        .context("cannot create the conference")?
        .into_inner()
        .conference
        .context("no conference")?;
    let poll = admin
        .polls()
        .create_poll(pb::CreatePollRequest {
            request_id: Client::request_id(),
            conference_id: conference_id.clone(),
            question: text("Which open data matters most?"),
            kind: pb::PollKind::SingleChoice as i32,
            options: ["Budgets", "Health", "Education", "Land"]
                .iter()
                .map(|o| text(o).unwrap_or_default())
                .collect(),
            ..Default::default()
        })
        .await
        .context("cannot create the poll")?
        .into_inner()
        .poll
        .context("no poll")?;
    admin
        .polls()
        .open_poll(pb::OpenPollRequest {
            conference_id: conference_id.clone(),
            poll_id: poll.id.clone(),
        })
        .await?;
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let anonymous = Client::connect(&podium.addr, None).await?;
        let joined = anonymous
            .access()
            .join(pb::JoinRequest {
                join_code: conference.join_code.clone(),
                display_name: format!("attendee {i}"),
            })
            .await
            .context("cannot join")?
            .into_inner();
        clients.push((
            anonymous.with_token(Some(joined.token.clone()))?,
            joined.token,
        ));
    }
    Ok((conference_id, poll, clients))
}

/// Runs `call` on every client in a loop for `duration`; counts the calls and their latency.
async fn phase<F, Fut>(clients: &[Client], duration: Duration, call: F) -> anyhow::Result<Phase>
where
    F: Fn(Client, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for client in clients {
        let (client, call) = (client.clone(), call.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                call(client.clone(), i).await?;
                latencies.push(t.elapsed().as_micros() as i64);
                i += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Phase {
        calls: all.len() as u64,
        seconds,
        latency: Distribution::new(all),
    })
}

pub async fn run(podium: &Podium, config: &Config) -> anyhow::Result<Report> {
    let (conference_id, poll, attendees) =
        poll_and_attendees(podium, config.clients, "votes").await?;
    let clients: Vec<Client> = attendees.into_iter().map(|(client, _)| client).collect();
    measure(&clients, conference_id, poll, config).await
}

/// The Ping phase, then the ballots phase, on `clients`, voting in `poll`.
async fn measure(
    clients: &[Client],
    conference_id: String,
    poll: pb::Poll,
    config: &Config,
) -> anyhow::Result<Report> {
    let clients = clients.to_vec();
    let ping = phase(&clients, config.duration, |client, i| async move {
        client
            .diagnostics()
            .ping(pb::PingRequest { seq: i })
            .await?;
        Ok(())
    })
    .await?;
    let options: Arc<Vec<String>> = Arc::new(poll.options.iter().map(|o| o.id.clone()).collect());
    let ballots = phase(&clients, config.duration, move |client, i| {
        let (conference_id, poll_id, options) =
            (conference_id.clone(), poll.id.clone(), options.clone());
        async move {
            // A new ballot each time: it replaces the attendee's last one, durably.
            let request = pb::CastBallotRequest {
                conference_id,
                poll_id,
                ballot_id: Client::request_id(),
                option_ids: vec![options[i as usize % options.len()].clone()],
                rating: 0,
                text: String::new(),
            };
            client.polls().cast_ballot(request).await?;
            Ok(())
        }
    })
    .await?;
    Ok(Report {
        clients: config.clients,
        ping,
        ballots,
    })
}
