//! A scripted Anthropic Messages API on 127.0.0.1 (random port) for the real claude CLI.
//!
//! A test gives it a queue of [`Turn`]s; each `POST /v1/messages` takes the next one and
//! answers it the way the real API does: a text reply or `tool_use` calls streamed as SSE
//! (`message_start`, `content_block_start`/`_delta`/`_stop`, `message_delta` with the stop
//! reason and usage, `message_stop`), an HTTP error with Anthropic's error JSON (and
//! `retry-after` when given), or a stream that hangs after some text until
//! [`AnthropicApi::release_hangs`]. Every request (method, path with query, JSON body) is
//! recorded, so a test can assert what the CLI sent, e.g. that a resumed conversation carried
//! its earlier turns. Many CLIs at once share one queue in arrival order, so for them
//! [`AnthropicApi::answer_with`] picks each answer from the request itself instead. `count_tokens` and the model list get plausible answers; any other route
//! is logged to stderr and answered 404 with Anthropic's error JSON.
//!
//! The server runs on its own thread and runtime, so sync and async tests use it alike.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

/// Input tokens reported for every scripted reply.
pub const INPUT_TOKENS: u64 = 100;
/// Output tokens reported (in `message_delta`) for every scripted reply.
pub const OUTPUT_TOKENS: u64 = 20;

/// One tool call of a reply: the tool's name (`Write`, `Bash`, ...) and its JSON input.
#[derive(Debug, Clone)]
pub struct ToolCall {
    pub name: String,
    pub input: Value,
}

/// What the API answers to one `POST /v1/messages`.
#[derive(Debug, Clone)]
pub enum Turn {
    /// An assistant message: optional text, then tool calls (stop reason `tool_use` when there
    /// are any, else `end_turn`).
    Reply {
        text: Option<String>,
        tool_calls: Vec<ToolCall>,
    },
    /// An HTTP error with Anthropic's error body `{"type":"error","error":{"type","message"}}`.
    Error {
        status: u16,
        error_type: String,
        message: String,
        retry_after_secs: Option<u64>,
    },
    /// `message_start` and a text delta, then nothing until [`AnthropicApi::release_hangs`],
    /// which finishes the message normally.
    Hang { text: String },
}

impl Turn {
    pub fn text(text: &str) -> Self {
        Self::Reply {
            text: Some(text.to_owned()),
            tool_calls: Vec::new(),
        }
    }

    /// Some text, then the given tool calls in one assistant message.
    pub fn tools(text: &str, calls: &[(&str, Value)]) -> Self {
        Self::Reply {
            text: Some(text.to_owned()),
            tool_calls: calls
                .iter()
                .map(|(name, input)| ToolCall {
                    name: (*name).to_owned(),
                    input: input.clone(),
                })
                .collect(),
        }
    }

    /// 401 `authentication_error`, as for a wrong `x-api-key`.
    pub fn unauthorized() -> Self {
        Self::error(401, "authentication_error", "invalid x-api-key", None)
    }

    /// 429 `rate_limit_error` with `retry-after`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
            Some(retry_after_secs),
        )
    }

    /// 529 `overloaded_error`.
    pub fn overloaded() -> Self {
        Self::error(529, "overloaded_error", "Overloaded", None)
    }

    pub fn error(
        status: u16,
        error_type: &str,
        message: &str,
        retry_after_secs: Option<u64>,
    ) -> Self {
        Self::Error {
            status,
            error_type: error_type.to_owned(),
            message: message.to_owned(),
            retry_after_secs,
        }
    }

    pub fn hang(text: &str) -> Self {
        Self::Hang {
            text: text.to_owned(),
        }
    }
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, e.g. `/v1/messages?beta=true`.
    pub path: String,
    /// The body as JSON, or `Value::Null` when it was empty or not JSON.
    pub body: Value,
}

impl RecordedRequest {
    fn is_messages(&self) -> bool {
        self.method == "POST"
            && (self.path == "/v1/messages" || self.path.starts_with("/v1/messages?"))
    }
}

struct Script {
    turns: VecDeque<Turn>,
    /// Answers a request once `turns` is empty, when set.
    responder: Option<Responder>,
    /// Answered once `turns` is empty and there is no responder.
    exhausted: Turn,
    requests: Vec<RecordedRequest>,
    served: usize,
}

/// Picks the answer to a message request from its JSON body.
type Responder = Box<dyn Fn(&Value) -> Turn + Send>;

