//! The `podium.v1.Diagnostics` service: `Ping`, the no-op baseline of every benchmark. It goes
//! through the same interceptor and token check as a ballot, and stores nothing; and `Process`,
//! the process's own figures (memory, open files, threads, tasks) for the soak and an operator.

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

    async fn process(
        &self,
        request: Request<pb::ProcessRequest>,
    ) -> Result<Response<pb::ProcessResponse>, Status> {
        caller(&request)?.require_admin("read the process figures")?;
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let open_files = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks() as u64;
        Ok(Response::new(pb::ProcessResponse {
            resident_bytes: field("VmRSS:") * 1024,
            open_files,
            threads: field("Threads:"),
            tasks,
        }))
    }
}
