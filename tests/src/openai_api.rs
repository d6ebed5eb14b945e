//! A scripted OpenAI Responses API on loopback, the model server codex talks to in tests.
//!
//! Codex 0.171.0 with a custom provider (`wire_api = "responses"`) sends only
//! `POST {base_url}/responses` with `"stream": true` and reads server-sent events:
//! `response.created`, `response.output_item.added`, `response.output_text.delta`,
//! `response.output_item.done` (a `message` or a `function_call` item) and
//! `response.completed` with the usage. Each request takes the next [`Turn`] of the script;
//! every request (method, path, JSON body) is recorded for the test to inspect, unknown routes
//! included (answered 404 and logged). A script that runs out answers 500 and says so.
//!
//! The server runs on its own thread and runtime, so tests stay synchronous.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

/// Usage each completed response reports, so a test can check the CLI's sums.
pub const INPUT_TOKENS: u64 = 100;
pub const CACHED_TOKENS: u64 = 10;
pub const OUTPUT_TOKENS: u64 = 20;

/// What the server answers to one request.
#[derive(Debug, Clone)]
pub enum Turn {
    /// An assistant message.
    Text(String),
    /// A function call: codex's shell tool is `exec_command` with `{"cmd": "..."}`.
    ToolCall { name: String, arguments: Value },
    /// An HTTP error with an OpenAI-style error body, and a `retry-after` (seconds) if given.
    Error {
        status: u16,
        message: String,
        retry_after: Option<u64>,
    },
    /// Starts a message, sends this text as a delta, then sends nothing more until
    /// [`OpenAiApi::release`] (then the message completes), or the client gives up.
    HangMidStream(String),
}

impl Turn {
    pub fn text(text: &str) -> Turn {
        Turn::Text(text.to_string())
    }

    /// Codex's shell tool running `cmd` (codex wraps it as `/bin/bash -lc CMD`).
    pub fn shell(cmd: &str) -> Turn {
        Turn::ToolCall {
            name: "exec_command".to_string(),
            arguments: json!({ "cmd": cmd }),
        }
    }

    pub fn error(status: u16, message: &str, retry_after: Option<u64>) -> Turn {
        Turn::Error {
            status,
            message: message.to_string(),
            retry_after,
        }
    }
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The JSON body, or `Value::Null` when there was none or it was not JSON.
    pub body: Value,
}

struct State {
    script: Mutex<VecDeque<Turn>>,
    requests: Mutex<Vec<Recorded>>,
    served: Mutex<u64>,
    release: tokio::sync::watch::Sender<bool>,
}

/// The running server; it stops when dropped.
pub struct OpenAiApi {
    port: u16,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OpenAiApi {
    /// Serves `script` on `listener` (see [`crate::offline::Offline::bind_loopback`]).
    pub fn start(listener: TcpListener, script: Vec<Turn>) -> OpenAiApi {
        let port = listener.local_addr().expect("listener address").port();
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let state = Arc::new(State {
            script: Mutex::new(script.into()),
            requests: Mutex::new(Vec::new()),
            served: Mutex::new(0),
            release: tokio::sync::watch::channel(false).0,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the scripted API");
            rt.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                // No graceful shutdown: dropping the runtime ends every connection, a hung
                // stream included.
                tokio::select! {
                    served = axum::serve(listener, app) => served.expect("serve the scripted API"),
                    _ = stopped => {}
                }
            });
        });
        OpenAiApi {
            port,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The base URL a provider config names (`.../v1`).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().expect("requests").clone()
    }

    /// Lets every hung stream finish.
    pub fn release(&self) {
        self.state.release.send_replace(true);
    }
}

