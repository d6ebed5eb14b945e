//! What a client does to a session: type into it, resize it, wait for it, kill it, remove it.
//! Each request goes to the session's monitor over a fresh connection.

use std::time::Duration;

use aifactory_common::protocol::{
    EventKind, ProcessEntry, SessionInfo, SessionKillReport, SessionState, StrayProcess,
};
use aifactory_common::sync::lock;
use aifactory_pane::client::MonitorError;

use super::{SessionError, Sessions, marker, records};
use crate::proctree;

/// How long a kill waits for the monitor to record the end once the processes are stopped.
const AFTER_SIGKILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a remove waits for the monitor of an ended session to exit: it lingers a moment
/// for late requests and for subscribers taking their last bytes.
const MONITOR_EXIT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the monitor may take beyond its own input deadline
/// ([`aifactory_pane::INPUT_TIMEOUT`]) to answer.
const INPUT_ANSWER_MARGIN: Duration = Duration::from_secs(5);

impl Sessions {
    pub async fn input(&self, key: String, data: Vec<u8>) -> Result<(), SessionError> {
        let session = self.running(key).await?;
        let mut monitor = self.monitor(&session).await?;
        let answer_within = aifactory_pane::INPUT_TIMEOUT + INPUT_ANSWER_MARGIN;
        // Giving up drops the connection, which tells the monitor to write nothing more.
        let (sent, e) = match monitor.input(&data, answer_within).await {
            Ok(()) => return Ok(()),
            Err(failed) => failed,
        };
        let id = session.id;
        Err(match e {
            MonitorError::Refused { message, .. } => {
                SessionError::InputRefused { id, message, sent }
            }
            MonitorError::NoAnswer { .. } => SessionError::InputNoAnswer {
                id,
                seconds: answer_within.as_secs(),
                sent,
            },
            other => other.into(),
        })
    }

    pub async fn resize(&self, key: String, cols: u16, rows: u16) -> Result<(), SessionError> {
        if cols == 0 || rows == 0 {
            return Err(SessionError::BadSize { cols, rows });
        }
        let session = self.running(key).await?;
        self.monitor(&session).await?.resize(cols, rows).await?;
        let id = session.id.clone();
        self.store
            .write_process_state(move |tx| records::set_size(tx, &id, cols, rows))
            .await?;
        Ok(())
    }

    /// Waits for the session to end, returning it as it ended.
    pub async fn wait(&self, key: String) -> Result<SessionInfo, SessionError> {
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

    /// Stops the session's whole tree ([`Sessions::stop_processes`]): SIGHUP and SIGTERM,
    /// SIGKILL after `grace`; returns the ended session and what was stopped. An ended session
    /// whose escaped processes still run has them stopped the same way.
    pub async fn kill(
        &self,
        key: String,
        grace: Duration,
        ignore_missing: bool,
    ) -> Result<SessionKillReport, SessionError> {
        let session = match self.show(key.clone()).await {
            Ok(session) => session,
            Err(SessionError::NotFound(_)) if ignore_missing => {
                return Ok(SessionKillReport {
                    session: None,
                    signalled: Vec::new(),
                    survivors: Vec::new(),
                });
            }
            Err(e) => return Err(e),
        };
        let live = matches!(
            session.state,
            SessionState::Running | SessionState::Starting
        );
        let state = live.then(|| self.state_channel(&session.id));
        let report = self.stop_processes(&session, grace).await;
        if !live && report.stopped.is_empty() && !ignore_missing {
            return Err(SessionError::AlreadyEnded {
                id: session.id,
                state: session.state,
            });
        }
        let ended = |s: &SessionState| matches!(s, SessionState::Exited | SessionState::Lost);
        if let Some(mut state) = state
            && tokio::time::timeout(AFTER_SIGKILL_TIMEOUT, state.wait_for(ended))
                .await
                .is_err()
        {
            return Err(SessionError::SurvivedKill {
                id: session.id,
                seconds: AFTER_SIGKILL_TIMEOUT.as_secs(),
                pid: session.pid.unwrap_or(0),
            });
        }
        Ok(SessionKillReport {
            session: Some(self.show(session.id).await?),
            signalled: report.stopped,
            survivors: report.survivors,
        })
    }

    /// Forgets an ended session and deletes its pane directory.
    pub async fn remove(&self, key: String) -> Result<SessionInfo, SessionError> {
        let session = self.show(key).await?;
        if matches!(
            session.state,
            SessionState::Running | SessionState::Starting
        ) {
            return Err(SessionError::StillRunning { id: session.id });
        }
        // Gone means that nothing of it runs: not an escapee, and not its monitor (which ends
        // by itself shortly after the last process holding its terminal).
        let left = self.processes_of(&session.id, self.live_monitor(&session.id).await);
        if !left.is_empty() {
            return Err(SessionError::StillHasProcesses {
                id: session.id,
                processes: left,
            });
        }
        if let Some(monitor) = self.live_monitor(&session.id).await
            && !proctree::wait_all(&[monitor], MONITOR_EXIT_TIMEOUT)
                .await
                .is_empty()
        {
            return Err(SessionError::StillHasProcesses {
                id: session.id,
                processes: vec![ProcessEntry {
                    pid: monitor,
                    command: proctree::command(monitor),
                }],
            });
        }
        let id = session.id.clone();
        self.store
            .write_process_state(move |tx| records::delete(tx, &id))
            .await?;
        // Only a directory under our root is ever deleted.
        if session.pane_dir.starts_with(&self.panes.path)
            && let Err(e) = std::fs::remove_dir_all(&session.pane_dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(session_id = %session.id, error = %e, "cannot delete the pane directory");
        }
        lock(&self.watched).remove(&session.id);
        self.events
            .publish(EventKind::SessionRemoved {
                session_id: session.id.clone(),
            })
            .await;
        Ok(session)
    }

    /// Processes that carry the mark of one of this daemon's sessions while no live session
    /// accounts for them: the session ended (or was removed) and they went on.
    pub async fn strays(&self) -> Result<Vec<StrayProcess>, SessionError> {
        let sessions = self.list().await?;
        let accounted = |pid: u32, id: &str| {
            sessions.iter().any(|s| {
                s.id == id
                    && (matches!(s.state, SessionState::Running | SessionState::Starting)
                        // A monitor started without the zygote carries its program's mark.
                        || s.monitor_pid == Some(pid))
            })
        };
        Ok(marker::find(self.store.file())
            .into_iter()
            .filter(|m| !accounted(m.pid, &m.session_id) && proctree::is_alive(m.pid))
            .map(|m| StrayProcess {
                command: proctree::command(m.pid),
                pid: m.pid,
                session_id: m.session_id,
            })
            .collect())
    }
}
