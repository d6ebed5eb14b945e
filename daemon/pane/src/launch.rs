//! The daemon's side of starting a monitor: the `aifactory-pane` binary beside the daemon's
//! own, opened once at startup, and a start that returns once the program runs.
//!
//! **How a monitor starts.** Through the [`zygote`](super::zygote): one `aifactory-pane
//! --zygote` per daemon, started with the first session, hands each new session to a monitor
//! it forked and prepared ahead of time, which is much cheaper than exec'ing one (no program
//! load, dynamic linking, runtime start or new process on the path of `sessions new`). A zygote that died is started again; when that fails too, or a
//! request is too large for it, the monitor is exec'd directly, as the zygote is only a
//! shortcut. Either way the daemon reads the monitor's one-line readiness report from a pipe.
//!
//! **Why the binary is held open.** A package upgrade replaces `aifactory-pane` (by rename)
//! while the old daemon still runs. A monitor started from the new file could expect other
//! arguments or speak another monitor protocol than this daemon. So the daemon opens the file
//! once at startup and always execs *that* file through `/proc/self/fd/N` (fexecve semantics:
//! the kernel runs the inode the descriptor holds, whatever the path names now): every monitor
//! a daemon starts is of the daemon's own build, until the daemon itself is restarted. The
//! alternative, checking `MONITOR_PROTOCOL_VERSION` in the monitor's report, would only turn
//! the mismatch into failed session starts until that restart.

use std::ffi::OsString;
use std::fs::File;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use aifactory_common::pane::MonitorInfo;
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, recv, sendmsg, socketpair,
};
use tokio::io::AsyncReadExt;
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

use super::{MonitorArgs, zygote};

/// The monitor binary's file name, beside the daemon's.
const MONITOR_BIN: &str = "aifactory-pane";
/// How long a new monitor may take to report that the program runs.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a monitor that failed to start may take to exit and say why.
const FAILED_EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the zygote may take to answer a request (it only forks).
const ZYGOTE_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "cannot find the daemon's own executable to look for {MONITOR_BIN} beside it: {0}: is /proc mounted?"
    )]
    CurrentExe(std::io::Error),
    #[error(
        "the pane monitor {} is missing or unreadable ({source}): install it beside aifactoryd, from the same build (`cargo build --release -p aifactoryd -p aifactory-pane` builds both; the package installs both in /usr/bin)",
        path.display()
    )]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the pane monitor {} is not an executable file (mode {mode:o}): reinstall it from the same build as aifactoryd, or `chmod 755` it",
        path.display()
    )]
    NotExecutable { path: PathBuf, mode: u32 },
}

/// Why a session's monitor, or the program under it, did not start. The monitor's own
/// explanation (what it wrote on stderr) is in `stderr`.
#[derive(Debug, thiserror::Error)]
pub enum LaunchFailure {
    #[error("cannot create the pane monitor's pipes: {0}")]
    Pipes(nix::Error),
    #[error("cannot read the pane monitor's pipes: {0}")]
    ReadPipes(std::io::Error),
    #[error(
        "cannot start the pane monitor {} (opened at startup): {source}",
        path.display()
    )]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A monitor the daemon exec'd itself.
    #[error("the session's program did not start ({why}): {}", stderr.trim())]
    Direct { why: NoReport, stderr: String },
    /// A monitor the zygote forked.
    #[error(
        "the session's program did not start (its pane monitor, pid {pid}: {why}): {}",
        stderr.trim()
    )]
    Forked {
        pid: u32,
        why: NoReport,
        stderr: String,
    },
}

/// What became of a monitor that did not report that the program runs.
#[derive(Debug, thiserror::Error)]
pub enum NoReport {
    #[error("{0}")]
    Exited(std::process::ExitStatus),
    /// Exited, with a status only its parent (the zygote) sees.
    #[error("it exited")]
    Gone,
    #[error("cannot wait for it: {0}")]
    Wait(std::io::Error),
    #[error("no report within {seconds} s, so it was killed")]
    Killed { seconds: u64 },
}

/// The monitor binary, held open for the daemon's lifetime, and its zygote once started.
#[derive(Debug)]
pub struct Launcher {
    file: File,
    path: PathBuf,
    /// One request at a time: the zygote answers in order, on one socket.
    zygote: Arc<tokio::sync::Mutex<Option<Zygote>>>,
}

