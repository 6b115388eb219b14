//! One tower layer in front of every service: the global limit on requests in progress (load
//! shedding, not queueing), the timeout of unary calls, and a clear RESOURCE_EXHAUSTED for a
//! request message, or a block of request metadata, over its size limit.

use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use prost::Message;
use tokio::sync::Semaphore;
use tonic::{Code, Status, body::Body};
use tower::{Layer, Service};

/// A generated server with podiumd's message size limits, behind the token interceptor. The
/// `shared` form takes an `Arc` that the pages share, calling it with the cookie's principal.
macro_rules! limited {
    (shared $server:ident, $service:expr, $limits:expr, $auth:expr) => {
        InterceptedService::new(
            $server::from_arc($service)
                .max_decoding_message_size($limits.max_request_bytes as usize)
                .max_encoding_message_size($limits.max_response_bytes as usize),
            $auth.clone(),
        )
    };
    ($server:ident, $service:expr, $limits:expr, $auth:expr) => {
        InterceptedService::new(
            $server::new($service)
                .max_decoding_message_size($limits.max_request_bytes as usize)
                .max_encoding_message_size($limits.max_response_bytes as usize),
            $auth.clone(),
        )
    };
}

/// What [`Guard`] enforces.
#[derive(Debug, Clone)]
pub struct GuardLayer {
    permits: Arc<Semaphore>,
    limit: usize,
    unary: Arc<HashSet<String>>,
    timeout: Duration,
    max_header_list_bytes: usize,
    /// Where each connection's calls awaiting their response are counted, if anywhere.
    calls: Option<crate::listener::Calls>,
}

/// How far over `--max-header-list-bytes` the HTTP/2 layer itself lets a request's metadata
/// go, so that [`Guard`] can answer it as gRPC does: HTTP/2 refuses a header block over its own
/// limit with a bare HTTP 431, which gRPC clients read as UNKNOWN. Beyond this multiple (a
/// client sending megabytes of metadata), the 431 stands.
pub const HEADER_LIST_SLACK: u64 = 4;

/// The size of a request's metadata as HTTP/2 counts it (RFC 9113, SETTINGS_MAX_HEADER_LIST_SIZE):
/// each field's name and value plus 32, pseudo-headers included.
fn header_list_bytes<B>(request: &http::Request<B>) -> usize {
    let pseudo = [
        (":method", request.method().as_str().len()),
        (
            ":path",
            request
                .uri()
                .path_and_query()
                .map_or(1, |p| p.as_str().len()),
        ),
        (":scheme", request.uri().scheme_str().map_or(4, str::len)),
        (
            ":authority",
            request.uri().authority().map_or(0, |a| a.as_str().len()),
        ),
    ];
    let pseudo: usize = pseudo.iter().map(|(name, len)| name.len() + len + 32).sum();
    pseudo
        + request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum::<usize>()
}

