//! Child processes with a deadline, and what `/proc` says about a process.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use aifactory_common::procfs;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Runs `cmd` to completion, capturing its output, or kills it after `timeout` and returns
/// what it printed until then as the error.
pub fn output_within(mut cmd: Command, timeout: Duration) -> Result<Output, Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    child_output_within(cmd.spawn().expect("spawn a command"), timeout)
}

/// [`output_within`] for a child spawned elsewhere (with its stdout and stderr piped).
pub fn child_output_within(child: Child, timeout: Duration) -> Result<Output, Output> {
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(output) => Ok(output.expect("wait for a command")),
        Err(_) => {
            // The waiter has not returned, so the command is running or at most just reaped.
            let _ = kill(pid, Signal::SIGKILL);
            Err(rx
                .recv()
                .expect("the waiter thread")
                .expect("wait for a killed command"))
        }
    }
}

/// Every process `/proc` lists now (none when it cannot be read).
pub fn pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// Whether `pid` has ended: no such process, or only a zombie left for its parent to reap.
pub fn has_ended(pid: u32) -> bool {
    procfs::stat(pid).map_or(true, |stat| matches!(stat.state, 'Z' | 'X'))
}

/// CPU time (user + system, all threads, live or dead) a process has used so far; zero once
/// it is gone.
pub fn cpu_time(pid: u32) -> Duration {
    procfs::stat(pid).map_or(Duration::ZERO, |stat| {
        Duration::from_millis(procfs::ticks_to_ms(stat.cpu_ticks))
    })
}
