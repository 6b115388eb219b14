//! Whether the cluster keeps what it acknowledges. JetStream acknowledges a publish once a
//! majority of the stream's servers has it, but by default a server writes it to disk only
//! every two minutes: a power cut of the machines (one room's circuit, one rack) then loses
//! acknowledged events (Jepsen's analysis of NATS 2.12.1). podium's promise needs
//! `sync_interval: always` on every server that holds the log. A client cannot ask a server for
//! its settings, but each server's monitoring endpoint (`/varz`) shows them: podium reads it on
//! every server that holds the stream and refuses a cluster where one syncs lazily, unless told
//! to accept the risk.

use std::collections::BTreeSet;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::{EventLogError, Result};

/// What one server says of itself.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerSync {
    pub name: String,
    pub sync_always: bool,
}

/// Checks that every server in `holders` (the servers of the stream) is among the servers the
/// `monitors` describe, and syncs every write.
pub async fn check(monitors: &[String], holders: &BTreeSet<String>) -> Result<()> {
    let mut seen = Vec::with_capacity(monitors.len());
    for monitor in monitors {
        seen.push(varz(monitor).await?);
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
    let unchecked: Vec<&str> = holders
        .iter()
        .filter(|h| !seen.iter().any(|s| &s.name == *h))
        .map(String::as_str)
        .collect();
    if !unchecked.is_empty() {
        return Err(refused(format!(
            "the NATS servers {unchecked:?} hold the log, but no monitoring URL given shows them"
        )));
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
    Ok(ServerSync {
        name,
        sync_always: config["sync_always"].as_bool().unwrap_or(false),
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
        }
    }

    #[test]
    fn varz_says_whether_jetstream_syncs_every_write() {
        let always = br#"{"server_name":"n1","jetstream":{"config":{"sync_interval":120000000000,"sync_always":true}}}"#;
        assert_eq!(parse(always), Ok(server("n1", true)));
        let lazy = br#"{"server_name":"n2","jetstream":{"config":{"sync_interval":120000000000}}}"#;
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
        let error = verdict(&seen[..2], &all).unwrap_err().to_string();
        assert!(error.contains(r#"["n3"] hold the log"#), "{error}");
        let error = verdict(&[], &BTreeSet::new()).unwrap_err().to_string();
        assert!(error.contains("without their monitoring URLs"), "{error}");
    }
}
