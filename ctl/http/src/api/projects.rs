//! `/api/v1/projects`: the projects registry.

use std::path::PathBuf;

use aifactory_common::protocol::{ProjectAdd, Provider, Reply, Request};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::Body;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// A git work tree to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// Absolute path of the work tree on the daemon's machine.
    #[schema(value_type = String, example = "/home/me/src/my-app")]
    pub path: PathBuf,
    /// Default: the directory's name.
    pub name: Option<String>,
    /// `github`, `gitlab`, `azure-devops`, `bitbucket` or `unknown`; default: detected from the
    /// origin remote.
    #[schema(value_type = Option<String>)]
    pub provider: Option<Provider>,
}

/// Every registered project (`ProjectInfo` of aifactory-common, as JSON).
#[utoipa::path(
    get,
    path = "/api/v1/projects",
    tag = "projects",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Array of `ProjectInfo`: id, name, path, origin_url, provider, detected_provider, provider_manual, default_branch, created_at", body = [Object]),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    match state.daemon.request(Request::ProjectList).await? {
        Reply::Projects(list) => Ok(Json(super::to_json(&list)?)),
        other => Err(ApiError::unexpected("ProjectList", other)),
    }
}

/// Registers a project; it is committed before the answer, so a `GET` of its `Location`
/// right after always finds it.
#[utoipa::path(
    post,
    path = "/api/v1/projects",
    tag = "projects",
    security(("bearer" = [])),
    request_body = CreateProject,
    responses(
        (status = 201, description = "The new `ProjectInfo`; `Location` is its URL", body = Object,
            headers(("Location" = String, description = "/api/v1/projects/{id}"))),
        (status = 400, description = "Bad body, relative path, not a git work tree", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "Already registered (same path or name)", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Body(body): Body<CreateProject>,
) -> Result<(StatusCode, HeaderMap, Json<serde_json::Value>), ApiError> {
    if !body.path.is_absolute() {
        return Err(ApiError::invalid(format!(
            "path `{}` is not absolute: the shim has no working directory of yours, so send the full path on the daemon's machine",
            body.path.display()
        )));
    }
    let request = Request::ProjectAdd(ProjectAdd {
        path: body.path,
        name: body.name,
        provider: body.provider,
    });
    match state.daemon.request(request).await? {
        Reply::Project(project) => {
            let location = format!("/api/v1/projects/{}", project.id);
            Ok(super::created(&location, super::to_json(&project)?))
        }
        other => Err(ApiError::unexpected("ProjectAdd", other)),
    }
}

/// One project, by id or name.
#[utoipa::path(
    get,
    path = "/api/v1/projects/{id}",
    tag = "projects",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Project id or name")),
    responses(
        (status = 200, description = "`ProjectInfo`", body = Object),
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
        .request(Request::ProjectShow { key: id })
        .await?
    {
        Reply::Project(project) => Ok(Json(super::to_json(&project)?)),
        other => Err(ApiError::unexpected("ProjectShow", other)),
    }
}

/// Forgets a project (its files are never touched).
#[utoipa::path(
    delete,
    path = "/api/v1/projects/{id}",
    tag = "projects",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Project id or name")),
    responses(
        (status = 200, description = "The removed `ProjectInfo`", body = Object),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The project still has tasks", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match state
        .daemon
        .request(Request::ProjectRemove { key: id })
        .await?
    {
        Reply::ProjectRemoved(project) => Ok(Json(super::to_json(&project)?)),
        other => Err(ApiError::unexpected("ProjectRemove", other)),
    }
}
