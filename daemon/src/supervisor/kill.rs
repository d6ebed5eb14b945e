//! Ending every process of a session: SIGHUP and SIGTERM to its process group and to whatever
//! escaped it below the pane monitor (a child subreaper), then SIGKILL after the grace time
//! to what is left, and a report of what did not end.

use std::time::Duration;

use aifactory_common::protocol::{ProcessEntry, SessionInfo};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::proctree;
use crate::sessions::Sessions;
use aifactory_pane::client::MonitorClient;

/// After SIGKILL, how long processes get to disappear before they are reported as survivors.
const AFTER_SIGKILL: Duration = Duration::from_secs(5);
/// How long a stop waits for the session's monitor to record the end.
const SESSION_END_TIMEOUT: Duration = Duration::from_secs(10);
/// SIGKILL rounds for processes forked while the others were being stopped.
const KILL_ROUNDS: usize = 3;

/// What a [`kill_tree`] did.
#[derive(Debug, Default)]
pub struct KillReport {
    /// Every process that was signalled.
    pub stopped: Vec<ProcessEntry>,
    /// Those still alive after SIGKILL.
    pub survivors: Vec<ProcessEntry>,
}

/// Ends every process of a session: its group and whatever escaped it below its monitor.
pub async fn kill_tree(sessions: &Sessions, session: &SessionInfo, grace: Duration) -> KillReport {
    let (Some(monitor), Some(pid)) = (session.monitor_pid, session.pid) else {
        return KillReport::default();
    };
    // The monitor's pid might have been reused after it ended: only its own tree counts.
    if !monitor_is_alive(session).await {
        return KillReport::default();
    }
    let group = Pid::from_raw(-(pid as i32));
    let mut stopped = proctree::descendants(monitor, &[pid]);
    let _ = kill(group, Signal::SIGHUP);
    let _ = kill(group, Signal::SIGTERM);
    for p in &stopped {
        let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGTERM);
    }
    let pids: Vec<u32> = stopped.iter().map(|p| p.pid).collect();
    let mut left = proctree::wait_all(&pids, grace).await;
    // Whatever was forked meanwhile, and whatever ignored SIGTERM.
    for _ in 0..KILL_ROUNDS {
        let late = proctree::descendants(monitor, &[pid]);
        for p in &late {
            if !stopped.iter().any(|s| s.pid == p.pid) {
                stopped.push(p.clone());
            }
            if !left.contains(&p.pid) {
                left.push(p.pid);
            }
        }
        if left.is_empty() {
            break;
        }
        let _ = kill(group, Signal::SIGKILL);
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
    // Let the monitor record the end before anyone looks at the session.
    let _ = tokio::time::timeout(SESSION_END_TIMEOUT, sessions.wait(session.id.clone())).await;
    KillReport { stopped, survivors }
}

async fn monitor_is_alive(session: &SessionInfo) -> bool {
    match MonitorClient::connect(&session.pane_dir).await {
        Ok(mut client) => client
            .info()
            .await
            .is_ok_and(|info| Some(info.monitor_pid) == session.monitor_pid),
        Err(_) => false,
    }
}
