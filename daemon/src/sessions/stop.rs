//! Ending every process of a session: SIGHUP and SIGTERM to its process group, to whatever
//! escaped it below the pane monitor (a child subreaper) and to every process carrying the
//! session's mark ([`marker`]) wherever it was re-parented; SIGKILL after the grace time to
//! what is left; waiting on pidfds, and a report of what did not end. `sessions kill`,
//! `tasks stop` and the clean-up of a lost session all stop a session this way.

use std::time::Duration;

use aifactory_common::procfs;
use aifactory_common::protocol::{ProcessEntry, SessionInfo};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Sessions, marker, records};
use crate::proctree;

/// After SIGKILL, how long processes get to disappear before they are reported as survivors.
const AFTER_SIGKILL: Duration = Duration::from_secs(5);
/// How long a stop waits for the session's monitor to record the end.
const SESSION_END_TIMEOUT: Duration = Duration::from_secs(10);
/// SIGKILL rounds for processes forked while the others were being stopped.
const KILL_ROUNDS: usize = 3;

/// What a stop did.
#[derive(Debug, Default)]
pub struct KillReport {
    /// Every process that was signalled.
    pub stopped: Vec<ProcessEntry>,
    /// Those still alive after SIGKILL.
    pub survivors: Vec<ProcessEntry>,
}

impl Sessions {
    /// Ends every process of a session and lets its monitor record the end.
    pub async fn kill_tree(&self, session: &SessionInfo, grace: Duration) -> KillReport {
        let report = self.stop_processes(session, grace).await;
        let _ = tokio::time::timeout(SESSION_END_TIMEOUT, self.wait(session.id.clone())).await;
        report
    }

    /// Ends every process of a session, its monitor excepted (the monitor ends by itself once
    /// nothing holds its terminal).
    pub(super) async fn stop_processes(
        &self,
        session: &SessionInfo,
        grace: Duration,
    ) -> KillReport {
        let monitor = self.live_monitor(&session.id).await;
        // The program's group is only signalled while the monitor that owns it runs: after
        // that its number may have been reused.
        let group = monitor.and(session.pid).map(|pid| -(pid as i32));
        let signal_group = |signal| {
            if let Some(group) = group {
                let _ = kill(Pid::from_raw(group), signal);
            }
        };
        let mut stopped = self.processes_of(&session.id, monitor);
        signal_group(Signal::SIGHUP);
        signal_group(Signal::SIGTERM);
        for p in &stopped {
            let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGTERM);
        }
        let pids: Vec<u32> = stopped.iter().map(|p| p.pid).collect();
        let mut left = proctree::wait_all(&pids, grace).await;
        // Whatever was forked meanwhile, and whatever ignored SIGTERM.
        for _ in 0..KILL_ROUNDS {
            for p in self.processes_of(&session.id, monitor) {
                if !left.contains(&p.pid) {
                    left.push(p.pid);
                }
                if !stopped.iter().any(|s| s.pid == p.pid) {
                    stopped.push(p);
                }
            }
            if left.is_empty() {
                break;
            }
            signal_group(Signal::SIGKILL);
            for &p in &left {
                let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
            }
            left = proctree::wait_all(&left, AFTER_SIGKILL).await;
        }
        let survivors = stopped
            .iter()
            .filter(|p| left.contains(&p.pid))
            .cloned()
            .collect();
        if !stopped.is_empty() {
            tracing::info!(session_id = %session.id, stopped = stopped.len(), survivors = ?survivors, "session's processes stopped");
        }
        KillReport { stopped, survivors }
    }

    /// What still runs of a session, its monitor excepted: what is below the monitor while it
    /// runs, and whatever carries the session's mark.
    pub(super) fn processes_of(&self, id: &str, monitor: Option<u32>) -> Vec<ProcessEntry> {
        let mut found = monitor
            .map(|m| proctree::descendants(m, &[]))
            .unwrap_or_default();
        for m in marker::find(self.store.file()) {
            // A monitor started without the zygote has its program's environment.
            if m.session_id == id && Some(m.pid) != monitor && !found.iter().any(|p| p.pid == m.pid)
            {
                found.push(ProcessEntry {
                    pid: m.pid,
                    command: proctree::command(m.pid),
                });
            }
        }
        found.retain(|p| proctree::is_alive(p.pid));
        found
    }

    /// The pid of the session's monitor while that very process runs (its recorded start time
    /// tells it from a later process with the same pid).
    pub(super) async fn live_monitor(&self, id: &str) -> Option<u32> {
        let key = id.to_string();
        let recorded = self
            .store
            .read(move |conn| records::monitor(conn, &key))
            .await;
        match recorded {
            Ok(Some((Some(pid), Some(start)))) if procfs::is_same_process(pid, start) => Some(pid),
            _ => None,
        }
    }
}
