//! The Live Console: `GET /api/v1/hosts/{host}/sessions/{id}/console?from=OFFSET` upgraded to a
//! WebSocket, proxied to the session's host (its socket, or ssh to a remote one).
//!
//! Binary frames out carry the session's output from `from` (replayed from disk, then live,
//! with no gap and no duplicate); binary frames in are typed into it; a text frame
//! `{"resize": {"cols": C, "rows": R}}` resizes it. Text frames out are notices:
//! `{"lagged": {"requested", "resume_from"}}` (bytes rotated away), `{"daemon": "unavailable",
//! "host", "message"}` / `{"daemon": "available", "host"}` (the shim lost the host's aifactoryd
//! and found it again) and
//! `{"error": {"code", "message"}}` (input or resize refused). When the session ends the
//! server closes with 1000 and the exit status as the reason (`exited 0`, `killed by signal 9`);
//! 4001 when the session was lost, 4004 when it no longer exists, 1001 when the shim stops.
//!
//! Output and input use separate daemon connections: output streams on one held for the
//! console's lifetime (re-opened from the next offset after a daemon restart), input goes
//! through short requests, so a client that stops reading can never block its own typing.

use std::time::Duration;

use aifactory_common::protocol::{Request, SessionState, StreamItem};
use axum::extract::State;
use axum::extract::ws::{
    CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade,
    rejection::WebSocketUpgradeRejection,
};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::stream::SplitSink;
use futures::{FutureExt, SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;

use super::doc::{DaemonErrors, Position};
use super::extract::{On, Query};
use super::reconnect::Backoff;
use crate::auth::TOKEN_PROTOCOL_PREFIX;
use crate::daemon::Daemon;
use crate::error::{ApiError, ErrorBody};
use crate::hosts::Host;
use crate::state::AppState;

/// The session ended; the reason is its exit status.
pub const CLOSE_ENDED: u16 = 1000;
/// The shim is stopping.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// The session was lost (its monitor could not be re-adopted); the reason says why.
pub const CLOSE_LOST: u16 = 4001;
/// The session no longer exists.
pub const CLOSE_NOT_FOUND: u16 = 4004;

/// The largest frame a client may send (input or a resize).
const MAX_INPUT_MESSAGE: usize = 1 << 20;
/// Queued output is batched into one binary frame until it reaches this size: live PTY output
/// arrives in pieces of about 4 KiB, a replay from disk already in chunks of this size.
const MAX_OUTPUT_FRAME: usize = 64 << 10;
/// How long the client gets to answer our close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);
/// A WebSocket close reason must fit in a control frame.
const MAX_REASON: usize = 120;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsoleQuery {
    /// Absolute output offset to start from (default: the oldest byte kept). A client that
    /// reconnects passes `from` plus the bytes it received, and loses nothing.
    #[param(value_type = Option<Position>)]
    pub from: Option<u64>,
    /// The token, for clients that cannot offer the `aifactory.token.<token>` subprotocol.
    // Checked by the auth layer from the raw query; named here so it is not an unknown field.
    #[expect(dead_code, reason = "read by the auth layer")]
    pub token: Option<String>,
}

/// Opens the Live Console of a session (WebSocket; see the module notes for the frames).
#[utoipa::path(
    get,
    path = "/api/v1/hosts/{host}/sessions/{id}/console",
    tag = "sessions",
    params(
        ("host" = String, Path, description = "The host, as GET /api/v1/hosts names it"),
        ("id" = String, Path, description = "Session id or name"),
        ConsoleQuery,
        ("Sec-WebSocket-Protocol" = Option<String>, Header, description = "`aifactory.token.<token>`: the token, echoed back when it is right"),
    ),
    responses(
        (status = 101, description = "WebSocket: binary frames out are output from `from`, binary frames in are input, text `{\"resize\":{\"cols\":C,\"rows\":R}}` resizes; closes with 1000 and `exited N` / `killed by signal N` when the session ends, 4001 when lost, 4004 when gone, 1001 when the shim stops"),
        (status = 400, description = "Bad query or id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 426, description = "Not a WebSocket request", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn console(
    State(state): State<AppState>,
    On { host, id }: On,
    Query(query): Query<ConsoleQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let mut ws = ws.map_err(|e| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            format!(
                "the console speaks WebSocket only ({}): open it with `new WebSocket(url, ['aifactory.token.' + token])`",
                e.body_text()
            ),
        )
    })?;
    // Refuse an unknown session with a status, before upgrading.
    let session = host
        .call(async |daemon| daemon.session_show(id).await)
        .await?;
    // A browser fails the connection unless one of the protocols it offered is echoed.
    let chosen = ws
        .requested_protocols()
        .find(|p| {
            p.to_str()
                .ok()
                .and_then(|p| p.strip_prefix(TOKEN_PROTOCOL_PREFIX))
                .is_some_and(|t| state.token.matches(t))
        })
        .cloned();
    if let Some(protocol) = chosen {
        ws.set_selected_protocol(protocol);
    }
    let key = session.id;
    tracing::info!(host = %host.name, session_id = %key, from = ?query.from, "console opened");
    let consoles = state.consoles.clone();
    Ok(ws
        .max_message_size(MAX_INPUT_MESSAGE)
        .on_upgrade(move |socket| consoles.track_future(run(state, host, key, query.from, socket)))
        .into_response())
}