impl GuardLayer {
    /// `limit` requests in progress at once across every connection; `timeout` for each unary
    /// method named in `descriptor_sets` (encoded `FileDescriptorSet`s); request metadata up
    /// to `max_header_list_bytes`.
    pub fn new(
        limit: usize,
        timeout: Duration,
        max_header_list_bytes: usize,
        descriptor_sets: &[&[u8]],
    ) -> Result<Self, prost::DecodeError> {
        let unary = methods(descriptor_sets, |method| {
            !method.client_streaming() && !method.server_streaming()
        })?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            unary: Arc::new(unary),
            timeout,
            max_header_list_bytes,
            calls: None,
        })
    }

    /// Counts each connection's calls until their response starts, in `calls` (so that a
    /// connection waiting for an answer is not taken for a silent one at shutdown).
    pub fn with_calls(mut self, calls: crate::listener::Calls) -> Self {
        self.calls = Some(calls);
        self
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    layer: GuardLayer,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for Guard<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let metadata = header_list_bytes(&request);
        if metadata > self.layer.max_header_list_bytes {
            let grpc = request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/grpc"));
            let response = if grpc {
                Status::resource_exhausted(format!(
                    "request metadata is {metadata} bytes, over this server's limit of {} \
                     (--max-header-list-bytes)",
                    self.layer.max_header_list_bytes
                ))
                .into_http()
            } else {
                let mut response = http::Response::new(Body::empty());
                *response.status_mut() = http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
                response
            };
            return Box::pin(std::future::ready(Ok(response)));
        }
        let Ok(permit) = self.layer.permits.clone().try_acquire_owned() else {
            metrics::counter!(crate::metrics::SHED).increment(1);
            let refused = Status::resource_exhausted(format!(
                "podiumd is handling its limit of {} requests at once \
                 (--max-concurrent-requests); retry shortly",
                self.layer.limit
            ));
            return Box::pin(std::future::ready(Ok(refused.into_http())));
        };
        let timeout = self
            .layer
            .unary
            .contains(request.uri().path())
            .then_some(self.layer.timeout);
        // The clone is ready only after poll_ready; the ready one handles this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let awaited = self.layer.calls.as_ref().and_then(|c| c.begin(&request));
        let response = inner.call(request);
        Box::pin(async move {
            let _permit = permit;
            let _awaited = awaited;
            let response = match timeout {
                Some(limit) => match tokio::time::timeout(limit, response).await {
                    Ok(response) => response?,
                    Err(_) => {
                        return Ok(Status::deadline_exceeded(format!(
                            "the request took longer than the server's limit of {} s \
                             (--request-timeout)",
                            limit.as_secs_f64()
                        ))
                        .into_http());
                    }
                },
                None => response.await?,
            };
            Ok(oversized_is_resource_exhausted(response))
        })
    }
}

/// tonic refuses a request message over the decoding limit with OUT_OF_RANGE; gRPC's own
/// convention, which other stacks follow, is RESOURCE_EXHAUSTED.
fn oversized_is_resource_exhausted(response: http::Response<Body>) -> http::Response<Body> {
    match Status::from_header_map(response.headers()) {
        Some(status)
            if status.code() == Code::OutOfRange
                && status.message().contains("message length too large") =>
        {
            let detail = status
                .message()
                .split_once(": ")
                .map_or(status.message(), |(_, detail)| detail);
            Status::resource_exhausted(format!(
                "request message too large: {detail} (--max-request-bytes, or \
                 --max-upload-message-bytes for recording uploads)"
            ))
            .into_http()
        }
        _ => response,
    }
}

/// The paths ("/package.Service/Method") of the methods in `descriptor_sets` (encoded
/// `FileDescriptorSet`s) that `wanted` picks.
pub(crate) fn methods(
    descriptor_sets: &[&[u8]],
    wanted: impl Fn(&prost_types::MethodDescriptorProto) -> bool,
) -> Result<HashSet<String>, prost::DecodeError> {
    let mut paths = HashSet::new();
    each_method(descriptor_sets, |path, _, method| {
        if wanted(method) {
            paths.insert(path);
        }
    })?;
    Ok(paths)
}

/// Calls `f` with the path (`/package.Service/Method`), the service's name and the method of
/// every method described in `descriptor_sets`.
pub(crate) fn each_method(
    descriptor_sets: &[&[u8]],
    mut f: impl FnMut(String, &str, &prost_types::MethodDescriptorProto),
) -> Result<(), prost::DecodeError> {
    for set in descriptor_sets {
        let set = prost_types::FileDescriptorSet::decode(*set)?;
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                    f(path, service.name(), method);
                }
            }
        }
    }
    Ok(())
}

/// Every gRPC service podiumd serves, described: for reflection, the transport guard's
/// timeouts and the RPC metrics' labels.
pub(crate) const DESCRIPTORS: [&[u8]; 2] = [
    podium_proto::FILE_DESCRIPTOR_SET,
    tonic_health::pb::FILE_DESCRIPTOR_SET,
];

