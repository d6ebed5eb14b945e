//! The doctor's facts as the daemon sees them (`DoctorFacts`): each project's work tree (a git
//! per project), each working task's spec directory and progress file, each running session's
//! process, and the pane monitors answering under the panes root. Facts only: the verdicts are
//! `aifactory-doctor`'s, which the daemon does not depend on.
//!
//! Bounded so that a doctor can never weigh on the daemon: one gathering at a time (a second
//! waits its turn within the bound, else is refused as busy), at most [`GIT_AT_ONCE`] gits at
//! once, everything within [`DOCTOR_FACTS_WITHIN`]; what is not found out by then is reported
//! as such (a git still running is killed). File system calls, which can block (a hung network
//! mount), run on the blocking pool, never on the runtime's workers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aifactory_common::diagnose::DOCTOR_FACTS_WITHIN;
use aifactory_common::protocol::{
    DoctorFacts, FileState, PathState, ProjectInfo, ProjectTree, SessionInfo, SessionProcess,
    SessionState, TaskInfo, TaskPaths, WorkTreeState,
};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::git::{self, GitError};
use crate::projects::ProjectError;
use crate::sessions::SessionError;
use crate::state::DaemonState;
use crate::supervisor::SupervisorError;

/// gits run at once for the projects' work trees.
pub const GIT_AT_ONCE: usize = 8;
/// How long connecting to one monitor's socket may take.
const MONITOR_CONNECT: Duration = Duration::from_millis(500);

/// Why the facts cannot be given.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error(
        "another doctor's facts were being gathered for more than {} s: try again in a moment",
        DOCTOR_FACTS_WITHIN.as_secs()
    )]
    Busy,
    #[error(
        "{what} were not all looked at within {} s (a hung file system?): see what blocks (`ps -eo pid,stat,wchan,cmd | grep aifactoryd`), then try again",
        DOCTOR_FACTS_WITHIN.as_secs()
    )]
    Unfinished { what: &'static str },
    #[error("cannot list the projects: {0}")]
    Projects(#[source] ProjectError),
    #[error("cannot list the tasks: {0}")]
    Tasks(#[source] SupervisorError),
    #[error("cannot list the sessions: {0}")]
    Sessions(#[source] SessionError),
}

/// One gathering at a time.
pub struct Doctor {
    turn: Semaphore,
}

impl Doctor {
    pub fn new() -> Doctor {
        Doctor {
            turn: Semaphore::new(1),
        }
    }
}

impl Default for Doctor {
    fn default() -> Self {
        Self::new()
    }
}

/// Gathers the facts within [`DOCTOR_FACTS_WITHIN`] of the call.
pub async fn gather(daemon: &DaemonState) -> Result<DoctorFacts, DoctorError> {
    let started = Instant::now();
    let deadline = started + DOCTOR_FACTS_WITHIN;
    let _turn = match tokio::time::timeout_at(deadline, daemon.doctor.turn.acquire()).await {
        Ok(Ok(turn)) => turn,
        // The semaphore is never closed; either way there is no turn to be had.
        Ok(Err(_)) | Err(_) => return Err(DoctorError::Busy),
    };
    let projects = crate::projects::list(&daemon.store)
        .await
        .map_err(DoctorError::Projects)?;
    let tasks = daemon.tasks.list(None).await.map_err(DoctorError::Tasks)?;
    let sessions = daemon
        .sessions
        .list()
        .await
        .map_err(DoctorError::Sessions)?;
    let root = daemon.sessions.panes().path.clone();

    let (trees, paths, monitors) = tokio::join!(
        work_trees(projects, deadline),
        blocking(deadline, move || (task_paths(&tasks), processes(&sessions))),
        answering_monitors(root, deadline),
    );
    let (tasks, sessions) = paths.ok_or(DoctorError::Unfinished {
        what: "the working tasks' spec directories and the running sessions' processes",
    })?;
    let monitors = monitors.ok_or(DoctorError::Unfinished {
        what: "the pane directories under the panes root",
    })?;
    let facts = DoctorFacts {
        uid: nix::unistd::geteuid().as_raw(),
        projects: trees,
        tasks,
        sessions,
        answering_monitors: monitors,
    };
    let timed_out = facts
        .projects
        .iter()
        .filter(|p| matches!(p.state, WorkTreeState::TimedOut { .. }))
        .count();
    if timed_out > 0 {
        tracing::warn!(
            projects = facts.projects.len(),
            timed_out,
            bound_s = DOCTOR_FACTS_WITHIN.as_secs(),
            "the doctor's facts: some projects' work trees were not checked in time"
        );
    }
    tracing::info!(
        projects = facts.projects.len(),
        tasks = facts.tasks.len(),
        sessions = facts.sessions.len(),
        monitors = facts.answering_monitors.len(),
        duration_ms = started.elapsed().as_millis() as u64,
        "gathered the doctor's facts"
    );
    Ok(facts)
}

/// `work` on the blocking pool, or `None` when it has not finished by `deadline` (it then
/// finishes unobserved: a blocked file system call cannot be cancelled).
async fn blocking<T: Send + 'static>(
    deadline: Instant,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    match tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(done)) => Some(done),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "a doctor's file system check broke down");
            None
        }
        Err(_) => None,
    }
}