async fn run(state: AppState, host: Host, key: String, from: Option<u64>, socket: WebSocket) {
    let (sink, mut incoming) = socket.split();
    let (notices, notices_rx) = mpsc::channel(16);
    // Cancelled when either side is done: the client left, or the output side closed.
    let done = CancellationToken::new();
    let output = tokio::spawn(output_side(
        state.clone(),
        host.clone(),
        key.clone(),
        from,
        sink,
        notices_rx,
        done.clone(),
    ));
    loop {
        let message = tokio::select! {
            message = incoming.next() => message,
            _ = done.cancelled() => break,
        };
        let outcome = match message {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
            Some(Ok(Message::Binary(data))) => {
                input(&host.daemon, &key, data.to_vec(), &done).await
            }
            Some(Ok(Message::Text(text))) => {
                control(&host.daemon, &key, text.as_str(), &done).await
            }
            Some(Ok(_)) => Ok(()),
        };
        // Never waits: a client that does not read must not stop its own typing.
        if let Err(e) = outcome
            && notices.try_send(notice_error(&e)).is_err()
        {
            tracing::warn!(session_id = %key, "console notice dropped (the client does not read): {}", e.message);
        }
    }
    let client_left = !done.is_cancelled();
    done.cancel();
    if !client_left {
        // We sent a close frame: let the client answer it, so it sees a clean close.
        let drain = async { while let Some(Ok(_)) = incoming.next().await {} };
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE, drain).await;
    }
    let _ = output.await;
    tracing::info!(session_id = %key, "console closed");
}

