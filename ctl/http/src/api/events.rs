//! `GET /api/v1/events`: the event streams of every host merged into one stream of server-sent
//! events. Each event's `id:` holds every host's position (`b1:120,b2:98`), so a browser's
//! EventSource resumes by itself (`Last-Event-ID`) with no gap and no duplicate on any host.
//! The stream holds its own connection to each host's daemon and, when one restarts, drops it
//! or becomes unreachable, reconnects to it from the last number sent while the others go on.
//! Whether a host is reachable comes from its supervisor ([`crate::hosts`]), once per change.

use std::convert::Infallible;
use std::time::Duration;

use aifactory_common::Subscription;
use aifactory_common::protocol::{Event, Request, StreamItem};
use aifactory_common::ssh::Connection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{self, KeepAlive, Sse};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use utoipa::IntoParams;

use super::doc::DaemonErrors;
use super::extract::Query;
use super::reconnect::Backoff;
use crate::error::{ApiError, ErrorBody};
use crate::hosts::{Host, HostState, Hosts, Phase};
use crate::state::AppState;

/// How long the stream's opening waits for each host's first link.
const FIRST_LINK_WITHIN: Duration = Duration::from_secs(5);

/// Comment lines that keep idle proxies from closing the stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Replay every kept event after these positions first, as `HOST:SEQ,HOST:SEQ` (an `id:`
    /// of this stream; a bare sequence number when the shim serves one host). `Last-Event-ID`
    /// wins when both are given. A host not named starts from now.
    #[param(value_type = Option<String>, example = "b1:120,b2:98", pattern = r"^ *([0-9]{1,19}|[A-Za-z0-9][A-Za-z0-9._-]{0,62}:[0-9]{1,19}(,[A-Za-z0-9][A-Za-z0-9._-]{0,62}:[0-9]{1,19}){0,15})? *$")]
    pub after: Option<String>,
    /// The token, for EventSource clients that cannot set headers.
    // Checked by the auth layer from the raw query; named here so it is not an unknown field.
    #[expect(dead_code, reason = "read by the auth layer")]
    pub token: Option<String>,
}

