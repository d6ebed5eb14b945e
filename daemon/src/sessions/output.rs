//! Sessions whose output cannot be written (their panes root is full): a follower per running
//! session streams its monitor's output health, keeps the blocked ones in memory for
//! `sessions list/show` and `status` (a restarted daemon learns them again from the monitors),
//! logs, and publishes an event when blocking starts and when it clears.

use std::path::PathBuf;
use std::sync::Arc;

use aifactory_common::pane::OutputBlocked;
use aifactory_common::protocol::{EventKind, SessionInfo};
use aifactory_common::sync::lock;
use aifactory_pane::client::{MonitorClient, MonitorError};

use super::Sessions;

impl Sessions {
    /// Follows the output health of the session in `pane_dir` until all its output is written
    /// (or its monitor is gone).
    pub(super) fn watch_output(self: Arc<Self>, id: String, pane_dir: PathBuf) {
        tokio::spawn(async move {
            let followed = async {
                let mut health = MonitorClient::connect(&pane_dir)
                    .await?
                    .watch_output()
                    .await?;
                loop {
                    let now = health.next().await?;
                    self.set_output_blocked(&id, now).await;
                }
            };
            let ended: Result<(), MonitorError> = followed.await;
            if let Err(e) = ended {
                // The normal end too (the monitor closes the stream once all output is in).
                tracing::debug!(session_id = %id, "no longer following the session's output health: {e}");
            }
            // Its end (reported on its own) also ends any blocking: nothing is held any more.
            lock(&self.output_blocked).remove(&id);
        });
    }

    /// Records the session's output health; a change is logged and published.
    async fn set_output_blocked(&self, id: &str, now: Option<OutputBlocked>) {
        let before = {
            let mut blocked = lock(&self.output_blocked);
            match &now {
                Some(b) => blocked.insert(id.to_string(), b.clone()),
                None => blocked.remove(id),
            }
        };
        let kind = match (before, now) {
            (None, Some(blocked)) => {
                tracing::warn!(
                    session_id = %id,
                    reason = %blocked.reason,
                    since = %blocked.since,
                    "session output blocked: its program is held until its output can be written (nothing is lost); free space in its panes root"
                );
                EventKind::SessionOutputBlocked {
                    session_id: id.to_string(),
                    blocked,
                }
            }
            (Some(_), None) => {
                tracing::info!(session_id = %id, "session output resumed: its output is written again");
                EventKind::SessionOutputResumed {
                    session_id: id.to_string(),
                }
            }
            _ => return,
        };
        self.events.publish(kind).await;
    }

    /// `session` with its output health as its monitor last reported it.
    pub(super) fn with_output_health(&self, mut session: SessionInfo) -> SessionInfo {
        session.output_blocked = lock(&self.output_blocked).get(&session.id).cloned();
        session
    }

    /// Running sessions whose output cannot be written now.
    pub fn output_blocked_count(&self) -> u32 {
        lock(&self.output_blocked).len() as u32
    }
}
