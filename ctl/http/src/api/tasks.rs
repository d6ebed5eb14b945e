//! `/api/v1/tasks`: tasks on the board and their agents.

use aifactory_common::protocol::{AttemptInfo, StopReport, TaskCreate, TaskInfo, Transcript};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::doc::{DaemonErrors, Position};
use super::extract::{Body, Grace, On, Query};
use super::hosted::{Hosted, gather};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// A task to create, with its git worktree.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    /// The project's host (`GET /api/v1/hosts`): the task runs where its project is. Needed
    /// when the shim serves several hosts.
    pub host: Option<String>,
    /// Project id or name.
    pub project: String,
    /// Names the worktree, the branch and the spec directory.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,63}$", example = "001-login-page")]
    pub spec_id: String,
    /// Default: the spec id. 1 to 200 printable characters, not only spaces.
    #[schema(schema_with = super::doc::task_title)]
    pub title: Option<String>,
    /// Agent profile (`GET /api/v1/status` does not list them: see `aifactoryctl agents
    /// list`); default: the daemon's `default_agent`.
    #[schema(min_length = 1)]
    pub agent: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListTasks {
    /// Only this project's tasks (id or name).
    pub project: Option<String>,
    /// Only this host's tasks.
    pub host: Option<String>,
}

/// Every task of every reachable host, or one project's; each with its `host`.
#[utoipa::path(
    get,
    path = "/api/v1/tasks",
    tag = "tasks",
    params(ListTasks),
    responses(
        (status = 200, description = "The tasks", body = [Hosted<TaskInfo>]),
        (status = 400, description = "An unknown query parameter", body = ErrorBody),
        (status = 404, description = "No such project, or no such host", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListTasks>,
) -> Result<Json<Vec<Hosted<TaskInfo>>>, ApiError> {
    let project = query.project;
    gather(&state.hosts, query.host.as_deref(), |daemon| {
        let project = project.clone();
        async move {
            daemon
                .call(async |client| client.task_list(project).await)
                .await
        }
    })
    .await
    .map(Json)
}

/// Creates a task and its worktree `<project>/.aifactory/worktrees/tasks/<spec>`.
#[utoipa::path(
    post,
    path = "/api/v1/tasks",
    tag = "tasks",
    request_body = CreateTask,
    responses(
        (status = 201, description = "The new task; `Location` is its URL", body = Hosted<TaskInfo>,
            headers(("Location" = String, description = "/api/v1/hosts/{host}/tasks/{id}"))),
        (status = 400, description = "Bad body (`host` missing while the shim serves several); or no agent profile has that name, or git cannot create the worktree", body = ErrorBody),
        (status = 404, description = "No such project, or no such host", body = ErrorBody),
        (status = 409, description = "The project already has a task for the spec", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Body(body): Body<CreateTask>,
) -> Result<(StatusCode, HeaderMap, Json<Hosted<TaskInfo>>), ApiError> {
    let host = state.hosts.resolve(body.host.as_deref())?;
    let create = TaskCreate {
        project: body.project,
        spec_id: body.spec_id,
        title: body.title,
        agent: body.agent,
    };
    let task = host
        .call(async |daemon| daemon.task_create(create).await)
        .await?;
    let location = super::object_url(host, "tasks", &task.id);
    Ok(super::created(&location, Hosted::on(host, task)))
}

/// One task, by id (or spec id when only one task has it).
#[utoipa::path(
    get,
    path = "/api/v1/hosts/{host}/tasks/{id}",
    tag = "tasks",
    params(("host" = String, Path, description = "The host, as GET /api/v1/hosts names it"), ("id" = String, Path, description = "Task id, or spec id")),
    responses(
        (status = 200, description = "The task", body = Hosted<TaskInfo>),
        (status = 400, description = "The id is not UTF-8 once percent-decoded", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The spec id is used in several projects: name the task by id", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn get(On { host, id }: On) -> Result<Json<Hosted<TaskInfo>>, ApiError> {
    host.call(async |daemon| daemon.task_show(id).await)
        .await
        .map(|item| Json(Hosted::on(&host, item)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// Also remove its worktree (refused when it has changes, unless `force`); the branch stays.
    pub prune: Option<bool>,
    /// With `prune`: remove the worktree even with uncommitted changes.
    pub force: Option<bool>,
}

/// Forgets a task that does not run; with `prune=true` also its worktree.
#[utoipa::path(
    delete,
    path = "/api/v1/hosts/{host}/tasks/{id}",
    tag = "tasks",
    params(("host" = String, Path, description = "The host, as GET /api/v1/hosts names it"), ("id" = String, Path, description = "Task id, or spec id"), RemoveQuery),
    responses(
        (status = 200, description = "The task as it was before it was forgotten", body = Hosted<TaskInfo>),
        (status = 400, description = "Bad query (`force` without `prune`), or the worktree has changes and `force` was not given", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The task runs (stop it first), or the spec id is ambiguous", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn remove(
    On { host, id }: On,
    Query(query): Query<RemoveQuery>,
) -> Result<Json<Hosted<TaskInfo>>, ApiError> {
    let prune = query.prune.unwrap_or(false);
    let force = query.force.unwrap_or(false);
    if force && !prune {
        return Err(ApiError::invalid(
            "force=true only means something with prune=true (remove the worktree even with changes)",
        ));
    }
    host.call(async |daemon| daemon.task_remove(id, prune, force).await)
        .await
        .map(|item| Json(Hosted::on(&host, item)))
}

/// Runs the task's agent in a new session.
#[utoipa::path(
    post,
    path = "/api/v1/hosts/{host}/tasks/{id}/start",
    tag = "tasks",
    params(("host" = String, Path, description = "The host, as GET /api/v1/hosts names it"), ("id" = String, Path, description = "Task id, or spec id")),
    responses(
        (status = 200, description = "The started task (`session_id` is the agent's session)", body = Hosted<TaskInfo>),
        (status = 400, description = "The agent profile is unusable (the message says why and how to fix it), or the board does not allow the move", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The task already runs, or the spec id is ambiguous", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn start(On { host, id }: On) -> Result<Json<Hosted<TaskInfo>>, ApiError> {
    host.call(async |daemon| daemon.task_start(id).await)
        .await
        .map(|item| Json(Hosted::on(&host, item)))
}

/// Stops the agent: SIGTERM to every process of it, SIGKILL after `grace` seconds.
#[utoipa::path(
    post,
    path = "/api/v1/hosts/{host}/tasks/{id}/stop",
    tag = "tasks",
    params(("host" = String, Path, description = "The host, as GET /api/v1/hosts names it"), ("id" = String, Path, description = "Task id, or spec id"), Grace),
    responses(
        (status = 200, description = "What was signalled, and what survived (nothing should)", body = StopReport),
        (status = 400, description = "Bad query; or the task does not run (nothing to stop)", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The spec id is ambiguous", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn stop(
    On { host, id }: On,
    Query(grace): Query<Grace>,
) -> Result<Json<StopReport>, ApiError> {
    let grace_ms = grace.millis()?;
    host.call(async |daemon| daemon.task_stop(id, grace_ms).await)
        .await
        .map(Json)
}

/// `?grace=SECONDS&fresh=BOOL` for restart.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RestartQuery {
    /// Seconds between SIGTERM and SIGKILL (default 5, at most 3600).
    #[param(minimum = 0, maximum = 3600)]
    pub grace: Option<u64>,
    /// Start the agent's conversation over instead of resuming it (default false).
    pub fresh: Option<bool>,
}

/// Stops the agent if it runs, then starts it again, resuming the agent's conversation unless
/// `fresh=true`.
#[utoipa::path(
    post,
    path = "/api/v1/hosts/{host}/tasks/{id}/restart",
    tag = "tasks",
    params(("host" = String, Path, description = "The host, as GET /api/v1/hosts names it"), ("id" = String, Path, description = "Task id, or spec id"), RestartQuery),
    responses(
        (status = 200, description = "The restarted task", body = Hosted<TaskInfo>),
        (status = 400, description = "Bad query; or the agent profile is unusable, or the board does not allow the move", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The spec id is ambiguous", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn restart(
    On { host, id }: On,
    Query(query): Query<RestartQuery>,
) -> Result<Json<Hosted<TaskInfo>>, ApiError> {
    let grace_ms = Grace { grace: query.grace }.millis()?;
    let fresh = query.fresh.unwrap_or(false);
    host.call(async |daemon| daemon.task_restart(id, grace_ms, fresh).await)
        .await
        .map(|item| Json(Hosted::on(&host, item)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TranscriptQuery {
    /// Only entries whose `seq` is above this (default: from the oldest kept).
    #[param(value_type = Option<Position>)]
    pub after: Option<u64>,
}

/// What the task's agent did: its stored transcript entries (messages, tool calls and results,
/// denials, results with usage and cost), oldest first. `dropped` counts older entries dropped to
/// keep it bounded. Live entries arrive on `GET /api/v1/events` as `TaskAgent` events.
#[utoipa::path(
    get,
    path = "/api/v1/hosts/{host}/tasks/{id}/transcript",
    tag = "tasks",
    params(("host" = String, Path, description = "The host, as GET /api/v1/hosts names it"), ("id" = String, Path, description = "Task id, or spec id"), TranscriptQuery),
    responses(
        (status = 200, description = "The transcript", body = Transcript),
        (status = 400, description = "Bad query, or the id is not UTF-8 once percent-decoded", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The spec id is ambiguous", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn transcript(
    On { host, id }: On,
    Query(query): Query<TranscriptQuery>,
) -> Result<Json<Transcript>, ApiError> {
    host.call(async |daemon| daemon.task_transcript(id, query.after).await)
        .await
        .map(Json)
}

/// Every attempt of the task's agent, oldest first: when it ran, how its program ended, why it
/// failed (`failure.kind`) and what it used from its cgroup. The task itself keeps only the
/// latest attempt's.
#[utoipa::path(
    get,
    path = "/api/v1/hosts/{host}/tasks/{id}/attempts",
    tag = "tasks",
    params(("host" = String, Path, description = "The host, as GET /api/v1/hosts names it"), ("id" = String, Path, description = "Task id, or spec id")),
    responses(
        (status = 200, description = "The attempts, oldest first", body = Vec<AttemptInfo>),
        (status = 400, description = "The id is not UTF-8 once percent-decoded", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The spec id is ambiguous", body = ErrorBody),
        DaemonErrors,
    )
)]
pub async fn attempts(On { host, id }: On) -> Result<Json<Vec<AttemptInfo>>, ApiError> {
    host.call(async |daemon| daemon.task_attempts(id).await)
        .await
        .map(Json)
}
