//! What an operator watches, in Prometheus' text format at `GET /metrics` on podiumd's one
//! listener: the same port and TLS as the API and the pages, so there is nothing else to open or
//! secure, and nothing in it names a person (labels are services, methods, codes, kinds and
//! causes, never ids).
//!
//! Every crate records through the `metrics` facade; [`install`] puts the Prometheus recorder
//! of `metrics-exporter-prometheus` behind it once per process and describes every metric.
//! [`RpcMetricsLayer`] counts gRPC (and gRPC-Web) calls by service, method and code, times
//! them, and keeps a gauge of server streams open by method. A scrape also reads the process's
//! own figures (memory, CPU, open files) through `metrics-process`.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use metrics::{Gauge, Histogram, Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use podium_eventlog::Projector;
use podium_status::model::StatusModel;
use tonic::{Code, Status, body::Body};
use tower::{Layer, Service};

/// gRPC calls answered, by service, method and code.
pub const RPCS: &str = "podium_rpc_requests_total";
/// Time from a call's arrival to its response headers (a unary call's whole handling).
pub const RPC_SECONDS: &str = "podium_rpc_duration_seconds";
/// Server streams open now, by method.
pub const OPEN_STREAMS: &str = "podium_open_streams";
/// Requests refused because `--max-concurrent-requests` were in progress.
pub const SHED: &str = "podium_requests_shed_total";

/// Latency buckets, in seconds: a millisecond to a request timeout.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Events per group commit.
const EVENTS_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// How often the recorder folds the samples its histograms took since the last upkeep into
/// their buckets. It keeps every sample raw until then, or until a scrape (which folds them too),
/// so without it a podiumd nobody scrapes grows with every call it answers. Five seconds is the
/// crate's own default for the exporters it runs itself (`metrics-exporter-prometheus`,
/// "Upkeep and maintenance").
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// The thread that does it, one per process.
const UPKEEP_THREAD: &str = "metrics-upkeep";
/// Upkeeps run, by every upkeep thread of the process.
static UPKEEPS: AtomicU64 = AtomicU64::new(0);

/// The process's recorder: installed by the first podiumd, shared by every later one in the
/// same process (tests start several).
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(podium_eventlog::metrics::GROUP_COMMIT_EVENTS.into()),
                        EVENTS_BUCKETS,
                    )
                })
                .expect("bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
            } else if let Err(e) = spawn_upkeep(handle.clone(), UPKEEP_EVERY, UPKEEP_THREAD) {
                tracing::warn!(error = %e, "cannot start the metrics upkeep; histograms grow until scraped");
            }
            describe();
            handle
        })
        .clone()
}

/// Runs `handle`'s upkeep every `every`, on a thread of its own named `name` for the life of the process (a
/// std thread, not a task: tests start podiumds on runtimes that end before the process does).
/// Nothing in it panics in practice; should it, histograms would grow until scraped again.
fn spawn_upkeep(handle: PrometheusHandle, every: Duration, name: &str) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                handle.run_upkeep();
                UPKEEPS.fetch_add(1, Ordering::Relaxed);
            }
        })
        .map(drop)
}

fn describe() {
    describe_counter!(RPCS, "gRPC calls answered, by service, method and code.");
    describe_histogram!(
        RPC_SECONDS,
        Unit::Seconds,
        "Time from a gRPC call's arrival to its response headers."
    );
    describe_gauge!(OPEN_STREAMS, "Server streams open now, by method.");
    describe_counter!(
        crate::listener::CLOSED,
        "Connections closed by podiumd: stage tls_handshake (not finished in \
         --tls-handshake-timeout), first_request (nothing in --first-request-timeout) or drain \
         (silent while podiumd stops, waiting for no answer)."
    );
    describe_counter!(
        SHED,
        "Requests refused because --max-concurrent-requests were in progress."
    );
    describe_counter!(
        podium_access::limits::RATE_LIMITED,
        "Requests refused by a per-attendee or per-address rate limit, by action."
    );
    podium_eventlog::metrics::describe();
    podium_status::metrics::describe();
    metrics_process::Collector::default().describe();
    // Rare events are rendered from the start, at 0, so dashboards and alerts see a series.
    metrics::counter!(SHED).increment(0);
    for action in ["ballot", "question", "upvote", "join"] {
        metrics::counter!(podium_access::limits::RATE_LIMITED, "action" => action).increment(0);
    }
}

