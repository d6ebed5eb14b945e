//! `Task*` requests: tasks on the board and their agents. The supervisor's and the task
//! record's errors become the wire's `ErrorReply` here, each with its code.

use std::time::Duration;

use aifactory_common::protocol::{ErrorCode, ErrorReply, Reply, TaskCreate};

use crate::context::ConnContext;
use crate::supervisor::SupervisorError;
use crate::tasks::TaskError;

fn task_code(e: &TaskError) -> ErrorCode {
    match e {
        TaskError::Store(store) => super::store::code(store),
        TaskError::NotFound(_) => ErrorCode::NotFound,
        TaskError::Ambiguous { .. } | TaskError::SpecTaken { .. } => ErrorCode::Conflict,
        TaskError::BadSpecId(_) | TaskError::BadTitle | TaskError::Transition { .. } => {
            ErrorCode::Invalid
        }
    }
}

impl From<TaskError> for ErrorReply {
    fn from(e: TaskError) -> ErrorReply {
        ErrorReply::new(task_code(&e), e.to_string())
    }
}

pub(super) fn supervisor_code(e: &SupervisorError) -> ErrorCode {
    match e {
        SupervisorError::Task(e) => task_code(e),
        SupervisorError::Project(e) => super::projects::code(e),
        // The session registry's refusal keeps its own code.
        SupervisorError::StartAgent { session, .. } => super::sessions::code(session),
        SupervisorError::UnknownAgent(_)
        | SupervisorError::Profile(_)
        | SupervisorError::AddWorktree { .. }
        | SupervisorError::SpecDir { .. }
        | SupervisorError::NotRunning { .. } => ErrorCode::Invalid,
        SupervisorError::CreateSpecDir { .. }
        | SupervisorError::Sharing(_)
        | SupervisorError::Cage { .. }
        | SupervisorError::Limits { .. } => ErrorCode::Unavailable,
        SupervisorError::AlreadyRunning { .. }
        | SupervisorError::Running { .. }
        | SupervisorError::RemoveWorktree { .. } => ErrorCode::Conflict,
    }
}

impl From<SupervisorError> for ErrorReply {
    fn from(e: SupervisorError) -> ErrorReply {
        ErrorReply::new(supervisor_code(&e), e.to_string())
    }
}

pub async fn create(ctx: &ConnContext, create: TaskCreate) -> Result<Reply, ErrorReply> {
    Ok(Reply::Task(Box::new(
        ctx.daemon.tasks.create(create).await?,
    )))
}

pub async fn list(ctx: &ConnContext, project: Option<String>) -> Result<Reply, ErrorReply> {
    Ok(Reply::Tasks(ctx.daemon.tasks.list(project).await?))
}

pub async fn show(ctx: &ConnContext, key: String) -> Result<Reply, ErrorReply> {
    Ok(Reply::Task(Box::new(ctx.daemon.tasks.show(key).await?)))
}

pub async fn start(ctx: &ConnContext, key: String) -> Result<Reply, ErrorReply> {
    Ok(Reply::Task(Box::new(ctx.daemon.tasks.start(key).await?)))
}

pub async fn stop(ctx: &ConnContext, key: String, grace_ms: u64) -> Result<Reply, ErrorReply> {
    let report = ctx
        .daemon
        .tasks
        .stop(key, Duration::from_millis(grace_ms))
        .await?;
    Ok(Reply::TaskStopped(Box::new(report)))
}

pub async fn restart(
    ctx: &ConnContext,
    key: String,
    grace_ms: u64,
    fresh: bool,
) -> Result<Reply, ErrorReply> {
    let task = ctx
        .daemon
        .tasks
        .restart(key, Duration::from_millis(grace_ms), fresh)
        .await?;
    Ok(Reply::Task(Box::new(task)))
}

pub async fn transcript(
    ctx: &ConnContext,
    key: String,
    after: Option<u64>,
) -> Result<Reply, ErrorReply> {
    Ok(Reply::Transcript(
        ctx.daemon.tasks.transcript(key, after).await?,
    ))
}

pub async fn attempts(ctx: &ConnContext, key: String) -> Result<Reply, ErrorReply> {
    Ok(Reply::Attempts(ctx.daemon.tasks.attempts(key).await?))
}

pub async fn remove(
    ctx: &ConnContext,
    key: String,
    prune: bool,
    force: bool,
) -> Result<Reply, ErrorReply> {
    let task = ctx.daemon.tasks.remove(key, prune, force).await?;
    Ok(Reply::TaskRemoved(Box::new(task)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::SessionError;

    #[test]
    fn codes_of_task_errors() {
        let code = |e: TaskError| ErrorReply::from(e).code;
        assert_eq!(code(TaskError::BadSpecId("A".into())), ErrorCode::Invalid);
        assert_eq!(code(TaskError::BadTitle), ErrorCode::Invalid);
        assert_eq!(code(TaskError::NotFound("x".into())), ErrorCode::NotFound);
        let taken = TaskError::SpecTaken {
            spec_id: "s".into(),
            existing: "t-1".into(),
        };
        assert_eq!(code(taken), ErrorCode::Conflict);
    }

    #[test]
    fn a_refused_session_keeps_its_code() {
        let refused = SupervisorError::StartAgent {
            id: "t-1".into(),
            session: SessionError::NotFound("s-1".into()),
        };
        let reply = ErrorReply::from(refused);
        assert_eq!(reply.code, ErrorCode::NotFound);
        assert_eq!(
            reply.message,
            "cannot start the agent of task t-1: no session with id or name `s-1`: see `aifactoryctl sessions list`"
        );
    }
}
