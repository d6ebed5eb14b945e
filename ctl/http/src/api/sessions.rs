//! `/api/v1/sessions`: terminal sessions (the console is in `console`).

use aifactory_common::protocol::{Reply, Request};
use axum::Json;
use axum::extract::{Path, State};

use super::extract::{Grace, Query};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Every session (`SessionInfo` of aifactory-common, as JSON).
#[utoipa::path(
    get,
    path = "/api/v1/sessions",
    tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Array of `SessionInfo`: id, name, command, cwd, state (starting, running, exited, lost), pid, monitor_pid, cols, rows, pane_dir, exit, lost_reason, created_at", body = [Object]),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    match state.daemon.request(Request::SessionList).await? {
        Reply::Sessions(list) => Ok(Json(super::to_json(&list)?)),
        other => Err(ApiError::unexpected("SessionList", other)),
    }
}

/// One session, by id or name.
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}",
    tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id or name")),
    responses(
        (status = 200, description = "`SessionInfo`", body = Object),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match state
        .daemon
        .request(Request::SessionShow { key: id })
        .await?
    {
        Reply::Session(session) => Ok(Json(super::to_json(&session)?)),
        other => Err(ApiError::unexpected("SessionShow", other)),
    }
}

/// Kills a session: SIGHUP and SIGTERM to its process group, SIGKILL after `grace` seconds.
#[utoipa::path(
    delete,
    path = "/api/v1/sessions/{id}",
    tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id or name"), Grace),
    responses(
        (status = 200, description = "The session as it ended (`SessionInfo` with `exit`)", body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(grace): Query<Grace>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let request = Request::SessionKill {
        key: id.clone(),
        grace_ms: grace.millis()?,
        ignore_missing: false,
    };
    match state.daemon.request(request).await? {
        Reply::Killed(Some(session)) => Ok(Json(super::to_json(&session)?)),
        Reply::Killed(None) => Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            format!("no session {id}"),
        )),
        other => Err(ApiError::unexpected("SessionKill", other)),
    }
}