/// Types `data` into the session.
async fn input(
    daemon: &Daemon,
    key: &str,
    data: Vec<u8>,
    done: &CancellationToken,
) -> Result<(), ApiError> {
    tokio::select! {
        typed = daemon.call(async |client| client.session_input(key, data).await) => typed,
        _ = done.cancelled() => Ok(()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Control {
    resize: Size,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Size {
    cols: u16,
    rows: u16,
}

/// A text frame from the client: only `{"resize": {"cols": C, "rows": R}}` is known.
async fn control(
    daemon: &Daemon,
    key: &str,
    text: &str,
    done: &CancellationToken,
) -> Result<(), ApiError> {
    let Control {
        resize: Size { cols, rows },
    } = serde_json::from_str(text).map_err(|e| {
        ApiError::invalid(format!(
            "unknown text frame ({e}): text frames are {{\"resize\": {{\"cols\": C, \"rows\": R}}}}; send input as binary frames"
        ))
    })?;
    tokio::select! {
        resized = daemon.call(async |client| client.session_resize(key, cols, rows).await) => resized,
        _ = done.cancelled() => Ok(()),
    }
}

fn text(value: serde_json::Value) -> Message {
    Message::Text(Utf8Bytes::from(value.to_string()))
}

fn notice_error(e: &ApiError) -> Message {
    text(serde_json::to_value(e.body()).unwrap_or_default())
}

fn close_frame(code: u16, reason: &str) -> CloseFrame {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    CloseFrame {
        code,
        reason: Utf8Bytes::from(&reason[..end]),
    }
}

async fn output_side(
    state: AppState,
    host: Host,
    key: String,
    from: Option<u64>,
    mut sink: SplitSink<WebSocket, Message>,
    notices: mpsc::Receiver<Message>,
    done: CancellationToken,
) {
    let close = stream_output(&state, &host, &key, from, &mut sink, notices, &done).await;
    match close {
        Some(frame) => {
            tracing::info!(session_id = %key, code = frame.code, reason = %frame.reason.as_str(), "closing a console");
            let _ = sink.send(Message::Close(Some(frame))).await;
        }
        // The client closed (or vanished): flush the close reply the WebSocket layer queued,
        // so a browser sees a clean close instead of 1006.
        None => {
            let _ = tokio::time::timeout(CLOSE_HANDSHAKE, sink.close()).await;
        }
    }
    done.cancel();
}

/// Streams output until the session ends (the close frame to send), the shim stops, or the
/// client leaves (`None`).
async fn stream_output(
    state: &AppState,
    host: &Host,
    key: &str,
    from: Option<u64>,
    sink: &mut SplitSink<WebSocket, Message>,
    mut notices: mpsc::Receiver<Message>,
    done: &CancellationToken,
) -> Option<CloseFrame> {
    // The first offset not yet sent.
    let mut next = from;
    let mut backoff = Backoff::new();
    let mut daemon_down = false;
    let going_away = |next: Option<u64>| {
        let reason = match next {
            Some(next) => format!("aifactory-http is stopping; reconnect with from={next}"),
            None => "aifactory-http is stopping; reconnect".to_string(),
        };
        close_frame(CLOSE_GOING_AWAY, &reason)
    };
    loop {
        let request = Request::SessionTail {
            key: key.to_string(),
            from: next,
            follow: true,
        };
        let linked = tokio::select! {
            linked = host.daemon.subscribe(request) => linked,
            _ = done.cancelled() => return None,
            _ = state.shutdown.cancelled() => return Some(going_away(next)),
        };
        let (_client, mut subscription) = match linked {
            Ok(link) => link,
            Err(e) if e.status == StatusCode::NOT_FOUND => {
                return Some(close_frame(CLOSE_NOT_FOUND, "the session no longer exists"));
            }
            Err(e) => {
                if !daemon_down {
                    daemon_down = true;
                    tracing::warn!(session_id = %key, "console lost aifactoryd; reconnecting: {}", e.message);
                    let notice = serde_json::json!({"daemon": "unavailable", "host": &*host.name, "message": e.message});
                    if sink.send(text(notice)).await.is_err() {
                        return None;
                    }
                }
                tokio::select! {
                    _ = backoff.wait() => {}
                    _ = done.cancelled() => return None,
                    _ = state.shutdown.cancelled() => return Some(going_away(next)),
                }
                continue;
            }
        };
        backoff.reset();
        if daemon_down {
            daemon_down = false;
            tracing::info!(session_id = %key, from = ?next, "console found aifactoryd again");
            if sink
                .send(text(
                    serde_json::json!({"daemon": "available", "host": &*host.name}),
                ))
                .await
                .is_err()
            {
                return None;
            }
        }
        // An item taken while batching output, handled next.
        let mut pending: Option<Option<StreamItem>> = None;
        loop {
            let item = match pending.take() {
                Some(item) => item,
                None => tokio::select! {
                    biased;
                    _ = done.cancelled() => return None,
                    _ = state.shutdown.cancelled() => return Some(going_away(next)),
                    Some(notice) = notices.recv() => {
                        if sink.send(notice).await.is_err() {
                            return None;
                        }
                        continue;
                    }
                    item = subscription.next() => item,
                },
            };
            match item {
                Some(StreamItem::Output { offset, mut data }) => {
                    let mut end = offset + data.len() as u64;
                    // Output that is already queued goes out in one frame: far fewer frames
                    // and writes when a console is behind (a replay, a burst, many clients).
                    while data.len() < MAX_OUTPUT_FRAME {
                        match subscription.next().now_or_never() {
                            Some(Some(StreamItem::Output { offset, data: more }))
                                if offset == end =>
                            {
                                end += more.len() as u64;
                                data.extend_from_slice(&more);
                            }
                            Some(other) => {
                                pending = Some(other);
                                break;
                            }
                            None => break,
                        }
                    }
                    next = Some(end);
                    if sink.send(Message::Binary(data.into())).await.is_err() {
                        return None;
                    }
                }
                Some(StreamItem::OutputLagged {
                    requested,
                    resume_from,
                }) => {
                    next = Some(resume_from);
                    let notice = serde_json::json!({
                        "lagged": {"requested": requested, "resume_from": resume_from}
                    });
                    if sink.send(text(notice)).await.is_err() {
                        return None;
                    }
                }
                Some(StreamItem::OutputEnd { next: end, exit }) => {
                    next = Some(end);
                    if let Some(exit) = exit {
                        return Some(close_frame(CLOSE_ENDED, &exit.describe()));
                    }
                    if let Some(frame) = ended(&host.daemon, key).await {
                        return Some(frame);
                    }
                    // Still running: the daemon is stopping; reconnect from `next`.
                    break;
                }
                Some(_) => {}
                // The daemon went away (restart, crash): re-open from `next`.
                None => {
                    tracing::info!(session_id = %key, from = ?next, "console stream from aifactoryd ended; re-opening it");
                    break;
                }
            }
        }
    }
}

/// The close frame for a session that ended without an exit status in its stream, or `None`
/// while it runs (or the daemon cannot say).
async fn ended(daemon: &Daemon, key: &str) -> Option<CloseFrame> {
    let session = match daemon
        .call(async |client| client.session_show(key).await)
        .await
    {
        Ok(session) => session,
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            return Some(close_frame(CLOSE_NOT_FOUND, "the session no longer exists"));
        }
        _ => return None,
    };
    match session.state {
        SessionState::Exited => {
            let reason = session
                .exit
                .map(|exit| exit.describe())
                .unwrap_or_else(|| "ended".into());
            Some(close_frame(CLOSE_ENDED, &reason))
        }
        SessionState::Lost => {
            let reason = format!(
                "lost: {}",
                session.lost_reason.as_deref().unwrap_or("monitor gone")
            );
            Some(close_frame(CLOSE_LOST, &reason))
        }
        SessionState::Starting | SessionState::Running => None,
    }
}
