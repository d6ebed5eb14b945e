//! The session registry: every terminal session the daemon started, in the store, and the
//! live view of those whose program runs.
//!
//! A session's program runs under its own pane monitor (`aifactory-pane`), which
//! holds the PTY and writes the output, and which outlives the daemon. The registry starts
//! monitors, talks to them over their sockets, notices when they end, and at startup re-adopts
//! every one still recorded as running, checking pid and process start time so a reused pid is
//! never mistaken for it. A session that cannot be re-adopted becomes `lost` with the reason,
//! and anything left in its process group is killed: nothing runs untracked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aifactory_common::pane::{EXIT_FILE, ExitInfo, MonitorInfo};
use aifactory_common::protocol::{
    ErrorCode, ErrorReply, EventKind, SessionInfo, SessionSpec, SessionState,
};
use rusqlite::{OptionalExtension, Row, params};
use tokio::sync::watch;

use crate::events::EventBus;
use crate::monitor::client::{MonitorClient, MonitorError};
use crate::monitor::launch::Launcher;
use crate::monitor::{self, MonitorArgs};
use crate::panes::{self, PanesRoot};
use crate::store::Store;

pub const DEFAULT_COLS: u16 = 120;
pub const DEFAULT_ROWS: u16 = 40;
/// How long a kill waits for the end after SIGKILL before it reports failure.
const AFTER_SIGKILL_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_NAME_LEN: usize = 100;
/// How long the monitor may take beyond its own input deadline
/// ([`monitor::INPUT_TIMEOUT`]) to answer.
const INPUT_ANSWER_MARGIN: Duration = Duration::from_secs(5);
const COLUMNS: &str = "id, name, command, cwd, pane_dir, cols, rows, state, pid, monitor_pid, \
     exit_code, exit_signal, ended_at, lost_reason, created_at";

pub struct Sessions {
    store: Store,
    events: Arc<EventBus>,
    panes: PanesRoot,
    launcher: Launcher,
    pane_log_max: u64,
    /// One state channel per session this daemon lifetime watches: waiters and kills wake on it.
    watched: Mutex<HashMap<String, watch::Sender<SessionState>>>,
}

fn invalid(message: String) -> ErrorReply {
    ErrorReply::new(ErrorCode::Invalid, message)
}

fn not_found(key: &str) -> ErrorReply {
    ErrorReply::new(
        ErrorCode::NotFound,
        format!("no session with id or name `{key}`: see `aifactoryctl sessions list`"),
    )
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<SessionInfo> {
    let command: String = row.get(2)?;
    let state: String = row.get(7)?;
    let code: Option<i32> = row.get(10)?;
    let signal: Option<i32> = row.get(11)?;
    let ended_at: Option<String> = row.get(12)?;
    Ok(SessionInfo {
        id: row.get(0)?,
        name: row.get(1)?,
        command: serde_json::from_str(&command).unwrap_or_default(),
        cwd: PathBuf::from(row.get::<_, String>(3)?),
        pane_dir: PathBuf::from(row.get::<_, String>(4)?),
        cols: row.get(5)?,
        rows: row.get(6)?,
        state: SessionState::parse(&state).unwrap_or(SessionState::Lost),
        pid: row.get(8)?,
        monitor_pid: row.get(9)?,
        // A lost session has an end time but no exit status: nobody saw how it ended.
        exit: ended_at
            .filter(|_| state == "exited")
            .map(|ended_at| ExitInfo {
                code,
                signal,
                ended_at,
            }),
        lost_reason: row.get(13)?,
        created_at: row.get(14)?,
    })
}

/// By id, else the newest session of that name (a running one first).
fn by_key(conn: &rusqlite::Connection, key: &str) -> rusqlite::Result<Option<SessionInfo>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM sessions WHERE id = ?1 OR name = ?1
         ORDER BY id = ?1 DESC, state IN ('starting', 'running') DESC, created_at DESC, rowid DESC
         LIMIT 1"
    ))?
    .query_row(params![key], from_row)
    .optional()
}

