//! The fan-out over the web transport: the same poll, ballots and figures as [`super`], but each
//! watcher is a browser's view of the results, `GET /live/results?poll=ID` over HTTP/1.1 with
//! the attendee's token in the `podium_session_<port>` cookie, read as Server-Sent Events on a TCP
//! connection of its own (HTTP/1.1 has one stream per connection). Figures: for each ballot, the
//! time from its acknowledgement to the moment the last watcher received an event whose
//! server-rendered results count it (`<N> ballots`), and podiumd's resident memory per idle
//! watcher; `main.rs` prints them beside the gRPC fan-out's of the same run.
//!
//! Each ballot comes from a different attendee, so that the count in the page grows by one with
//! each (a poll counts one ballot per voter): ballot `i` (from 0) is in every event that shows
//! at least `i + 1` ballots. The reader is a small hand-written HTTP/1.1 and SSE client over a
//! tokio `TcpStream` (chunked transfer-encoding, SSE lines, events, keep-alive comments), which
//! keeps the load generator free of an HTTP client dependency. Watchers connect in bounded
//! batches and retry a start that podiumd sheds (`--max-concurrent-requests`), as a browser's
//! `EventSource` would.

use std::{
    fmt,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use podium_client::{Client, pb};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Semaphore,
};

use super::{
    Report as GrpcReport, TARGET_BYTES_PER_WATCHER, TARGET_P99, Watchers, poll_and_attendees,
    rss_bytes,
};
use crate::{Podium, stats::Distribution};

#[derive(Debug, Clone)]
pub struct Config {
    /// SSE watchers, each on its own TCP connection.
    pub watchers: usize,
    /// Ballots cast, one every 100 ms, each by a different attendee.
    pub votes: usize,
    /// Connections being opened at once (a batch), until every watcher has its first event.
    pub connecting: usize,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub watchers: usize,
    pub latency: Distribution,
    /// The largest `data:` payload of one event a watcher received, in bytes.
    pub event_bytes: usize,
    /// podiumd's resident memory before the watchers and with them idle, in bytes, when this
    /// process can read it.
    pub rss: Option<(u64, u64)>,
}

impl Report {
    pub fn bytes_per_watcher(&self) -> Option<f64> {
        self.rss
            .map(|(before, idle)| idle.saturating_sub(before) as f64 / self.watchers.max(1) as f64)
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met at this size" } else { "MISSED" }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "web watchers    {} on one poll, SSE over HTTP/1.1, one connection each",
            self.watchers
        )?;
        writeln!(
            f,
            "ballots         {} at ten a second, one per attendee",
            self.latency.len()
        )?;
        writeln!(
            f,
            "ballot acknowledged -> every web watcher updated (ms): {}",
            self.latency
        )?;
        let p99 = self.latency.percentile(99.0).unwrap_or(i64::MAX);
        writeln!(
            f,
            "target          the gRPC fan-out's, p99 < {} ms: {}",
            TARGET_P99.as_millis(),
            met(p99 < TARGET_P99.as_micros() as i64)
        )?;
        writeln!(
            f,
            "message         {} bytes of data in the largest event",
            self.event_bytes
        )?;
        match (self.rss, self.bytes_per_watcher()) {
            (Some((before, idle)), Some(per)) => write!(
                f,
                "podiumd RSS     {:.1} MiB before, {:.1} MiB with the web watchers idle: {:.1} KiB per watcher; the gRPC fan-out's target < {:.0} KiB: {}",
                before as f64 / 1048576.0,
                idle as f64 / 1048576.0,
                per / 1024.0,
                TARGET_BYTES_PER_WATCHER / 1024.0,
                met(per < TARGET_BYTES_PER_WATCHER)
            ),
            _ => write!(
                f,
                "podiumd RSS     not measured (podiumd is not this process's child)"
            ),
        }
    }
}

/// The gRPC and the web fan-out of one run, one line each.
pub struct Beside<'a> {
    pub grpc: &'a GrpcReport,
    pub web: &'a Report,
}

impl fmt::Display for Beside<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: &Distribution, p: f64| {
            d.percentile(p)
                .map_or_else(|| "-".to_owned(), crate::stats::ms)
        };
        let kib =
            |per: Option<f64>| per.map_or_else(|| "-".to_owned(), |b| format!("{:.1}", b / 1024.0));
        writeln!(
            f,
            "transport        watchers   p50 ms   p99 ms   KiB per idle watcher"
        )?;
        writeln!(
            f,
            "gRPC (HTTP/2)    {:>8}   {:>6}   {:>6}   {:>6}",
            self.grpc.watchers,
            ms(&self.grpc.latency, 50.0),
            ms(&self.grpc.latency, 99.0),
            kib(self.grpc.bytes_per_watcher())
        )?;
        write!(
            f,
            "web (SSE)        {:>8}   {:>6}   {:>6}   {:>6}",
            self.web.watchers,
            ms(&self.web.latency, 50.0),
            ms(&self.web.latency, 99.0),
            kib(self.web.bytes_per_watcher())
        )
    }
}

