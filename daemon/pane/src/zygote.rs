//! The zygote (`aifactory-pane --zygote`): one per daemon, started with its first session,
//! which makes the monitors: a `sessions new` then pays neither for loading a fresh program
//! (exec, dynamic linking, the C and Rust runtimes' start; a fork of this small,
//! single-threaded, idle process costs a fraction of that) nor for new processes' first wait
//! for a CPU. The zygote keeps [`WAITING`] monitors forked ahead of time, each already
//! detached, with its PTY and its program's process waiting on it ([`super::stub`]): on a
//! busy machine a new process, and a new session, wait a scheduler tick or more before they
//! first run, where waking a sleeping one takes microseconds. Monitors forked from it also
//! share its pages until they write them.
//!
//! The zygote reads requests from a `SOCK_SEQPACKET` socket on its stdin. A request is one
//! message: the monitor's arguments and the program's environment ([`encode`]), with two
//! descriptors attached: the write ends of the pipes that become the monitor's stdout (its
//! readiness report) and stderr. The zygote checks it, passes it on to the longest-waiting
//! monitor over that one's own socket, answers with its pid (`P` and 4 bytes, little endian)
//! or why it could not (`E` and a message), and then forks a replacement. The monitor runs the
//! session exactly as if `aifactory-pane ARGS` had been exec'd with that environment. The
//! zygote reaps nothing: SIGCHLD is ignored, so the kernel does. It exits when the daemon
//! closes the socket (the daemon ended), and only then (SIGHUP, SIGINT and SIGTERM are
//! ignored); the monitors it forked live on, and those still waiting see the zygote go and
//! end too.
//!
//! The zygote never starts a thread or an async runtime: a fork copies only the calling
//! thread, which is safe only in a process that has no other.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{IoSlice, IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::process::ExitCode;

use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};

use super::MonitorArgs;
use super::args::ArgsError;

/// The argument that makes `aifactory-pane` a zygote.
pub(crate) const FLAG: &str = "--zygote";
/// What the zygote ignores, and its children get back to default before they become monitors.
const IGNORED: [Signal; 4] = [
    Signal::SIGCHLD,
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGTERM,
];
/// The largest request: arguments and environment together. Larger ones are refused with
/// EMSGSIZE by the socket, and the daemon execs the monitor instead.
pub(crate) const MAX_REQUEST: usize = 256 << 10;

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

/// Why the zygote refused a request or could not fork a monitor for it; the daemon gets the
/// message in the answer (after `E`) and then execs the monitor itself.
#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum ServeError {
    #[error("the request does not end with a NUL")]
    NoTerminator,
    #[error("the request does not start with an argument count")]
    NoCount,
    #[error("the request announces {count} arguments but holds {held}")]
    Count { count: usize, held: usize },
    #[error("an environment entry without `=`")]
    EnvEntry,
    #[error("the request was cut short (over {MAX_REQUEST} bytes, or more than two descriptors)")]
    Truncated,
    #[error("the request carries {0} descriptors, not 2 (report and stderr pipes)")]
    Descriptors(usize),
    #[error("{}", .0.explain())]
    Args(ArgsError),
    #[error("cannot create a socket for the next monitor: {0}")]
    Socket(nix::Error),
    #[error("cannot fork the next monitor: {0}")]
    Fork(nix::Error),
}

pub(super) type Decoded = (Vec<OsString>, Vec<(OsString, OsString)>);

pub(super) fn decode(bytes: &[u8]) -> Result<Decoded, ServeError> {
    let body = bytes.strip_suffix(&[0]).ok_or(ServeError::NoTerminator)?;
    let mut items = body.split(|&b| b == 0);
    let count = items
        .next()
        .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
        .ok_or(ServeError::NoCount)?;
    let args: Vec<OsString> = items
        .by_ref()
        .take(count)
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect();
    if args.len() != count {
        return Err(ServeError::Count {
            count,
            held: args.len(),
        });
    }
    let env = items
        .map(|item| {
            let at = item
                .iter()
                .position(|&b| b == b'=')
                .ok_or(ServeError::EnvEntry)?;
            Ok((
                OsString::from_vec(item[..at].to_vec()),
                OsString::from_vec(item[at + 1..].to_vec()),
            ))
        })
        .collect::<Result<_, ServeError>>()?;
    Ok((args, env))
}

/// The zygote's own failure: printed to its stderr, which is the daemon's log.
fn fatal(message: &str) -> ExitCode {
    warn(message);
    ExitCode::FAILURE
}

/// One message from a socket: its length in the buffer given, the descriptors it carried,
/// and whether either was cut short. `None` at end of file.
struct Received {
    len: usize,
    fds: Vec<OwnedFd>,
    truncated: bool,
}

fn receive(socket: &OwnedFd, buf: &mut [u8]) -> nix::Result<Option<Received>> {
    loop {
        let mut cmsg = nix::cmsg_space!([RawFd; 2]);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => msg,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
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
        if msg.bytes == 0 && fds.is_empty() {
            return Ok(None);
        }
        return Ok(Some(Received {
            len: msg.bytes,
            fds,
            truncated,
        }));
    }
}

fn send(socket: &OwnedFd, bytes: &[u8], fds: &[RawFd]) -> nix::Result<()> {
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(bytes)],
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(|_| ())
}

/// A diagnostic of the zygote's that is not fatal, on its stderr (the daemon's log).
fn warn(message: &str) {
    let _ = writeln!(std::io::stderr(), "aifactory-pane --zygote: {message}");
}

