//! The processes: the monitor detaching itself and reaping. (The program's own process is
//! [`super::stub`].)
//!
//! The monitor is a child subreaper, so a descendant that escapes the session (setsid, double
//! fork) is re-parented to it rather than to init. Every child is reaped by one loop of
//! `waitpid(-1, WNOHANG)` woken by SIGCHLD; nothing else waits (tokio's `Child::wait` would race
//! with it for the program's status).

use std::sync::Arc;

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::pty::PtyError;
use super::{Session, diag};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(
        "cannot leave the daemon's session (setsid): {0}: start the monitor as an ordinary child, not as a process group leader"
    )]
    Setsid(nix::Error),
    #[error(
        "cannot become a child subreaper (prctl PR_SET_CHILD_SUBREAPER): {0}: the pane monitor needs Linux 3.4 or newer"
    )]
    Subreaper(nix::Error),
    #[error("cannot ignore {signal}: {source}")]
    IgnoreSignal {
        signal: &'static str,
        source: nix::Error,
    },
    #[error(transparent)]
    Pty(#[from] PtyError),
    #[error("cannot prepare the program's process: {0}")]
    Stub(std::io::Error),
    #[error(
        "cannot use {} as the program's working directory: {source}: give an existing directory the daemon's user can enter",
        cwd.display()
    )]
    Cwd {
        cwd: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot confine the program (Landlock): {source}: the kernel refused the cage; see `aifactoryctl doctor` for what this kernel's Landlock can do, or set sandbox = \"best-effort\" (or \"off\") in the agent's profile"
    )]
    Cage { source: std::io::Error },
    #[error(
        "cannot move the program's process into its task's cgroup {}: {source}: the daemon made that cgroup for it; see `aifactoryctl status` (limits) for where the daemon keeps its tasks' cgroups",
        dir.display()
    )]
    Cgroup {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot start {command:?} in {}: {source}: check that the command exists and is executable (it is looked up in the PATH the monitor was given)",
        cwd.display()
    )]
    Spawn {
        command: String,
        cwd: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Leaves the daemon behind: closes whatever descriptors it leaked to us (a socket-activated
/// listener is not close-on-exec, for one), starts a session of our own so signals to the
/// daemon's process group or terminal never reach us, becomes a subreaper, and ignores SIGHUP
/// and SIGTERM.
///
/// Why ignore SIGTERM: a monitor's only job is to keep its session alive across daemon
/// restarts, and `systemctl stop/restart` of the daemon may signal every process of the unit's
/// cgroup. A session ends when its program ends, which the daemon brings about with a `Signal`
/// request; SIGKILL still ends a monitor for whoever really means it.
///
/// Every descriptor from `first_to_close` up is closed; the caller keeps the ones below.
pub fn detach(first_to_close: libc::c_uint) -> Result<(), ProcessError> {
    // Nothing of ours is open there: std opens no descriptor of its own before main.
    close_from(first_to_close);
    if let Err(e) = nix::unistd::setsid() {
        // EPERM: we already lead a process group. Fine only if it is our own session.
        let pid = nix::unistd::getpid();
        if nix::unistd::getsid(None) != Ok(pid) {
            return Err(ProcessError::Setsid(e));
        }
    }
    nix::sys::prctl::set_child_subreaper(true).map_err(ProcessError::Subreaper)?;
    use nix::sys::signal::{SigHandler, Signal, signal};
    for (sig, name) in [(Signal::SIGHUP, "SIGHUP"), (Signal::SIGTERM, "SIGTERM")] {
        // SAFETY: installing SIG_IGN runs no code in signal context.
        unsafe { signal(sig, SigHandler::SigIgn) }.map_err(|source| {
            ProcessError::IgnoreSignal {
                signal: name,
                source,
            }
        })?;
    }
    Ok(())
}

/// Closes every descriptor from `first` up. Only async-signal-safe calls.
pub(super) fn close_from(first: libc::c_uint) {
    // SAFETY: close_range only closes descriptors; the caller owns none from `first` up that
    // it still needs.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) };
    if rc == 0 {
        return;
    }
    // Kernels before 5.9: one descriptor at a time.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one struct rlimit to a valid pointer.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur.min(1 << 20) as libc::c_int
    } else {
        1024
    };
    for fd in first as libc::c_int..max {
        // SAFETY: as above; an fd that is not open just fails with EBADF.
        unsafe { libc::close(fd) };
    }
}

/// Ends a program whose monitor failed to start, and its group, and reaps it.
pub fn kill_and_reap(pid: u32) {
    let pid = pid as libc::pid_t;
    // SAFETY: plain syscalls on a child we started.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
}

/// The one place that waits for children.
pub struct Reaper {
    sigchld: Signal,
}

impl Reaper {
    /// Listens for SIGCHLD; create it before the first child exists.
    pub fn new() -> std::io::Result<Reaper> {
        Ok(Reaper {
            sigchld: signal(SignalKind::child())?,
        })
    }

    /// Reaps every child as it ends, recording the program's (`pid`) status; orphans that
    /// were re-parented to us are just reaped.
    pub async fn run(mut self, session: Arc<Session>, pid: u32) {
        let program = pid as libc::pid_t;
        loop {
            // SIGCHLDs coalesce: one wake-up may stand for many children.
            loop {
                let mut status = 0;
                // SAFETY: waitpid writes the status to a valid pointer.
                let reaped = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if reaped == 0 {
                    break;
                }
                if reaped < 0 {
                    let err = std::io::Error::last_os_error();
                    match err.raw_os_error() {
                        Some(libc::EINTR) => continue,
                        Some(libc::ECHILD) => break,
                        _ => {
                            diag(&format!("waitpid failed: {err}"));
                            break;
                        }
                    }
                }
                if reaped != program {
                    continue;
                }
                if libc::WIFEXITED(status) {
                    session.record_exit(Some(libc::WEXITSTATUS(status)), None);
                } else if libc::WIFSIGNALED(status) {
                    session.record_exit(None, Some(libc::WTERMSIG(status)));
                }
            }
            if self.sigchld.recv().await.is_none() {
                return;
            }
        }
    }
}
