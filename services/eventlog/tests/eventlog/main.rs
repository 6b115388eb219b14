//! The integration tests of podium-eventlog, one binary with a module per concern: appends and
//! reads, idempotency, subscriptions, read models, property tests under concurrency, the
//! crash test that kills a writing child process with SIGKILL, and torn writes.

mod append;
mod blobs;
mod crash;
mod helpers;
mod idempotency;
mod jetstream;
mod lease;
mod projection;
mod properties;
mod secrets;
mod subscribe;
mod torn;
