//! `Task*` requests: tasks on the board and their agents. The supervisor's and the task
//! record's errors become the wire's `ErrorReply` here, each with its code.

use std::time::Duration;

use aifactory_common::protocol::{ErrorCode, ErrorReply, Reply, TaskCreate};

use crate::context::ConnContext;
use crate::supervisor::SupervisorError;
use crate::tasks::TaskError;

impl From<TaskError> for ErrorReply {
    fn from(e: TaskError) -> ErrorReply {
        let code = match &e {
            TaskError::Store(store) => return ErrorReply::from(store.clone()),
            TaskError::NotFound(_) => ErrorCode::NotFound,
            TaskError::Ambiguous { .. } | TaskError::SpecTaken { .. } => ErrorCode::Conflict,
            TaskError::BadSpecId(_) | TaskError::BadTitle | TaskError::Transition { .. } => {
                ErrorCode::Invalid
            }
        };
        ErrorReply::new(code, e.to_string())
    }
}

impl From<SupervisorError> for ErrorReply {
    fn from(e: SupervisorError) -> ErrorReply {
        let code = match e {
            SupervisorError::Task(e) => return e.into(),
            SupervisorError::Project(reply) => return reply,
            SupervisorError::StartAgent { ref session, .. } => session.code,
            SupervisorError::UnknownAgent(_)
            | SupervisorError::Profile(_)
            | SupervisorError::AddWorktree { .. }
            | SupervisorError::SpecDir { .. }
            | SupervisorError::NotRunning { .. } => ErrorCode::Invalid,
            SupervisorError::CreateSpecDir { .. } => ErrorCode::Unavailable,
            SupervisorError::AlreadyRunning { .. }
            | SupervisorError::Running { .. }
            | SupervisorError::RemoveWorktree { .. } => ErrorCode::Conflict,
        };
        ErrorReply::new(code, e.to_string())
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

pub async fn restart(ctx: &ConnContext, key: String, grace_ms: u64) -> Result<Reply, ErrorReply> {
    let task = ctx
        .daemon
        .tasks
        .restart(key, Duration::from_millis(grace_ms))
        .await?;
    Ok(Reply::Task(Box::new(task)))
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
        let refused = SupervisorError::start_agent(
            "t-1",
            ErrorReply::new(ErrorCode::Unavailable, "no panes root"),
        );
        let reply = ErrorReply::from(refused);
        assert_eq!(reply.code, ErrorCode::Unavailable);
        assert_eq!(
            reply.message,
            "cannot start the agent of task t-1: no panes root"
        );
    }
}