/// `host:port` of a podiumd address that may carry a scheme, and the loopback address it names.
async fn loopback(addr: &str) -> anyhow::Result<(String, SocketAddr)> {
    let host = addr
        .strip_prefix("http://")
        .unwrap_or(addr)
        .trim_end_matches('/')
        .to_owned();
    if addr.starts_with("https://") {
        bail!("the web fan-out speaks plain HTTP/1.1; {addr} is TLS");
    }
    let target = tokio::net::lookup_host(host.as_str())
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .find(|a| a.ip().is_loopback())
        .with_context(|| format!("{host} is not a loopback address"))?;
    Ok((host, target))
}

pub async fn run(
    podium: &Podium,
    config: &Config,
    pid: Option<u32>,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<Report> {
    let (host, target) = loopback(&podium.addr).await?;
    // One attendee watches (every watcher uses its token); one more per ballot votes.
    let (conference_id, poll, mut attendees) =
        poll_and_attendees(podium, config.votes + 1, "webfanout").await?;
    let (_, watcher_token) = attendees.pop().context("no watcher")?;
    let voters: Vec<Client> = attendees.into_iter().map(|(client, _)| client).collect();
    let rss_before = pid.and_then(rss_bytes);

    // podiumd names its session cookie with the port it was reached by (README, "Pages in a
    // browser"), or plainly when its --public-url names none; it takes the plain name too.
    let session = match host.rsplit_once(':') {
        Some((_, port)) => format!("podium_session_{port}={watcher_token}; "),
        None => String::new(),
    };
    let request: Arc<str> = format!(
        "GET /live/results?poll={} HTTP/1.1\r\nHost: {host}\r\n\
         Cookie: {session}podium_session={watcher_token}; podium_lang=en\r\n\
         Accept: text/event-stream\r\nAccept-Language: en\r\nCache-Control: no-cache\r\n\r\n",
        poll.id
    )
    .into();
    let opening = Arc::new(Semaphore::new(config.connecting.max(1)));
    let event_bytes = Arc::new(AtomicUsize::new(0));
    let watchers = Watchers::spawn(
        config.watchers,
        |_| {
            let (request, opening, poll_id, event_bytes) = (
                request.clone(),
                opening.clone(),
                poll.id.clone(),
                event_bytes.clone(),
            );
            async move {
                let reader = {
                    let _batch = opening.acquire_owned().await?;
                    SseReader::open(target, &request).await?
                };
                anyhow::Ok(reader.counts(poll_id, event_bytes))
            }
        },
        &mut progress,
    );
    watchers.ready().await?;
    progress("every web watcher has its first event; measuring memory while idle");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = pid.and_then(rss_bytes);

    let options: Vec<String> = poll.options.iter().map(|o| o.id.clone()).collect();
    let mut acks = Vec::with_capacity(config.votes);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for (i, voter) in voters.iter().enumerate() {
        tick.tick().await;
        voter
            .polls()
            .cast_ballot(pb::CastBallotRequest {
                conference_id: conference_id.clone(),
                poll_id: poll.id.clone(),
                ballot_id: Client::request_id(),
                option_ids: vec![options[i % options.len()].clone()],
                rating: 0,
                text: String::new(),
            })
            .await
            .context("ballot refused")?;
        // Ballot i is counted in every event showing more than i ballots.
        acks.push((i as u64, Instant::now()));
    }
    progress("ballots cast; waiting for every web watcher to see the last one");
    watchers
        .past(acks.last().map_or(0, |(count, _)| *count))
        .await?;
    let latency = watchers.latency(&acks)?;
    drop(watchers);
    Ok(Report {
        watchers: config.watchers,
        latency,
        event_bytes: event_bytes.load(Ordering::Relaxed),
        rss: rss_before.zip(rss_idle),
    })
}

/// How long one watcher's start may take, retries included.
const OPEN: Duration = Duration::from_secs(60);

/// One SSE connection: the response body, de-chunked, read line by line into events.
struct SseReader {
    stream: TcpStream,
    /// Bytes read from the socket and not yet decoded.
    raw: Vec<u8>,
    /// Decoded body bytes not yet split into lines.
    body: Vec<u8>,
    /// `Transfer-Encoding: chunked`; otherwise the body runs to the connection's end.
    chunked: bool,
    /// Data bytes left in the current chunk.
    chunk_left: usize,
    /// The CRLF after a chunk's data is still to come.
    chunk_crlf: bool,
    /// The last chunk arrived, or the connection closed.
    done: bool,
}

/// One SSE event: its `event:` type and its `data:` lines joined with `\n`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Event {
    kind: String,
    data: String,
}