/// Each project's work tree, [`GIT_AT_ONCE`] at a time, in the projects' order.
async fn work_trees(projects: Vec<ProjectInfo>, deadline: Instant) -> Vec<ProjectTree> {
    futures::stream::iter(projects)
        .map(|p| async move {
            let state = work_tree(p.path.clone(), deadline).await;
            ProjectTree {
                id: p.id,
                name: p.name,
                path: p.path,
                state,
            }
        })
        .buffered(GIT_AT_ONCE)
        .collect()
        .await
}

async fn work_tree(path: PathBuf, deadline: Instant) -> WorkTreeState {
    let timed_out = || WorkTreeState::TimedOut {
        after_ms: DOCTOR_FACTS_WITHIN.as_millis() as u64,
    };
    if Instant::now() >= deadline {
        return timed_out();
    }
    let dir = path.clone();
    match blocking(deadline, move || dir_state(&dir)).await {
        Some(PathState::Dir) => {}
        Some(other) => return WorkTreeState::Path(other),
        None => return timed_out(),
    }
    // git is killed if the deadline passes first (the future is dropped).
    match tokio::time::timeout_at(deadline, git::probe_work_tree(&path)).await {
        Ok(Ok(())) => WorkTreeState::WorkTree,
        Ok(Err(GitError::Spawn(e))) => WorkTreeState::GitUnavailable {
            error: e.to_string(),
        },
        Ok(Err(e)) => WorkTreeState::NotAWorkTree {
            error: e.to_string(),
        },
        Err(_) => timed_out(),
    }
}

fn dir_state(path: &Path) -> PathState {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => PathState::Dir,
        Ok(_) => PathState::NotADirectory,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => PathState::Missing,
        Err(e) => PathState::CannotInspect {
            error: e.to_string(),
        },
    }
}

/// The spec directory and progress file of each working task (the ones whose progress is
/// watched).
fn task_paths(tasks: &[TaskInfo]) -> Vec<TaskPaths> {
    tasks
        .iter()
        .filter(|t| t.phase.is_active())
        .map(|t| TaskPaths {
            task_id: t.id.clone(),
            spec_id: t.spec_id.clone(),
            spec_dir: t.spec_dir.clone(),
            spec_dir_state: dir_state(&t.spec_dir),
            progress_file: t.progress_file.clone(),
            progress_file_state: match std::fs::File::open(&t.progress_file) {
                Ok(_) => FileState::Readable,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileState::Absent,
                Err(e) => FileState::Unreadable {
                    error: e.to_string(),
                },
            },
        })
        .collect()
}

/// Whether the process of each session recorded as running runs.
fn processes(sessions: &[SessionInfo]) -> Vec<SessionProcess> {
    sessions
        .iter()
        .filter(|s| s.state == SessionState::Running)
        .filter_map(|s| {
            s.pid.map(|pid| SessionProcess {
                session_id: s.id.clone(),
                pid,
                alive: crate::proctree::is_alive(pid),
            })
        })
        .collect()
}

/// The sessions whose monitor answers on its socket under `root`, each asked within
/// [`MONITOR_CONNECT`] and all by `deadline` (`None`: the root was not listed by then). A root
/// that cannot be listed has no monitor the daemon could reach.
async fn answering_monitors(root: PathBuf, deadline: Instant) -> Option<Vec<String>> {
    let listed = blocking(deadline, move || {
        std::fs::read_dir(&root).map(|dir| {
            dir.flatten()
                .filter_map(|e| {
                    let id = e.file_name().to_str()?.to_string();
                    Some((id, e.path().join(aifactory_common::pane::MONITOR_SOCKET)))
                })
                .collect::<Vec<_>>()
        })
    })
    .await;
    let entries = match listed {
        Some(Ok(entries)) => entries,
        Some(Err(e)) => {
            tracing::debug!(error = %e, "the doctor's facts: cannot list the panes root");
            return Some(Vec::new());
        }
        None => return None,
    };
    let asked = futures::future::join_all(entries.into_iter().map(|(id, socket)| async move {
        let connect = tokio::net::UnixStream::connect(socket);
        matches!(
            tokio::time::timeout_at(deadline.min(Instant::now() + MONITOR_CONNECT), connect).await,
            Ok(Ok(_))
        )
        .then_some(id)
    }))
    .await;
    Some(asked.into_iter().flatten().collect())
}
