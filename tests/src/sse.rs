//! Reading the shim's server-sent events (`GET /api/v1/events`) as a client does: one
//! [`Sse`] at a time, each `id:` kept as every host's position (`b1:120,b2:98`). An `id:` with
//! no data (the stream's opening, a host joining) moves the positions without being an event.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::Http;

/// How long [`SseReader::next`] waits for an event.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct Sse {
    /// The `id:` as sent; `None` for events without one (`daemon`, `lagged`).
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

impl Sse {
    /// The host that sent it (`data.host`).
    pub fn host(&self) -> &str {
        self.data["host"].as_str().unwrap_or("")
    }

    /// Its sequence number on its host (`data.seq`).
    pub fn seq(&self) -> Option<u64> {
        self.data["seq"].as_u64()
    }
}

/// `b1:120,b2:98` as host → position.
pub fn positions(id: &str) -> BTreeMap<String, u64> {
    id.split(',')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (host, seq) = part
                .split_once(':')
                .unwrap_or_else(|| panic!("`{part}` of id `{id}` is not HOST:SEQ"));
            let seq = seq
                .parse()
                .unwrap_or_else(|e| panic!("`{part}` of id `{id}`: {e}"));
            (host.to_string(), seq)
        })
        .collect()
}

pub struct SseReader {
    body: Pin<Box<dyn futures::Stream<Item = Result<bytes::Bytes, String>> + Send>>,
    buffer: String,
    /// The last `id:` received, with or without data: what a client resumes with.
    pub last_id: Option<String>,
}

impl SseReader {
    /// Opens the shim's event stream (`GET /api/v1/events` with its token), resuming after
    /// `last_event_id` (an `id:` received) when given; fails unless it answers 200 with
    /// `text/event-stream`.
    pub async fn open(shim: &Http, last_event_id: Option<&str>) -> SseReader {
        // No timeout on the whole answer: each event is waited for with its own.
        let mut request = reqwest::Client::new()
            .get(shim.url("/api/v1/events"))
            .bearer_auth(&shim.token);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("GET /api/v1/events");
        assert_eq!(response.status(), 200, "{}", shim.logs());
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            kind.starts_with("text/event-stream"),
            "content-type {kind:?}"
        );
        SseReader::new(response.bytes_stream())
    }

    /// Reads the body of a `text/event-stream` answer (e.g. `response.bytes_stream()`).
    pub fn new<S, E>(body: S) -> SseReader
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
        E: std::fmt::Display,
    {
        SseReader {
            body: Box::pin(body.map(|chunk| chunk.map_err(|e| e.to_string()))),
            buffer: String::new(),
            last_id: None,
        }
    }

    /// The next event with data (comments, keep-alives and bare `id:`s are taken in passing).
    pub async fn next(&mut self) -> Sse {
        // One deadline for the event, not per chunk: keep-alive comments must not stretch it.
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Sse {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim().to_string());
                        self.last_id = event.id.clone();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                event.data = serde_json::from_str(&data).expect("JSON data");
                return event;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .expect("no server-sent event within the timeout")
                .expect("the event stream ended")
                .expect("reading the event stream");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events until one for which `done` holds; all of them, in order.
    pub async fn until(&mut self, mut done: impl FnMut(&Sse) -> bool) -> Vec<Sse> {
        let mut seen = Vec::new();
        loop {
            let event = self.next().await;
            let hit = done(&event);
            seen.push(event);
            if hit {
                return seen;
            }
        }
    }

    /// Events until one named `kind` about `session`; all of them, in order.
    pub async fn until_session(&mut self, kind: &str, session: &str) -> Vec<Sse> {
        self.until(|e| e.event == kind && e.data["kind"][kind]["session_id"] == session)
            .await
    }
}
