//! `/api/v1/projects`: the projects registry.

use std::path::PathBuf;

use aifactory_common::protocol::{ProjectAdd, ProjectInfo, Provider};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;

use super::doc::DaemonErrors;
use super::extract::{Body, Key};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// A git work tree to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
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

/// Every registered project.
#[utoipa::path(
    get,
    path = "/api/v1/projects",
    tag = "projects",
    responses(
        (status = 200, description = "Every project", body = [ProjectInfo]),
        DaemonErrors,
    )
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<ProjectInfo>>, ApiError> {
    state
        .daemon
        .call(async |daemon| daemon.project_list().await)
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
        (status = 201, description = "The new project; `Location` is its URL", body = ProjectInfo,
            headers(("Location" = String, description = "/api/v1/projects/{id}"))),
        (status = 400, description = "Bad body; or the path is not a directory aifactoryd can read, or not a git work tree", body = ErrorBody),
        (status = 404, description = "The path does not exist", body = ErrorBody),
        (status = 409, description = "Already registered (same path or name)", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Body(body): Body<CreateProject>,
) -> Result<(StatusCode, HeaderMap, Json<ProjectInfo>), ApiError> {
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
    let project = state
        .daemon
        .call(async |daemon| daemon.project_add(add).await)
        .await?;
    let location = format!("/api/v1/projects/{}", project.id);
    Ok(super::created(&location, project))
}

/// One project, by id or name.
#[utoipa::path(
    get,
    path = "/api/v1/projects/{id}",
    tag = "projects",
    params(("id" = String, Path, description = "Project id or name")),
    responses(
        (status = 200, description = "The project", body = ProjectInfo),
        (status = 400, description = "The id is not UTF-8 once percent-decoded", body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Key(id): Key,
) -> Result<Json<ProjectInfo>, ApiError> {
    state
        .daemon
        .call(async |daemon| daemon.project_show(id).await)
        .await
        .map(Json)
}

/// Forgets a project (its files are never touched).
#[utoipa::path(
    delete,
    path = "/api/v1/projects/{id}",
    tag = "projects",
    params(("id" = String, Path, description = "Project id or name")),
    responses(
        (status = 200, description = "The removed project", body = ProjectInfo),
        (status = 400, description = "The id is not UTF-8 once percent-decoded", body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
        (status = 409, description = "The project still has tasks", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Key(id): Key,
) -> Result<Json<ProjectInfo>, ApiError> {
    state
        .daemon
        .call(async |daemon| daemon.project_remove(id).await)
        .await
        .map(Json)
}