/// Server-sent events of every host: `id:` is every host's position (`b1:120,b2:98`),
/// `event:` the event's kind (e.g. `TaskPhase`, `SessionEnded`), `data:` the whole event as
/// JSON with its host (`{"host", "seq", "at_ms", "kind"}`). `event: lagged` with
/// `{"host", "missed": N}` says N of that host's events were pruned before they could be sent.
/// `event: daemon` with `{"daemon": "unavailable", "host", "message"}` says the host's
/// aifactoryd cannot be reached (the message says why and what to do) and the shim is
/// reconnecting; `{"daemon": "available", "host"}` that it is back and its events go on from
/// where they were. Neither has an `id:`.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, pattern = r"^ *([0-9]{1,19}|[A-Za-z0-9][A-Za-z0-9._-]{0,62}:[0-9]{1,19}(,[A-Za-z0-9][A-Za-z0-9._-]{0,62}:[0-9]{1,19}){0,15})? *$", description = "The last `id:` seen (`HOST:SEQ,…`); the stream resumes after it on every host named (surrounding spaces are ignored)"),
    ),
    responses(
        (status = 200, description = "text/event-stream of the daemon's events; each `data:` is an `Event` (#/components/schemas/Event)", content_type = "text/event-stream", body = String),
        (status = 400, description = "Last-Event-ID or after is not a position list, or an unknown query parameter", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<sse::Event, Infallible>>>, ApiError> {
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| bad_position(&format!("{value:?}")))?
                .to_string(),
        ),
        None => query.after.clone(),
    };
    let names: Vec<&str> = state.hosts.all().iter().map(|h| &*h.name).collect();
    let positions = match resume {
        Some(text) => parse_positions(&names, &text)?,
        None => vec![None; state.hosts.all().len()],
    };
    // The first subscriptions are made here, so a shim that reaches no host answers 503
    // rather than an empty stream.
    let links = futures::future::join_all(state.hosts.all().iter().zip(&positions).map(
        |(host, after)| async move {
            host.check_reachable()?;
            let request = Request::SubscribeEvents { after: *after };
            // A host that does not answer in time joins the stream when it does.
            tokio::time::timeout(FIRST_LINK_WITHIN, host.daemon.subscribe(request))
                .await
                .unwrap_or_else(|_| Err(super::hosted::slow(host, FIRST_LINK_WITHIN)))
        },
    ))
    .await;
    if links.iter().all(Result::is_err) {
        return Err(links
            .into_iter()
            .find_map(Result::err)
            .unwrap_or_else(|| ApiError::internal("the shim serves no host")));
    }
    // Where each host stands now: a client that reconnects with this stream's first `id:`
    // misses nothing of a host that had no event meanwhile.
    let mut positions = positions;
    for (position, link) in positions.iter_mut().zip(&links) {
        if let Ok((_, subscription)) = link {
            *position = position.or(subscription.head());
        }
    }
    let mut merged: Vec<BoxStream<'static, (usize, Item)>> = Vec::new();
    // The positions as the stream opens, before anything else.
    merged.push(futures::stream::once(async { (0, Item::Positions) }).boxed());
    for (index, ((host, link), after)) in state
        .hosts
        .all()
        .iter()
        .zip(links)
        .zip(positions.iter().copied())
        .enumerate()
    {
        let pump = HostPump {
            host: host.clone(),
            shutdown: state.shutdown.clone(),
            link: link.ok(),
            last: after,
            backoff: Backoff::new(),
        };
        merged.push(
            futures::stream::unfold(pump, |mut pump| async move {
                let item = pump.next().await?;
                Some((item, pump))
            })
            .map(move |item| (index, item))
            .boxed(),
        );
        merged.push(
            reachability(host.clone())
                .map(move |item| (index, item))
                .boxed(),
        );
    }
    let shutdown = state.shutdown.clone();
    let cursor = Cursor {
        hosts: state.hosts.clone(),
        positions,
    };
    let stream = futures::stream::select_all(merged)
        .take_until(async move { shutdown.cancelled().await })
        .scan(cursor, |cursor, (index, item)| {
            futures::future::ready(Some(Ok(cursor.sse(index, item))))
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

fn bad_position(text: &str) -> ApiError {
    ApiError::invalid(format!(
        "Last-Event-ID (or after) {} is not a position list: send the `id:` of the last event received, e.g. `b1:120,b2:98`",
        aifactory_common::echo::echo(text)
    ))
}

/// `HOST:SEQ,HOST:SEQ` (or a bare `SEQ` when the shim serves one host) as one position per
/// host, in host order. A host this shim no longer serves is ignored; one not named starts
/// from now.
fn parse_positions(names: &[&str], text: &str) -> Result<Vec<Option<u64>>, ApiError> {
    let text = text.trim();
    let mut positions = vec![None; names.len()];
    if text.is_empty() {
        return Ok(positions);
    }
    if let Ok(seq) = text.parse::<u64>() {
        if names.len() != 1 {
            return Err(ApiError::invalid(format!(
                "Last-Event-ID (or after) {seq} is a bare sequence number, but this shim serves several hosts: send the `id:` of the last event received (`HOST:SEQ,…`)"
            )));
        }
        positions[0] = Some(seq);
        return Ok(positions);
    }
    for part in text.split(',') {
        let (name, seq) = part
            .trim()
            .split_once(':')
            .ok_or_else(|| bad_position(text))?;
        let seq = seq.trim().parse::<u64>().map_err(|_| bad_position(text))?;
        if let Some(index) = names.iter().position(|n| *n == name.trim()) {
            positions[index] = Some(seq);
        }
    }
    Ok(positions)
}

/// `b1:120,b2:98`: every host with a position, in host order.
fn format_positions(names: &[&str], positions: &[Option<u64>]) -> String {
    names
        .iter()
        .zip(positions)
        .filter_map(|(name, position)| position.map(|p| format!("{name}:{p}")))
        .collect::<Vec<_>>()
        .join(",")
}

/// What one host's part of the stream yields.
enum Item {
    Event(Box<Event>),
    Lagged {
        missed: u64,
    },
    /// A host's newest event number when its link opened: no event, but the positions move
    /// (sent as an `id:` with no data, which sets the browser's Last-Event-ID).
    Head(u64),
    /// Every position, as the stream opens.
    Positions,
    /// The host's daemon became unreachable (with why), or reachable again.
    Reachable {
        up: bool,
        reason: Option<String>,
    },
}

/// Every host's position, written into each event's `id:`.
struct Cursor {
    hosts: Hosts,
    positions: Vec<Option<u64>>,
}

impl Cursor {
    fn sse(&mut self, index: usize, item: Item) -> sse::Event {
        let host = self.hosts.all().get(index).map(|h| &*h.name).unwrap_or("");
        match item {
            Item::Event(event) => {
                if let Some(position) = self.positions.get_mut(index) {
                    *position = Some(event.seq);
                }
                let mut json = serde_json::to_value(&*event).unwrap_or_default();
                let name = kind_name(&json["kind"]);
                if let Some(map) = json.as_object_mut() {
                    map.insert("host".into(), host.into());
                }
                let out = sse::Event::default().id(self.id()).data(json.to_string());
                if name.is_empty() {
                    out
                } else {
                    out.event(name)
                }
            }
            Item::Head(head) => {
                if let Some(position) = self.positions.get_mut(index)
                    && position.is_none()
                {
                    *position = Some(head);
                }
                sse::Event::default().id(self.id())
            }
            Item::Positions => sse::Event::default().id(self.id()),
            Item::Lagged { missed } => sse::Event::default()
                .event("lagged")
                .data(serde_json::json!({ "host": host, "missed": missed }).to_string()),
            Item::Reachable { up: true, .. } => sse::Event::default()
                .event("daemon")
                .data(serde_json::json!({"daemon": "available", "host": host}).to_string()),
            Item::Reachable { up: false, reason } => sse::Event::default().event("daemon").data(
                serde_json::json!({"daemon": "unavailable", "host": host, "message": reason})
                    .to_string(),
            ),
        }
    }

    fn id(&self) -> String {
        let names: Vec<&str> = self.hosts.all().iter().map(|h| &*h.name).collect();
        format_positions(&names, &self.positions)
    }
}

/// The host's reachability as its supervisor sees it, once per change: down (with why) and
/// back up. A host down when the stream opens is said at once.
fn reachability(host: Host) -> impl Stream<Item = Item> {
    futures::stream::unfold(
        (host.watch(), true),
        |(mut watch, mut said_up)| async move {
            loop {
                let state: HostState = watch.borrow_and_update().clone();
                let up = match state.phase {
                    Phase::Up => Some(true),
                    Phase::Down => Some(false),
                    Phase::Connecting => None,
                };
                if let Some(up) = up
                    && up != said_up
                {
                    said_up = up;
                    let item = Item::Reachable {
                        up,
                        reason: state.reason,
                    };
                    return Some((item, (watch, said_up)));
                }
                watch.changed().await.ok()?;
            }
        },
    )
}

/// One host's events, re-subscribed from the last one sent whenever the link ends.
struct HostPump {
    host: Host,
    shutdown: tokio_util::sync::CancellationToken,
    link: Option<(Connection, Subscription)>,
    /// The last sequence number sent (or asked to start after).
    last: Option<u64>,
    backoff: Backoff,
}

impl HostPump {
    /// The next item; `None` when the shim stops.
    async fn next(&mut self) -> Option<Item> {
        loop {
            let Some((_, subscription)) = self.link.as_mut() else {
                self.relink().await?;
                if self.last.is_none()
                    && let Some(head) = self.link.as_ref().and_then(|(_, s)| s.head())
                {
                    self.last = Some(head);
                    return Some(Item::Head(head));
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
                    return Some(Item::Event(Box::new(event)));
                }
                Some(StreamItem::Lagged { missed }) => return Some(Item::Lagged { missed }),
                Some(_) => {}
                None => {
                    // The daemon restarted, stopped, or dropped us for reading slowly, or the
                    // host went away: its store still has everything after `last`.
                    tracing::info!(host = %self.host.name, after = ?self.last, "event stream lost the host's daemon; reconnecting");
                    self.link = None;
                }
            }
        }
    }

    /// Subscribes again from `last`; while that fails, waits for the host's supervisor to
    /// see it come back (or for the backoff, whichever is first). `None` when the shim stops.
    async fn relink(&mut self) -> Option<()> {
        let mut watch = self.host.watch();
        loop {
            let generation = watch.borrow_and_update().generation;
            let linked = match self.host.check_reachable() {
                Ok(()) => {
                    let request = Request::SubscribeEvents { after: self.last };
                    tokio::select! {
                        linked = self.host.daemon.subscribe(request) => linked,
                        _ = self.shutdown.cancelled() => return None,
                    }
                }
                Err(e) => Err(e),
            };
            match linked {
                Ok(link) => {
                    tracing::info!(host = %self.host.name, after = ?self.last, "event stream reconnected");
                    self.backoff.reset();
                    self.link = Some(link);
                    return Some(());
                }
                Err(e) => {
                    tracing::debug!(host = %self.host.name, error = %e.message, "event stream: host not back yet");
                    // A new link of the supervisor means the host is back: try at once.
                    let back = async {
                        loop {
                            if watch.changed().await.is_err() {
                                return std::future::pending().await;
                            }
                            let state = watch.borrow_and_update();
                            if state.phase == Phase::Up && state.generation != generation {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        _ = back => {}
                        _ = self.backoff.wait(), if !self.host.daemon.is_remote() || self.host.state().phase != Phase::Down => {}
                        _ = self.shutdown.cancelled() => return None,
                    }
                }
            }
        }
    }
}

/// The kind's name as serde writes it: `"Stopping"` or `{"TaskPhase": {...}}`.
fn kind_name(kind: &serde_json::Value) -> String {
    match kind {
        serde_json::Value::String(name) => name.clone(),
        serde_json::Value::Object(map) => map.keys().next().cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_go_out_and_come_back_per_host() {
        let names = ["b1", "b2", "b3"];
        let positions = [Some(120), None, Some(7)];
        let id = format_positions(&names, &positions);
        assert_eq!(id, "b1:120,b3:7");
        assert_eq!(parse_positions(&names, &id).unwrap(), positions);
        // Spaces around, another order, and a host no longer served are fine.
        assert_eq!(
            parse_positions(&names, " b3:7, gone:4 ,b1:120 ").unwrap(),
            positions
        );
        assert_eq!(parse_positions(&names, "").unwrap(), [None, None, None]);
        for bad in [
            "b1",
            "b1:x",
            "b1:-1",
            "b1:1;b2:2",
            "b1:99999999999999999999",
        ] {
            let e = parse_positions(&names, bad).unwrap_err();
            assert_eq!(e.code, "invalid", "{bad}");
        }
        // A bare number only names the position of a shim's only host.
        assert_eq!(parse_positions(&["one"], "41").unwrap(), [Some(41)]);
        let e = parse_positions(&names, "41").unwrap_err();
        assert!(e.message.contains("several hosts"), "{}", e.message);
    }
}