fn check_name(name: &str) -> Result<(), ErrorReply> {
    let id_shaped = name.len() == 10
        && name.starts_with("s-")
        && name[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if name.trim().is_empty()
        || name.len() > MAX_NAME_LEN
        || name.chars().any(char::is_control)
        || id_shaped
    {
        return Err(invalid(format!(
            "session name `{name}` is not usable: give 1 to {MAX_NAME_LEN} printable characters that do not look like a session id"
        )));
    }
    Ok(())
}

/// Start time of a process in clock ticks since boot (/proc/<pid>/stat field 22).
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` still is the process that started at `start_time`.
fn is_same_process(pid: Option<u32>, start_time: Option<u64>) -> bool {
    match (pid, start_time) {
        (Some(pid), Some(start)) => process_start_time(pid) == Some(start),
        _ => false,
    }
}

fn read_exit(pane_dir: &Path) -> Option<ExitInfo> {
    let text = std::fs::read_to_string(pane_dir.join(EXIT_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The environment every session starts from; the session's own variables are added on top.
fn base_env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "PATH" | "HOME" | "USER" | "LOGNAME" | "SHELL" | "LANG" | "TZ"
            ) || k.starts_with("LC_")
        })
        .collect();
    env.push(("TERM".into(), "xterm-256color".into()));
    env
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
        }
    }

    pub fn panes(&self) -> &PanesRoot {
        &self.panes
    }

    fn state_channel(&self, id: &str) -> watch::Receiver<SessionState> {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        watched
            .entry(id.to_string())
            .or_insert_with(|| watch::channel(SessionState::Running).0)
            .subscribe()
    }

    fn publish_state(&self, id: &str, state: SessionState) {
        let watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = watched.get(id) {
            tx.send_replace(state);
        }
    }

    pub async fn running_count(&self) -> u32 {
        self.store
            .read(|conn| {
                conn.query_row(
                    "SELECT count(*) FROM sessions WHERE state = 'running'",
                    [],
                    |r| r.get(0),
                )
            })
            .await
            .unwrap_or(0)
    }

    pub async fn show(&self, key: String) -> Result<SessionInfo, ErrorReply> {
        let lookup = key.clone();
        self.store
            .read(move |conn| by_key(conn, &lookup))
            .await?
            .ok_or_else(|| not_found(&key))
    }

    pub async fn list(&self) -> Result<Vec<SessionInfo>, ErrorReply> {
        Ok(self
            .store
            .read(|conn| {
                conn.prepare(&format!(
                    "SELECT {COLUMNS} FROM sessions ORDER BY created_at, rowid"
                ))?
                .query_map([], from_row)?
                .collect()
            })
            .await?)
    }

    /// Starts a program in a new session.
    pub async fn create(self: &Arc<Self>, spec: SessionSpec) -> Result<SessionInfo, ErrorReply> {
        if spec.command.is_empty() || spec.command[0].is_empty() {
            return Err(invalid(
                "no command given: pass the program after `--`".into(),
            ));
        }
        if let Some(name) = &spec.name {
            check_name(name)?;
        }
        if !spec.cwd.is_absolute() || !spec.cwd.is_dir() {
            return Err(invalid(format!(
                "{} is not an existing directory: give the session's working directory with --cwd",
                spec.cwd.display()
            )));
        }
        for (key, value) in &spec.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(invalid(format!(
                    "`{key}` is not an environment variable name"
                )));
            }
            if value.contains('\0') {
                return Err(invalid(format!(
                    "the value of {key} contains a NUL byte, which no environment variable can hold"
                )));
            }
        }
        if let Some(arg) = spec.command.iter().find(|a| a.contains('\0')) {
            return Err(invalid(format!(
                "the command argument {arg:?} contains a NUL byte, which no program argument can hold"
            )));
        }
        let cols = spec.cols.unwrap_or(DEFAULT_COLS).max(1);
        let rows = spec.rows.unwrap_or(DEFAULT_ROWS).max(1);
        let command_json = serde_json::to_string(&spec.command).unwrap_or_default();
        let cwd = spec.cwd.to_string_lossy().into_owned();
        let name = spec.name.clone();
        let root = self.panes.path.to_string_lossy().into_owned();
        let inserted = self
            .store
            .write_process_state(move |tx| {
                // Statements on a `sessions new`'s path are prepared once: parsing them again
                // for every session was a measurable part of its cost.
                if let Some(name) = &name {
                    let running: Option<String> = tx
                        .prepare_cached(
                            "SELECT id FROM sessions WHERE name = ?1 AND state IN ('starting', 'running')",
                        )?
                        .query_row(params![name], |r| r.get(0))
                        .optional()?;
                    if let Some(id) = running {
                        return Ok(Err(ErrorReply::new(
                            ErrorCode::Conflict,
                            format!(
                                "a running session is already named `{name}` ({id}): kill it first (`aifactoryctl sessions kill {id}`) or choose another name"
                            ),
                        )));
                    }
                }
                let id: String = tx
                    .prepare_cached(
                        "INSERT INTO sessions (id, name, command, cwd, pane_dir, cols, rows, state, created_at)
                         SELECT id, ?1, ?2, ?3, ?6 || '/' || id, ?4, ?5, 'starting',
                                strftime('%Y-%m-%dT%H:%M:%fZ','now')
                         FROM (SELECT 's-' || lower(hex(randomblob(4))) AS id)
                         RETURNING id",
                    )?
                    .query_row(params![name, command_json, cwd, cols, rows, root], |r| {
                        r.get(0)
                    })?;
                Ok(Ok(id))
            })
            .await??;
        match self.spawn_monitor(&inserted, &spec, cols, rows).await {
            Ok(info) => {
                let session = self.record_running(&inserted, &info).await?;
                let _ = self.state_channel(&inserted);
                self.clone().watch(inserted.clone());
                tracing::info!(session_id = %inserted, pid = info.pid, command = ?spec.command, "session started");
                self.events
                    .publish(EventKind::SessionCreated {
                        session_id: inserted.clone(),
                        name: spec.name.clone(),
                    })
                    .await;
                session.ok_or_else(|| not_found(&inserted))
            }
            Err(reason) => {
                let id = inserted.clone();
                let _ = self
                    .store
                    .write_process_state(move |tx| {
                        tx.execute("DELETE FROM sessions WHERE id = ?1", params![id])
                    })
                    .await;
                let _ = std::fs::remove_dir_all(self.panes.path.join(&inserted));
                tracing::warn!(session_id = %inserted, "session did not start: {reason}");
                Err(ErrorReply::new(ErrorCode::Invalid, reason))
            }
        }
    }

    /// Creates the pane directory and starts the monitor; returns what it reported once the
    /// program runs.
    async fn spawn_monitor(
        &self,
        id: &str,
        spec: &SessionSpec,
        cols: u16,
        rows: u16,
    ) -> Result<MonitorInfo, String> {
        let dir = panes::create_session_dir(&self.panes.path, id).map_err(|e| e.to_string())?;
        let args = MonitorArgs {
            dir,
            session: id.to_string(),
            name: spec.name.clone(),
            cwd: spec.cwd.clone(),
            cols,
            rows,
            log_max: self.pane_log_max,
            command: spec.command.clone(),
        };
        self.launcher
            .start(
                &args,
                base_env().into_iter().chain(spec.env.iter().cloned()),
            )
            .await
    }

    /// Records that the session's program runs; returns the session as recorded (`None` if its
    /// row is gone).
    async fn record_running(
        &self,
        id: &str,
        info: &MonitorInfo,
    ) -> Result<Option<SessionInfo>, ErrorReply> {
        let id = id.to_string();
        let info = info.clone();
        Ok(self
            .store
            .write_process_state(move |tx| {
                tx.prepare_cached(&format!(
                    "UPDATE sessions SET state = 'running', pid = ?2, start_time = ?3,
                        monitor_pid = ?4, monitor_start_time = ?5, cols = ?6, rows = ?7
                     WHERE id = ?1
                     RETURNING {COLUMNS}"
                ))?
                .query_row(
                    params![
                        id,
                        info.pid,
                        info.start_time as i64,
                        info.monitor_pid,
                        info.monitor_start_time as i64,
                        info.cols,
                        info.rows
                    ],
                    from_row,
                )
                .optional()
            })
            .await?)
    }

    /// Records how a session ended (from its `exit.json`) or that it is lost.
    async fn finish(&self, id: &str, outcome: Result<ExitInfo, String>) {
        let key = id.to_string();
        let (state, stored) = match &outcome {
            Ok(exit) => (SessionState::Exited, Ok(exit.clone())),
            Err(reason) => (SessionState::Lost, Err(reason.clone())),
        };
        let written = self
            .store
            .write_process_state(move |tx| match stored {
                Ok(exit) => tx.execute(
                    "UPDATE sessions SET state = 'exited', exit_code = ?2, exit_signal = ?3, ended_at = ?4
                     WHERE id = ?1",
                    params![key, exit.code, exit.signal, exit.ended_at],
                ),
                Err(reason) => tx.execute(
                    "UPDATE sessions SET state = 'lost', lost_reason = ?2,
                        ended_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')
                     WHERE id = ?1",
                    params![key, reason],
                ),
            })
            .await;
        if let Err(e) = written {
            tracing::error!(session_id = %id, "cannot record the session's end: {e}");
        }
        match &outcome {
            Ok(exit) => tracing::info!(session_id = %id, "session {}", exit.describe()),
            Err(reason) => tracing::warn!(session_id = %id, "session lost: {reason}"),
        }
        self.publish_state(id, state);
        let (exit, lost_reason) = match outcome {
            Ok(exit) => (Some(exit), None),
            Err(reason) => (None, Some(reason)),
        };
        self.events
            .publish(EventKind::SessionEnded {
                session_id: id.to_string(),
                exit,
                lost_reason,
            })
            .await;
    }

    /// Waits on a running session's monitor until it ends, then records the outcome.
    fn watch(self: Arc<Self>, id: String) {
        tokio::spawn(async move {
            let pane_dir = self.panes.path.join(&id);
            let ended = match MonitorClient::connect(&pane_dir).await {
                Ok(mut client) => client.wait_exit().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            // The monitor may have ended between our connect and its answer: its record counts.
            let outcome = match ended {
                Ok(exit) => Ok(exit),
                Err(reason) => read_exit(&pane_dir).ok_or(reason),
            };
            let outcome = outcome.map_err(|reason| {
                format!("its pane monitor ended without recording an exit ({reason})")
            });
            if outcome.is_err() {
                self.kill_leftovers(&id).await;
            }
            self.finish(&id, outcome).await;
        });
    }

    /// Kills what is left of a lost session's process group, if it is still that group.
    async fn kill_leftovers(&self, id: &str) {
        let key = id.to_string();
        let row = self
            .store
            .read(move |conn| {
                conn.query_row(
                    "SELECT pid, start_time FROM sessions WHERE id = ?1",
                    params![key],
                    |r| Ok((r.get::<_, Option<u32>>(0)?, r.get::<_, Option<i64>>(1)?)),
                )
                .optional()
            })
            .await;
        if let Ok(Some((pid, start))) = row
            && is_same_process(pid, start.map(|s| s as u64))
            && let Some(pid) = pid
        {
            let group = nix::unistd::Pid::from_raw(-(pid as i32));
            let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
            tracing::warn!(session_id = %id, pid, "killed the process group of a session whose monitor is gone");
        }
    }

    /// At startup: re-adopt every session recorded as running, or say why it cannot be.
    pub async fn adopt_all(self: &Arc<Self>) -> Result<(), ErrorReply> {
        type Candidate = (
            String,
            Option<u32>,
            Option<i64>,
            Option<u32>,
            Option<i64>,
            String,
        );
        let rows: Vec<Candidate> = self
            .store
            .read(|conn| {
                conn.prepare(
                    "SELECT id, pid, start_time, monitor_pid, monitor_start_time, pane_dir
                     FROM sessions WHERE state IN ('starting', 'running')",
                )?
                .query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?
                .collect()
            })
            .await?;
        for (id, pid, start, monitor_pid, monitor_start, pane_dir) in rows {
            let pane_dir = PathBuf::from(pane_dir);
            let _ = self.state_channel(&id);
            let Some(monitor_pid) = monitor_pid else {
                // The previous daemon died between starting the monitor and recording it: a
                // monitor answering in this session's directory is that one.
                self.adopt_unrecorded(&id, &pane_dir).await;
                continue;
            };
            let info = match MonitorClient::connect(&pane_dir).await {
                Ok(mut client) => client.info().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match info {
                Ok(info)
                    if info.monitor_pid == monitor_pid
                        && Some(info.monitor_start_time as i64) == monitor_start
                        && Some(info.pid) == pid
                        && Some(info.start_time as i64) == start =>
                {
                    match info.exit {
                        // It ended while no daemon watched; its monitor only lingers.
                        Some(exit) => self.finish(&id, Ok(exit)).await,
                        None => {
                            tracing::info!(session_id = %id, pid = info.pid, "session re-adopted");
                            self.clone().watch(id);
                        }
                    }
                }
                Ok(info) => {
                    self.finish(
                        &id,
                        Err(format!(
                            "the monitor answering at {} (pid {}) is not the one recorded (pid {monitor_pid})",
                            pane_dir.display(),
                            info.monitor_pid
                        )),
                    )
                    .await;
                }
                Err(reason) => match read_exit(&pane_dir) {
                    Some(exit) => self.finish(&id, Ok(exit)).await,
                    None => {
                        self.kill_leftovers(&id).await;
                        self.finish(
                            &id,
                            Err(format!(
                                "its pane monitor is gone and left no exit record ({reason})"
                            )),
                        )
                        .await;
                    }
                },
            }
        }
        Ok(())
    }

    /// Adopts the monitor of a session recorded as `starting`, or marks the session lost.
    async fn adopt_unrecorded(self: &Arc<Self>, id: &str, pane_dir: &Path) {
        let info = match MonitorClient::connect(pane_dir).await {
            Ok(mut client) => client.info().await.ok(),
            Err(_) => None,
        };
        match info {
            Some(info) if info.session_id == id => {
                if let Err(e) = self.record_running(id, &info).await {
                    tracing::error!(session_id = %id, "cannot record an adopted session: {}", e.message);
                }
                match info.exit {
                    Some(exit) => self.finish(id, Ok(exit)).await,
                    None => {
                        tracing::info!(session_id = %id, pid = info.pid, "session adopted after an interrupted start");
                        self.clone().watch(id.to_string());
                    }
                }
            }
            _ => {
                self.finish(
                    id,
                    Err(
                        "the daemon stopped while the session was starting, before its program ran"
                            .into(),
                    ),
                )
                .await;
            }
        }
    }

    /// The running session `key`, or why it cannot take a request.
    async fn running(&self, key: String) -> Result<SessionInfo, ErrorReply> {
        let session = self.show(key).await?;
        if session.state != SessionState::Running {
            return Err(ErrorReply::new(
                ErrorCode::Invalid,
                format!(
                    "session {} is {}, not running",
                    session.id,
                    session.state.as_str()
                ),
            ));
        }
        Ok(session)
    }

    async fn monitor(&self, session: &SessionInfo) -> Result<MonitorClient, ErrorReply> {
        MonitorClient::connect(&session.pane_dir)
            .await
            .map_err(|e| ErrorReply::new(ErrorCode::Unavailable, e.to_string()))
    }

    pub async fn input(&self, key: String, data: Vec<u8>) -> Result<(), ErrorReply> {
        let session = self.running(key).await?;
        let mut monitor = self.monitor(&session).await?;
        let answer_within = monitor::INPUT_TIMEOUT + INPUT_ANSWER_MARGIN;
        // Giving up drops the connection, which tells the monitor to write nothing more.
        let (sent, e) = match monitor.input(&data, answer_within).await {
            Ok(()) => return Ok(()),
            Err(failed) => failed,
        };
        let id = &session.id;
        let earlier = if sent > 0 {
            format!(" ({sent} bytes before that piece were delivered)")
        } else {
            String::new()
        };
        let message = match e {
            MonitorError::Refused { message, .. } => format!(
                "session {id} did not take its input: {message}{earlier}; see `aifactoryctl sessions tail {id}`"
            ),
            MonitorError::NoAnswer { .. } => format!(
                "session {id} did not take its input within {} s: its program is not reading the terminal (busy or stopped), or its monitor is wedged{earlier}; see `aifactoryctl sessions tail {id}`",
                answer_within.as_secs()
            ),
            other => other.to_string(),
        };
        Err(ErrorReply::new(ErrorCode::Unavailable, message))
    }

    pub async fn resize(&self, key: String, cols: u16, rows: u16) -> Result<(), ErrorReply> {
        if cols == 0 || rows == 0 {
            return Err(invalid(format!("{cols}x{rows} is not a terminal size")));
        }
        let session = self.running(key).await?;
        self.monitor(&session)
            .await?
            .resize(cols, rows)
            .await
            .map_err(|e| ErrorReply::new(ErrorCode::Unavailable, e.to_string()))?;
        let id = session.id.clone();
        self.store
            .write_process_state(move |tx| {
                tx.execute(
                    "UPDATE sessions SET cols = ?2, rows = ?3 WHERE id = ?1",
                    params![id, cols, rows],
                )
            })
            .await?;
        Ok(())
    }

    /// Waits for the session to end, returning it as it ended.
    pub async fn wait(&self, key: String) -> Result<SessionInfo, ErrorReply> {
        let session = self.show(key).await?;
        if matches!(
            session.state,
            SessionState::Running | SessionState::Starting
        ) {
            let mut state = self.state_channel(&session.id);
            let _ = state
                .wait_for(|s| matches!(s, SessionState::Exited | SessionState::Lost))
                .await;
        }
        self.show(session.id).await
    }

    /// SIGHUP and SIGTERM to the group, SIGKILL after `grace`; returns the ended session.
    pub async fn kill(
        &self,
        key: String,
        grace: Duration,
        ignore_missing: bool,
    ) -> Result<Option<SessionInfo>, ErrorReply> {
        let session = match self.show(key.clone()).await {
            Ok(session) => session,
            Err(e) if ignore_missing && e.code == ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if !matches!(
            session.state,
            SessionState::Running | SessionState::Starting
        ) {
            if ignore_missing {
                return Ok(Some(session));
            }
            return Err(ErrorReply::new(
                ErrorCode::NotFound,
                format!(
                    "session {} is already {}: nothing to kill (use --ignore-missing to accept that)",
                    session.id,
                    session.state.as_str()
                ),
            ));
        }
        let mut state = self.state_channel(&session.id);
        let ended = |s: &SessionState| matches!(s, SessionState::Exited | SessionState::Lost);
        let mut monitor = self.monitor(&session).await?;
        for signal in [libc::SIGHUP, libc::SIGTERM] {
            monitor
                .signal(signal)
                .await
                .map_err(|e| ErrorReply::new(ErrorCode::Unavailable, e.to_string()))?;
        }
        if tokio::time::timeout(grace, state.wait_for(ended))
            .await
            .is_err()
        {
            tracing::info!(session_id = %session.id, "still running after the grace period: SIGKILL");
            if let Ok(mut monitor) = self.monitor(&session).await {
                let _ = monitor.signal(libc::SIGKILL).await;
            }
            if tokio::time::timeout(AFTER_SIGKILL_TIMEOUT, state.wait_for(ended))
                .await
                .is_err()
            {
                return Err(ErrorReply::new(
                    ErrorCode::Internal,
                    format!(
                        "session {} survived SIGKILL for {} s: its program may be stuck in the kernel (state D); check `ps -o pid,stat,wchan -g {}`",
                        session.id,
                        AFTER_SIGKILL_TIMEOUT.as_secs(),
                        session.pid.unwrap_or(0)
                    ),
                ));
            }
        }
        self.show(session.id).await.map(Some)
    }

    /// Forgets an ended session and deletes its pane directory.
    pub async fn remove(&self, key: String) -> Result<SessionInfo, ErrorReply> {
        let session = self.show(key).await?;
        if matches!(
            session.state,
            SessionState::Running | SessionState::Starting
        ) {
            return Err(ErrorReply::new(
                ErrorCode::Conflict,
                format!(
                    "session {} is still running: kill it first (`aifactoryctl sessions kill {}`)",
                    session.id, session.id
                ),
            ));
        }
        let id = session.id.clone();
        self.store
            .write_process_state(move |tx| {
                tx.execute("DELETE FROM sessions WHERE id = ?1", params![id])
            })
            .await?;
        // Only a directory under our root is ever deleted.
        if session.pane_dir.starts_with(&self.panes.path)
            && let Err(e) = std::fs::remove_dir_all(&session.pane_dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(session_id = %session.id, error = %e, "cannot delete the pane directory");
        }
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&session.id);
        self.events
            .publish(EventKind::SessionRemoved {
                session_id: session.id.clone(),
            })
            .await;
        Ok(session)
    }
}