impl Drop for OpenAiApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let body_json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.requests.lock().expect("requests").push(Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        body: body_json,
    });
    if method != Method::POST || !uri.path().ends_with("/responses") {
        eprintln!("openai_api: unknown route {method} {uri}: answered 404");
        return error_response(404, &format!("no route {method} {}", uri.path()), None);
    }
    let Some(turn) = state.script.lock().expect("script").pop_front() else {
        eprintln!("openai_api: the script has no turn left for {method} {uri}: answered 500");
        return error_response(500, "the test's script has no turn left", None);
    };
    let n = {
        let mut served = state.served.lock().expect("served");
        *served += 1;
        *served
    };
    match turn {
        Turn::Error {
            status,
            message,
            retry_after,
        } => error_response(status, &message, retry_after),
        Turn::Text(text) => sse(message_events(n, &text, None)),
        Turn::ToolCall { name, arguments } => sse(vec![
            created(n),
            json!({
                "type": "response.output_item.done",
                "output_index": 0,
                "item": {
                    "type": "function_call",
                    "id": format!("fc_{n}"),
                    "call_id": format!("call_{n}"),
                    "name": name,
                    "arguments": arguments.to_string(),
                },
            }),
            completed(n),
        ]),
        Turn::HangMidStream(text) => sse(message_events(n, &text, Some(state.release.subscribe()))),
    }
}

fn error_response(status: u16, message: &str, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({
        "error": { "message": message, "type": "scripted_error", "param": null, "code": null },
    });
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn created(n: u64) -> Value {
    json!({ "type": "response.created", "response": { "id": format!("resp_{n}") } })
}

fn completed(n: u64) -> Value {
    json!({
        "type": "response.completed",
        "response": {
            "id": format!("resp_{n}"),
            "usage": {
                "input_tokens": INPUT_TOKENS,
                "input_tokens_details": { "cached_tokens": CACHED_TOKENS },
                "output_tokens": OUTPUT_TOKENS,
                "output_tokens_details": { "reasoning_tokens": 0 },
                "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
            },
        },
    })
}

/// The events of one assistant message; with `hang`, the stream stops after the text delta
/// until the receiver sees `true`.
enum Events {
    Now(Vec<Value>),
    Hang {
        head: Vec<Value>,
        tail: Vec<Value>,
        release: tokio::sync::watch::Receiver<bool>,
    },
}

fn message_events(n: u64, text: &str, hang: Option<tokio::sync::watch::Receiver<bool>>) -> Events {
    let id = format!("msg_{n}");
    let head = vec![
        created(n),
        json!({
            "type": "response.output_item.added",
            "output_index": 0,
            "item": { "type": "message", "role": "assistant", "id": id, "content": [] },
        }),
        json!({
            "type": "response.output_text.delta",
            "item_id": id,
            "output_index": 0,
            "content_index": 0,
            "delta": text,
        }),
    ];
    let tail = vec![
        json!({
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {
                "type": "message",
                "role": "assistant",
                "id": id,
                "content": [{ "type": "output_text", "text": text, "annotations": [] }],
            },
        }),
        completed(n),
    ];
    match hang {
        None => Events::Now(head.into_iter().chain(tail).collect()),
        Some(release) => Events::Hang {
            head,
            tail,
            release,
        },
    }
}

impl From<Vec<Value>> for Events {
    fn from(events: Vec<Value>) -> Events {
        Events::Now(events)
    }
}

fn sse(events: impl Into<Events>) -> Response {
    let frame = |event: &Value| {
        let kind = event["type"].as_str().unwrap_or("message");
        Ok::<_, Infallible>(Bytes::from(format!("event: {kind}\ndata: {event}\n\n")))
    };
    let body = match events.into() {
        Events::Now(all) => Body::from_stream(futures::stream::iter(
            all.iter().map(frame).collect::<Vec<_>>(),
        )),
        Events::Hang {
            head,
            tail,
            mut release,
        } => {
            let head = futures::stream::iter(head.iter().map(frame).collect::<Vec<_>>());
            let tail = futures::stream::once(async move {
                // Sender gone means the server is stopping: finish the stream then too.
                let _ = release.wait_for(|released| *released).await;
                futures::stream::iter(tail.iter().map(frame).collect::<Vec<_>>())
            })
            .flatten();
            Body::from_stream(head.chain(tail))
        }
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
