//! The session registry: every terminal session the daemon started, in the store, and the
//! live view of those whose program runs.
//!
//! A session's program runs under its own pane monitor (`aifactory-pane`, the
//! [`aifactory_pane`] crate), which holds the PTY and writes the output, and which outlives the
//! daemon. The registry starts monitors ([`create`]), talks to them over their sockets
//! ([`control`]), notices when they end, and at startup re-adopts every one still recorded as
//! running, checking pid and process start time so a reused pid is never mistaken for it
//! ([`ending`]). A session that cannot be re-adopted becomes `lost` with the reason, and
//! everything left of it is stopped ([`stop`]), found through the mark its processes carry
//! ([`marker`]): nothing runs untracked. Its rows are read and written through [`records`].
//!
//! A session whose output cannot be written (a full disk) is followed and reported by
//! [`output`].
//!
//! Every failure is a [`SessionError`]; `handlers::sessions` turns it into the wire's
//! `ErrorReply`.

mod control;
mod create;
mod ending;
mod marker;
mod output;
mod records;
mod stop;

pub use create::Confinement;
pub use marker::marked_value;
pub use stop::KillReport;

use aifactory_common::echo::echo;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aifactory_common::pane::OutputBlocked;
use aifactory_common::protocol::{ProcessEntry, SessionInfo, SessionState};
use aifactory_common::sync::lock;
use aifactory_pane::client::{MonitorClient, MonitorError};
use aifactory_pane::launch::{LaunchFailure, Launcher};
use tokio::sync::watch;

use crate::events::EventBus;
use crate::panes::{PanesError, PanesRoot};
use crate::store::{Store, StoreError};

const MAX_NAME_LEN: usize = 100;

/// Why a session request failed. Each message names the problem and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no session with id or name `{}`: see `aifactoryctl sessions list`", echo(.0))]
    NotFound(String),
    #[error("no command given: pass the program after `--`")]
    NoCommand,
    #[error(
        "session name `{}` is not usable: give 1 to {MAX_NAME_LEN} printable characters that do not look like a session id",
        echo(.0)
    )]
    BadName(String),
    #[error(
        "{} is not an existing directory: give the session's working directory with --cwd",
        echo(.0)
    )]
    BadCwd(PathBuf),
    #[error(
        "{} cannot be resolved: {reason}: give an existing directory with --cwd",
        echo(path)
    )]
    CwdUnresolvable { path: PathBuf, reason: String },
    #[error(
        "`..` in {} comes after a symbolic link, so the kernel would enter {}, not {}: give the directory you mean without `..`",
        echo(path),
        echo(entered),
        echo(lexical)
    )]
    CwdThroughSymlink {
        path: PathBuf,
        lexical: PathBuf,
        entered: PathBuf,
    },
    #[error("`{}` is not an environment variable name", echo(.0))]
    BadEnvName(String),
    #[error("the value of {} contains a NUL byte, which no environment variable can hold", echo(.0))]
    NulInEnv(String),
    #[error("the command argument {:?} contains a NUL byte, which no program argument can hold", echo(.0))]
    NulInArg(String),
    #[error(
        "a running session is already named `{}` ({id}): kill it first (`aifactoryctl sessions kill {id}`) or choose another name",
        echo(name)
    )]
    NameTaken { name: String, id: String },
    #[error(transparent)]
    PaneDir(#[from] PanesError),
    /// The monitor or the program did not start.
    #[error(transparent)]
    NotStarted(#[from] LaunchFailure),
    #[error("session {id} is {}, not running", .state.as_str())]
    NotRunning { id: String, state: SessionState },
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    #[error(
        "session {id} did not take its input: {message}{}; see `aifactoryctl sessions tail {id}`",
        delivered_before(*.sent)
    )]
    InputRefused {
        id: String,
        message: String,
        sent: usize,
    },
    #[error(
        "session {id} did not take its input within {seconds} s: its program is not reading the terminal (busy or stopped), or its monitor is wedged{}; see `aifactoryctl sessions tail {id}`",
        delivered_before(*.sent)
    )]
    InputNoAnswer {
        id: String,
        seconds: u64,
        sent: usize,
    },
    #[error("{cols}x{rows} is not a terminal size")]
    BadSize { cols: u16, rows: u16 },
    #[error(
        "session {id} is already {}: nothing to kill (use --ignore-missing to accept that)",
        .state.as_str()
    )]
    AlreadyEnded { id: String, state: SessionState },
    #[error(
        "session {id} survived SIGKILL for {seconds} s: its program may be stuck in the kernel (state D); check `ps -o pid,stat,wchan -g {pid}`"
    )]
    SurvivedKill { id: String, seconds: u64, pid: u32 },
    #[error("session {id} is still running: kill it first (`aifactoryctl sessions kill {id}`)")]
    StillRunning { id: String },
    #[error(
        "session {id} ended, but {} of its processes still run: {}; stop them with `aifactoryctl sessions kill {id}`, then remove it",
        .processes.len(),
        process_list(.processes)
    )]
    StillHasProcesses {
        id: String,
        processes: Vec<ProcessEntry>,
    },
}

