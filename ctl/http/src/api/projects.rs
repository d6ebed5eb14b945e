//! `/api/v1/projects`: the projects registry.

use std::path::PathBuf;

use aifactory_common::protocol::{ProjectAdd, ProjectInfo, Provider};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;

use super::doc::DaemonErrors;
use super::extract::{Body, HostFilter, On, Query};
use super::hosted::{Hosted, gather};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// A git work tree to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// The host whose daemon registers it (`GET /api/v1/hosts`); its tasks run there. Needed
    /// when the shim serves several hosts.
    pub host: Option<String>,
    /// Absolute path of the work tree on the daemon's machine (no NUL byte).
    #[schema(value_type = String, pattern = r"^/[^\x00]*$", example = "/home/me/src/my-app")]
    pub path: PathBuf,
    /// Default: the directory's name. 1 to 100 printable characters, not only spaces, and not
    /// shaped like a project id (`p-` and 8 hex digits).
    #[schema(schema_with = super::doc::project_name)]
    pub name: Option<String>,
    /// Default: detected from the origin remote.
    pub provider: Option<Provider>,
}

/// Every registered project of every reachable host, each with its `host`.
#[utoipa::path(
    get,
    path = "/api/v1/projects",
    tag = "projects",
    params(HostFilter),
    responses(
        (status = 200, description = "Every project", body = [Hosted<ProjectInfo>]),
        (status = 400, description = "An unknown query parameter", body = ErrorBody),
        (status = 404, description = "No such host", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<HostFilter>,
) -> Result<Json<Vec<Hosted<ProjectInfo>>>, ApiError> {
    gather(&state.hosts, query.host.as_deref(), async |daemon| {
        daemon
            .call(async |client| client.project_list().await)
            .await
    })
    .await
    .map(Json)
}

/// Registers a project; it is committed before the answer, so a `GET` of its `Location`
/// right after always finds it.
#[utoipa::path(
    post,
    path = "/api/v1/projects",
    tag = "projects",
    request_body = CreateProject,
    responses(
        (status = 201, description = "The new project; `Location` is its URL", body = Hosted<ProjectInfo>,
            headers(("Location" = String, description = "/api/v1/hosts/{host}/projects/{id}"))),
        (status = 400, description = "Bad body (`host` missing while the shim serves several); or the path is not a directory aifactoryd can read, or not a git work tree", body = ErrorBody),
        (status = 404, description = "The path does not exist", body = ErrorBody),
        (status = 409, description = "Already registered (same path or name)", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Body(body): Body<CreateProject>,
) -> Result<(StatusCode, HeaderMap, Json<Hosted<ProjectInfo>>), ApiError> {
    let host = state.hosts.resolve(body.host.as_deref())?;
    host.check_reachable()?;
    if !body.path.is_absolute() {
        return Err(ApiError::invalid(format!(
            "path `{}` is not absolute: the shim has no working directory of yours, so send the full path on the daemon's machine",
            body.path.display()
        )));
    }
    let add = ProjectAdd {
        path: body.path,
        name: body.name,
        provider: body.provider,
    };
    let project = host
        .daemon
        .call(async |daemon| daemon.project_add(add).await)
        .await?;
    let location = super::object_url(host, "projects", &project.id);
    Ok(super::created(&location, Hosted::on(host, project)))
}

/// One project, by id or name.
#[utoipa::path(
    get,
    path = "/api/v1/hosts/{host}/projects/{id}",
    tag = "projects",
    params(("host" = String, Path, description = "The host, as GET /api/v1/hosts names it"), ("id" = String, Path, description = "Project id or name")),
    responses(
        (status = 200, description = "The project", body = Hosted<ProjectInfo>),
        (status = 400, description = "The id is not UTF-8 once percent-decoded", body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn get(On { host, id }: On) -> Result<Json<Hosted<ProjectInfo>>, ApiError> {
    host.call(async |daemon| daemon.project_show(id).await)
        .await
        .map(|item| Json(Hosted::on(&host, item)))
}

/// Forgets a project (its files are never touched).
#[utoipa::path(
    delete,
    path = "/api/v1/hosts/{host}/projects/{id}",
    tag = "projects",
    params(("host" = String, Path, description = "The host, as GET /api/v1/hosts names it"), ("id" = String, Path, description = "Project id or name")),
    responses(
        (status = 200, description = "The removed project", body = Hosted<ProjectInfo>),
        (status = 400, description = "The id is not UTF-8 once percent-decoded", body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
        (status = 409, description = "The project still has tasks", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn delete(On { host, id }: On) -> Result<Json<Hosted<ProjectInfo>>, ApiError> {
    host.call(async |daemon| daemon.project_remove(id).await)
        .await
        .map(|item| Json(Hosted::on(&host, item)))
}
