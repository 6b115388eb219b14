//! Whether the cluster keeps what it acknowledges. JetStream acknowledges a publish once a
//! majority of the stream's servers has it, but by default a server writes it to disk only
//! every two minutes: a power cut of the machines (one room's circuit, one rack) then loses
//! acknowledged events (Jepsen's analysis of NATS 2.12.1). podium's promise needs
//! `sync_interval: always` on every server that holds the log. A client cannot ask a server for
//! its settings, but each server's monitoring endpoint (`/varz`) shows them: podium reads it on
//! every server that holds the log or its claims and refuses a cluster where one syncs lazily
//! or runs a NATS older than podium needs, unless told to accept the risk. A server that is down
//! (or frozen) while podiumd starts does not stop it, as long as most of the servers holding the
//! log are seen: a conference can restart podiumd while one NATS machine is being replaced.

use std::{collections::BTreeSet, time::Duration};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::{EventLogError, Result};

/// How long a server's monitoring endpoint may take to answer.
const MONITOR_WAIT: Duration = Duration::from_secs(2);

/// What one server says of itself.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerSync {
    pub name: String,
    pub sync_always: bool,
    /// `major.minor`.
    pub version: (u64, u64),
}

/// Checks what the `monitors` say against `holders` (the servers of the log and its claims):
/// every server seen syncs every write and is recent enough, and most holders are seen.
pub async fn check(monitors: &[String], holders: &BTreeSet<String>) -> Result<()> {
    let answers = futures::future::join_all(monitors.iter().map(|monitor| async move {
        match tokio::time::timeout(MONITOR_WAIT, varz(monitor)).await {
            Ok(answer) => answer,
            Err(_) => Err(EventLogError::Storage(format!(
                "NATS monitoring {monitor}: no answer in {MONITOR_WAIT:?}"
            ))),
        }
    }))
    .await;
    let mut seen = Vec::with_capacity(answers.len());
    for answer in answers {
        match answer {
            Ok(server) => seen.push(server),
            Err(error) => tracing::warn!(%error, "a NATS server's settings could not be read"),
        }
    }
    verdict(&seen, holders)
}

/// The verdict on what the servers said.
fn verdict(seen: &[ServerSync], holders: &BTreeSet<String>) -> Result<()> {
    let refused = |why: String| {
        EventLogError::Storage(format!(
            "{why}; podium acknowledges only what survives a power cut, so it needs \
             `sync_interval: always` in every server's jetstream block (deploy/nats/), or \
             --unsafe-lazy-sync to run without that promise"
        ))
    };
    if seen.is_empty() {
        return Err(refused(
            "podium cannot see the NATS servers' sync setting without their monitoring URLs".into(),
        ));
    }
    if let Some(lazy) = seen.iter().find(|s| !s.sync_always) {
        return Err(refused(format!(
            "the NATS server {} syncs JetStream lazily",
            lazy.name
        )));
    }
    if let Some(old) = seen.iter().find(|s| s.version < super::OLDEST_SERVER) {
        return Err(EventLogError::Storage(format!(
            "the NATS server {} runs {}.{}; podium needs {}.{} or later",
            old.name,
            old.version.0,
            old.version.1,
            super::OLDEST_SERVER.0,
            super::OLDEST_SERVER.1
        )));
    }
    let unchecked: Vec<&str> = holders
        .iter()
        .filter(|h| !seen.iter().any(|s| &s.name == *h))
        .map(String::as_str)
        .collect();
    if unchecked.len() * 2 >= holders.len() && !unchecked.is_empty() {
        return Err(refused(format!(
            "the NATS servers {unchecked:?} hold the log, but no monitoring URL given shows them"
        )));
    }
    if !unchecked.is_empty() {
        tracing::warn!(
            servers = ?unchecked,
            "NATS servers that hold the log could not be checked (down?); most of them were, and sync every write"
        );
    }
    Ok(())
}

/// Reads a server's `/varz` from its monitoring URL (`http://host:port`).
async fn varz(monitor: &str) -> Result<ServerSync> {
    let failed = |why: String| EventLogError::Storage(format!("NATS monitoring {monitor}: {why}"));
    let authority = monitor
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .ok_or_else(|| failed("give it as http://host:port".into()))?;
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(e.to_string()))?;
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get("/varz")
        .header(hyper::header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| failed(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("/varz answered {}", response.status())));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| failed(e.to_string()))?
        .to_bytes();
    connection.abort();
    parse(&body).map_err(|why| failed(why.into()))
}

fn parse(body: &[u8]) -> std::result::Result<ServerSync, &'static str> {
    let varz: serde_json::Value = serde_json::from_slice(body).map_err(|_| "/varz is not JSON")?;
    let name = varz["server_name"]
        .as_str()
        .ok_or("/varz names no server")?
        .to_owned();
    let config = &varz["jetstream"]["config"];
    if config.is_null() {
        return Err("JetStream is not enabled on this server");
    }
    let version = varz["version"].as_str().ok_or("/varz names no version")?;
    let version = super::major_minor(version).ok_or("/varz names no version")?;
    Ok(ServerSync {
        name,
        sync_always: config["sync_always"].as_bool().unwrap_or(false),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holders(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn server(name: &str, sync_always: bool) -> ServerSync {
        ServerSync {
            name: name.into(),
            sync_always,
            version: (2, 15),
        }
    }

    #[test]
    fn varz_says_whether_jetstream_syncs_every_write() {
        let always = br#"{"server_name":"n1","version":"2.15.1","jetstream":{"config":{"sync_interval":120000000000,"sync_always":true}}}"#;
        assert_eq!(parse(always), Ok(server("n1", true)));
        let lazy = br#"{"server_name":"n2","version":"2.15.0","jetstream":{"config":{"sync_interval":120000000000}}}"#;
        assert_eq!(parse(lazy), Ok(server("n2", false)));
        assert_eq!(
            parse(br#"{"server_name":"n3"}"#),
            Err("JetStream is not enabled on this server")
        );
        assert_eq!(parse(b"<html>"), Err("/varz is not JSON"));
    }

    #[test]
    fn every_server_of_the_stream_must_be_seen_syncing() {
        let all = holders(&["n1", "n2", "n3"]);
        let seen = [server("n1", true), server("n2", true), server("n3", true)];
        assert!(verdict(&seen, &all).is_ok());
        let lazy = [server("n1", true), server("n2", false), server("n3", true)];
        let error = verdict(&lazy, &all).unwrap_err().to_string();
        assert!(error.contains("n2 syncs JetStream lazily"), "{error}");
        assert!(error.contains("--unsafe-lazy-sync"), "{error}");
        // One server down while podiumd starts: the two others are most of them.
        assert!(verdict(&seen[..2], &all).is_ok());
        let error = verdict(&seen[..1], &all).unwrap_err().to_string();
        assert!(error.contains(r#"["n2", "n3"] hold the log"#), "{error}");
        let old = [ServerSync {
            version: (2, 12),
            ..server("n1", true)
        }];
        let error = verdict(&old, &all).unwrap_err().to_string();
        assert!(error.contains("n1 runs 2.12; podium needs 2.14"), "{error}");
        let error = verdict(&[], &BTreeSet::new()).unwrap_err().to_string();
        assert!(error.contains("without their monitoring URLs"), "{error}");
    }
}
