//! `/api/v1/tasks`: tasks on the board and their agents.

use aifactory_common::protocol::{Reply, Request, TaskCreate};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::extract::{Body, Grace, Query};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// A task to create, with its git worktree.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    /// Project id or name.
    pub project: String,
    /// `[a-z0-9][a-z0-9-]{0,63}`: names the worktree, the branch and the spec directory.
    pub spec_id: String,
    /// Default: the spec id.
    pub title: Option<String>,
    /// Agent profile; default: the daemon's `default_agent`.
    pub agent: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListTasks {
    /// Only this project's tasks (id or name).
    pub project: Option<String>,
}

fn task(reply: Reply, what: &str) -> Result<Json<serde_json::Value>, ApiError> {
    match reply {
        Reply::Task(task) => Ok(Json(super::to_json(&task)?)),
        other => Err(ApiError::unexpected(what, other)),
    }
}

/// Every task, or one project's (`TaskInfo` of aifactory-common, as JSON).
#[utoipa::path(
    get,
    path = "/api/v1/tasks",
    tag = "tasks",
    security(("bearer" = [])),
    params(ListTasks),
    responses(
        (status = 200, description = "Array of `TaskInfo`: id, project_id, project_name, spec_id, title, agent, phase, progress, session_id, attempts, worktree, branch, spec_dir, progress_file, notes, stall, waiting_input, last_error, created_at, updated_at", body = [Object]),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListTasks>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match state
        .daemon
        .request(Request::TaskList {
            project: query.project,
        })
        .await?
    {
        Reply::Tasks(list) => Ok(Json(super::to_json(&list)?)),
        other => Err(ApiError::unexpected("TaskList", other)),
    }
}

/// Creates a task and its worktree `<project>/.aifactory/worktrees/tasks/<spec>`.
#[utoipa::path(
    post,
    path = "/api/v1/tasks",
    tag = "tasks",
    security(("bearer" = [])),
    request_body = CreateTask,
    responses(
        (status = 201, description = "The new `TaskInfo`; `Location` is its URL", body = Object,
            headers(("Location" = String, description = "/api/v1/tasks/{id}"))),
        (status = 400, description = "Bad body or spec id, unknown agent", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
        (status = 409, description = "The spec already has a task", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Body(body): Body<CreateTask>,
) -> Result<(StatusCode, HeaderMap, Json<serde_json::Value>), ApiError> {
    let request = Request::TaskCreate(TaskCreate {
        project: body.project,
        spec_id: body.spec_id,
        title: body.title,
        agent: body.agent,
    });
    match state.daemon.request(request).await? {
        Reply::Task(task) => {
            let location = format!("/api/v1/tasks/{}", task.id);
            Ok(super::created(&location, super::to_json(&task)?))
        }
        other => Err(ApiError::unexpected("TaskCreate", other)),
    }
}

/// One task, by id (or spec id when only one task has it).
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{id}",
    tag = "tasks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Task id, or spec id")),
    responses(
        (status = 200, description = "`TaskInfo`", body = Object),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    task(
        state.daemon.request(Request::TaskShow { key: id }).await?,
        "TaskShow",
    )
}

/// Runs the task's agent in a new session.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/start",
    tag = "tasks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Task id, or spec id")),
    responses(
        (status = 200, description = "The started `TaskInfo` (`session_id` is the agent's session)", body = Object),
        (status = 400, description = "The agent profile is unusable (the message says why and how to fix it)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The task already runs, or the board does not allow the move", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn start(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    task(
        state.daemon.request(Request::TaskStart { key: id }).await?,
        "TaskStart",
    )
}

/// Stops the agent: SIGTERM to every process of it, SIGKILL after `grace` seconds.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/stop",
    tag = "tasks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Task id, or spec id"), Grace),
    responses(
        (status = 200, description = "`StopReport`: task, signalled (pid, command), survivors", body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The task does not run", body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(grace): Query<Grace>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let grace_ms = grace.millis()?;
    match state
        .daemon
        .request(Request::TaskStop { key: id, grace_ms })
        .await?
    {
        Reply::TaskStopped(report) => Ok(Json(super::to_json(&report)?)),
        other => Err(ApiError::unexpected("TaskStop", other)),
    }
}

/// Stops the agent if it runs, then starts it again.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/restart",
    tag = "tasks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Task id, or spec id"), Grace),
    responses(
        (status = 200, description = "The restarted `TaskInfo`", body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn restart(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(grace): Query<Grace>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let grace_ms = grace.millis()?;
    task(
        state
            .daemon
            .request(Request::TaskRestart { key: id, grace_ms })
            .await?,
        "TaskRestart",
    )
}