struct Shared {
    script: Mutex<Script>,
    release: watch::Sender<bool>,
    hanging: AtomicUsize,
}

/// The running server; stops when dropped.
pub struct AnthropicApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AnthropicApi {
    /// Serves `turns` in order. Once they are used up, every further message request gets a
    /// 400 `invalid_request_error` naming the exhausted script (a status the CLI does not
    /// retry), unless [`AnthropicApi::when_exhausted`] says otherwise.
    pub fn start(turns: impl IntoIterator<Item = Turn>) -> Self {
        let shared = Arc::new(Shared {
            script: Mutex::new(Script {
                turns: turns.into_iter().collect(),
                responder: None,
                exhausted: Turn::error(
                    400,
                    "invalid_request_error",
                    "the test's scripted API has no turn left for this request",
                    None,
                ),
                requests: Vec::new(),
                served: 0,
            }),
            release: watch::channel(false).0,
            hanging: AtomicUsize::new(0),
        });
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the scripted API on loopback");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener for tokio");
        let addr = listener.local_addr().expect("the scripted API's address");
        let (shutdown, stop) = oneshot::channel::<()>();
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the scripted API");
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop.await;
                    })
                    .await
                    .expect("serve the scripted API");
            });
        });
        Self {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Appends a turn to the script.
    pub fn push(&self, turn: Turn) {
        self.lock().turns.push_back(turn);
    }

    /// What every message request gets once the script is used up (e.g. a 401 for good).
    pub fn when_exhausted(&self, turn: Turn) {
        self.lock().exhausted = turn;
    }

    /// Answers every message request the queued turns leave unanswered with
    /// `responder(request body)`: a script per conversation, chosen by what the request carries
    /// (e.g. how many assistant turns it holds back), for several CLIs talking at once.
    pub fn answer_with(&self, responder: impl Fn(&Value) -> Turn + Send + 'static) {
        self.lock().responder = Some(Box::new(responder));
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// The bodies of the `POST /v1/messages` requests received so far, in order.
    pub fn message_requests(&self) -> Vec<Value> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.is_messages())
            .map(|r| r.body.clone())
            .collect()
    }

    /// How many streams are hanging now.
    pub fn hanging(&self) -> usize {
        self.shared.hanging.load(Ordering::SeqCst)
    }

    /// Lets every hanging stream, and every later one, finish its message.
    pub fn release_hangs(&self) {
        self.shared.release.send_replace(true);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.shared.script.lock().expect("the script lock")
    }
}

impl Drop for AnthropicApi {
    fn drop(&mut self) {
        // Hanging streams would hold the graceful shutdown forever.
        self.release_hangs();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let recorded = RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let is_messages = recorded.is_messages();
    let request = recorded.body.clone();
    let turn = {
        let mut script = shared.script.lock().expect("the script lock");
        script.requests.push(recorded);
        if is_messages {
            script.served += 1;
            let next = script
                .turns
                .pop_front()
                .or_else(|| script.responder.as_ref().map(|answer| answer(&request)))
                .unwrap_or_else(|| script.exhausted.clone());
            Some((script.served, next))
        } else {
            None
        }
    };
    match (uri.path(), turn) {
        (_, Some((n, turn))) => answer(&shared, n, &request, turn),
        ("/v1/messages/count_tokens", None) => {
            axum::Json(json!({"input_tokens": INPUT_TOKENS})).into_response()
        }
        ("/v1/models", None) if method == Method::GET => axum::Json(json!({
            "data": [{"type": "model", "id": "claude-scripted", "display_name": "Scripted",
                      "created_at": "2026-01-01T00:00:00Z"}],
            "has_more": false, "first_id": "claude-scripted", "last_id": "claude-scripted"
        }))
        .into_response(),
        (other, None) => {
            eprintln!("scripted Anthropic API: unknown route {method} {other}: answered 404");
            error_response(
                404,
                "not_found_error",
                &format!("the scripted API does not serve {method} {other}"),
                None,
            )
        }
    }
}

fn answer(shared: &Arc<Shared>, n: usize, request: &Value, turn: Turn) -> Response {
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-scripted")
        .to_owned();
    let id = format!("msg_scripted_{n}");
    match turn {
        Turn::Error {
            status,
            error_type,
            message,
            retry_after_secs,
        } => error_response(status, &error_type, &message, retry_after_secs),
        Turn::Reply { text, tool_calls } => {
            let blocks = blocks(n, text.as_deref(), &tool_calls);
            let stop = if tool_calls.is_empty() {
                "end_turn"
            } else {
                "tool_use"
            };
            if request.get("stream").and_then(Value::as_bool) == Some(true) {
                let (tx, response) = sse_response();
                start_message(&tx, &id, &model);
                for (index, block) in blocks.iter().enumerate() {
                    send_block(&tx, index, block);
                }
                finish_message(&tx, stop);
                response
            } else {
                axum::Json(json!({
                    "id": id, "type": "message", "role": "assistant", "model": model,
                    "content": blocks.iter().map(Block::whole).collect::<Vec<_>>(),
                    "stop_reason": stop, "stop_sequence": null,
                    "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS,
                              "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
                }))
                .into_response()
            }
        }
        Turn::Hang { text } => {
            let (tx, response) = sse_response();
            start_message(&tx, &id, &model);
            event(
                &tx,
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "text", "text": ""}}),
            );
            event(
                &tx,
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": text}}),
            );
            let shared = Arc::clone(shared);
            shared.hanging.fetch_add(1, Ordering::SeqCst);
            let mut release = shared.release.subscribe();
            tokio::spawn(async move {
                // Ends early when the CLI goes away: the sender is then closed.
                tokio::select! {
                    _ = release.wait_for(|released| *released) => {
                        event(&tx, "content_block_stop",
                              json!({"type": "content_block_stop", "index": 0}));
                        finish_message(&tx, "end_turn");
                    }
                    () = tx.closed() => {}
                }
                shared.hanging.fetch_sub(1, Ordering::SeqCst);
            });
            response
        }
    }
}

