//! Just enough HTTP/1.1 to ask the shim two questions: does `/healthz` answer, and does the
//! console's WebSocket handshake refuse a missing token and take a right one. Plain TCP to a
//! loopback address, one request per connection, a short timeout. Nothing listening is told
//! apart from something that listens but does not answer like the shim.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bounds::SHIM_REQUEST as TIMEOUT;

const MAX_RESPONSE: usize = 64 * 1024;

/// An HTTP answer: its status and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Nothing accepts connections there: the shim does not run (or listens elsewhere).
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// Something accepted the connection but gave no HTTP answer.
    #[error("connected, but got no HTTP answer: {0}")]
    Answer(std::io::Error),
}

/// Sends `GET path` with `headers` to `addr` (host:port); the status and body.
pub async fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> Result<Response, HttpError> {
    let connect = tokio::net::TcpStream::connect(addr);
    let stream = tokio::time::timeout(TIMEOUT, connect)
        .await
        .map_err(|_| HttpError::Connect(timed_out()))?
        .map_err(HttpError::Connect)?;
    tokio::time::timeout(TIMEOUT, exchange(stream, addr, path, headers))
        .await
        .map_err(|_| HttpError::Answer(timed_out()))?
        .map_err(HttpError::Answer)
}

/// The error of a request that got no answer within [`TIMEOUT`].
pub fn timed_out() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within {} s", TIMEOUT.as_secs()),
    )
}

async fn exchange(
    mut stream: tokio::net::TcpStream,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        // A 101 keeps the connection open: the head is all there is to read.
        if raw.starts_with(b"HTTP/1.1 101") && raw.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        if raw.len() > MAX_RESPONSE {
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {:.80}", text)))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok(Response { status, body })
}

/// The headers of a WebSocket upgrade request.
pub(crate) fn upgrade_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "ZG9jdG9yLWNoZWNrLWtleQ=="),
    ]
}
