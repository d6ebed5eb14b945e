//! A task's place in its project: the git worktree (on the task's branch) and the spec
//! directory inside it, made when the task is created and removed on `tasks remove --prune`.

use std::path::{Path, PathBuf};

use aifactory_common::protocol::{ProjectInfo, TaskInfo};

use super::SupervisorError;
use crate::sharing::Sharing;
use crate::{git, tasks};

/// Creates (or takes back) the worktree of spec `spec_id`, from the project's default branch,
/// and its spec directory, both with the project's group and modes (`sharing`); returns the
/// worktree's path.
pub async fn create(project: &ProjectInfo, spec_id: &str) -> Result<PathBuf, SupervisorError> {
    let sharing = Sharing::of(&project.path)?;
    let worktree = tasks::worktree_path(&project.path, spec_id);
    git::add_worktree(
        &project.path,
        &worktree,
        &tasks::branch(spec_id),
        &project.default_branch,
        sharing,
    )
    .await
    .map_err(|source| SupervisorError::AddWorktree {
        path: worktree.clone(),
        source,
    })?;
    let spec_dir = tasks::spec_dir(&worktree, spec_id);
    sharing
        .create_dir_all(&spec_dir)
        .await
        .map_err(|source| SupervisorError::CreateSpecDir {
            path: spec_dir,
            source,
        })?;
    Ok(worktree)
}

/// Makes the spec directory again if it went (at a start), with the worktree's modes.
pub async fn recreate_spec_dir(task: &TaskInfo) -> Result<(), SupervisorError> {
    let sharing = Sharing::of(&task.worktree)?;
    sharing
        .create_dir_all(&task.spec_dir)
        .await
        .map_err(|source| SupervisorError::SpecDir {
            path: task.spec_dir.clone(),
            source,
        })
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
