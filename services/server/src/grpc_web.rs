//! gRPC-Web for browsers on the same listener as gRPC and the pages. tonic-web's service
//! answers every HTTP/1.1 request that is not gRPC-Web with 400, which would refuse every
//! page; so only gRPC-Web requests (by content type) go through it, and everything else
//! (gRPC over HTTP/2, pages, assets, Server-Sent Events) goes straight on.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use http::{Request, Response, header};
use tonic::body::Body;
use tonic_web::{GrpcWebLayer, GrpcWebService};
use tower::{Layer, Service};

/// Sends gRPC-Web requests through tonic-web's translation, and no others.
#[derive(Debug, Clone, Default)]
pub struct GrpcWebForBrowsers;

impl<S: Clone> Layer<S> for GrpcWebForBrowsers {
    type Service = Split<S>;

    fn layer(&self, inner: S) -> Split<S> {
        Split {
            web: GrpcWebLayer::new().layer(inner.clone()),
            inner,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Split<S> {
    web: GrpcWebService<S>,
    inner: S,
}

fn is_grpc_web(request: &Request<Body>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc-web"))
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> Service<Request<Body>> for Split<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<tonic_web_error::BoxError> + std::fmt::Display + Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Both halves wrap the same router, whose readiness is its own.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if is_grpc_web(&request) {
            Box::pin(self.web.call(request))
        } else {
            Box::pin(self.inner.call(request))
        }
    }
}

/// What a node without pages answers to a path no gRPC service serves.
pub async fn grpc_unimplemented() -> axum::response::Response {
    use axum::response::IntoResponse;
    tonic::Status::unimplemented("no such service or method")
        .into_http::<axum::body::Body>()
        .into_response()
}

mod tonic_web_error {
    pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
}