/// `pid (command)`, comma-separated.
fn process_list(processes: &[ProcessEntry]) -> String {
    processes
        .iter()
        .map(|p| format!("{} ({})", p.pid, p.command))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The part of an input error that says how much got through before the failing piece.
fn delivered_before(sent: usize) -> String {
    if sent > 0 {
        format!(" ({sent} bytes before that piece were delivered)")
    } else {
        String::new()
    }
}

pub struct Sessions {
    store: Store,
    events: Arc<EventBus>,
    panes: PanesRoot,
    launcher: Launcher,
    pane_log_max: u64,
    /// One state channel per session this daemon lifetime watches: waiters and kills wake on it.
    watched: Mutex<HashMap<String, watch::Sender<SessionState>>>,
    /// Sessions whose output cannot be written now, as their monitors report it (a restarted
    /// daemon learns them again from the monitors).
    output_blocked: Mutex<HashMap<String, OutputBlocked>>,
}

impl Sessions {
    pub fn new(
        store: Store,
        events: Arc<EventBus>,
        panes: PanesRoot,
        launcher: Launcher,
        pane_log_max: u64,
    ) -> Sessions {
        Sessions {
            store,
            events,
            panes,
            launcher,
            pane_log_max,
            watched: Mutex::new(HashMap::new()),
            output_blocked: Mutex::new(HashMap::new()),
        }
    }

    pub fn panes(&self) -> &PanesRoot {
        &self.panes
    }

    fn state_channel(&self, id: &str) -> watch::Receiver<SessionState> {
        lock(&self.watched)
            .entry(id.to_string())
            .or_insert_with(|| watch::channel(SessionState::Running).0)
            .subscribe()
    }

    fn publish_state(&self, id: &str, state: SessionState) {
        if let Some(tx) = lock(&self.watched).get(id) {
            tx.send_replace(state);
        }
    }

    pub async fn running_count(&self) -> u32 {
        self.store.read(records::running_count).await.unwrap_or(0)
    }

    pub async fn show(&self, key: String) -> Result<SessionInfo, SessionError> {
        let lookup = key.clone();
        self.store
            .read(move |conn| records::by_key(conn, &lookup))
            .await?
            .map(|s| self.with_output_health(s))
            .ok_or(SessionError::NotFound(key))
    }

    pub async fn list(&self) -> Result<Vec<SessionInfo>, SessionError> {
        let list = self.store.read(records::all).await?;
        Ok(list
            .into_iter()
            .map(|s| self.with_output_health(s))
            .collect())
    }

    /// The running session `key`, or why it cannot take a request.
    async fn running(&self, key: String) -> Result<SessionInfo, SessionError> {
        let session = self.show(key).await?;
        if session.state != SessionState::Running {
            return Err(SessionError::NotRunning {
                id: session.id,
                state: session.state,
            });
        }
        Ok(session)
    }

    async fn monitor(&self, session: &SessionInfo) -> Result<MonitorClient, SessionError> {
        Ok(MonitorClient::connect(&session.pane_dir).await?)
    }
}
