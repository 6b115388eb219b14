//! The connections podiumd serves: accepted from the listener, through the TLS handshake (when
//! configured), each given `--first-request-timeout` to send its first request.
//!
//! A client that opens a connection and then sends half of HTTP/2's preface, or nothing after
//! the TLS handshake, would otherwise hold a file descriptor for ever (a slowloris). Below hyper,
//! each connection's reads are watched until the first request has arrived: HTTP/2's 24-byte
//! preface, or an HTTP/1.1 request's head (up to its blank line). A connection that has not
//! sent it within the timeout is closed, and counted in `podium_connections_closed_total`.
//! After that this watch is done: an idle HTTP/2 connection is the client's to keep, and
//! HTTP/2 keepalive pings find a dead one (hyper's own timer still bounds how long an HTTP/1.1
//! request's head may take). TLS is done here rather than by tonic so that the
//! watch sees the plaintext; handshakes run concurrently, each within
//! `--tls-handshake-timeout`.
//!
//! At shutdown every stream is told to end, and a client that reads its stream's end answers
//! (a window update, its own end, the connection's close). A stream whose client stopped
//! reading cannot even send its end: HTTP/2 flow control holds the data before it, and hyper
//! will not look past that. So once podiumd is stopping, a connection from which nothing
//! arrives for [`DRAIN_QUIET`], and that waits for no answer (a call whose response has not
//! started: a slow unary call, an upload being stored), is closed, ending its streams while
//! they are blocked, instead of holding the whole stop until `--drain-timeout`.

use std::{
    collections::HashMap,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures::{Stream, StreamExt};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{mpsc, watch},
    time::Sleep,
};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        RootCertStore, ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
        server::WebPkiClientVerifier,
    },
    server::TlsStream,
};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

use crate::{Config, ServerError};

/// Connections closed by podiumd, by why: `tls_handshake` (not finished in
/// `--tls-handshake-timeout`), `first_request` (no request in `--first-request-timeout`) or
/// `drain` (silent for [`DRAIN_QUIET`] while podiumd stops).
pub const CLOSED: &str = "podium_connections_closed_total";

/// HTTP/2's connection preface: the first bytes of every HTTP/2 connection.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A request head longer than this is hyper's to refuse; the watch stops looking.
const MAX_HEAD: usize = 64 << 10;
/// Handshaken connections waiting for hyper to take them.
const QUEUE: usize = 128;
/// Once podiumd is stopping, a connection from which nothing arrives for this long is closed
/// (at most `--drain-timeout` applies anyway).
pub const DRAIN_QUIET: Duration = Duration::from_secs(2);

/// The rustls configuration from `--tls-cert`, `--tls-key` and `--tls-client-ca`, or `None`
/// for plaintext.
pub fn server_tls(config: &Config) -> Result<Option<Arc<ServerConfig>>, ServerError> {
    let (Some(cert), Some(key)) = (&config.tls.tls_cert, &config.tls.tls_key) else {
        return Ok(None);
    };
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| ServerError::TlsFile {
            path: path.display().to_string(),
            source,
        })
    };
    let bad = |path: &std::path::Path, what: &str| ServerError::TlsFile {
        path: path.display().to_string(),
        source: io::Error::new(io::ErrorKind::InvalidData, what.to_owned()),
    };
    let certs = |path: &std::path::Path| -> Result<Vec<CertificateDer<'static>>, ServerError> {
        let pem = read(path)?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad(path, "not a PEM certificate chain"))?;
        if certs.is_empty() {
            return Err(bad(path, "holds no PEM certificate"));
        }
        Ok(certs)
    };
    let chain = certs(cert)?;
    let private = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|_| bad(key, "not a PEM private key"))?;
    // ring, as tonic's own TLS uses: explicit, so that another provider compiled into the
    // same build (a test's browser driver) cannot make the choice ambiguous.
    let ring = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(ring.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, &e.to_string()))?;
    let builder = match &config.tls.tls_client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(certs(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), ring.clone())
                .build()
                .map_err(|e| bad(ca, &e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut tls = builder
        .with_single_cert(chain, private)
        .map_err(|e| bad(key, &e.to_string()))?;
    // HTTP/2 first; browsers that offer only HTTP/1.1 get it.
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(tls)))
}

/// Each connection's calls whose response has not started, by the connection's remote address:
/// counted by the transport guard (`limits::Guard`), read by the connection at shutdown.
#[derive(Debug, Clone, Default)]
pub struct Calls(Arc<Mutex<HashMap<SocketAddr, Arc<AtomicUsize>>>>);

