//! `grpc.health.v1.Health` with a shutdown: tonic-health's service, whose `Watch` streams
//! otherwise never end, so that on SIGTERM a watcher sees NOT_SERVING and then its stream ends
//! with UNAVAILABLE, and an open health watch does not hold podiumd open for the whole drain
//! timeout.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tonic_health::{
    pb::{HealthCheckRequest, HealthCheckResponse, health_server::Health},
    server::{HealthReporter, HealthService},
};

pub struct DrainingHealth {
    inner: HealthService,
    shutdown: watch::Receiver<bool>,
}

impl DrainingHealth {
    pub fn new(reporter: HealthReporter, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            inner: HealthService::from_health_reporter(reporter),
            shutdown,
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for DrainingHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let mut statuses = self.inner.watch(request).await?.into_inner();
        let mut shutdown = self.shutdown.clone();
        let stream = async_stream::try_stream! {
            loop {
                // Statuses first: podiumd reports NOT_SERVING before it signals shutdown, so a
                // watcher always sees NOT_SERVING before its stream ends.
                let next = tokio::select! {
                    biased;
                    status = statuses.next() => status,
                    _ = shutdown.wait_for(|stop| *stop) => None,
                };
                match next {
                    Some(status) => yield status?,
                    None => Err(Status::unavailable("podiumd is shutting down"))?,
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }
}

/// What the server task's end means: its own error, or a task that failed (logged; the log is
/// closed cleanly all the same).
pub(crate) fn server_ended(
    ended: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
) -> Result<(), crate::ServerError> {
    match ended {
        Ok(served) => served.map_err(crate::ServerError::from),
        Err(join) => {
            tracing::error!(error = %join, "server task failed");
            Ok(())
        }
    }
}
