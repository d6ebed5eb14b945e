//! Following sessions to their end: a watcher per running session that waits on its monitor,
//! re-adoption at startup of the sessions a previous daemon left running, and recording how
//! each one ended.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aifactory_common::pane::{EXIT_FILE, ExitInfo};
use aifactory_common::procfs;
use aifactory_common::protocol::{EventKind, SessionState};
use aifactory_pane::client::{MonitorClient, MonitorError};

use super::{SessionError, Sessions, records};

/// How long the escaped processes of a lost session get between SIGTERM and SIGKILL.
const LOST_GRACE: Duration = Duration::from_secs(2);

/// How a session ended: its program exited, or nobody can tell any more (the reason is
/// recorded as the session's `lost_reason`).
#[derive(Clone)]
enum Ending {
    Exited(ExitInfo),
    Lost(String),
}

impl Sessions {
    /// Records how a session ended (from its `exit.json`) or that it is lost.
    async fn finish(&self, id: &str, ending: Ending) {
        let key = id.to_string();
        let stored = ending.clone();
        let written = self
            .store
            .write_process_state(move |tx| match &stored {
                Ending::Exited(exit) => records::record_exited(tx, &key, exit),
                Ending::Lost(reason) => records::record_lost(tx, &key, reason),
            })
            .await;
        if let Err(e) = written {
            tracing::error!(session_id = %id, "cannot record the session's end: {e}");
        }
        let (state, exit, lost_reason) = match ending {
            Ending::Exited(exit) => {
                tracing::info!(session_id = %id, "session {}", exit.describe());
                (SessionState::Exited, Some(exit), None)
            }
            Ending::Lost(reason) => {
                tracing::warn!(session_id = %id, "session lost: {reason}");
                (SessionState::Lost, None, Some(reason))
            }
        };
        self.publish_state(id, state);
        self.events
            .publish(EventKind::SessionEnded {
                session_id: id.to_string(),
                exit,
                lost_reason,
            })
            .await;
    }

    /// Waits on a running session's monitor, in `pane_dir`, until it ends, then records the
    /// outcome. A session lives where it was created until it ends, whatever the panes root is
    /// now: its recorded pane dir is the one to watch.
    pub(super) fn watch(self: Arc<Self>, id: String, pane_dir: PathBuf) {
        self.clone().watch_output(id.clone(), pane_dir.clone());
        tokio::spawn(async move {
            let ended = match MonitorClient::connect(&pane_dir).await {
                Ok(mut client) => client.wait_exit().await,
                Err(e) => Err(e),
            };
            // The monitor may have ended between our connect and its answer: its record counts.
            let ending = match ended {
                Ok(exit) => Ending::Exited(exit),
                Err(reason) => match read_exit(&pane_dir) {
                    Some(exit) => Ending::Exited(exit),
                    None => Ending::Lost(format!(
                        "its pane monitor ended without recording an exit ({reason})"
                    )),
                },
            };
            if let Ending::Lost(_) = ending {
                self.kill_leftovers(&id).await;
            }
            self.finish(&id, ending).await;
        });
    }

    /// Kills what is left of a lost session's process group, if it is still that group, then
    /// stops whatever else carries the session's mark (what escaped the group was re-parented
    /// when the monitor died, out of its tree).
    async fn kill_leftovers(&self, id: &str) {
        let key = id.to_string();
        let row = self
            .store
            .read(move |conn| records::program(conn, &key))
            .await;
        if let Ok(Some((Some(pid), Some(start)))) = row
            && procfs::is_same_process(pid, start)
        {
            let group = nix::unistd::Pid::from_raw(-(pid as i32));
            let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
            tracing::warn!(session_id = %id, pid, "killed the process group of a session whose monitor is gone");
        }
        let Ok(session) = self.show(id.to_string()).await else {
            return;
        };
        let report = self.stop_processes(&session, LOST_GRACE).await;
        if !report.stopped.is_empty() {
            tracing::warn!(
                session_id = %id,
                stopped = ?report.stopped,
                survivors = ?report.survivors,
                "stopped the escaped processes of a session whose monitor is gone"
            );
        }
    }

    /// At startup: re-adopt every session recorded as running, or say why it cannot be.
    pub async fn adopt_all(self: &Arc<Self>) -> Result<(), SessionError> {
        let recorded = self.store.read(records::live).await?;
        for session in recorded {
            let records::Recorded {
                id,
                pid,
                start_time,
                monitor_pid,
                monitor_start_time,
                pane_dir,
            } = session;
            let _ = self.state_channel(&id);
            let Some(monitor_pid) = monitor_pid else {
                // The previous daemon died between starting the monitor and recording it: a
                // monitor answering in this session's directory is that one.
                self.adopt_unrecorded(&id, &pane_dir).await;
                continue;
            };
            let info: Result<_, MonitorError> = match MonitorClient::connect(&pane_dir).await {
                Ok(mut client) => client.info().await,
                Err(e) => Err(e),
            };
            match info {
                Ok(info)
                    if info.monitor_pid == monitor_pid
                        && Some(info.monitor_start_time as i64) == monitor_start_time
                        && Some(info.pid) == pid
                        && Some(info.start_time as i64) == start_time =>
                {
                    match info.exit {
                        // It ended while no daemon watched; its monitor only lingers.
                        Some(exit) => self.finish(&id, Ending::Exited(exit)).await,
                        None => {
                            tracing::info!(session_id = %id, pid = info.pid, "session re-adopted");
                            self.clone().watch(id, pane_dir);
                        }
                    }
                }
                Ok(info) => {
                    self.finish(
                        &id,
                        Ending::Lost(format!(
                            "the monitor answering at {} (pid {}) is not the one recorded (pid {monitor_pid})",
                            pane_dir.display(),
                            info.monitor_pid
                        )),
                    )
                    .await;
                }
                Err(reason) => match read_exit(&pane_dir) {
                    Some(exit) => self.finish(&id, Ending::Exited(exit)).await,
                    None => {
                        self.kill_leftovers(&id).await;
                        self.finish(
                            &id,
                            Ending::Lost(format!(
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
                    tracing::error!(session_id = %id, "cannot record an adopted session: {e}");
                }
                match info.exit {
                    Some(exit) => self.finish(id, Ending::Exited(exit)).await,
                    None => {
                        tracing::info!(session_id = %id, pid = info.pid, "session adopted after an interrupted start");
                        self.clone().watch(id.to_string(), pane_dir.to_path_buf());
                    }
                }
            }
            _ => {
                self.finish(
                    id,
                    Ending::Lost(
                        "the daemon stopped while the session was starting, before its program ran"
                            .into(),
                    ),
                )
                .await;
            }
        }
    }
}

/// The exit the monitor recorded in the pane directory, if it did.
fn read_exit(pane_dir: &Path) -> Option<ExitInfo> {
    let text = std::fs::read_to_string(pane_dir.join(EXIT_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}
