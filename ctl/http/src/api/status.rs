//! `GET /api/v1/status` and `GET /healthz`.

use aifactory_common::protocol::StatusInfo;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use serde::Serialize;
use utoipa::ToSchema;

use super::doc::DaemonErrors;
use crate::auth;
use crate::error::ApiError;
use crate::state::AppState;

/// The daemon's identity, paths and counters: the first host's (each host's is in
/// `GET /api/v1/hosts`).
#[utoipa::path(
    get,
    path = "/api/v1/status",
    tag = "daemon",
    responses(
        (status = 200, description = "The first host's daemon's status", body = StatusInfo),
        DaemonErrors,
    )
)]
pub async fn status(State(state): State<AppState>) -> Result<Json<StatusInfo>, ApiError> {
    state
        .hosts
        .primary()
        .daemon
        .call(async |daemon| daemon.status().await)
        .await
        .map(Json)
}

/// What `/healthz` says to a request without the token: whether the daemon answers, nothing
/// about where or which (its pid and socket are for those who hold the token).
#[derive(Debug, Serialize, ToSchema)]
// Serialize ignores it; the schema gets `additionalProperties: false`, so a full answer is
// never also a brief one.
#[serde(deny_unknown_fields)]
pub struct BriefHealth {
    /// `ok` when the daemon answers, `unavailable` when it does not.
    #[schema(value_type = String, pattern = "^(ok|unavailable)$")]
    pub status: &'static str,
}

/// What `/healthz` says to a request with the token.
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

/// Whether the shim runs and the daemon answers; needs no token. Without the token it says
/// only `ok` or `unavailable`; with it, the shim's and the daemon's details.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "daemon",
    responses((status = 200, description = "The shim runs; without the token `status` says whether the daemon answers, with it `daemon.answers` and the details", body = HealthAnswer))
)]
pub async fn healthz(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Json<HealthAnswer> {
    let health = health(&state).await;
    if auth::has_token(&state, &headers, &uri) {
        return Json(HealthAnswer::Full(health));
    }
    let status = if health.daemon.answers {
        "ok"
    } else {
        "unavailable"
    };
    Json(HealthAnswer::Brief(BriefHealth { status }))
}

/// `/healthz`'s body: brief without the token, in full with it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum HealthAnswer {
    Brief(BriefHealth),
    Full(Health),
}

async fn health(state: &AppState) -> Health {
    let primary = &state.hosts.primary().daemon;
    let socket = primary.place().to_string();
    let daemon = match primary.call(async |daemon| daemon.status().await).await {
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
    Health {
        status: if daemon.answers { "ok" } else { "degraded" },
        shim: ShimHealth {
            version: env!("CARGO_PKG_VERSION"),
            listen: state.listen.to_string(),
        },
        daemon,
    }
}
