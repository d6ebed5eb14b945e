//! The zygote (`aifactory-pane --zygote`): one per daemon, started at its startup, which
//! forks a new monitor for every session, so that a `sessions new` does not pay for loading a
//! fresh program (exec, dynamic linking, the C and Rust runtimes' start): a fork of this small,
//! single-threaded, idle process costs a fraction of that. Monitors forked from it also share
//! its pages until they write them.
//!
//! The zygote reads requests from a `SOCK_SEQPACKET` socket on its stdin. A request is one
//! message: the monitor's arguments and the program's environment ([`encode`]), with two
//! descriptors attached: the write ends of the pipes that become the new monitor's stdout (its
//! readiness report) and stderr. The zygote forks; the child becomes that monitor exactly as
//! if `aifactory-pane ARGS` had been exec'd with that environment; the zygote answers with the
//! child's pid (`P` and 4 bytes, little endian) or why it could not (`E` and a message). The
//! zygote reaps nothing: SIGCHLD is ignored, so the kernel does. It exits when the daemon
//! closes the socket (the daemon ended), and only then (SIGHUP, SIGINT and SIGTERM are
//! ignored); the monitors it forked live on.
//!
//! The zygote never starts a thread or an async runtime: a fork copies only the calling
//! thread, which is safe only in a process that has no other.

