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

/// How long a clone may take before it is given up (and its process killed).
const CLONE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

pub async fn clone(
    ctx: &ConnContext,
    url: String,
    path: PathBuf,
    name: Option<String>,
) -> Result<Reply, ErrorReply> {
    if !path.is_absolute() {
        return Err(ErrorReply::new(
            ErrorCode::Invalid,
            format!(
                "`{}` is relative: give the clone's path absolute on this host",
                path.display()
            ),
        ));
    }
    if std::fs::symlink_metadata(&path).is_ok() {
        return Err(ErrorReply::new(
            ErrorCode::Conflict,
            format!(
                "{} exists already: give a path that does not exist yet for the clone",
                path.display()
            ),
        ));
    }
    crate::git::clone(&url, &path, CLONE_TIMEOUT)
        .await
        .map_err(|e| {
            ErrorReply::new(
                ErrorCode::Invalid,
                format!("git clone {url} {} failed: {e}", path.display()),
            )
        })?;
    let add = ProjectAdd {
        path,
        name,
        provider: None,
    };
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