pub(crate) fn descriptor_error(e: prost::DecodeError) -> crate::ServerError {
    crate::ServerError::Config(format!("descriptor set: {e}"))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// A service that answers OK after `delay`.
    #[derive(Clone)]
    struct Slow(Duration);

    impl Service<http::Request<()>> for Slow {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Infallible>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let delay = self.0;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(http::Response::new(Body::empty()))
            })
        }
    }

    fn request(path: &str) -> http::Request<()> {
        http::Request::builder().uri(path).body(()).unwrap()
    }

    fn code(response: &http::Response<Body>) -> Code {
        Status::from_header_map(response.headers()).map_or(Code::Ok, |s| s.code())
    }

    fn guard(limit: usize, delay: Duration) -> Guard<Slow> {
        GuardLayer::new(
            limit,
            Duration::from_secs(10),
            1024,
            &[podium_proto::FILE_DESCRIPTOR_SET],
        )
        .unwrap()
        .layer(Slow(delay))
    }

    #[tokio::test(start_paused = true)]
    async fn a_unary_call_over_the_timeout_is_deadline_exceeded_and_a_stream_is_not_timed() {
        let mut service = guard(8, Duration::from_secs(11));
        let unary = service.call(request("/podium.v1.Diagnostics/Ping"));
        let stream = service.call(request("/podium.v1.EventFeed/Subscribe"));
        let (unary, stream) = tokio::join!(unary, stream);
        assert_eq!(code(&unary.unwrap()), Code::DeadlineExceeded);
        assert_eq!(code(&stream.unwrap()), Code::Ok);

        let mut quick = guard(8, Duration::from_secs(9));
        let unary = quick.call(request("/podium.v1.Diagnostics/Ping")).await;
        assert_eq!(code(&unary.unwrap()), Code::Ok);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_beyond_the_limit_are_refused_at_once_and_admitted_again_after() {
        let mut service = guard(2, Duration::from_secs(1));
        let first = service.call(request("/podium.v1.Diagnostics/Ping"));
        let second = service.call(request("/podium.v1.Diagnostics/Ping"));
        // Refused without waiting for the two in progress.
        let third = service.call(request("/podium.v1.Diagnostics/Ping")).await;
        let third = third.unwrap();
        assert_eq!(code(&third), Code::ResourceExhausted);
        let message = Status::from_header_map(third.headers()).unwrap();
        assert!(message.message().contains("--max-concurrent-requests"));

        let (first, second) = tokio::join!(first, second);
        assert_eq!(code(&first.unwrap()), Code::Ok);
        assert_eq!(code(&second.unwrap()), Code::Ok);
        let again = service.call(request("/podium.v1.Diagnostics/Ping")).await;
        assert_eq!(code(&again.unwrap()), Code::Ok);
    }

    #[tokio::test]
    async fn metadata_over_the_limit_is_resource_exhausted_for_grpc_and_431_for_pages() {
        let mut service = guard(8, Duration::ZERO);
        let big = "x".repeat(1024);
        let grpc = http::Request::builder()
            .uri("/podium.v1.Diagnostics/Ping")
            .header("content-type", "application/grpc")
            .header("x-big", big.as_str())
            .body(())
            .unwrap();
        let response = service.call(grpc).await.unwrap();
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status.message().contains("--max-header-list-bytes"),
            "{status:?}"
        );

        let page = http::Request::builder()
            .uri("/")
            .header("x-big", big.as_str())
            .body(())
            .unwrap();
        let response = service.call(page).await.unwrap();
        assert_eq!(
            response.status(),
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );

        // Just under the limit passes.
        let small = http::Request::builder()
            .uri("/podium.v1.Diagnostics/Ping")
            .header("x-small", "y".repeat(600).as_str())
            .body(())
            .unwrap();
        assert_eq!(code(&service.call(small).await.unwrap()), Code::Ok);
    }
}