use std::ffi::OsString;
use std::io::{IoSlice, IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::process::ExitCode;

use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

use super::MonitorArgs;

/// The argument that makes `aifactory-pane` a zygote.
pub const FLAG: &str = "--zygote";
/// What the zygote ignores, and its children get back to default before they become monitors.
const IGNORED: [Signal; 4] = [
    Signal::SIGCHLD,
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGTERM,
];
/// The largest request: arguments and environment together. Larger ones are refused with
/// EMSGSIZE by the socket, and the daemon execs the monitor instead.
pub const MAX_REQUEST: usize = 256 << 10;

/// A request's bytes: the argument count, then every argument, then every `KEY=VALUE` of the
/// environment, each ended by a NUL (which no argument or variable can contain).
pub fn encode(args: &[OsString], env: &[(OsString, OsString)]) -> Vec<u8> {
    let mut out = format!("{}\0", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(arg.as_bytes());
        out.push(0);
    }
    for (key, value) in env {
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

type Decoded = (Vec<OsString>, Vec<(OsString, OsString)>);

fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    let body = bytes
        .strip_suffix(&[0])
        .ok_or("the request does not end with a NUL")?;
    let mut items = body.split(|&b| b == 0);
    let count = items
        .next()
        .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
        .ok_or("the request does not start with an argument count")?;
    let args: Vec<OsString> = items
        .by_ref()
        .take(count)
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect();
    if args.len() != count {
        return Err(format!(
            "the request announces {count} arguments but holds {}",
            args.len()
        ));
    }
    let env = items
        .map(|item| {
            let at = item
                .iter()
                .position(|&b| b == b'=')
                .ok_or("an environment entry without `=`")?;
            Ok((
                OsString::from_vec(item[..at].to_vec()),
                OsString::from_vec(item[at + 1..].to_vec()),
            ))
        })
        .collect::<Result<_, &str>>()?;
    Ok((args, env))
}

/// The zygote's own failure: printed to its stderr, which is the daemon's log.
fn fatal(message: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "aifactory-pane --zygote: {message}");
    ExitCode::FAILURE
}

/// Serves requests on stdin until the daemon closes it.
pub fn serve(mut extra: impl Iterator<Item = OsString>) -> ExitCode {
    if let Some(arg) = extra.next() {
        return fatal(&format!(
            "unexpected argument `{}`: the zygote takes none (it is started by aifactoryd)",
            arg.to_string_lossy()
        ));
    }
    // The socket moves from fd 0 to fd 3, and fd 0 becomes /dev/null: the stdin every monitor
    // then inherits. Whatever else the daemon left open (a socket-activated listener is not
    // close-on-exec, for one) is closed.
    // SAFETY: dup3 only duplicates a descriptor; fd 3, if open, is one the zygote never uses.
    if unsafe { libc::dup3(0, 3, libc::O_CLOEXEC) } != 3 {
        return fatal(&format!(
            "cannot move the request socket from stdin: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: fd 3 now holds the socket and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(3) };
    super::process::close_or_mark_from(4, false);
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null");
    if let Err(e) = null.and_then(|null| Ok(nix::unistd::dup2_stdin(&null)?)) {
        return fatal(&format!("cannot put /dev/null on stdin: {e}"));
    }
    // SIGCHLD ignored makes the kernel reap the monitors we fork. The others: the zygote ends
    // when the daemon does, not when a signal meant for both (systemd's stop, a terminal's
    // Ctrl-C) happens to reach it first.
    for sig in IGNORED {
        // SAFETY: SIG_IGN runs no code.
        if let Err(e) = unsafe { signal(sig, SigHandler::SigIgn) } {
            return fatal(&format!("cannot ignore {sig}: {e}"));
        }
    }
    let mut buf = vec![0u8; MAX_REQUEST];
    loop {
        let mut cmsg = nix::cmsg_space!([RawFd; 2]);
        let (len, fds, truncated) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = match recvmsg::<()>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => msg,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return fatal(&format!("cannot read a request: {e}")),
            };
            let mut fds = Vec::new();
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmRights(received) = c {
                        // SAFETY: the kernel just installed these descriptors for us.
                        fds.extend(
                            received
                                .into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
            }
            let truncated = msg
                .flags
                .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
            (msg.bytes, fds, truncated)
        };
        if len == 0 && fds.is_empty() {
            // The daemon is gone; the monitors stay.
            return ExitCode::SUCCESS;
        }
        let answer = match request(&buf[..len], fds, truncated) {
            Ok(pid) => {
                let mut answer = vec![b'P'];
                answer.extend_from_slice(&pid.to_le_bytes());
                answer
            }
            Err(message) => format!("E{message}").into_bytes(),
        };
        if let Err(e) = sendmsg::<()>(
            socket.as_raw_fd(),
            &[IoSlice::new(&answer)],
            &[],
            MsgFlags::empty(),
            None,
        ) {
            return fatal(&format!("cannot answer the daemon: {e}"));
        }
    }
}

/// Checks one request and forks its monitor; returns the monitor's pid. Only the child
/// returns from here into the monitor, and never comes back.
fn request(bytes: &[u8], fds: Vec<OwnedFd>, truncated: bool) -> Result<u32, String> {
    if truncated {
        return Err(format!(
            "the request was cut short (over {MAX_REQUEST} bytes, or more than two descriptors)"
        ));
    }
    let [stdout, stderr]: [OwnedFd; 2] = fds.try_into().map_err(|fds: Vec<OwnedFd>| {
        format!(
            "the request carries {} descriptors, not 2 (report and stderr pipes)",
            fds.len()
        )
    })?;
    let (args, env) = decode(bytes)?;
    let args = MonitorArgs::parse(args).map_err(|e| e.explain())?;
    // SAFETY: this process has one thread, so the child may run any code.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(format!("cannot fork a monitor: {e}")),
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(child.as_raw() as u32),
        Ok(nix::unistd::ForkResult::Child) => {
            let code = become_monitor(args, env, stdout, stderr);
            // Nothing of the zygote's loop may run on in the child.
            std::process::exit(i32::from(code))
        }
    }
}

/// In the forked child: the zygote's state undone, the request's pipes as stdout and stderr,
/// then the monitor. (The monitor's start closes every descriptor from 3 up, the zygote's
/// socket among them.)
fn become_monitor(
    args: MonitorArgs,
    env: Vec<(OsString, OsString)>,
    stdout: OwnedFd,
    stderr: OwnedFd,
) -> u8 {
    for sig in IGNORED {
        // SAFETY: restoring the default disposition runs no code.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
    if nix::unistd::dup2_stdout(stdout.as_fd())
        .and_then(|()| nix::unistd::dup2_stderr(stderr.as_fd()))
        .is_err()
    {
        return 1;
    }
    drop((stdout, stderr));
    super::run_with_env(args, Some(env))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let args: Vec<OsString> = ["--dir", "/p/s-1", "--", "sh", "-c", "a=b; echo $a", ""]
            .iter()
            .map(OsString::from)
            .collect();
        let env = vec![
            (OsString::from("PATH"), OsString::from("/usr/bin:/bin")),
            (OsString::from("X"), OsString::from("a=b=c")),
            (OsString::from("EMPTY"), OsString::new()),
        ];
        assert_eq!(decode(&encode(&args, &env)), Ok((args.clone(), env)));
        assert_eq!(decode(&encode(&args, &[])), Ok((args, vec![])));
    }

    #[test]
    fn malformed_requests_are_refused() {
        assert!(decode(b"").is_err());
        assert!(decode(b"2\0a\0").is_err());
        assert!(decode(b"x\0").is_err());
        assert!(decode(b"1\0a\0NOEQUALS\0").is_err());
        assert!(decode(b"1\0a").is_err());
    }
}
