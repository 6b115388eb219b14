//! The `podium.v1.Diagnostics` service: `Ping`, the no-op baseline of every benchmark. It goes
//! through the same interceptor and token check as a ballot, and stores nothing.

use podium_access::caller;
use podium_proto::v1::{self as pb, diagnostics_server::Diagnostics};
use tonic::{Request, Response, Status};

#[derive(Debug, Default)]
pub struct DiagnosticsService;

#[tonic::async_trait]
impl Diagnostics for DiagnosticsService {
    async fn ping(
        &self,
        request: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        caller(&request)?;
        Ok(Response::new(pb::PingResponse {
            seq: request.into_inner().seq,
        }))
    }
}
