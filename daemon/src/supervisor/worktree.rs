//! A task's place in its project: the git worktree (on the task's branch) and the spec
//! directory inside it, made when the task is created and removed on `tasks remove --prune`.

use std::path::{Path, PathBuf};

use aifactory_common::protocol::ProjectInfo;

use super::SupervisorError;
use crate::{git, tasks};

/// Creates (or takes back) the worktree of spec `spec_id`, from the project's default branch,
/// and its spec directory; returns the worktree's path.
pub async fn create(project: &ProjectInfo, spec_id: &str) -> Result<PathBuf, SupervisorError> {
    let worktree = tasks::worktree_path(&project.path, spec_id);
    git::add_worktree(
        &project.path,
        &worktree,
        &tasks::branch(spec_id),
        &project.default_branch,
    )
    .await
    .map_err(|source| SupervisorError::AddWorktree {
        path: worktree.clone(),
        source,
    })?;
    let spec_dir = tasks::spec_dir(&worktree, spec_id);
    std::fs::create_dir_all(&spec_dir).map_err(|source| SupervisorError::CreateSpecDir {
        path: spec_dir,
        source,
    })?;
    Ok(worktree)
}

/// Removes a task's worktree; without `force`, one with changes stays.
pub async fn remove(project: &Path, worktree: &Path, force: bool) -> Result<(), SupervisorError> {
    git::remove_worktree(project, worktree, force)
        .await
        .map_err(|source| SupervisorError::RemoveWorktree {
            path: worktree.to_path_buf(),
            source,
        })
}
