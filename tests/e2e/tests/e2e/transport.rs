//! Transport limits and TLS against real podiumd processes: the effective configuration sets
//! every limit, an oversized message and a stream beyond the per-connection limit are refused
//! with the right codes, load is shed instead of queued, and TLS (also mutual) works while
//! plaintext off loopback is refused.

use std::{process::Command, time::Duration};

use podium_client::{Client, Tls, pb};
use podium_e2e::{PATIENCE, Podiumd, binary, cli, text};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::Code;

/// Every limit issue 5 names, as `--print-config` reports it.
const LIMITS: [&str; 13] = [
    "max_concurrent_streams",
    "max_local_error_reset_streams",
    "http2_keepalive_interval_seconds",
    "http2_keepalive_timeout_seconds",
    "tcp_keepalive_seconds",
    "first_request_timeout_seconds",
    "request_timeout_seconds",
    "max_request_bytes",
    "max_upload_message_bytes",
    "max_response_bytes",
    "max_header_list_bytes",
    "max_concurrent_requests",
    "max_page_streams",
];

fn effective_config(args: &[&str]) -> serde_json::Value {
    let output = Command::new(binary("podiumd").unwrap())
        .args(args)
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn every_transport_limit_is_set_and_each_follows_its_flag() {
    let config = effective_config(&[]);
    let transport = config["transport"].as_object().unwrap();
    for limit in LIMITS {
        let value = transport
            .get(limit)
            .unwrap_or_else(|| panic!("{limit} is missing from {transport:?}"));
        assert!(
            value.as_f64().is_some_and(|v| v > 0.0),
            "{limit} is unset: {value}"
        );
    }
    assert_eq!(
        transport.len(),
        LIMITS.len(),
        "a limit the test does not know: {transport:?}"
    );

    let changed = effective_config(&[
        "--max-concurrent-streams",
        "7",
        "--request-timeout",
        "2.5",
        "--max-request-bytes",
        "1MiB",
    ]);
    assert_eq!(changed["transport"]["max_concurrent_streams"], 7);
    assert_eq!(changed["transport"]["request_timeout_seconds"], 2.5);
    assert_eq!(changed["transport"]["max_request_bytes"], 1 << 20);
}

#[tokio::test]
async fn a_request_over_the_size_limit_is_resource_exhausted_and_stores_nothing() {
    let server = Podiumd::start_with(&["--max-request-bytes", "64KiB"]).unwrap();
    let admin = server.admin().await.unwrap();
    let mut agenda = admin.agenda();
    let create = |name: String| pb::CreateConferenceRequest {
        request_id: Client::request_id(),
        title: text(&name),
        time_zone: "Asia/Phnom_Penh".into(),
        default_language: "en".into(),
        ..Default::default()
    };

    let refused = agenda
        .create_conference(create("x".repeat(100 << 10)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("too large") && refused.message().contains("65536"),
        "{}",
        refused.message()
    );
    let listed = agenda
        .list_conferences(pb::ListConferencesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.conferences.is_empty(), "{listed:?}");

    // The same connection goes on working, and a message under the limit is handled.
    agenda
        .create_conference(create("Open Data Camp".into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn metadata_over_the_header_limit_is_resource_exhausted_naming_the_limit() {
    let server = Podiumd::start().unwrap();
    let admin = server.admin().await.unwrap();
    let who = |padding: usize| {
        let mut request = tonic::Request::new(pb::WhoAmIRequest {});
        request
            .metadata_mut()
            .insert("x-padding", "p".repeat(padding).parse().unwrap());
        request
    };
    // 20 KiB of metadata against the default limit of 16 KiB: a gRPC status, not a bare 431
    // that clients read as UNKNOWN.
    let refused = admin.access().who_am_i(who(20 << 10)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("--max-header-list-bytes")
            && refused.message().contains("16384"),
        "{}",
        refused.message()
    );
    // The connection goes on; metadata under the limit is served.
    admin.access().who_am_i(who(8 << 10)).await.unwrap();
}

/// A minimal HTTP/2 client that, unlike real ones, opens streams beyond the server's
/// SETTINGS_MAX_CONCURRENT_STREAMS, to see what podiumd does with them.
struct RawH2 {
    tcp: TcpStream,
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

const SETTINGS: u8 = 0x4;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const REFUSED_STREAM: u32 = 0x7;

impl RawH2 {
    async fn connect(addr: &str) -> Self {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut raw = Self { tcp };
        raw.send(SETTINGS, 0, 0, &[]).await;
        raw
    }

    async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = payload.len() as u32;
        let mut frame = len.to_be_bytes()[1..].to_vec();
        frame.extend([kind, flags]);
        frame.extend(stream.to_be_bytes());
        frame.extend(payload);
        self.tcp.write_all(&frame).await.unwrap();
    }

    async fn next(&mut self) -> Frame {
        let mut head = [0u8; 9];
        tokio::time::timeout(PATIENCE, self.tcp.read_exact(&mut head))
            .await
            .expect("podiumd sent no frame")
            .unwrap();
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        self.tcp.read_exact(&mut payload).await.unwrap();
        Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        }
    }

    /// Opens a gRPC call on `stream` and sends no body, so the stream stays open.
    async fn open(&mut self, stream: u32, addr: &str) {
        let mut block = Vec::new();
        for (name, value) in [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/podium.v1.Diagnostics/Ping"),
            (":authority", addr),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ] {
            // HPACK: a literal field without indexing, new name, no Huffman coding.
            block.push(0x00);
            block.push(name.len() as u8);
            block.extend(name.as_bytes());
            block.push(value.len() as u8);
            block.extend(value.as_bytes());
        }
        self.send(HEADERS, END_HEADERS, stream, &block).await;
    }
}

#[tokio::test]
async fn a_stream_beyond_the_per_connection_limit_is_refused() {
    let server = Podiumd::start_with(&["--max-concurrent-streams", "2"]).unwrap();
    let mut h2 = RawH2::connect(&server.addr).await;

    // The server announces its limit, acknowledges our settings, and we acknowledge its.
    let (mut announced, mut acked) = (None, false);
    while announced.is_none() || !acked {
        let frame = h2.next().await;
        if frame.kind != SETTINGS {
            continue;
        }
        if frame.flags & ACK != 0 {
            acked = true;
            continue;
        }
        for setting in frame.payload.chunks(6) {
            if setting[..2] == [0, 3] {
                announced = Some(u32::from_be_bytes([
                    setting[2], setting[3], setting[4], setting[5],
                ]));
            }
        }
        h2.send(SETTINGS, ACK, 0, &[]).await;
    }
    assert_eq!(announced, Some(2));

    for stream in [1, 3, 5] {
        h2.open(stream, &server.addr).await;
    }
    loop {
        let frame = h2.next().await;
        match frame.kind {
            RST_STREAM => {
                let code = u32::from_be_bytes(frame.payload[..4].try_into().unwrap());
                assert_eq!(frame.stream, 5, "a stream within the limit was reset");
                assert_eq!(code, REFUSED_STREAM);
                break;
            }
            GOAWAY => panic!("podiumd closed the connection instead of refusing one stream"),
            _ => {}
        }
    }

    // Other connections are not affected.
    let client = server.client(None).await.unwrap();
    let _ = client.diagnostics().ping(pb::PingRequest { seq: 1 }).await;
}

#[tokio::test]
async fn requests_beyond_the_global_limit_are_shed_at_once() {
    let server = Podiumd::start_with(&["--max-concurrent-requests", "1"]).unwrap();
    let admin = server.admin().await.unwrap();
    let ping = async || admin.diagnostics().ping(pb::PingRequest { seq: 1 }).await;
    ping().await.unwrap();

    // An upload in progress holds the one slot until its client finishes sending. A ping
    // that reaches podiumd first can take the slot and shed the upload instead; then the
    // upload starts again.
    let start_upload = || {
        let (chunks, receiver) = tokio::sync::mpsc::channel::<pb::UploadRecordingRequest>(1);
        let mut recordings = admin.recordings();
        let upload = tokio::spawn(async move {
            recordings
                .upload_recording(tokio_stream::wrappers::ReceiverStream::new(receiver))
                .await
        });
        (chunks, upload)
    };
    let (mut chunks, mut upload) = start_upload();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let shed = loop {
        if upload.is_finished() {
            let refused = upload.await.unwrap().unwrap_err();
            assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
            (chunks, upload) = start_upload();
        }
        match ping().await {
            Err(status) => break status,
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(_) => panic!("a ping was served while an upload held the only slot"),
        }
    };
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    assert!(
        shed.message().contains("--max-concurrent-requests"),
        "{}",
        shed.message()
    );

    drop(chunks);
    let ended = upload.await.unwrap().unwrap_err();
    assert_eq!(ended.code(), Code::InvalidArgument, "{ended:?}");
    ping().await.unwrap();
}

/// A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, as PEM
/// files in `dir`.
pub(crate) struct Pki {
    pub ca: std::path::PathBuf,
    pub server_cert: std::path::PathBuf,
    pub server_key: std::path::PathBuf,
    client_cert: Vec<u8>,
    client_key: Vec<u8>,
}

pub(crate) fn pki(dir: &std::path::Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let issue = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = issue(vec!["127.0.0.1".into(), "localhost".into()]);
    let (client_cert, client_key) = issue(vec!["integration.example".into()]);
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: client_cert.into_bytes(),
        client_key: client_key.into_bytes(),
    }
}

#[tokio::test]
async fn tls_and_mutual_tls_admit_only_clients_that_trust_and_are_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (cert, key, ca) = (
        pki.server_cert.to_str().unwrap(),
        pki.server_key.to_str().unwrap(),
        pki.ca.to_str().unwrap(),
    );
    let server = Podiumd::start_with(&["--tls-cert", cert, "--tls-key", key]).unwrap();
    let token = Some(server.admin_token().unwrap());
    let trusting = Tls {
        ca_pem: Some(std::fs::read(&pki.ca).unwrap()),
        ..Tls::default()
    };
    served(&server, token.clone(), Some(&trusting))
        .await
        .unwrap();

    // Plaintext and a client that does not trust the CA get nowhere.
    let plaintext = served(&server, token.clone(), None).await;
    assert!(plaintext.is_err(), "a plaintext client was served");
    let untrusting = served(&server, token.clone(), Some(&Tls::default())).await;
    assert!(
        untrusting.is_err(),
        "a client that does not trust the CA was served"
    );

    // The CLI over TLS.
    let (ok, stdout, stderr) = cli(
        &server,
        token.as_deref().unwrap(),
        &["--tls-ca", ca, "whoami"],
    )
    .unwrap();
    assert!(ok, "{stdout}{stderr}");
    drop(server);

    // Mutual TLS: only a client with a certificate the client CA signed.
    let server =
        Podiumd::start_with(&["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", ca])
            .unwrap();
    let anonymous = served(&server, None, Some(&trusting)).await;
    assert!(
        anonymous.is_err(),
        "a client without a certificate was served under mutual TLS"
    );
    let identified = Tls {
        identity: Some((pki.client_cert.clone(), pki.client_key.clone())),
        ..trusting
    };
    let token = Some(server.admin_token().unwrap());
    served(&server, token, Some(&identified)).await.unwrap();
}

/// Connects with `tls` and pings: `Err` says where it failed.
pub(crate) async fn served(
    server: &Podiumd,
    token: Option<String>,
    tls: Option<&Tls>,
) -> Result<(), String> {
    let client = Client::connect_with(&server.addr, token, tls)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    client
        .diagnostics()
        .ping(pb::PingRequest { seq: 1 })
        .await
        .map(drop)
        .map_err(|e| format!("ping: {e}"))
}

#[test]
fn plaintext_off_loopback_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let refused = Command::new(binary("podiumd").unwrap())
        .args(["--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refusing to serve plaintext") && stderr.contains("--allow-plaintext"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("admin.token").exists(),
        "podiumd started before refusing"
    );

    // Told explicitly, it serves plaintext on every interface (for a TLS-terminating proxy).
    let mut allowed = Command::new(binary("podiumd").unwrap())
        .args(["--listen", "0.0.0.0:0", "--allow-plaintext", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(allowed.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    allowed.kill().unwrap();
    allowed.wait().unwrap();
    assert!(
        line.starts_with("podiumd listening on 0.0.0.0:"),
        "{line:?}"
    );
}