impl Launcher {
    /// Opens [`MONITOR_BIN`] in the directory of the running daemon's executable.
    pub fn beside_current_exe() -> Result<Launcher, LaunchError> {
        let exe = std::env::current_exe().map_err(LaunchError::CurrentExe)?;
        let dir = exe.parent().unwrap_or(Path::new("/"));
        Launcher::open(&dir.join(MONITOR_BIN))
    }

    /// Opens the monitor binary at `path` (read-only and close-on-exec: no child inherits it).
    pub fn open(path: &Path) -> Result<Launcher, LaunchError> {
        let open_error = |source| LaunchError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(open_error)?;
        let meta = file.metadata().map_err(open_error)?;
        let mode = meta.permissions().mode();
        if !meta.is_file() || mode & 0o111 == 0 {
            return Err(LaunchError::NotExecutable {
                path: path.to_path_buf(),
                mode: mode & 0o7777,
            });
        }
        Ok(Launcher {
            file,
            path: path.to_path_buf(),
            zygote: Arc::new(tokio::sync::Mutex::new(None)),
        })
    }

    /// The binary to exec: the file opened at startup. The descriptor is close-on-exec; the
    /// kernel resolves the path before it closes it. (That works for an ELF binary, which the
    /// monitor is; a script's interpreter would find the descriptor closed.)
    fn command(&self) -> tokio::process::Command {
        let mut cmd =
            tokio::process::Command::new(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
        cmd.arg0(MONITOR_BIN);
        cmd
    }

    /// Where the binary was found (at startup; the path may name another file by now).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a monitor with `args`; the program gets exactly `env`. Returns the monitor's
    /// report once the program runs, or why it did not start.
    pub async fn start(
        &self,
        args: &MonitorArgs,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<MonitorInfo, LaunchFailure> {
        let env: Vec<(OsString, OsString)> = env
            .into_iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect();
        let pipes = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .and_then(|report| Ok((report, nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)));
        let ((report_r, report_w), (err_r, err_w)) = match pipes {
            Ok(pipes) => pipes,
            Err(e) => return Err(LaunchFailure::Pipes(e)),
        };
        let request = zygote::encode(&args.to_args(), &env);
        // A task of its own: if this caller goes away, the exchange with the zygote still
        // completes, so no answer is left for the next request to misread.
        let forked = tokio::spawn(fork_from_zygote(
            self.zygote.clone(),
            self.command(),
            request,
            [report_w, err_w],
        ))
        .await
        .unwrap_or_else(|e| Err(ZygoteError::Task(e)));
        match forked {
            Ok(pid) => await_report(report_r, err_r, pid).await,
            Err(why) => {
                tracing::warn!("starting a pane monitor without the zygote (slower): {why}");
                self.start_direct(args, env).await
            }
        }
    }

    /// Execs a monitor of its own for one session: the way without the zygote.
    async fn start_direct(
        &self,
        args: &MonitorArgs,
        env: Vec<(OsString, OsString)>,
    ) -> Result<MonitorInfo, LaunchFailure> {
        let mut cmd = self.command();
        cmd.args(args.to_args())
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| LaunchFailure::Spawn {
            path: self.path.clone(),
            source,
        })?;
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        // The report is one line, then the monitor closes stdout.
        let report = async {
            let mut out = String::new();
            if let Some(pipe) = stdout.as_mut() {
                let _ = pipe.read_to_string(&mut out).await;
            }
            out
        };
        let out = tokio::time::timeout(START_TIMEOUT, report)
            .await
            .unwrap_or_default();
        let info = serde_json::from_str::<MonitorInfo>(out.trim());
        if let Ok(info) = info {
            tokio::spawn(async move {
                // Drained so a late diagnostic never blocks the monitor on a full pipe.
                if let Some(pipe) = stderr.as_mut() {
                    let _ = tokio::io::copy(pipe, &mut tokio::io::sink()).await;
                }
                let _ = child.wait().await;
            });
            return Ok(info);
        }
        let mut err = String::new();
        let ended = tokio::time::timeout(FAILED_EXIT_TIMEOUT, async {
            if let Some(pipe) = stderr.as_mut() {
                let _ = pipe.read_to_string(&mut err).await;
            }
            child.wait().await
        })
        .await;
        let why = match ended {
            Ok(Ok(status)) => NoReport::Exited(status),
            Ok(Err(e)) => NoReport::Wait(e),
            Err(_) => {
                // Neither a report nor an exit: it must not start the program later, unseen.
                let _ = child.start_kill();
                NoReport::Killed {
                    seconds: START_TIMEOUT.as_secs(),
                }
            }
        };
        Err(LaunchFailure::Direct { why, stderr: err })
    }
}

/// The zygote as the daemon sees it: its end of the request socket.
#[derive(Debug)]
struct Zygote {
    socket: AsyncFd<OwnedFd>,
    pid: u32,
}

/// Why the zygote did not fork a monitor (the daemon then execs one itself). `Gone` is worth
/// one new zygote; the rest is not.
#[derive(Debug, thiserror::Error)]
enum ZygoteError {
    #[error("the zygote (pid {pid}) is gone: {source}")]
    Gone { pid: u32, source: std::io::Error },
    #[error("the request is {0} bytes, over what the zygote's socket takes")]
    TooLarge(usize),
    /// The zygote's own explanation.
    #[error("the zygote refused: {0}")]
    Refused(String),
    #[error("the zygote answered {0} bytes that mean nothing")]
    Garbled(usize),
    #[error("cannot create the zygote's socket: {0}")]
    Socket(nix::Error),
    #[error("cannot set up the zygote's socket: {0}")]
    SetUp(nix::Error),
    #[error("cannot start the zygote: {0}")]
    Spawn(std::io::Error),
    #[error("cannot watch the zygote's socket: {0}")]
    Watch(std::io::Error),
    #[error("the zygote was gone again right after it was started")]
    GoneAgain,
    #[error("the zygote (pid {pid}) did not answer within {seconds} s; a new one will be started")]
    NoAnswer { pid: u32, seconds: u64 },
    #[error("the request task failed: {0}")]
    Task(tokio::task::JoinError),
}

impl Zygote {
    /// Starts `aifactory-pane --zygote` on a new socket; a task reaps it when it ends.
    fn spawn(mut cmd: tokio::process::Command) -> Result<Zygote, ZygoteError> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )
        .map_err(ZygoteError::Socket)?;
        // The zygote's end blocks: it only ever waits for the next request.
        nix::fcntl::fcntl(
            &theirs,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
        )
        .map_err(ZygoteError::SetUp)?;
        // Its environment does not matter: each monitor's program gets its own.
        cmd.arg(zygote::FLAG)
            .env_clear()
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().map_err(ZygoteError::Spawn)?;
        let pid = child.id().unwrap_or(0);
        tokio::spawn(async move {
            match child.wait().await {
                Ok(status) if status.success() => {}
                Ok(status) => {
                    tracing::warn!(
                        pid,
                        "the pane monitor zygote ended ({status}); the next session starts a new one"
                    )
                }
                Err(e) => tracing::warn!(pid, "cannot wait for the pane monitor zygote: {e}"),
            }
        });
        // SAFETY: the AsyncFd owns the descriptor from here on; nothing else closes it.
        let socket =
            unsafe { AsyncFd::register(ours) }.map_err(|e| ZygoteError::Watch(e.into_parts().1))?;
        tracing::debug!(pid, "pane monitor zygote started");
        Ok(Zygote { socket, pid })
    }

    /// Sends one request with the monitor's stdout and stderr pipes; returns the new
    /// monitor's pid.
    async fn fork(&self, request: &[u8], pipes: &[OwnedFd; 2]) -> Result<u32, ZygoteError> {
        let gone = |source: std::io::Error| ZygoteError::Gone {
            pid: self.pid,
            source,
        };
        let fds = [pipes[0].as_raw_fd(), pipes[1].as_raw_fd()];
        loop {
            let mut ready = self.socket.writable().await.map_err(gone)?;
            let sent = ready.try_io(|socket| {
                sendmsg::<()>(
                    socket.as_raw_fd(),
                    &[IoSlice::new(request)],
                    &[ControlMessage::ScmRights(&fds)],
                    MsgFlags::MSG_NOSIGNAL,
                    None,
                )
                .map_err(std::io::Error::from)
            });
            match sent {
                Ok(Ok(_)) => break,
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    return Err(ZygoteError::TooLarge(request.len()));
                }
                Ok(Err(e)) => return Err(gone(e)),
                Err(_would_block) => {}
            }
        }
        let mut answer = [0u8; 4096];
        let len = loop {
            let mut ready = self.socket.readable().await.map_err(gone)?;
            match ready.try_io(|socket| {
                recv(socket.as_raw_fd(), &mut answer, MsgFlags::empty())
                    .map_err(std::io::Error::from)
            }) {
                Ok(Ok(0)) => return Err(gone(std::io::Error::other("it closed its socket"))),
                Ok(Ok(len)) => break len,
                Ok(Err(e)) => return Err(gone(e)),
                Err(_would_block) => {}
            }
        };
        match &answer[..len] {
            [b'P', pid @ ..] if pid.len() == 4 => {
                Ok(u32::from_le_bytes([pid[0], pid[1], pid[2], pid[3]]))
            }
            [b'E', message @ ..] => Err(ZygoteError::Refused(
                String::from_utf8_lossy(message).into_owned(),
            )),
            other => Err(ZygoteError::Garbled(other.len())),
        }
    }
}

