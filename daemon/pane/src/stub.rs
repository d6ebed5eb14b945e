//! The program's process, made before its command is known: forked by the monitor as soon as
//! it has a PTY, it starts its own session with the terminal as controlling terminal, puts
//! every signal back to its default, and waits for the command, which it then execs in place.
//!
//! Why ahead of time: on a busy machine, a new process (and a new session, which gets a
//! scheduling group of its own) waits for a CPU far longer than a sleeping one that is woken,
//! and a `sessions new` returns only once the program runs. Made early, both waits happen
//! before anyone asks for a session; starting the program is then a wake-up and an exec.
//!
//! The stub reads its command from a pipe until end of file: the working directory, the count
//! of the cage's arguments and those arguments ([`Cage::to_args`]; none: not confined), the
//! command and the environment, encoded as a zygote request ([`super::zygote::encode`]). It
//! reports a failure through a close-on-exec pipe (one byte for the step, `C` chdir, `L` the
//! cage (Landlock) or `E` exec, then the errno, 4 bytes little endian) and exits 127; a
//! successful exec closes the pipe with nothing in it. End of file before any command (the
//! monitor went away unused) makes it exit 0.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::cage::Cage;
use super::process::{ProcessError, close_from};

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

/// The monitor's handle on the waiting program process.
pub struct Stub {
    pid: u32,
    command: File,
    status: File,
}

impl Stub {
    /// Forks the program's process on the PTY `slave` (which the monitor no longer holds
    /// afterwards, so the master sees EIO once the program's side is gone). Only in a process
    /// with a single thread: the child runs ordinary code before it execs.
    pub fn fork(slave: OwnedFd) -> Result<Stub, ProcessError> {
        let pipes = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .and_then(|command| Ok((command, nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)))
            .map_err(|e| ProcessError::Stub(e.into()))?;
        let ((command_r, command_w), (status_r, status_w)) = pipes;
        // SAFETY: the caller has one thread, so the child may run any code.
        match unsafe { nix::unistd::fork() } {
            Err(e) => Err(ProcessError::Stub(e.into())),
            Ok(nix::unistd::ForkResult::Child) => {
                drop((command_w, status_r));
                wait_and_exec(slave, command_r, status_w)
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Stub {
                pid: child.as_raw() as u32,
                command: File::from(command_w),
                status: File::from(status_r),
            }),
        }
    }

    /// Has the process exec `command` in `cwd` with exactly `env` (its `PATH` is where the
    /// command is looked up), confined to `cage` when given, after it joined each of
    /// `cgroups`; returns once the exec succeeded, or why it did not (the process has then
    /// exited, and is reaped here).
    pub fn exec(
        mut self,
        command: &[String],
        cwd: &Path,
        env: &[(OsString, OsString)],
        cage: Option<&Cage>,
        cgroups: &[std::path::PathBuf],
    ) -> Result<u32, ProcessError> {
        let failed = |source: std::io::Error| ProcessError::Spawn {
            command: command.join(" "),
            cwd: cwd.to_path_buf(),
            source,
        };
        if command.first().is_none_or(String::is_empty) {
            return Err(failed(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "no command given: pass it after `--`",
            )));
        }
        // Moved from here, not by the process itself: its cage will not let it write the
        // cgroup file system, and it must be inside before it runs anything.
        for dir in cgroups {
            if let Err(source) = std::fs::write(dir.join("cgroup.procs"), self.pid.to_string()) {
                super::process::kill_and_reap(self.pid);
                return Err(ProcessError::Cgroup {
                    dir: dir.clone(),
                    source,
                });
            }
        }
        let cage_args = cage.map(Cage::to_args).unwrap_or_default();
        let mut items = vec![
            cwd.as_os_str().to_os_string(),
            cage_args.len().to_string().into(),
        ];
        items.extend(cage_args);
        items.extend(command.iter().map(OsString::from));
        let request = super::zygote::encode(&items, env);
        // Written whole, then closed: the stub reads to end of file.
        let written = self.command.write_all(&request);
        drop(self.command);
        let mut report = Vec::new();
        let read = self.status.read_to_end(&mut report);
        match (&report[..], written, read) {
            ([], Ok(()), Ok(_)) => Ok(self.pid),
            ([step, errno @ ..], _, _) if errno.len() == 4 => {
                reap(self.pid);
                let errno = i32::from_le_bytes([errno[0], errno[1], errno[2], errno[3]]);
                let source = std::io::Error::from_raw_os_error(errno);
                Err(match step {
                    b'C' => ProcessError::Cwd {
                        cwd: cwd.to_path_buf(),
                        source,
                    },
                    b'L' => ProcessError::Cage { source },
                    _ => failed(source),
                })
            }
            (_, Err(e), _) | (_, _, Err(e)) => {
                super::process::kill_and_reap(self.pid);
                Err(ProcessError::Stub(e))
            }
            _ => {
                super::process::kill_and_reap(self.pid);
                Err(ProcessError::Stub(std::io::Error::other(
                    "the program's process answered with bytes that mean nothing",
                )))
            }
        }
    }
}