impl Calls {
    fn register(&self, remote: Option<SocketAddr>) -> Option<(SocketAddr, Arc<AtomicUsize>)> {
        let remote = remote?;
        let count = Arc::new(AtomicUsize::new(0));
        self.0.lock().ok()?.insert(remote, count.clone());
        Some((remote, count))
    }

    fn forget(&self, remote: SocketAddr, count: &Arc<AtomicUsize>) {
        if let Ok(mut calls) = self.0.lock()
            && calls.get(&remote).is_some_and(|c| Arc::ptr_eq(c, count))
        {
            calls.remove(&remote);
        }
    }

    /// Counts `request` on its connection until the returned guard is dropped.
    pub fn begin<B>(&self, request: &http::Request<B>) -> Option<Awaited> {
        let remote = request
            .extensions()
            .get::<TcpConnectInfo>()?
            .remote_addr()?;
        let count = self.0.lock().ok()?.get(&remote)?.clone();
        count.fetch_add(1, Ordering::AcqRel);
        Some(Awaited(count))
    }
}

/// A call counted in [`Calls`] until its response starts.
pub struct Awaited(Arc<AtomicUsize>);

impl Drop for Awaited {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How connections are let in.
#[derive(Clone)]
pub struct Admission {
    pub tls: Option<Arc<ServerConfig>>,
    pub handshake_timeout: Duration,
    pub first_request_timeout: Duration,
    /// Turns true when podiumd starts stopping.
    pub stop: watch::Receiver<bool>,
    /// Where the transport guard counts each connection's calls.
    pub calls: Calls,
}

/// The connections accepted from `tcp`, handshaken and watched, for tonic to serve. Ends when
/// tonic stops taking them (it drops the stream at shutdown).
pub fn incoming(
    mut tcp: TcpIncoming,
    admission: Admission,
) -> impl Stream<Item = io::Result<Conn>> + Send + 'static {
    let (tx, rx) = mpsc::channel::<Conn>(QUEUE);
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                () = tx.closed() => return,
                next = tcp.next() => match next {
                    None => return,
                    Some(Ok(stream)) => stream,
                    Some(Err(error)) => {
                        // Out of descriptors, most likely: pause rather than spin.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let (tx, admission) = (tx.clone(), admission.clone());
            tokio::spawn(async move {
                if let Some(conn) = admit(stream, &admission).await {
                    let _ = tx.send(conn).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok)
}

/// The connection, handshaken if TLS is on; `None` if the handshake failed or took too long.
async fn admit(stream: TcpStream, admission: &Admission) -> Option<Conn> {
    let info = stream.connect_info();
    let io = match &admission.tls {
        None => Io::Plain(stream),
        Some(tls) => {
            // Borrowed by the timeout, so the connection is closed (the handshake dropped) only
            // after it is counted: a client that sees the close finds it in /metrics.
            let mut handshake = std::pin::pin!(TlsAcceptor::from(tls.clone()).accept(stream));
            match tokio::time::timeout(admission.handshake_timeout, handshake.as_mut()).await {
                Ok(Ok(tls)) => Io::Tls(Box::new(tls)),
                Ok(Err(error)) => {
                    tracing::debug!(remote = ?info.remote_addr(), %error, "TLS handshake failed");
                    return None;
                }
                Err(_) => {
                    metrics::counter!(CLOSED, "stage" => "tls_handshake").increment(1);
                    tracing::debug!(remote = ?info.remote_addr(), "TLS handshake not finished in time");
                    return None;
                }
            }
        }
    };
    let mut stop = admission.stop.clone();
    let calls = admission
        .calls
        .register(info.remote_addr())
        .map(|(remote, count)| (admission.calls.clone(), remote, count));
    Some(Conn {
        io,
        info,
        calls,
        watch: Some(Watch::new(admission.first_request_timeout)),
        stopping: Some(Box::pin(async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })),
        quiet: None,
    })
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An accepted connection, watched until its first request.
pub struct Conn {
    io: Io,
    info: TcpConnectInfo,
    /// Its calls awaiting their response, and where they are registered.
    calls: Option<(Calls, SocketAddr, Arc<AtomicUsize>)>,
    watch: Option<Watch>,
    /// Completes when podiumd starts stopping; `None` once it has.
    stopping: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// While stopping: when the connection is closed unless something arrives first.
    quiet: Option<Pin<Box<Sleep>>>,
}

/// What has been read of a connection before its first request was complete.
struct Watch {
    deadline: Pin<Box<Sleep>>,
    /// Bytes read so far.
    read: usize,
    /// Every byte so far is the beginning of HTTP/2's preface.
    preface: bool,
    /// The last four bytes, for an HTTP/1.1 head's end (`\r\n\r\n`).
    tail: u32,
}

impl Watch {
    fn new(timeout: Duration) -> Self {
        Self {
            deadline: Box::pin(tokio::time::sleep(timeout)),
            read: 0,
            preface: true,
            tail: 0,
        }
    }

    /// Takes in bytes read; whether the first request has now arrived.
    fn arrived(&mut self, bytes: &[u8]) -> bool {
        for &byte in bytes {
            if self.preface {
                if PREFACE.get(self.read) != Some(&byte) {
                    self.preface = false;
                } else if self.read + 1 == PREFACE.len() {
                    return true;
                }
            }
            self.tail = (self.tail << 8) | u32::from(byte);
            self.read += 1;
            if !self.preface && (self.tail == 0x0d0a_0d0a || self.read >= MAX_HEAD) {
                return true;
            }
        }
        false
    }
}

impl Conn {
    /// While podiumd stops: the error that closes this connection once it has been silent for
    /// [`DRAIN_QUIET`] with no call awaiting its answer. Registers `cx` with both timers.
    fn drained(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if let Some(stopping) = &mut self.stopping
            && stopping.as_mut().poll(cx).is_ready()
        {
            self.stopping = None;
            self.quiet = Some(Box::pin(tokio::time::sleep(DRAIN_QUIET)));
        }
        let quiet = self.quiet.as_mut()?;
        while quiet.as_mut().poll(cx).is_ready() {
            let awaited = self
                .calls
                .as_ref()
                .map_or(0, |(_, _, count)| count.load(Ordering::Acquire));
            if awaited == 0 {
                metrics::counter!(CLOSED, "stage" => "drain").increment(1);
                tracing::debug!(remote = ?self.info.remote_addr(), "silent while podiumd stops; closing the connection");
                return Some(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "podiumd is stopping and the client sent nothing",
                ));
            }
            // An answer is still being worked on: look again later.
            quiet
                .as_mut()
                .reset(tokio::time::Instant::now() + DRAIN_QUIET);
        }
        None
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some((calls, remote, count)) = &self.calls {
            calls.forget(*remote, count);
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(watch) = &mut this.watch
            && watch.deadline.as_mut().poll(cx).is_ready()
        {
            metrics::counter!(CLOSED, "stage" => "first_request").increment(1);
            tracing::debug!(remote = ?this.info.remote_addr(), read = watch.read, "no request in time; closing the connection");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request within --first-request-timeout",
            )));
        }
        if let Some(closed) = this.drained(cx) {
            return Poll::Ready(Err(closed));
        }
        let before = buf.filled().len();
        let polled = match &mut this.io {
            Io::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        };
        let arrived = &buf.filled()[before..];
        if let (Poll::Ready(Ok(())), Some(watch)) = (&polled, &mut this.watch)
            && watch.arrived(arrived)
        {
            this.watch = None;
        }
        if let (Poll::Ready(Ok(())), Some(quiet)) = (&polled, &mut this.quiet)
            && !arrived.is_empty()
        {
            quiet
                .as_mut()
                .reset(tokio::time::Instant::now() + DRAIN_QUIET);
        }
        polled
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // A client that stopped reading the socket itself blocks writes, and hyper may then
        // not read at all: the timer is looked at here too.
        if let Some(closed) = self.drained(cx) {
            return Poll::Ready(Err(closed));
        }
        match &mut self.io {
            Io::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(closed) = self.drained(cx) {
            return Poll::Ready(Err(closed));
        }
        match &mut self.io {
            Io::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(io) => io.is_write_vectored(),
            Io::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(closed) = self.drained(cx) {
            return Poll::Ready(Err(closed));
        }
        match &mut self.io {
            Io::Plain(io) => Pin::new(io).poll_flush(cx),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> Watch {
        Watch::new(Duration::from_secs(10))
    }

    #[tokio::test]
    async fn the_whole_preface_or_a_request_head_is_a_first_request_and_less_is_not() {
        let mut w = watch();
        assert!(!w.arrived(&PREFACE[..12]));
        // Its own blank line is not the end of an HTTP/1.1 head.
        assert!(!w.arrived(&PREFACE[12..23]));
        assert!(w.arrived(&PREFACE[23..]));

        let head = b"GET /j/ODC24 HTTP/1.1\r\nHost: podium\r\n\r\n";
        for split in [1, 10, head.len() - 1] {
            let mut w = watch();
            assert!(!w.arrived(&head[..split]), "{split}");
            assert!(w.arrived(&head[split..]), "{split}");
        }
        let mut w = watch();
        assert!(!w.arrived(b"GET / HTTP/1.1\r\nHost: pod"));
        // Something that is neither: hyper refuses it once its head is long enough.
        let mut w = watch();
        assert!(!w.arrived(&[0u8; 100]));
        assert!(w.arrived(&vec![b'x'; MAX_HEAD]));
    }
}
