//! `/api/v1/hosts`: every host the shim serves, whether its daemon can be reached (and why
//! not), and what its daemon says of itself: version, protocol and load.

use std::time::Duration;

use aifactory_common::protocol::{HostLoad, StatusInfo};
use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::hosts::{Host, Phase};
use crate::state::AppState;

/// How long a host's status may take before the answer goes without it.
const STATUS_WITHIN: Duration = Duration::from_secs(8);

/// A host and its daemon, as the shim sees them now.
#[derive(Debug, Serialize, ToSchema)]
pub struct HostInfo {
    pub name: String,
    /// `ssh://[user@]host[:port]` or `unix:///path/to.sock`.
    pub url: String,
    /// `up`: its daemon answers; `down`: it cannot be reached (`reason` says why), and the
    /// shim reconnects by itself; `connecting`: not tried yet.
    pub state: Phase,
    /// Why it is down: ssh's or the socket's words, and what to do.
    pub reason: Option<String>,
    /// When `state` began (unix ms).
    pub since_ms: u64,
    /// The daemon's package version.
    pub version: Option<String>,
    pub protocol: Option<u16>,
    /// How busy the machine is (running tasks, CPUs, load average, memory).
    pub load: Option<HostLoad>,
    /// The daemon's whole status, asked just now (absent when it did not answer in 8 s).
    pub status: Option<StatusInfo>,
}

async fn describe(host: &Host) -> HostInfo {
    let asked = tokio::time::timeout(
        STATUS_WITHIN,
        host.call(async |client| client.status().await),
    )
    .await
    .unwrap_or_else(|_| Err(super::hosted::slow(host, STATUS_WITHIN)));
    let state = host.state();
    // A status just answered outranks the supervisor's view, which may lag by a backoff step.
    let (phase, reason) = match (&asked, state.phase) {
        (Ok(_), _) => (Phase::Up, None),
        (Err(_), Phase::Down) => (Phase::Down, state.reason),
        (Err(e), _) => (Phase::Down, Some(e.message.clone())),
    };
    let status = asked.ok();
    HostInfo {
        name: host.name.to_string(),
        url: host.url.to_string(),
        state: phase,
        reason,
        since_ms: state.since_ms,
        version: status.as_ref().map(|s| s.version.clone()),
        protocol: status.as_ref().map(|s| s.protocol),
        load: status.as_ref().map(|s| s.load.clone()),
        status,
    }
}

/// Every host, in the configured order (the board's), each asked for its status at once.
#[utoipa::path(
    get,
    path = "/api/v1/hosts",
    tag = "hosts",
    responses((status = 200, description = "The hosts", body = [HostInfo]))
)]
pub async fn list(State(state): State<AppState>) -> Json<Vec<HostInfo>> {
    Json(futures::future::join_all(state.hosts.all().iter().map(describe)).await)
}

/// One host.
#[utoipa::path(
    get,
    path = "/api/v1/hosts/{host}",
    tag = "hosts",
    params(("host" = String, Path, description = "The host's name")),
    responses(
        (status = 200, description = "The host", body = HostInfo),
        (status = 404, description = "No such host", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<HostInfo>, ApiError> {
    let host = state.hosts.get(&name)?;
    Ok(Json(describe(host).await))
}