/// Serves requests on stdin until the daemon closes it.
pub(crate) fn serve(mut extra: impl Iterator<Item = OsString>) -> ExitCode {
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
    super::process::close_from(4);
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
    let mut waiting = VecDeque::new();
    refill(&mut waiting, 1);
    let mut buf = vec![0u8; MAX_REQUEST];
    loop {
        let received = match receive(&socket, &mut buf) {
            Ok(Some(received)) => received,
            // The daemon is gone; the monitors stay (the waiting ones see us go and end).
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => return fatal(&format!("cannot read a request: {e}")),
        };
        let answer = match request(&buf[..received.len], received, &mut waiting) {
            Ok(pid) => {
                let mut answer = vec![b'P'];
                answer.extend_from_slice(&pid.to_le_bytes());
                answer
            }
            Err(e) => format!("E{e}").into_bytes(),
        };
        if let Err(e) = send(&socket, &answer, &[]) {
            return fatal(&format!("cannot answer the daemon: {e}"));
        }
        // After the answer, off the path of this `sessions new`.
        refill(&mut waiting, WAITING);
    }
}

/// How many monitors wait, prepared, for the next sessions. Enough that a burst of sessions
/// finds ready ones while the next are still being prepared on a busy machine (a new process
/// may wait a scheduler tick or more for its first run there, twice: for itself and for the
/// program's process); few enough to cost little: each holds a PTY and two small processes.
const WAITING: usize = 4;

/// A monitor forked and prepared ahead of its session, waiting on its end of `link`.
struct Waiting {
    pid: u32,
    link: OwnedFd,
}

/// Forks monitors until `want` wait. A failure is logged and left for the next refill.
fn refill(waiting: &mut VecDeque<Waiting>, want: usize) {
    while waiting.len() < want {
        match fork_waiting() {
            Ok(next) => waiting.push_back(next),
            Err(e) => {
                warn(&e.to_string());
                return;
            }
        }
    }
}

/// Forks a monitor that prepares itself and waits for its session.
fn fork_waiting() -> Result<Waiting, ServeError> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(ServeError::Socket)?;
    // SAFETY: this process has one thread, so the child may run any code.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(ServeError::Fork(e)),
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Waiting {
            pid: child.as_raw() as u32,
            link: ours,
        }),
        Ok(nix::unistd::ForkResult::Child) => {
            drop(ours);
            // Nothing of the zygote's loop may run on in the child.
            std::process::exit(i32::from(await_session(theirs)))
        }
    }
}

/// Checks one request and hands it to the longest-waiting monitor (forking one if none is
/// left, or they are gone); returns its pid.
fn request(
    bytes: &[u8],
    received: Received,
    waiting: &mut VecDeque<Waiting>,
) -> Result<u32, ServeError> {
    if received.truncated {
        return Err(ServeError::Truncated);
    }
    if received.fds.len() != 2 {
        return Err(ServeError::Descriptors(received.fds.len()));
    }
    // Checked here, so a bad request is refused and the waiting monitors stay for good ones.
    let (args, _) = decode(bytes)?;
    MonitorArgs::parse(args).map_err(ServeError::Args)?;
    let fds = [received.fds[0].as_raw_fd(), received.fds[1].as_raw_fd()];
    loop {
        let next = match waiting.pop_front() {
            Some(next) => next,
            None => fork_waiting()?,
        };
        match send(&next.link, bytes, &fds) {
            Ok(()) => return Ok(next.pid),
            // It ended while it waited (its preparation failed and said why, or it was
            // killed): the next one takes the session.
            Err(e) => warn(&format!(
                "the waiting monitor (pid {}) is gone ({e}); another takes the session",
                next.pid
            )),
        }
    }
}

/// In a forked monitor: prepares itself (detached, with a PTY and the program's process),
/// waits for its session on `link`, then runs it as if `aifactory-pane ARGS` had been exec'd
/// with the request's environment. Ends quietly when the zygote goes away first.
fn await_session(link: OwnedFd) -> u8 {
    for sig in IGNORED {
        // SAFETY: restoring the default disposition runs no code.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
    // The link becomes fd 3; the daemon's socket, which was there, is not ours to keep.
    // SAFETY: dup3 only duplicates a descriptor; what fd 3 held is closed by it, as wanted.
    if unsafe { libc::dup3(link.as_raw_fd(), 3, libc::O_CLOEXEC) } != 3 {
        return 1;
    }
    drop(link);
    // SAFETY: fd 3 now holds the link and nothing else owns it.
    let link = unsafe { OwnedFd::from_raw_fd(3) };
    let prepared = match super::prepare(4) {
        Ok(prepared) => prepared,
        Err(e) => {
            warn(&format!(
                "a monitor could not prepare itself (pid {}): {e}",
                std::process::id()
            ));
            return 1;
        }
    };
    let mut buf = vec![0u8; MAX_REQUEST];
    let received = match receive(&link, &mut buf) {
        Ok(Some(received)) => received,
        // The zygote is gone: so is the daemon that would have used us.
        Ok(None) | Err(_) => return 0,
    };
    let (args, env) = match decode(&buf[..received.len]) {
        Ok(decoded) => decoded,
        Err(_) => return 1,
    };
    let (Ok(args), Ok([stdout, stderr])) = (
        MonitorArgs::parse(args),
        <[OwnedFd; 2]>::try_from(received.fds),
    ) else {
        return 1;
    };
    if nix::unistd::dup2_stdout(stdout.as_fd())
        .and_then(|()| nix::unistd::dup2_stderr(stderr.as_fd()))
        .is_err()
    {
        return 1;
    }
    drop((stdout, stderr, link, buf));
    super::run_prepared(args, env, prepared)
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
