//! The processes: the monitor detaching itself, the program it starts, and reaping.
//!
//! The monitor is a child subreaper, so a descendant that escapes the session (setsid, double
//! fork) is re-parented to it rather than to init. Every child is reaped by one loop of
//! `waitpid(-1, WNOHANG)` woken by SIGCHLD; nothing else waits (tokio's `Child::wait` would race
//! with it for the program's status).

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};
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
    #[error("cannot give the program its own copy of the terminal: {0}")]
    Dup(std::io::Error),
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
pub fn detach() -> Result<(), ProcessError> {
    // Nothing of ours is open yet: std opens no descriptor of its own before main.
    close_or_mark_from(3, false);
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

/// Closes (or, with `cloexec`, marks close-on-exec) every descriptor from `first` up. Only
/// async-signal-safe calls: it also runs between fork and exec.
pub(super) fn close_or_mark_from(first: libc::c_uint, cloexec: bool) {
    let flags = if cloexec {
        libc::CLOSE_RANGE_CLOEXEC as libc::c_long
    } else {
        0
    };
    // SAFETY: close_range only closes or flags descriptors; the caller owns none from 3 up
    // that it still needs (or, with CLOEXEC, needs them only until exec).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, flags) };
    if rc == 0 {
        return;
    }
    // Kernels before 5.9 (5.11 for the CLOEXEC flag): one descriptor at a time.
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
        unsafe {
            if cloexec {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            } else {
                libc::close(fd);
            }
        }
    }
}

/// What the program gets between fork and exec: its own session with the PTY as controlling
/// terminal, default signal dispositions, an empty signal mask, and no descriptor but 0-2.
///
/// Descriptors from 3 up are marked close-on-exec rather than closed, so std's own
/// close-on-exec pipe that reports a failed exec survives until the exec: a missing command is
/// then a spawn error, not a program that "exited 1".
fn child_setup() -> std::io::Result<()> {
    // SAFETY: only async-signal-safe calls, on the child's own state.
    unsafe {
        if libc::setsid() < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Signals 1..=64 on Linux (SIGKILL and SIGSTOP just fail). The raw system call,
        // because glibc refuses to touch its two internal signals (32 and 33), and its
        // posix_spawn, which started this monitor (or its zygote), leaves them ignored: the
        // program must not inherit that.
        for sig in 1..65 {
            let default = KernelSigaction::default();
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &default,
                std::ptr::null_mut::<KernelSigaction>(),
                std::mem::size_of::<u64>(),
            );
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        // The daemon runs with umask 077 for its own files; the program gets the usual 022,
        // so what an agent creates in a work tree is readable as it would be from a shell.
        libc::umask(0o022);
    }
    close_or_mark_from(3, true);
    Ok(())
}

/// The kernel's `struct sigaction` for `rt_sigaction` on x86_64 and aarch64 (not glibc's):
/// all zero is SIG_DFL, no flags, an empty mask.
#[repr(C)]
#[derive(Default)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Starts the program on the PTY slave, with the monitor's own environment; returns its pid
/// (also its process group and session). The monitor's own copy of the slave is closed on
/// return, so the master sees EIO once the program's side is gone.
///
/// (Not `posix_spawn`, although its shared-memory child would be cheaper than this fork:
/// glibc's leaves its two internal signals, 32 and 33, ignored in the program, which must
/// start with every disposition at its default.)
pub fn spawn(command: &[String], cwd: &Path, slave: OwnedFd) -> Result<u32, ProcessError> {
    let (program, args) = command.split_first().ok_or_else(|| ProcessError::Spawn {
        command: String::new(),
        cwd: cwd.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no command given: pass it after `--`",
        ),
    })?;
    let stdout = slave.try_clone().map_err(ProcessError::Dup)?;
    let stderr = slave.try_clone().map_err(ProcessError::Dup)?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::from(slave))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr));
    // SAFETY: child_setup only makes async-signal-safe calls.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, child_setup);
    }
    let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        command: command.join(" "),
        cwd: cwd.to_path_buf(),
        source,
    })?;
    // Dropping std's Child neither waits nor kills; the Reaper owns the program's status.
    Ok(child.id())
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

/// Start time of a process in clock ticks since boot: field 22 of `/proc/<pid>/stat`.
pub fn start_time(pid: u32) -> std::io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("field 22 (starttime) is missing or not a number in {stat:?}"),
        )
    })
}

/// The command name (field 2) may hold spaces and parentheses, so fields are counted from the
/// last `)`: what follows starts at field 3, making field 22 the 20th.
fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_command_names() {
        let fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        let stat = format!("1234 (a) b) (c ) {}", fields.join(" "));
        assert_eq!(parse_start_time(&stat), Some(22));
        assert_eq!(parse_start_time("1234 (x) S 1"), None);
        assert_eq!(parse_start_time("no parens"), None);
    }

    #[test]
    fn own_start_time_is_readable() {
        assert!(start_time(std::process::id()).unwrap() > 0);
    }
}
