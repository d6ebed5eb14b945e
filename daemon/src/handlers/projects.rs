//! `Project*` requests: the projects registry.

use std::path::PathBuf;

use aifactory_common::protocol::{ErrorReply, LegacyProject, ProjectAdd, Reply};

use crate::context::ConnContext;
use crate::projects;

pub async fn add(ctx: &ConnContext, add: ProjectAdd) -> Result<Reply, ErrorReply> {
    projects::add(&ctx.daemon.store, add)
        .await
        .map(Reply::Project)
}

pub async fn list(ctx: &ConnContext) -> Result<Reply, ErrorReply> {
    projects::list(&ctx.daemon.store).await.map(Reply::Projects)
}

pub async fn show(ctx: &ConnContext, key: String) -> Result<Reply, ErrorReply> {
    projects::show(&ctx.daemon.store, key)
        .await
        .map(Reply::Project)
}

pub async fn remove(ctx: &ConnContext, key: String) -> Result<Reply, ErrorReply> {
    projects::remove(&ctx.daemon.store, key)
        .await
        .map(Reply::ProjectRemoved)
}

pub async fn import_legacy(
    ctx: &ConnContext,
    source: PathBuf,
    entries: Vec<LegacyProject>,
) -> Result<Reply, ErrorReply> {
    projects::import_legacy(&ctx.daemon.store, source, entries)
        .await
        .map(Reply::Imported)
}