/// Adds `GET /metrics` to `pages`: every metric, with the process's figures and the sessions on
/// air (from `status`, when this node runs it) read at each scrape.
pub fn route(pages: axum::Router, status: Option<Projector<StatusModel>>) -> axum::Router {
    let handle = install();
    pages.route(
        "/metrics",
        axum::routing::get(move || {
            if let Some(model) = &status {
                podium_status::metrics::count_on_air(&model.read());
            }
            metrics_process::Collector::default().collect();
            let text = handle.render();
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    )
}

/// One gRPC method's labels and handles, made once.
#[derive(Debug)]
struct Method {
    service: String,
    method: String,
    duration: Histogram,
    /// Set for server-streaming methods: the gauge, and the same count for `Diagnostics/Node`.
    streams: Option<(Gauge, Arc<AtomicU64>)>,
}

/// Counts and times every gRPC method named in the descriptor sets; other requests (pages,
/// unknown paths) pass untouched, so labels stay bounded.
#[derive(Debug, Clone)]
pub struct RpcMetricsLayer {
    methods: Arc<HashMap<String, Method>>,
}

impl RpcMetricsLayer {
    pub fn new(descriptor_sets: &[&[u8]]) -> Result<Self, prost::DecodeError> {
        let mut methods = HashMap::new();
        crate::limits::each_method(descriptor_sets, |path, service, method| {
            let labels = [
                ("service", service.to_owned()),
                ("method", method.name().to_owned()),
            ];
            methods.insert(
                path,
                Method {
                    service: service.to_owned(),
                    method: method.name().to_owned(),
                    duration: metrics::histogram!(RPC_SECONDS, &labels),
                    streams: method.server_streaming().then(|| {
                        (
                            metrics::gauge!(OPEN_STREAMS, "method" => method.name().to_owned()),
                            Arc::default(),
                        )
                    }),
                },
            );
        })?;
        Ok(Self {
            methods: Arc::new(methods),
        })
    }

    /// Server streams open now, by method; methods with none are left out.
    pub fn open_streams(&self) -> HashMap<String, u64> {
        self.methods
            .values()
            .filter_map(|m| {
                let open = m.streams.as_ref()?.1.load(Ordering::Relaxed);
                (open > 0).then(|| (m.method.clone(), open))
            })
            .collect()
    }
}

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics {
            inner,
            methods: self.methods.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    methods: Arc<HashMap<String, Method>>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for RpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let methods = self.methods.clone();
        let path = request.uri().path().to_owned();
        let started = Instant::now();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let Some(method) = methods.get(&path) else {
                return Ok(response);
            };
            method.duration.record(started.elapsed().as_secs_f64());
            // An error before any message is a trailers-only response: its status is in the
            // headers. A call that fails later (a stream ended by an error) counts as opened.
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or(Code::Ok, Code::from);
            metrics::counter!(
                RPCS,
                "service" => method.service.clone(),
                "method" => method.method.clone(),
                "code" => code_label(code),
            )
            .increment(1);
            match &method.streams {
                Some((gauge, count)) if code == Code::Ok => {
                    gauge.increment(1);
                    count.fetch_add(1, Ordering::Relaxed);
                    let open = OpenStream(gauge.clone(), count.clone());
                    Ok(response.map(|body| {
                        Body::new(Tracked {
                            inner: body,
                            _open: open,
                        })
                    }))
                }
                _ => Ok(response),
            }
        })
    }
}

/// Decrements its gauge and count when the stream's body is dropped, however it ended.
struct OpenStream(Gauge, Arc<AtomicU64>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.decrement(1);
        self.1.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that holds its stream's place in the gauge.
struct Tracked {
    inner: Body,
    _open: OpenStream,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// gRPC's name for a code, as Prometheus labels write it: "OK", "NOT_FOUND", ...
fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `done` every 10 ms for at most 30 s.
    fn eventually(done: impl Fn() -> bool) -> bool {
        (0..3_000).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            done()
        })
    }

    /// The recorder keeps every histogram sample until its upkeep runs: installing it must start
    /// the thread that runs it, or podiumd's memory grows with every call (the soak found it).
    #[cfg(target_os = "linux")]
    #[test]
    fn installing_the_recorder_starts_its_upkeep() {
        install();
        let names = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .expect("a Linux /proc")
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect()
        };
        // A new thread names itself once it runs.
        assert!(
            eventually(|| names().iter().any(|n| n == UPKEEP_THREAD)),
            "no {UPKEEP_THREAD} thread among {:?}",
            names()
        );
    }

    #[test]
    fn the_upkeep_runs_again_and_again() {
        let handle = PrometheusBuilder::new().build_recorder().handle();
        let before = UPKEEPS.load(Ordering::Relaxed);
        // Not named as install's, which the test above looks for.
        spawn_upkeep(handle, Duration::from_millis(10), "upkeep-test").expect("a thread");
        assert!(
            eventually(|| UPKEEPS.load(Ordering::Relaxed) >= before + 3),
            "the upkeep ran {} times",
            UPKEEPS.load(Ordering::Relaxed) - before
        );
    }
}
