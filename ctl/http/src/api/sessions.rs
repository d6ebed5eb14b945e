//! `/api/v1/sessions`: terminal sessions (the console is in `console`).

use aifactory_common::echo::echo;
use aifactory_common::protocol::{ProcessEntry, SessionInfo};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use super::doc::DaemonErrors;
use super::extract::{Grace, HostFilter, On, Query};
use super::hosted::{Hosted, gather};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Every session of every reachable host, each with its `host`.
#[utoipa::path(
    get,
    path = "/api/v1/sessions",
    tag = "sessions",
    params(HostFilter),
    responses(
        (status = 200, description = "The sessions", body = [Hosted<SessionInfo>]),
        (status = 400, description = "An unknown query parameter", body = ErrorBody),
        (status = 404, description = "No such host", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<HostFilter>,
) -> Result<Json<Vec<Hosted<SessionInfo>>>, ApiError> {
    gather(&state.hosts, query.host.as_deref(), async |daemon| {
        daemon
            .call(async |client| client.session_list().await)
            .await
    })
    .await
    .map(Json)
}

/// One session, by id or name.
#[utoipa::path(
    get,
    path = "/api/v1/hosts/{host}/sessions/{id}",
    tag = "sessions",
    params(("host" = String, Path, description = "The host, as GET /api/v1/hosts names it"), ("id" = String, Path, description = "Session id or name")),
    responses(
        (status = 200, description = "The session", body = Hosted<SessionInfo>),
        (status = 400, description = "The id is not UTF-8 once percent-decoded", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn get(On { host, id }: On) -> Result<Json<Hosted<SessionInfo>>, ApiError> {
    host.call(async |daemon| daemon.session_show(id).await)
        .await
        .map(|item| Json(Hosted::on(&host, item)))
}

/// A killed session: the session as it ended, with the processes of its tree that were
/// signalled (escaped ones included) and any that survived SIGKILL (nothing should).
#[derive(Serialize, utoipa::ToSchema)]
pub struct KilledSession {
    /// The session's host.
    pub host: String,
    #[serde(flatten)]
    pub session: SessionInfo,
    pub signalled: Vec<ProcessEntry>,
    pub survivors: Vec<ProcessEntry>,
}

/// Kills a session's whole process tree, escaped descendants included: SIGHUP and SIGTERM,
/// SIGKILL after `grace` seconds.
#[utoipa::path(
    delete,
    path = "/api/v1/hosts/{host}/sessions/{id}",
    tag = "sessions",
    params(("host" = String, Path, description = "The host, as GET /api/v1/hosts names it"), ("id" = String, Path, description = "Session id or name"), Grace),
    responses(
        (status = 200, description = "The session as it ended (with `exit`), what was signalled and what survived", body = KilledSession),
        (status = 400, description = "Bad query or id", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn delete(
    On { host, id }: On,
    Query(grace): Query<Grace>,
) -> Result<Json<KilledSession>, ApiError> {
    let grace_ms = grace.millis()?;
    let key = id.clone();
    let killed = host
        .call(async |daemon| daemon.session_kill(key, grace_ms, false).await)
        .await?;
    // Without `ignore_missing` the daemon answers a missing session with NotFound; `None` is
    // only its race with the session going away.
    let Some(session) = killed.session else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no session {}", echo(&id)),
        ));
    };
    Ok(Json(KilledSession {
        host: host.name.to_string(),
        session,
        signalled: killed.signalled,
        survivors: killed.survivors,
    }))
}
