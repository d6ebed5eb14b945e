//! `Task*` requests: tasks on the board and their agents.

use std::time::Duration;

use aifactory_common::protocol::{ErrorReply, Reply, TaskCreate};

use crate::context::ConnContext;

pub async fn create(ctx: &ConnContext, create: TaskCreate) -> Result<Reply, ErrorReply> {
    ctx.daemon
        .tasks
        .create(create)
        .await
        .map(|t| Reply::Task(Box::new(t)))
}

pub async fn list(ctx: &ConnContext, project: Option<String>) -> Result<Reply, ErrorReply> {
    ctx.daemon.tasks.list(project).await.map(Reply::Tasks)
}

pub async fn show(ctx: &ConnContext, key: String) -> Result<Reply, ErrorReply> {
    ctx.daemon
        .tasks
        .show(key)
        .await
        .map(|t| Reply::Task(Box::new(t)))
}

pub async fn start(ctx: &ConnContext, key: String) -> Result<Reply, ErrorReply> {
    ctx.daemon
        .tasks
        .start(key)
        .await
        .map(|t| Reply::Task(Box::new(t)))
}

pub async fn stop(ctx: &ConnContext, key: String, grace_ms: u64) -> Result<Reply, ErrorReply> {
    ctx.daemon
        .tasks
        .stop(key, Duration::from_millis(grace_ms))
        .await
        .map(|r| Reply::TaskStopped(Box::new(r)))
}

pub async fn restart(ctx: &ConnContext, key: String, grace_ms: u64) -> Result<Reply, ErrorReply> {
    ctx.daemon
        .tasks
        .restart(key, Duration::from_millis(grace_ms))
        .await
        .map(|t| Reply::Task(Box::new(t)))
}

pub async fn remove(
    ctx: &ConnContext,
    key: String,
    prune: bool,
    force: bool,
) -> Result<Reply, ErrorReply> {
    ctx.daemon
        .tasks
        .remove(key, prune, force)
        .await
        .map(|t| Reply::TaskRemoved(Box::new(t)))
}
