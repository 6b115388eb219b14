//! The floor of a fan-out: a bare tonic server-streaming service in this process, which sends
//! the same message to every watcher with nothing else on its path (no log, no read model, no
//! authentication), each watcher reading a latest-value channel as podium's do.
//! `podium-loadgen fanout --baseline` measures it with the same watchers, connections and
//! message size as podium in the same run, so podium's figures read as a ratio to what the
//! stack itself costs on this machine.

use std::{net::SocketAddr, pin::Pin, sync::Arc};

use futures::{Stream, StreamExt};
use tokio::{net::TcpListener, sync::watch};
use tokio_stream::wrappers::WatchStream;
use tonic::{
    Request, Response, Status,
    transport::{Server, server::TcpIncoming},
};

/// The generated messages and stubs of `proto/baseline.proto`.
pub mod pb {
    tonic::include_proto!("podium.loadgen.v1");
}

use pb::baseline_server::{Baseline, BaselineServer};

/// A running baseline server; dropping it stops the server.
pub struct LocalBaseline {
    pub addr: SocketAddr,
    updates: watch::Sender<Arc<pb::Update>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

struct Service {
    updates: watch::Receiver<Arc<pb::Update>>,
}

#[tonic::async_trait]
impl Baseline for Service {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::Update, Status>> + Send>>;

    async fn watch(
        &self,
        _request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let updates = WatchStream::new(self.updates.clone()).map(|u| Ok(pb::Update::clone(&u)));
        Ok(Response::new(Box::pin(updates)))
    }
}

impl LocalBaseline {
    /// Starts the server on a free loopback port, its first update of `payload_bytes` filler.
    /// It runs on a runtime of its own (two worker threads, as podiumd has on this machine), so
    /// that it does not share a scheduler with the watchers that measure it.
    pub async fn start(payload_bytes: usize) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (updates, receiver) = watch::channel(Arc::new(pb::Update {
            position: 0,
            payload: vec![b'x'; payload_bytes].into(),
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else {
                    return;
                };
                // As podiumd's: without it, Nagle's algorithm held each small update until the
                // watcher acknowledged the one before (up to its delayed ACK's 40 ms), and
                // the floor read slower than the stack is.
                let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                let service = BaselineServer::new(Service { updates: receiver });
                let _ = Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Ok(Self {
            addr,
            updates,
            _stop: stop,
        })
    }

    /// Replaces the update every watcher sees with one at `position`.
    pub fn publish(&self, position: u64) {
        self.updates.send_modify(|update| {
            *update = Arc::new(pb::Update {
                position,
                payload: update.payload.clone(),
            });
        });
    }
}