fn reap(pid: u32) {
    let mut status = 0;
    // SAFETY: waitpid writes the status to a valid pointer; the stub has exited.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
}

/// In the forked child: becomes the program's process, waits for the command and execs it.
fn wait_and_exec(slave: OwnedFd, command: OwnedFd, status: OwnedFd) -> ! {
    // A failure before the command is known: nothing to report it to but the exit status.
    let fail = |code| -> ! {
        // SAFETY: _exit ends this process at once, running nothing of the monitor's.
        unsafe { libc::_exit(code) }
    };
    // SAFETY: plain system calls on this process's own state.
    unsafe {
        if libc::setsid() < 0
            || libc::dup2(slave.as_raw_fd(), 0) < 0
            || libc::dup2(slave.as_raw_fd(), 1) < 0
            || libc::dup2(slave.as_raw_fd(), 2) < 0
            || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0
        {
            fail(126);
        }
        // Signals 1..=64 (SIGKILL and SIGSTOP just fail). The raw system call, because glibc
        // refuses to touch its two internal signals (32 and 33), and its posix_spawn, which
        // started this monitor (or its zygote), leaves them ignored: the program must not
        // inherit that.
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
        // Only the two pipes stay, as 3 and 4, closed by the exec. (By way of 10 and up, as
        // either may be 3 or 4 already, which dup3 refuses.)
        let high_command = libc::fcntl(command.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10);
        let high_status = libc::fcntl(status.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10);
        if high_command < 0
            || high_status < 0
            || libc::dup3(high_command, 3, libc::O_CLOEXEC) != 3
            || libc::dup3(high_status, 4, libc::O_CLOEXEC) != 4
        {
            fail(126);
        }
    }
    // Every other descriptor, these three included, is closed here or was replaced above.
    std::mem::forget((slave, command, status));
    close_from(5);
    // SAFETY: fds 3 and 4 were just set up, and nothing else owns them.
    let (mut command, mut status) = unsafe { (File::from_raw_fd(3), File::from_raw_fd(4)) };
    let mut request = Vec::new();
    if command.read_to_end(&mut request).is_err() {
        fail(126);
    }
    if request.is_empty() {
        // The monitor went away before it had a session for us.
        fail(0);
    }
    let Ok((items, env)) = super::zygote::decode(&request) else {
        fail(126);
    };
    let report = |status: &mut File, step: u8, e: nix::Error| -> ! {
        let mut bytes = vec![step];
        bytes.extend_from_slice(&(e as i32).to_le_bytes());
        let _ = status.write_all(&bytes);
        fail(127)
    };
    let [cwd, cage_len, rest @ ..] = &items[..] else {
        fail(126);
    };
    let Some(cage_len) = cage_len.to_str().and_then(|n| n.parse::<usize>().ok()) else {
        fail(126);
    };
    if cage_len > rest.len() {
        fail(126);
    }
    let (cage_args, command) = rest.split_at(cage_len);
    let cage = match cage_args.is_empty() {
        true => None,
        false => match Cage::from_args(cage_args) {
            Some(cage) => Some(cage),
            None => fail(126),
        },
    };
    // SAFETY: this process has one thread.
    unsafe {
        for (key, _) in std::env::vars_os() {
            std::env::remove_var(key);
        }
        for (key, value) in env {
            std::env::set_var(key, value);
        }
    }
    if let Err(e) = nix::unistd::chdir(Path::new(cwd)) {
        report(&mut status, b'C', e);
    }
    // The daemon runs with umask 077 for its own files; the program gets the usual 022, so
    // what an agent creates in a work tree is readable as from a shell, or 002 when it starts
    // in a group-writable directory (a project shared through its group: README). There git
    // with core.sharedRepository=group makes each new directory group-writable by a chmod that
    // keeps its setgid bit, which the packaged service refuses (RestrictSUIDSGID=yes: "adding
    // files failed"); a directory made group-writable by the umask needs no chmod.
    let group_writable = nix::sys::stat::stat(".").is_ok_and(|st| st.st_mode & 0o020 != 0);
    // Last before the exec: everything above may still touch what the cage refuses.
    if let Some(cage) = &cage
        && let Err(e) = cage.apply()
    {
        report(&mut status, b'L', e.errno());
    }
    let umask = if group_writable { 0o002 } else { 0o022 };
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    let argv: Vec<CString> = command
        .iter()
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    if argv.len() != command.len() || argv.is_empty() {
        report(&mut status, b'E', nix::Error::EINVAL);
    }
    // execvp looks the command up in the PATH just set; it returns only on failure.
    match nix::unistd::execvp(&argv[0], &argv) {
        Err(e) => report(&mut status, b'E', e),
        Ok(never) => match never {},
    }
}