/// A content block of a reply, streamed or whole.
enum Block {
    Text(String),
    ToolUse { id: String, call: ToolCall },
}

impl Block {
    fn whole(&self) -> Value {
        match self {
            Self::Text(text) => json!({"type": "text", "text": text}),
            Self::ToolUse { id, call } => {
                json!({"type": "tool_use", "id": id, "name": call.name, "input": call.input})
            }
        }
    }
}

fn blocks(n: usize, text: Option<&str>, calls: &[ToolCall]) -> Vec<Block> {
    text.map(|t| Block::Text(t.to_owned()))
        .into_iter()
        .chain(calls.iter().enumerate().map(|(k, call)| Block::ToolUse {
            id: format!("toolu_scripted_{n}_{k}"),
            call: call.clone(),
        }))
        .collect()
}

/// An SSE response fed by the returned sender; the stream ends when the sender is dropped.
fn sse_response() -> (mpsc::UnboundedSender<Bytes>, Response) {
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let chunks = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    (tx, response)
}

fn event(tx: &mpsc::UnboundedSender<Bytes>, name: &str, data: Value) {
    // A closed receiver means the CLI went away: nothing to tell it.
    let _ = tx.send(Bytes::from(format!("event: {name}\ndata: {data}\n\n")));
}

fn start_message(tx: &mpsc::UnboundedSender<Bytes>, id: &str, model: &str) {
    event(
        tx,
        "message_start",
        json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
    );
}

fn send_block(tx: &mpsc::UnboundedSender<Bytes>, index: usize, block: &Block) {
    let (start, delta) = match block {
        Block::Text(text) => (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": text}),
        ),
        Block::ToolUse { id, call } => (
            json!({"type": "tool_use", "id": id, "name": call.name, "input": {}}),
            json!({"type": "input_json_delta", "partial_json": call.input.to_string()}),
        ),
    };
    event(
        tx,
        "content_block_start",
        json!({"type": "content_block_start", "index": index, "content_block": start}),
    );
    event(
        tx,
        "content_block_delta",
        json!({"type": "content_block_delta", "index": index, "delta": delta}),
    );
    event(
        tx,
        "content_block_stop",
        json!({"type": "content_block_stop", "index": index}),
    );
}

fn finish_message(tx: &mpsc::UnboundedSender<Bytes>, stop_reason: &str) {
    event(
        tx,
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": stop_reason, "stop_sequence": null},
               "usage": {"output_tokens": OUTPUT_TOKENS}}),
    );
    event(tx, "message_stop", json!({"type": "message_stop"}));
}

fn error_response(
    status: u16,
    error_type: &str,
    message: &str,
    retry_after_secs: Option<u64>,
) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"type": "error", "error": {"type": error_type, "message": message}});
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(secs) = retry_after_secs {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(&secs.to_string()).unwrap_or(HeaderValue::from_static("1")),
        );
    }
    response
}
