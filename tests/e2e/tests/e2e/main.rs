//! End-to-end tests: real `podiumd` processes on loopback, driven through the client library
//! and the `podium` CLI. Each test sets its stage with `podium_e2e::Show` (the conference, its
//! sessions, polls and attendees) and keeps to its module what it checks.

mod access;
mod agenda;
mod authz;
mod backup;
mod cli;
mod cluster;
mod deploy;
mod drain;
mod engine;
mod faults;
mod feed;
mod house;
mod nodes;
mod obs;
mod polls;
mod privacy;
mod qa;
mod recordings;
mod reschedule;
mod server;
mod shared;
mod slowloris;
mod standby;
mod status;
mod text;
mod tokens;
mod transport;
mod web;
