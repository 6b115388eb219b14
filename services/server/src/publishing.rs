//! The thread the poll and Q&A publishers run on.
//!
//! A publisher wakes when a ballot or a question changes what its watchers see, and hands the
//! new value to each watched key's channel; every watcher's task then sends it. On the server's
//! runtime, a publisher's wake-up waited in the run queues behind the tasks of every watcher
//! still sending the update before (20,000 of them at the fan-out target), so at ten updates a
//! second a publish often began only once the last fan-out had drained. On a runtime of its own
//! it publishes when it is woken (README, "Polls: durable ballots and fan-out", has the figures).

use tokio::{runtime::Handle, sync::oneshot};

/// A single-threaded runtime on a thread named `podium-publish`, for as long as this lives.
pub(crate) struct PublishingThread {
    handle: Handle,
    /// Dropping it ends the thread, and with it the tasks spawned on its runtime.
    _stop: oneshot::Sender<()>,
}

impl PublishingThread {
    pub(crate) fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("podium-publish".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Self {
            handle,
            _stop: stop,
        })
    }

    /// Where the publishers are spawned.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}
