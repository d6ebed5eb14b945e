//! `GET /api/v1/status` and `GET /healthz`.

use aifactory_common::protocol::StatusInfo;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::doc::DaemonErrors;
use crate::error::ApiError;
use crate::state::AppState;

/// The daemon's identity, paths and counters.
#[utoipa::path(
    get,
    path = "/api/v1/status",
    tag = "daemon",
    responses(
        (status = 200, description = "The daemon's status", body = StatusInfo),
        DaemonErrors,
    )
)]
pub async fn status(State(state): State<AppState>) -> Result<Json<StatusInfo>, ApiError> {
    state
        .daemon
        .call(async |daemon| daemon.status().await)
        .await
        .map(Json)
}

/// What `/healthz` says.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the daemon answers, `degraded` when it does not.
    #[schema(value_type = String, pattern = "^(ok|degraded)$")]
    pub status: &'static str,
    pub shim: ShimHealth,
    pub daemon: DaemonHealth,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShimHealth {
    pub version: &'static str,
    pub listen: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DaemonHealth {
    pub socket: String,
    /// Whether the daemon answered a status request just now.
    pub answers: bool,
    pub version: Option<String>,
    pub pid: Option<u32>,
    pub protocol: Option<u16>,
    /// Why it did not answer, with what to do.
    pub error: Option<String>,
}

/// Whether the shim runs and the daemon answers; needs no token.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "daemon",
    responses((status = 200, description = "The shim runs; `daemon.answers` says whether the daemon does", body = Health))
)]
pub async fn healthz(State(state): State<AppState>) -> Json<Health> {
    let socket = state.daemon.socket().display().to_string();
    let daemon = match state
        .daemon
        .call(async |daemon| daemon.status().await)
        .await
    {
        Ok(info) => DaemonHealth {
            socket,
            answers: true,
            version: Some(info.version),
            pid: Some(info.pid),
            protocol: Some(info.protocol),
            error: None,
        },
        Err(e) => DaemonHealth {
            socket,
            answers: false,
            version: None,
            pid: None,
            protocol: None,
            error: Some(e.message),
        },
    };
    Json(Health {
        status: if daemon.answers { "ok" } else { "degraded" },
        shim: ShimHealth {
            version: env!("CARGO_PKG_VERSION"),
            listen: state.listen.to_string(),
        },
        daemon,
    })
}
