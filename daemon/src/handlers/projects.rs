//! `Project*` requests: the projects registry, and the wire form of its errors.

use std::path::PathBuf;

use aifactory_common::protocol::{ErrorCode, ErrorReply, LegacyProject, ProjectAdd, Reply};

use crate::context::ConnContext;
use crate::projects::{self, ProjectError};

pub(super) fn code(e: &ProjectError) -> ErrorCode {
    match e {
        ProjectError::NotFound(_) | ProjectError::PathMissing(_) => ErrorCode::NotFound,
        ProjectError::RelativePath(_)
        | ProjectError::CannotInspect { .. }
        | ProjectError::NotADirectory(_)
        | ProjectError::Unreadable { .. }
        | ProjectError::CannotResolve { .. }
        | ProjectError::NotAWorkTree { .. }
        | ProjectError::NotUtf8(_)
        | ProjectError::UnusableName(_)
        | ProjectError::IdShapedName(_) => ErrorCode::Invalid,
        ProjectError::PathTaken { .. }
        | ProjectError::NameTaken { .. }
        | ProjectError::HasTasks { .. } => ErrorCode::Conflict,
        ProjectError::Store(store) => super::store::code(store),
    }
}

impl From<ProjectError> for ErrorReply {
    fn from(e: ProjectError) -> Self {
        ErrorReply::new(code(&e), e.to_string())
    }
}

pub async fn add(ctx: &ConnContext, add: ProjectAdd) -> Result<Reply, ErrorReply> {
    Ok(Reply::Project(projects::add(&ctx.daemon.store, add).await?))
}

pub async fn list(ctx: &ConnContext) -> Result<Reply, ErrorReply> {
    Ok(Reply::Projects(projects::list(&ctx.daemon.store).await?))
}

pub async fn show(ctx: &ConnContext, key: String) -> Result<Reply, ErrorReply> {
    Ok(Reply::Project(
        projects::show(&ctx.daemon.store, key).await?,
    ))
}

pub async fn remove(ctx: &ConnContext, key: String) -> Result<Reply, ErrorReply> {
    Ok(Reply::ProjectRemoved(
        projects::remove(&ctx.daemon.store, key).await?,
    ))
}

pub async fn import_legacy(
    ctx: &ConnContext,
    source: PathBuf,
    entries: Vec<LegacyProject>,
) -> Result<Reply, ErrorReply> {
    Ok(Reply::Imported(
        projects::import_legacy(&ctx.daemon.store, source, entries).await?,
    ))
}