impl SseReader {
    /// Connects and sends `request`; retries a connection refused or a request shed by
    /// podiumd, with a growing pause, for up to [`OPEN`].
    async fn open(target: SocketAddr, request: &str) -> anyhow::Result<Self> {
        let deadline = Instant::now() + OPEN;
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            let error = match Self::try_open(target, request).await {
                Ok(Some(reader)) => return Ok(reader),
                Ok(None) => anyhow::anyhow!("podiumd shed the request"),
                Err(error) if error.is::<std::io::Error>() => error,
                Err(error) => return Err(error),
            };
            if Instant::now() > deadline {
                return Err(error.context(format!("no SSE stream after {attempt} attempts")));
            }
            tokio::time::sleep(Duration::from_millis(20 * attempt.min(50))).await;
        }
    }

    /// `Ok(None)`: podiumd shed the request (a gRPC RESOURCE_EXHAUSTED from its guard).
    async fn try_open(target: SocketAddr, request: &str) -> anyhow::Result<Option<Self>> {
        let mut stream = TcpStream::connect(target).await?;
        stream.set_nodelay(true)?;
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::with_capacity(4096);
        let end = loop {
            if let Some(end) = find(&raw, b"\r\n\r\n") {
                break end;
            }
            if raw.len() > 64 * 1024 {
                bail!("a response head over 64 KiB");
            }
            if stream.read_buf(&mut raw).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
                    .context("the connection closed before the response head");
            }
        };
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        raw.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        if header("grpc-status") == Some("8") {
            return Ok(None);
        }
        if status.split_whitespace().nth(1) != Some("200") {
            bail!("GET /live/results answered {status:?}");
        }
        if !header("content-type").is_some_and(|t| t.starts_with("text/event-stream")) {
            bail!(
                "GET /live/results answered {:?}, not text/event-stream",
                header("content-type")
            );
        }
        let chunked = header("transfer-encoding").is_some_and(|t| t.contains("chunked"));
        if !chunked && header("content-length").is_some() {
            bail!("an SSE response with a Content-Length: it would end");
        }
        Ok(Some(Self {
            stream,
            raw,
            body: Vec::new(),
            chunked,
            chunk_left: 0,
            chunk_crlf: false,
            done: false,
        }))
    }

    /// Moves what can be decoded from `raw` into `body`.
    fn decode(&mut self) -> anyhow::Result<()> {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return Ok(());
        }
        while !self.done {
            if self.chunk_left > 0 {
                let n = self.chunk_left.min(self.raw.len());
                if n == 0 {
                    break;
                }
                self.body.extend(self.raw.drain(..n));
                self.chunk_left -= n;
                self.chunk_crlf = self.chunk_left == 0;
            } else if self.chunk_crlf {
                if self.raw.len() < 2 {
                    break;
                }
                if &self.raw[..2] != b"\r\n" {
                    bail!("a chunk not followed by CRLF");
                }
                self.raw.drain(..2);
                self.chunk_crlf = false;
            } else {
                let Some(eol) = find(&self.raw, b"\r\n") else {
                    if self.raw.len() > 1024 {
                        bail!("a chunk-size line over 1 KiB");
                    }
                    break;
                };
                let line = String::from_utf8_lossy(&self.raw[..eol]).into_owned();
                let size = line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size, 16)
                    .with_context(|| format!("a bad chunk size {line:?}"))?;
                self.raw.drain(..eol + 2);
                if size == 0 {
                    self.done = true;
                } else {
                    self.chunk_left = size;
                }
            }
        }
        Ok(())
    }

    /// The next line of the body, without its end (`\n`, `\r\n` or `\r`).
    fn line(&mut self) -> Option<String> {
        let end = self.body.iter().position(|&b| b == b'\n' || b == b'\r')?;
        // A lone `\r` at the end of what has arrived may be half of a `\r\n`.
        if self.body[end] == b'\r' && end + 1 == self.body.len() && !self.done {
            return None;
        }
        let skip = if self.body[end] == b'\r' && self.body.get(end + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        let line = String::from_utf8_lossy(&self.body[..end]).into_owned();
        self.body.drain(..end + skip);
        Some(line)
    }

    /// The next event, or `None` when the stream ends.
    async fn next_event(&mut self) -> anyhow::Result<Option<Event>> {
        let mut event = Event::default();
        let mut has_data = false;
        loop {
            // What arrived with the response head, or with the last read.
            self.decode()?;
            while let Some(line) = self.line() {
                if line.is_empty() {
                    if has_data {
                        return Ok(Some(event));
                    }
                    event = Event::default();
                    continue;
                }
                // A comment: the keep-alive.
                if line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event.kind = value.to_owned(),
                    "data" => {
                        if has_data {
                            event.data.push('\n');
                        }
                        event.data.push_str(value);
                        has_data = true;
                    }
                    _ => {}
                }
            }
            if self.done {
                return Ok(None);
            }
            if self.body.len() > 1024 * 1024 {
                bail!("an SSE line over 1 MiB");
            }
            let read = self.stream.read_buf(&mut self.raw).await?;
            self.decode()?;
            if read == 0 && !self.done {
                if self.chunked {
                    bail!("the connection closed inside the chunked body");
                }
                self.done = true;
            }
        }
    }

    /// The ballot count of each `update` event for `poll_id`; the largest data size seen goes
    /// into `event_bytes`.
    fn counts(
        self,
        poll_id: String,
        event_bytes: Arc<AtomicUsize>,
    ) -> impl futures::Stream<Item = anyhow::Result<u64>> + Send + 'static {
        futures::stream::unfold(Some(self), move |reader| {
            let (poll_id, event_bytes) = (poll_id.clone(), event_bytes.clone());
            async move {
                let mut reader = reader?;
                loop {
                    let event = match reader.next_event().await {
                        Ok(Some(event)) => event,
                        Ok(None) => return None,
                        Err(error) => return Some((Err(error), None)),
                    };
                    if event.kind != "update" {
                        continue;
                    }
                    event_bytes.fetch_max(event.data.len(), Ordering::Relaxed);
                    return Some((update_count(&event.data, &poll_id), Some(reader)));
                }
            }
        })
    }
}

