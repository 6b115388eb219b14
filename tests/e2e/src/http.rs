//! Plain HTTP/1.1 requests to podiumd's pages, byte for byte, for the tests that check what a
//! browser is sent (headers, cookies, status codes) rather than what it shows.

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response: its status, its headers (names lower-cased, in order) and its body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Every byte the response took on the wire, status line and headers included.
    pub wire_bytes: usize,
}

impl Reply {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every `set-cookie` header.
    pub fn cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The `set-cookie` header for cookie `name`, with its attributes.
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.cookies()
            .into_iter()
            .find(|c| c.split_once('=').is_some_and(|(n, _)| n == name))
    }

    /// The value the response sets for cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let pair = self.set_cookie(name)?.split(';').next()?;
        pair.split_once('=').map(|(_, v)| v.to_owned())
    }
}

/// The name podiumd at `addr` (`127.0.0.1:port`) gives its cookie `base` (`podium_session`,
/// `podium_at`): browsers keep cookies per host, not per port, so podiumd's own carry the port
/// of the address they were reached by (`CookieScope` in services/web/src/session.rs).
pub fn cookie_name(addr: &str, base: &str) -> String {
    match addr.rsplit_once(':') {
        Some((_, port)) => format!("{base}_{port}"),
        None => base.to_owned(),
    }
}

/// Sends one request on a fresh connection to `addr` (`127.0.0.1:port`) and reads the whole
/// response. `headers` are added as given; a POST's body is a form.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<Reply> {
    let mut headers = headers.to_vec();
    if method == "POST" {
        headers.push(("content-type", "application/x-www-form-urlencoded"));
    }
    request_bytes(addr, method, path, &headers, body.as_bytes()).await
}

/// Like [`request`], with a body of any bytes and no content type but the caller's.
pub async fn request_bytes(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<Reply> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "POST" {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let wire_bytes = raw.len();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_owned(),
        wire_bytes,
    })
}

/// Sends a GET whose response does not end (a live stream) and reads only its status line and
/// headers: the status, and the connection, open until it is dropped.
pub async fn open_stream(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, tokio::net::TcpStream)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut head = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut raw = Vec::new();
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        anyhow::ensure!(
            stream.read(&mut byte).await? == 1,
            "closed before its headers"
        );
        raw.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&raw)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    Ok((status, stream))
}

/// Reads a stream [`open_stream`] opened until it has sent `wanted`, and returns what it read
/// (from this call on); fails if it ends first or [`PATIENCE`](crate::PATIENCE) passes.
pub async fn read_until(
    stream: &mut tokio::net::TcpStream,
    wanted: &str,
) -> anyhow::Result<String> {
    let read = async {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = stream.read(&mut buffer).await?;
            anyhow::ensure!(n > 0, "the stream ended before {wanted:?}");
            seen.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&seen);
            if text.contains(wanted) {
                return Ok(text.into_owned());
            }
        }
    };
    tokio::time::timeout(crate::PATIENCE, read)
        .await
        .with_context(|| format!("no {wanted:?} within {:?}", crate::PATIENCE))?
}

/// Waits until a stream [`open_stream`] opened ends: its last chunk, or the connection closed.
pub async fn stream_ends(stream: &mut tokio::net::TcpStream) -> anyhow::Result<()> {
    match read_until(stream, "\r\n0\r\n\r\n").await {
        Err(e) if e.to_string().contains("the stream ended") => Ok(()),
        other => other.map(drop),
    }
}

/// The value of the field `name` of a page's form, as the page wrote it (`name="…" value="…"`).
pub fn field(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page.find(&marker)? + marker.len();
    page[at..].split('"').next().map(str::to_owned)
}

/// Form-encodes `fields`.
pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
