//! `GET /api/v1/events`: the daemon's event stream as server-sent events. Each event's `id:`
//! is its sequence number, so a browser's EventSource resumes by itself (`Last-Event-ID`)
//! with no gap and no duplicate. The stream holds its own daemon connection and, when the
//! daemon restarts or drops it, reconnects from the last number sent.

use std::convert::Infallible;
use std::time::Duration;

use aifactory_common::protocol::{Event, Request, StreamItem};
use aifactory_common::{Client, Subscription};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{self, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use utoipa::IntoParams;

use super::doc::{DaemonErrors, Position};
use super::extract::Query;
use super::reconnect::Backoff;
use crate::daemon::Daemon;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Comment lines that keep idle proxies from closing the stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Replay every kept event numbered above this first (`Last-Event-ID` wins when both are
    /// given); without either, only events from now on.
    #[param(value_type = Option<Position>)]
    pub after: Option<u64>,
    /// The token, for EventSource clients that cannot set headers.
    // Checked by the auth layer from the raw query; named here so it is not an unknown field.
    #[expect(dead_code, reason = "read by the auth layer")]
    pub token: Option<String>,
}

/// Server-sent events: `id:` is the event's sequence number, `event:` its kind (e.g.
/// `TaskPhase`, `SessionEnded`), `data:` the whole event as JSON (`{"seq", "at_ms", "kind"}`).
/// `event: lagged` with `{"missed": N}` says N events were pruned before they could be sent.
/// `event: daemon` with `{"daemon": "unavailable", "message"}` says the shim lost aifactoryd
/// (the message names the socket and what to do) and is reconnecting; `{"daemon": "available"}`
/// that it is back and the stream goes on from where it was. Neither has an `id:`.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<Position>, Header, description = "The last sequence number seen; the stream resumes after it (surrounding spaces are ignored)"),
    ),
    responses(
        (status = 200, description = "text/event-stream of the daemon's events; each `data:` is an `Event` (#/components/schemas/Event)", content_type = "text/event-stream", body = String),
        (status = 400, description = "Last-Event-ID or after is not a sequence number, or an unknown query parameter", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<sse::Event, Infallible>>>, ApiError> {
    let after = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "Last-Event-ID {value:?} is not an event sequence number: send the `id:` of the last event received"
                    ))
                })?,
        ),
        None => query.after,
    };
    // The first subscription is made here, so an unreachable daemon is a 503, not an empty
    // stream.
    let (client, subscription) = state
        .daemon
        .subscribe(Request::SubscribeEvents { after })
        .await?;
    let pump = Pump {
        daemon: state.daemon.clone(),
        shutdown: state.shutdown.clone(),
        link: Some((client, subscription)),
        last: after,
        backoff: Backoff::new(),
        said_unavailable: false,
    };
    let stream = futures::stream::unfold(pump, |mut pump| async move {
        let event = pump.next().await?;
        Some((Ok(event), pump))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

struct Pump {
    daemon: Daemon,
    shutdown: tokio_util::sync::CancellationToken,
    link: Option<(Client, Subscription)>,
    /// The last sequence number sent (or asked to start after).
    last: Option<u64>,
    backoff: Backoff,
    /// Whether the client was told the daemon is unavailable (and not yet that it is back).
    said_unavailable: bool,
}

impl Pump {
    /// The next SSE event; `None` when the shim stops.
    async fn next(&mut self) -> Option<sse::Event> {
        loop {
            let Some((_, subscription)) = self.link.as_mut() else {
                let request = Request::SubscribeEvents { after: self.last };
                let connected = tokio::select! {
                    connected = self.daemon.subscribe(request) => connected,
                    _ = self.shutdown.cancelled() => return None,
                };
                match connected {
                    Ok(link) => {
                        tracing::info!(after = ?self.last, "event stream reconnected to aifactoryd");
                        self.backoff.reset();
                        self.link = Some(link);
                        if std::mem::take(&mut self.said_unavailable) {
                            return Some(daemon_notice(serde_json::json!({"daemon": "available"})));
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e.message, "event stream: aifactoryd not back yet");
                        if !self.said_unavailable {
                            self.said_unavailable = true;
                            return Some(daemon_notice(
                                serde_json::json!({"daemon": "unavailable", "message": e.message}),
                            ));
                        }
                        tokio::select! {
                            _ = self.backoff.wait() => {}
                            _ = self.shutdown.cancelled() => return None,
                        }
                    }
                }
                continue;
            };
            let item = tokio::select! {
                item = subscription.next() => item,
                _ = self.shutdown.cancelled() => return None,
            };
            match item {
                Some(StreamItem::Event(event)) => {
                    self.last = Some(event.seq);
                    return Some(sse_event(&event));
                }
                Some(StreamItem::Lagged { missed }) => {
                    return Some(
                        sse::Event::default()
                            .event("lagged")
                            .data(serde_json::json!({ "missed": missed }).to_string()),
                    );
                }
                Some(_) => {}
                None => {
                    // The daemon restarted, stopped, or dropped us for reading slowly: the
                    // store still has everything after `last`.
                    tracing::info!(after = ?self.last, "event stream lost aifactoryd; reconnecting");
                    self.link = None;
                }
            }
        }
    }
}

fn daemon_notice(data: serde_json::Value) -> sse::Event {
    sse::Event::default().event("daemon").data(data.to_string())
}

/// The kind's name as serde writes it: `"Stopping"` or `{"TaskPhase": {...}}`.
fn kind_name(kind: &serde_json::Value) -> String {
    match kind {
        serde_json::Value::String(name) => name.clone(),
        serde_json::Value::Object(map) => map.keys().next().cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

fn sse_event(event: &Event) -> sse::Event {
    let json = serde_json::to_value(event).unwrap_or_default();
    let name = kind_name(&json["kind"]);
    let out = sse::Event::default()
        .id(event.seq.to_string())
        .data(json.to_string());
    if name.is_empty() {
        out
    } else {
        out.event(name)
    }
}
