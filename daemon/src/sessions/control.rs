//! What a client does to a session: type into it, resize it, wait for it, kill it, remove it.
//! Each request goes to the session's monitor over a fresh connection.

use std::time::Duration;

use aifactory_common::protocol::{EventKind, SessionInfo, SessionState};
use aifactory_common::sync::lock;
use aifactory_pane::client::MonitorError;

use super::{SessionError, Sessions, records};

/// How long a kill waits for the end after SIGKILL before it reports failure.
const AFTER_SIGKILL_TIMEOUT: Duration = Duration::from_secs(5);
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

    /// SIGHUP and SIGTERM to the group, SIGKILL after `grace`; returns the ended session.
    pub async fn kill(
        &self,
        key: String,
        grace: Duration,
        ignore_missing: bool,
    ) -> Result<Option<SessionInfo>, SessionError> {
        let session = match self.show(key.clone()).await {
            Ok(session) => session,
            Err(SessionError::NotFound(_)) if ignore_missing => return Ok(None),
            Err(e) => return Err(e),
        };
        if !matches!(
            session.state,
            SessionState::Running | SessionState::Starting
        ) {
            if ignore_missing {
                return Ok(Some(session));
            }
            return Err(SessionError::AlreadyEnded {
                id: session.id,
                state: session.state,
            });
        }
        let mut state = self.state_channel(&session.id);
        let ended = |s: &SessionState| matches!(s, SessionState::Exited | SessionState::Lost);
        let mut monitor = self.monitor(&session).await?;
        for signal in [libc::SIGHUP, libc::SIGTERM] {
            monitor.signal(signal).await?;
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
                return Err(SessionError::SurvivedKill {
                    id: session.id,
                    seconds: AFTER_SIGKILL_TIMEOUT.as_secs(),
                    pid: session.pid.unwrap_or(0),
                });
            }
        }
        self.show(session.id).await.map(Some)
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
}
