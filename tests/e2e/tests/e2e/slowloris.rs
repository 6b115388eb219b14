//! Connections that never send a request: half of HTTP/2's preface, half an HTTP/1.1 head,
//! nothing after the TLS handshake, or no handshake at all. podiumd closes each after
//! `--first-request-timeout` (or `--tls-handshake-timeout`), its file descriptors come back,
//! and a client that connected properly and then stayed idle keeps its connection.

use std::time::Duration;

use podium_client::Tls;
use podium_e2e::{Podiumd, metrics};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{
    TlsConnector,
    rustls::{ClientConfig, RootCertStore, pki_types::CertificateDer, pki_types::pem::PemObject},
};

use crate::transport::{pki, served};

/// HTTP/2's connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A bound on waiting for the server to act, far above the one-second timeouts: not a timing
/// assertion, a test that cannot hang.
const BOUND: Duration = Duration::from_secs(60);

type Held = Box<dyn AsyncRead + Unpin + Send>;

fn descriptors(server: &Podiumd) -> usize {
    let pid = server.pid().expect("podiumd runs");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("podiumd's descriptors")
        .count()
}

/// Waits until podiumd holds at most `count` descriptors.
///
/// There is no matching wait for the held connections to be open all at once: the first of
/// them may be closed by its one-second timeout before a loaded machine has accepted the last
/// (CI failed on exactly that). That each was accepted and then closed by the timeout is what
/// `podium_connections_closed_total` counts, and the plaintext test checks it.
async fn descriptors_come_back(server: &Podiumd, count: usize) {
    tokio::time::timeout(BOUND, async {
        while descriptors(server) > count {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "podiumd holds {} descriptors, waiting for at most {count}",
            descriptors(server)
        )
    });
}

/// podiumd's metrics, asked for over TLS with HTTP/1.1 (`config` trusts the server's CA).
async fn scrape_over_tls(server: &Podiumd, config: ClientConfig) -> String {
    let tcp = TcpStream::connect(&server.addr).await.unwrap();
    let connector = TlsConnector::from(std::sync::Arc::new(config));
    let mut tls = connector
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let reply = tokio::time::timeout(BOUND, read_to_close(&mut tls))
        .await
        .expect("the metrics in time");
    let reply = String::from_utf8(reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    reply
}

/// What `reader` gives until the server closes the connection: end of file, or an error (a
/// reset, or a TLS close without close_notify).
async fn read_to_close(reader: &mut (impl AsyncRead + Unpin + ?Sized)) -> Vec<u8> {
    let mut read = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n @ 1..) = reader.read(&mut buf).await {
        read.extend_from_slice(&buf[..n]);
    }
    read
}

/// Waits for the server to close the connection.
async fn closed_by_server(mut held: Held, what: &str) {
    let ended = tokio::time::timeout(BOUND, read_to_close(&mut held)).await;
    assert!(ended.is_ok(), "{what}: still open after {BOUND:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_prefaces_and_silent_connections_are_closed_and_their_descriptors_come_back() {
    let server = Podiumd::start_with(&["--first-request-timeout", "1"]).unwrap();
    let token = server.admin_token().unwrap();
    // A client that connects properly, then stays idle past the timeout, keeps its connection.
    let idle = podium_client::Client::connect_with(&server.addr, Some(token.clone()), None)
        .await
        .unwrap();
    idle.diagnostics()
        .ping(podium_client::pb::PingRequest { seq: 1 })
        .await
        .unwrap();
    let before = descriptors(&server);

    let mut held: Vec<(Held, String)> = Vec::new();
    for i in 0..200 {
        let mut stream = TcpStream::connect(&server.addr).await.unwrap();
        let half: &[u8] = if i % 2 == 0 {
            &PREFACE[..12]
        } else {
            b"GET /j/ODC24 HTTP/1.1\r\nHost: pod"
        };
        // On a loaded machine the server may already have closed this one (its timeout is a
        // second): a refused write is then the close this test waits for below.
        let _ = stream.write_all(half).await;
        held.push((Box::new(stream), format!("plaintext connection {i}")));
    }
    for (stream, what) in held {
        closed_by_server(stream, &what).await;
    }
    descriptors_come_back(&server, before).await;

    // The idle client was not taken for one of them: same connection, still served, and only
    // the 200 were closed.
    idle.diagnostics()
        .ping(podium_client::pb::PingRequest { seq: 2 })
        .await
        .unwrap();
    let scrape = metrics::scrape(&server).await.unwrap();
    assert_eq!(
        metrics::sample(
            &scrape,
            r#"podium_connections_closed_total{stage="first_request"}"#
        ),
        200.0,
        "{scrape}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_silent_or_half_preface_connection_and_a_stalled_handshake_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let server = Podiumd::start_with(&[
        "--tls-cert",
        pki.server_cert.to_str().unwrap(),
        "--tls-key",
        pki.server_key.to_str().unwrap(),
        "--first-request-timeout",
        "1",
        // Longer than the first-request timeout: a loaded machine's 40 handshakes in a row must
        // not meet it, while the 10 that never start one still wait for it.
        "--tls-handshake-timeout",
        "5",
    ])
    .unwrap();
    let ca = std::fs::read(&pki.ca).unwrap();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let ring = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(ring)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http1 = config.clone();
    http1.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = TlsConnector::from(std::sync::Arc::new(config));
    let before = descriptors(&server);

    let mut held: Vec<(Held, String)> = Vec::new();
    for i in 0..40 {
        let tcp = TcpStream::connect(&server.addr).await.unwrap();
        let name = "127.0.0.1".try_into().unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        if i % 2 == 0 {
            // As above: refused only if the server has closed it already.
            let _ = tls.write_all(&PREFACE[..12]).await;
            let _ = tls.flush().await;
        }
        held.push((Box::new(tls), format!("TLS connection {i}")));
    }
    for i in 0..10 {
        let tcp = TcpStream::connect(&server.addr).await.unwrap();
        held.push((Box::new(tcp), format!("connection {i} without a handshake")));
    }
    for (stream, what) in held {
        closed_by_server(stream, &what).await;
    }
    descriptors_come_back(&server, before).await;
    // Each was accepted and closed by its own timeout.
    let scrape = scrape_over_tls(&server, http1).await;
    for (stage, count) in [("first_request", 40.0), ("tls_handshake", 10.0)] {
        let series = format!(r#"podium_connections_closed_total{{stage="{stage}"}}"#);
        assert_eq!(metrics::sample(&scrape, &series), count, "{scrape}");
    }

    // A client that trusts the CA is served as before.
    let trusting = Tls {
        ca_pem: Some(ca),
        ..Tls::default()
    };
    served(
        &server,
        Some(server.admin_token().unwrap()),
        Some(&trusting),
    )
    .await
    .unwrap();
}
