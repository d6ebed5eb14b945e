//! Process trees from /proc: every descendant of a process (a session's pane monitor is a
//! child subreaper, so whatever escaped its group with `setsid` or a double fork is still
//! below it), and waiting for a process's end through a pidfd instead of polling. Reading
//! `/proc/<pid>/stat` itself is [`aifactory_common::procfs`]'s.

use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use aifactory_common::procfs::{self, Stat};
use aifactory_common::protocol::ProcessEntry;
use tokio::io::unix::AsyncFd;

/// The command line of `pid`, space-separated, or its name in brackets when it has none.
pub fn command(pid: u32) -> String {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(bytes) if !bytes.is_empty() => bytes
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
        _ => std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| format!("[{}]", c.trim()))
            .unwrap_or_default(),
    }
}

fn all() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| procfs::stat(pid).ok())
        .collect()
}

/// Every live (not zombie) descendant of `root`, and every process of the process groups
/// `groups`, `root` itself excluded.
pub fn descendants(root: u32, groups: &[u32]) -> Vec<ProcessEntry> {
    let procs = all();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in &procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut found: Vec<u32> = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            if !found.contains(&child) {
                found.push(child);
                queue.push(child);
            }
        }
    }
    for p in &procs {
        if groups.contains(&p.pgid) && p.pid != root && !found.contains(&p.pid) {
            found.push(p.pid);
        }
    }
    let live = |pid: &u32| procs.iter().any(|p| p.pid == *pid && p.state != 'Z');
    found
        .into_iter()
        .filter(live)
        .map(|pid| ProcessEntry {
            pid,
            command: command(pid),
        })
        .collect()
}

/// Whether `pid` runs (a zombie has ended: only its parent's reaping is left).
pub fn is_alive(pid: u32) -> bool {
    procfs::stat(pid).is_ok_and(|s| s.state != 'Z' && s.state != 'X')
}

/// Waits until every process in `pids` ended, or `timeout`; returns those still alive.
pub async fn wait_all(pids: &[u32], timeout: Duration) -> Vec<u32> {
    let waits = pids.iter().map(|&pid| async move {
        let ended = tokio::time::timeout(timeout, wait_exit(pid)).await.is_ok();
        (pid, ended)
    });
    futures::future::join_all(waits)
        .await
        .into_iter()
        .filter(|(pid, ended)| !ended && is_alive(*pid))
        .map(|(pid, _)| pid)
        .collect()
}

/// Resolves when `pid` has ended (pidfd readable), or at once when it is already gone.
async fn wait_exit(pid: u32) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        // ESRCH: already gone.
        return;
    }
    // SAFETY: the syscall returned a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the AsyncFd owns the fd, so it stays open for as long as it is registered.
    let Ok(fd) = (unsafe { AsyncFd::register(fd) }) else {
        return;
    };
    if !is_alive(pid) {
        return;
    }
    let _ = fd.readable().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finds_an_escaped_grandchild_and_waits_for_it() {
        // sh starts a background sleep in a new session, then exits: the sleep is reparented
        // to this test process only if it is a subreaper, so look for it by group instead.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("sleep 30 & echo $!; wait")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let sleep: u32 = line.trim().parse().unwrap();
        // The fork may not have exec'd sleep yet.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read(format!("/proc/{sleep}/cmdline")).unwrap_or_default()
            != b"sleep\x0030\x00"
        {
            assert!(std::time::Instant::now() < deadline, "sleep never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        let me = std::process::id();
        let found = descendants(me, &[]);
        assert!(
            found
                .iter()
                .any(|p| p.pid == sleep && p.command == "sleep 30"),
            "{found:?}"
        );
        assert!(is_alive(sleep));
        let s = procfs::stat(sleep).unwrap();
        assert_eq!(s.ppid, child.id());
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(sleep as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let left = wait_all(&[sleep], Duration::from_secs(10)).await;
        assert!(left.is_empty());
        child.wait().unwrap();
    }
}