/// The ballot count in an update's data: the poll id on the first line, then the results
/// fragment with `<p class="meta">N ballots</p>` (`1 ballot` for one).
fn update_count(data: &str, poll_id: &str) -> anyhow::Result<u64> {
    let (first, html) = data.split_once('\n').unwrap_or((data, ""));
    if first != poll_id {
        bail!("an update for poll {first:?}, not {poll_id:?}");
    }
    let at = html
        .find(" ballot")
        .with_context(|| format!("an update without a ballot count: {html:.200}"))?;
    let digits = html[..at]
        .bytes()
        .rev()
        .take_while(u8::is_ascii_digit)
        .count();
    html[at - digits..at]
        .parse()
        .with_context(|| format!("an update without a ballot count: {html:.200}"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_read_from_the_fragment() {
        let data =
            "p1\n<h4 class=\"sr-only\">Results</h4>\n<p class=\"meta\">12 ballots</p>\n<div>";
        assert_eq!(update_count(data, "p1").unwrap(), 12);
        let one = "p1\n<p class=\"meta\">1 ballot</p>\n<div>";
        assert_eq!(update_count(one, "p1").unwrap(), 1);
        assert!(update_count(data, "p2").is_err());
        assert!(update_count("p1\n<p class=\"hint\">after close</p>", "p1").is_err());
    }

    #[tokio::test]
    async fn chunks_lines_and_events_are_decoded_across_reads() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let n = socket.read(&mut request).await.unwrap();
            assert!(n > 0);
            let body = ": keep-alive\n\nevent: update\nid: 7\ndata: p1\ndata: <p class=\"meta\">3 ballots</p>\n\n";
            let mut reply = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            // Two chunks, the second split mid-line, then the end.
            let (a, b) = body.split_at(30);
            for part in [a, b] {
                reply.extend(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes());
            }
            reply.extend(b"0\r\n\r\n");
            for piece in reply.chunks(7) {
                socket.write_all(piece).await.unwrap();
                socket.flush().await.unwrap();
            }
        });
        let mut reader = SseReader::open(target, "GET / HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let event = reader.next_event().await.unwrap().unwrap();
        assert_eq!(event.kind, "update");
        assert_eq!(event.data, "p1\n<p class=\"meta\">3 ballots</p>");
        assert_eq!(update_count(&event.data, "p1").unwrap(), 3);
        assert_eq!(reader.next_event().await.unwrap(), None);
        server.await.unwrap();
    }
}
