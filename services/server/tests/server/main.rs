//! The integration tests of podium-server, one binary with a module per concern: read models'
//! snapshots against a real sled log in a temporary directory.

mod snapshots;
