//! The shim's TCP listener. Requests hyper cannot parse (a URI past its 65,534 bytes, headers
//! too large, a malformed request line) are answered by hyper itself, before any route or
//! middleware runs, with an empty body; this wraps each connection so that those answers go
//! out in the API's JSON error shape instead, like every other error.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::error::ApiError;

/// Accepts connections whose automatic error answers are JSON.
pub struct JsonErrorsListener(pub TcpListener);

impl axum::serve::Listener for JsonErrorsListener {
    type Io = JsonErrors;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (
            JsonErrors {
                inner: stream,
                replacing: None,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection; see the module notes.
pub struct JsonErrors {
    inner: TcpStream,
    /// An automatic answer being replaced: the JSON answer, how much of it is written, and
    /// the length of the answer it stands for (what the writer is told was written).
    replacing: Option<(Vec<u8>, usize, usize)>,
}

/// The head hyper writes for a request it cannot parse: status line, `content-length: 0`, and
/// nothing after it (it closes the connection).
fn automatic_answer(buf: &[u8]) -> Option<StatusCode> {
    let head = std::str::from_utf8(buf).ok()?;
    let rest = head.strip_prefix("HTTP/1.1 ")?;
    let code: u16 = rest.get(..3)?.parse().ok()?;
    let empty = head.ends_with("\r\n\r\n")
        && head
            .lines()
            .any(|l| l.eq_ignore_ascii_case("content-length: 0"));
    (empty && matches!(code, 400 | 414 | 431))
        .then(|| StatusCode::from_u16(code).ok())
        .flatten()
}

fn json_answer(status: StatusCode) -> Vec<u8> {
    let error = match status {
        StatusCode::URI_TOO_LONG => ApiError::new(
            status,
            "uri_too_long",
            "the URL is longer than 65,534 bytes: send a shorter one (ids are short; large data goes in a POST body)",
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::new(
            status,
            "headers_too_large",
            "the request's headers are too large: send fewer or smaller headers",
        ),
        _ => ApiError::invalid(
            "the request is not valid HTTP/1.1 (its request line, URI or a header is malformed): send a well-formed request, with the URI percent-encoded",
        ),
    };
    let body = serde_json::to_vec(&error.body()).unwrap_or_default();
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    answer
}

impl JsonErrors {
    /// Writes the rest of the replacement; ready with the replaced answer's length when done.
    fn poll_replacing(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((answer, written, stands_for)) = &mut self.replacing {
            if *written == answer.len() {
                let n = *stands_for;
                self.replacing = None;
                return Poll::Ready(Ok(n));
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &answer[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(0))
    }
}

impl AsyncRead for JsonErrors {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for JsonErrors {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none()
            && let Some(status) = automatic_answer(buf)
        {
            this.replacing = Some((json_answer(status), 0, buf.len()));
        }
        if this.replacing.is_some() {
            return this.poll_replacing(cx);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // An automatic answer is one head in one slice.
        let first = bufs.iter().find(|b| !b.is_empty());
        if self.replacing.is_some() || first.is_some_and(|b| automatic_answer(b).is_some()) {
            return self.poll_write(cx, first.map(|b| &b[..]).unwrap_or_default());
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_empty_automatic_answers_are_replaced() {
        let auto = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(automatic_answer(auto), Some(StatusCode::URI_TOO_LONG));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 52\r\n\r\n";
        assert_eq!(automatic_answer(ours), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_answer(ok), None);
        let answer = String::from_utf8(json_answer(StatusCode::URI_TOO_LONG)).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "uri_too_long");
    }
}