/// Has the zygote fork a monitor with these pipes, starting a zygote first if there is none
/// or it is gone (once); returns the monitor's pid. Our ends of the pipes close on return.
async fn fork_from_zygote(
    slot: Arc<tokio::sync::Mutex<Option<Zygote>>>,
    cmd: tokio::process::Command,
    request: Vec<u8>,
    pipes: [OwnedFd; 2],
) -> Result<u32, ZygoteError> {
    let mut slot = slot.lock().await;
    let mut cmd = Some(cmd);
    loop {
        let zygote = match slot.as_ref() {
            Some(zygote) => zygote,
            None => {
                let cmd = cmd.take().ok_or(ZygoteError::GoneAgain)?;
                slot.insert(Zygote::spawn(cmd)?)
            }
        };
        match tokio::time::timeout(ZYGOTE_ANSWER_TIMEOUT, zygote.fork(&request, &pipes)).await {
            Ok(Ok(pid)) => return Ok(pid),
            Ok(Err(gone @ ZygoteError::Gone { .. })) => {
                tracing::warn!("{gone}");
                // Dropping our end tells a zygote that is still alive to exit.
                *slot = None;
            }
            Ok(Err(other)) => return Err(other),
            Err(_) => {
                let pid = zygote.pid;
                *slot = None;
                return Err(ZygoteError::NoAnswer {
                    pid,
                    seconds: ZYGOTE_ANSWER_TIMEOUT.as_secs(),
                });
            }
        }
    }
}

