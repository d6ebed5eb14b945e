//! What can keep the supervisor from creating, starting, stopping or removing a task. The
//! handlers turn it into the wire's `ErrorReply`, with its code, in one place.

use std::path::PathBuf;

use aifactory_common::echo::echo;
use aifactory_common::protocol::TaskPhase;

use crate::agents::ProfileError;
use crate::git::GitError;
use crate::projects::ProjectError;
use crate::sessions::SessionError;
use crate::sharing::SharingError;
use crate::tasks::TaskError;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Task(#[from] TaskError),
    /// The task's project could not be looked up.
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error("no agent profile is named `{}`: see `aifactoryctl agents list`", echo(.0))]
    UnknownAgent(String),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error("cannot create the worktree {}: git says: {source}", path.display())]
    AddWorktree { path: PathBuf, source: GitError },
    /// At creation: the project's directory does not take the spec directory.
    #[error(
        "cannot create the spec directory {}: {source}: check that aifactoryd may write to the project",
        path.display()
    )]
    CreateSpecDir { path: PathBuf, source: SharingError },
    /// At a start: the spec directory (removed since creation?) cannot be made again.
    #[error("cannot create the spec directory {}: {source}", path.display())]
    SpecDir { path: PathBuf, source: SharingError },
    /// The project's (or worktree's) modes, which what the daemon creates there follows.
    #[error(transparent)]
    Sharing(#[from] SharingError),
    #[error(
        "task {id} is already running (phase {}): stop it first, or use `aifactoryctl tasks restart {id}`",
        phase.as_str()
    )]
    AlreadyRunning { id: String, phase: TaskPhase },
    #[error("task {id} is not running (phase {}): nothing to stop", phase.as_str())]
    NotRunning { id: String, phase: TaskPhase },
    #[error(
        "task {id} is running (phase {}): stop it first (`aifactoryctl tasks stop {id}`)",
        phase.as_str()
    )]
    Running { id: String, phase: TaskPhase },
    #[error(
        "cannot remove the worktree {}: git says: {source}; commit or discard its changes, or pass --force to delete them",
        path.display()
    )]
    RemoveWorktree { path: PathBuf, source: GitError },
    /// The agent cannot run confined as its profile requires.
    #[error("cannot start the agent of task {id}: {cage}")]
    Cage {
        id: String,
        cage: crate::cage::CageError,
    },
    /// The task's cgroup could not be made with its limits.
    #[error("cannot start the agent of task {id}: {source}")]
    Limits {
        id: String,
        source: crate::cgroups::CgroupError,
    },
    /// The session registry refused the agent's session; its code is kept.
    #[error("cannot start the agent of task {id}: {session}")]
    StartAgent { id: String, session: SessionError },
}
