//! The thread the poll and Q&A publishers run on.
//!
//! A publisher wakes when a ballot or a question changes what its watchers see, and hands the
//! new value to each watched key's channel; every watcher's task then sends it. As a task on
//! podiumd's runtime, beside the watchers' tasks, the publisher of a poll with 20,000 watchers
//! published later than it does on a runtime of its own: p99 1.16x to 1.81x the bare fan-out
//! against 0.98x to 1.33x, alternated runs of the same build (README, "Polls: durable ballots
//! and fan-out"). The likely cause: woken by a ballot while the watchers still sent the update
//! before (which takes about 200 ms at that size, with ballots every 100 ms), it waited for
//! them in the runtime's queues. The bare fan-out it is measured against is handed its updates
//! from outside its runtime, as the publishers now are.
//!
//! The publishers still wait for podiumd's runtime once a publish has woken more than two
//! waves' worth of watchers (`grpc/publisher.rs`, 2,048), so a runtime that is blocked holds up
//! such a publish, and the ones after it.

use tokio::{runtime::Handle, sync::oneshot};

/// A single-threaded runtime on a thread named `podium-publish`, for the publishers of
/// [`crate::PollsService`] and [`crate::QuestionsService`] (their `new` takes [`Self::handle`]).
pub struct PublishingThread {
    handle: Handle,
    /// Dropping it lets the thread end, soon after, and with it the tasks spawned on its
    /// runtime (not waited for).
    _stop: oneshot::Sender<()>,
}

impl PublishingThread {
    /// Starts the thread; its runtime is built on it, so a failure to build it is returned
    /// here, not dropped on the caller's runtime.
    pub fn start() -> std::io::Result<Self> {
        let (started, runtime) = std::sync::mpsc::sync_channel(1);
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("podium-publish".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = started.send(Err(error));
                        return;
                    }
                };
                let _ = started.send(Ok(runtime.handle().clone()));
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        let handle = runtime.recv().map_err(|_| {
            std::io::Error::other("the publishing thread ended before its runtime started")
        })??;
        Ok(Self {
            handle,
            _stop: stop,
        })
    }

    /// Where the publishers are spawned.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}