/// Reads the report of a monitor the zygote forked (`pid`) from its pipes.
async fn await_report(
    report: OwnedFd,
    err: OwnedFd,
    pid: u32,
) -> Result<MonitorInfo, LaunchFailure> {
    let mut report = pipe::Receiver::from_owned_fd(report).map_err(LaunchFailure::ReadPipes)?;
    let mut err = pipe::Receiver::from_owned_fd(err).map_err(LaunchFailure::ReadPipes)?;
    // The report is one line, then the monitor closes stdout.
    let mut out = String::new();
    let read = tokio::time::timeout(START_TIMEOUT, report.read_to_string(&mut out)).await;
    if let Ok(info) = serde_json::from_str::<MonitorInfo>(out.trim()) {
        tokio::spawn(async move {
            // Drained so a late diagnostic never blocks the monitor on a full pipe.
            let _ = tokio::io::copy(&mut err, &mut tokio::io::sink()).await;
        });
        return Ok(info);
    }
    let why = match read {
        Ok(_) => NoReport::Gone,
        Err(_) => {
            // The report pipe is still open, so `pid` is still that monitor: it must not start
            // the program later, unseen.
            // SAFETY: kill has no memory effects.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            NoReport::Killed {
                seconds: START_TIMEOUT.as_secs(),
            }
        }
    };
    let mut message = String::new();
    let _ = tokio::time::timeout(FAILED_EXIT_TIMEOUT, err.read_to_string(&mut message)).await;
    Err(LaunchFailure::Forked {
        pid,
        why,
        stderr: message,
    })
}
