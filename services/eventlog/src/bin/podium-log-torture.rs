//! podium-log-torture: a test tool for the event log's crash test, not part of podium. It opens
//! the log its first argument names (a directory for a [`SledEventLog`], or
//! `nats:<prefix>@<url>,<url>...@<monitoring url>,...` for a [`NatsEventLog`] on a JetStream
//! cluster), checks that the last batch
//! of each of its streams is still deduplicated (idempotency survives crashes), prints
//! `ready <head>`, then appends from concurrent loops until it is killed, printing one line per
//! acknowledged append, flushed before the next append starts:
//!
//! `ack <stream> <first_version> <last_version> <first_position> <last_position> <id>...`
//!
//! Usage: `podium-log-torture <dir | nats:prefix@urls> [appenders]`. Each appender owns the stream
//! `torture/own-<k>` and appends batches whose ids and lengths follow from their stream versions,
//! so a restart continues them exactly; two more loops append to `torture/shared` with random
//! ids. Every payload is a `google.protobuf.Any` whose type URL is
//! `podium.test/torture/<index>/<batch length>` and whose value is the event id's bytes six
//! times, so the test can check that each stored event decodes, is intact, and belongs to a
//! complete batch.

#![forbid(unsafe_code)]

use std::{io::Write, path::PathBuf, sync::Arc};

use anyhow::{Context, bail, ensure};
use podium_eventlog::{
    AppendOutcome, EventLog, ExpectedVersion, NatsEventLog, NatsOptions, NewEvent, SledEventLog,
    SledOptions, read_whole_stream,
};
use uuid::Uuid;

const SHARED: &str = "torture/shared";
const SHARED_LOOPS: usize = 2;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let place = args
        .next()
        .context("usage: podium-log-torture <dir | nats:prefix@urls> [appenders]")?;
    let appenders: usize = match args.next() {
        Some(n) => n
            .to_str()
            .and_then(|n| n.parse().ok())
            .context("appenders must be a number")?,
        None => 6,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(place, appenders))
}

/// The log `place` names.
async fn open(place: std::ffi::OsString) -> anyhow::Result<Arc<dyn EventLog>> {
    let Some(nats) = place.to_str().and_then(|p| p.strip_prefix("nats:")) else {
        let dir = PathBuf::from(place);
        return Ok(Arc::new(SledEventLog::open(&dir, SledOptions::default())?));
    };
    let mut parts = nats.split('@');
    let (Some(prefix), Some(urls), Some(monitors)) = (parts.next(), parts.next(), parts.next())
    else {
        bail!("nats:<prefix>@<urls>@<monitoring urls>");
    };
    let list = |s: &str| s.split(',').map(str::to_owned).collect();
    let options = NatsOptions {
        servers: list(urls),
        monitors: list(monitors),
        prefix: prefix.to_owned(),
        ..NatsOptions::default()
    };
    Ok(Arc::new(NatsEventLog::open(options).await?))
}

async fn run(place: std::ffi::OsString, appenders: usize) -> anyhow::Result<()> {
    let log = open(place).await?;
    let mut loops = tokio::task::JoinSet::new();
    let mut starts = Vec::new();
    for k in 0..appenders {
        let stream = format!("torture/own-{k}");
        starts.push((
            stream.clone(),
            resend_last_batch(log.as_ref(), &stream).await?,
        ));
    }
    println!("ready {}", log.head());
    std::io::stdout().flush()?;
    for (stream, next) in starts {
        loops.spawn(own_stream(log.clone(), stream, next));
    }
    for _ in 0..SHARED_LOOPS {
        loops.spawn(shared_stream(log.clone()));
    }
    // The loops run until the process is killed; the first failure ends it.
    while let Some(result) = loops.join_next().await {
        result??;
    }
    Ok(())
}

/// The id of version `version` of an own stream: fixed, so that a restart recomputes it.
fn own_id(stream: &str, version: u64) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("podium-torture:{stream}/{version}").as_bytes(),
    )
}

/// Length (1 to 4) of the own-stream batch that starts at `version`.
fn batch_len(stream: &str, version: u64) -> u64 {
    1 + u64::from(own_id(stream, version).as_bytes()[0] % 4)
}

fn batch(ids: &[Uuid]) -> Vec<NewEvent> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let message = prost_types::Any {
                type_url: format!("podium.test/torture/{i}/{}", ids.len()),
                value: id.as_bytes().repeat(6),
            };
            NewEvent::new(*id, &message)
        })
        .collect()
}

/// Sends the stream's last batch again, with a wrong expected version on purpose, and checks it
/// is answered as the original. Returns the version the stream continues at.
async fn resend_last_batch(log: &dyn EventLog, stream: &str) -> anyhow::Result<u64> {
    let stored = read_whole_stream(log, stream).await?;
    let len = stored.len() as u64;
    let mut start = 0;
    while start < len {
        let next = start + batch_len(stream, start);
        if next == len {
            break;
        }
        ensure!(
            next < len,
            "stream {stream} ends inside a batch: {len} events"
        );
        start = next;
    }
    if len == 0 {
        return Ok(0);
    }
    let ids: Vec<Uuid> = (start..len).map(|v| own_id(stream, v)).collect();
    let first = &stored[start as usize];
    let last = &stored[stored.len() - 1];
    let expected = AppendOutcome {
        first_version: start,
        last_version: len - 1,
        first_position: first.position,
        last_position: last.position,
        deduplicated: true,
    };
    let outcome = log
        .append(stream, ExpectedVersion::NoStream, batch(&ids))
        .await?;
    ensure!(
        outcome == expected,
        "resending the last batch of {stream} gave {outcome:?}, expected {expected:?}"
    );
    Ok(len)
}

async fn own_stream(log: Arc<dyn EventLog>, stream: String, mut next: u64) -> anyhow::Result<()> {
    loop {
        let ids: Vec<Uuid> = (next..next + batch_len(&stream, next))
            .map(|v| own_id(&stream, v))
            .collect();
        let events = batch(&ids);
        let expected = next
            .checked_sub(1)
            .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let outcome = log.append(&stream, expected, events.clone()).await?;
        if outcome.deduplicated || outcome.first_version != next {
            bail!("append to {stream} at {next} gave {outcome:?}");
        }
        acknowledge(&stream, &outcome, &ids)?;
        // Now and then retry a write that succeeded, as a client that lost the answer would.
        if ids[0].as_bytes()[1].is_multiple_of(4) {
            let again = log.append(&stream, ExpectedVersion::Any, events).await?;
            ensure!(
                again
                    == AppendOutcome {
                        deduplicated: true,
                        ..outcome
                    },
                "retry gave {again:?}, first {outcome:?}"
            );
        }
        next = outcome.last_version + 1;
    }
}

async fn shared_stream(log: Arc<dyn EventLog>) -> anyhow::Result<()> {
    loop {
        let ids = [Uuid::new_v4(), Uuid::new_v4()];
        let outcome = log
            .append(SHARED, ExpectedVersion::Any, batch(&ids))
            .await?;
        ensure!(
            !outcome.deduplicated,
            "new ids were deduplicated: {outcome:?}"
        );
        acknowledge(SHARED, &outcome, &ids)?;
    }
}

fn acknowledge(stream: &str, o: &AppendOutcome, ids: &[Uuid]) -> std::io::Result<()> {
    let mut line = format!(
        "ack {stream} {} {} {} {}",
        o.first_version, o.last_version, o.first_position, o.last_position
    );
    for id in ids {
        line.push(' ');
        line.push_str(&id.to_string());
    }
    line.push('\n');
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.flush()
}
