//! The pane monitor (the `aifactory-pane` binary, [`main`]): one small process per session that
//! holds the PTY, records every output byte and outlives the daemon.
//!
//! The daemon creates a fresh pane directory (0700) and has a monitor started ([`launch`])
//! with the program's exact environment and the arguments of [`MonitorArgs`]: usually one the
//! daemon's [`zygote`] forked and prepared ahead of time, otherwise one exec'd for it; the same
//! code runs either way. Preparing ([`prepare`]), the monitor leaves the daemon's session,
//! becomes a child subreaper, opens a PTY and forks the program's process, which waits on it
//! for its command ([`stub`]); given its session ([`run_prepared`]), it sizes the terminal,
//! has the program exec'd and then owns it until the end:
//!
//! - every byte the PTY produces is appended to `output.log` before anyone hears about it
//!   ([`log`]), with one older segment kept at rotation and offsets that stay absolute;
//! - `meta.json` and `exit.json` describe the session ([`files`]);
//! - `monitor.sock` serves [`aifactory_common::pane`]'s protocol ([`server`]); [`client`] is
//!   the daemon's side of it.
//!
//! **Exit versus end of output.** The program's exit and the end of its output are different
//! events: a background job or an escaped descendant may keep the terminal open after the
//! program ended. `exit.json` (and `Info.exit`) is written as soon as the program is reaped;
//! output keeps being captured until the PTY master reports EIO (nothing holds the terminal
//! any more). A session is *finished* when both happened, and only then do subscribers get
//! [`MonitorFrame::Exited`](aifactory_common::pane::MonitorFrame::Exited). A daemon that wants
//! to end lingering descendants sends a `Signal` to the process group.
//!
//! **Lifetime.** Once finished, the monitor rewrites `meta.json` with the final state, waits
//! until every subscriber got its `Exited` frame or went away (at most
//! [`SUBSCRIBER_FINISH_TIMEOUT`]; everything stays on disk anyway), lingers [`LINGER`] for late
//! `Info` requests, removes `monitor.sock` and exits 0. SIGTERM and SIGHUP are ignored: only
//! the program's end ends a monitor (see [`process::detach`]).
//!
//! Everything runs on one thread (a tokio current-thread runtime) and file I/O is plain
//! synchronous page-cache I/O on it: that keeps the process small and makes a log rotation
//! atomic with respect to every reader.

mod args;
pub mod client;
mod files;
pub mod launch;
mod log;
mod process;
mod pty;
mod server;
mod stub;
pub mod zygote;

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aifactory_common::pane::{
    EXIT_FILE, ExitInfo, META_FILE, MONITOR_SOCKET, MonitorInfo, OUTPUT_LOG,
};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::time::Instant;

pub use self::args::{ArgsError, MonitorArgs};
use self::log::{LogState, OutputLog};
use self::pty::Master;

/// Once finished, how long the monitor waits for subscribers still taking their last bytes.
pub const SUBSCRIBER_FINISH_TIMEOUT: Duration = Duration::from_secs(60);
/// Once the last subscriber is served, how long the socket still answers (late `Info`s).
pub const LINGER: Duration = Duration::from_secs(2);
/// How long input may wait for the program to take a byte of it before it is refused.
pub const INPUT_TIMEOUT: Duration = Duration::from_secs(10);
/// The monitor's own diagnostics, written once it reported readiness.
pub const MONITOR_LOG: &str = "monitor.log";

/// Why a monitor could not start. Each message names what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    #[error(
        "pane directory {}: {source}: the daemon must create it (mode 0700) before starting the monitor",
        path.display()
    )]
    PaneDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} already exists: a monitor needs a fresh pane directory, so offsets start at 0",
        path.display()
    )]
    NotFresh { path: PathBuf },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the socket path {} is {len} bytes, over the {max} bytes a Unix socket path may have: use a shorter state directory",
        path.display()
    )]
    SocketPathTooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },
    #[error("cannot start the monitor's event loop: {0}")]
    Runtime(std::io::Error),
    #[error("cannot watch for the program's exit (SIGCHLD handler): {0}")]
    Signals(std::io::Error),
    #[error(
        "cannot report readiness on stdout: {0}: the daemon stopped waiting for this monitor, so its program was killed"
    )]
    Ready(std::io::Error),
}

impl StartError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StartError + use<> {
        let path = path.to_path_buf();
        move |source| StartError::Io {
            action,
            path,
            source,
        }
    }
}

/// What every task of the monitor shares.
pub(crate) struct Session {
    dir: PathBuf,
    /// The program's process group (= its pid).
    pgid: i32,
    /// `output_end` in here is stale; [`Session::info`] fills it from `log`.
    info: Mutex<MonitorInfo>,
    log: watch::Sender<LogState>,
    master: Master,
    /// One `Input` at a time, so two writers never interleave their bytes.
    input_turn: tokio::sync::Mutex<()>,
    /// Input bytes the terminal took so far: a request waiting for its turn sees the program
    /// read.
    input_taken: watch::Sender<u64>,
    /// Open subscriptions, so the monitor can wait for them before it exits.
    subscribers: watch::Sender<usize>,
}

impl Session {
    fn info_guard(&self) -> MutexGuard<'_, MonitorInfo> {
        // Every update is a plain field assignment, so a poisoned lock still holds a whole value.
        self.info.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current [`MonitorInfo`], with the current output end.
    pub(crate) fn info(&self) -> MonitorInfo {
        let mut info = self.info_guard().clone();
        info.output_end = self.log.borrow().end;
        info
    }

    pub(crate) fn exit(&self) -> Option<ExitInfo> {
        self.info_guard().exit.clone()
    }

    fn write_meta(&self) -> std::io::Result<()> {
        files::write_json_atomic(&self.dir, META_FILE, &self.info())
    }

    /// Input from a person: written whole, in arrival order, unless the program stops taking
    /// it. Refused once the terminal took no byte for [`INPUT_TIMEOUT`] (a queue full because
    /// nothing reads it), saying how much of `bytes` it did take; the rest is never written.
    /// Waiting for an earlier request's turn counts as stalled only while that one stalls too.
    ///
    /// Cancel-safe: dropping the future (the requester hung up) writes nothing more and frees
    /// the turn for the next request.
    pub(crate) async fn input(&self, bytes: &[u8]) -> Result<(), String> {
        let stalled = |taken: usize| {
            format!(
                "the program took {taken} of {} bytes of input, then read nothing for {} s: it is not reading the terminal (busy or stopped), so the rest was not sent",
                bytes.len(),
                INPUT_TIMEOUT.as_secs()
            )
        };
        let mut progress = self.input_taken.subscribe();
        let mut deadline = Instant::now() + INPUT_TIMEOUT;
        let turn = self.input_turn.lock();
        // Pinned once, so the place in the (fair) queue is kept across wake-ups.
        tokio::pin!(turn);
        let _turn = loop {
            tokio::select! {
                turn = &mut turn => break turn,
                changed = progress.changed() => {
                    if changed.is_ok() {
                        deadline = Instant::now() + INPUT_TIMEOUT;
                    }
                }
                () = tokio::time::sleep_until(deadline) => return Err(stalled(0)),
            }
        };
        let mut rest = bytes;
        let mut deadline = Instant::now() + INPUT_TIMEOUT;
        while !rest.is_empty() {
            tokio::select! {
                written = self.master.write(rest) => match written {
                    Ok(n) => {
                        rest = &rest[n..];
                        deadline = Instant::now() + INPUT_TIMEOUT;
                        self.input_taken.send_modify(|taken| *taken += n as u64);
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                        return Err(format!(
                            "the program's terminal is closed (the program and everything it started ended): {} of {} bytes of input were not delivered",
                            rest.len(),
                            bytes.len()
                        ));
                    }
                    Err(e) => {
                        return Err(format!(
                            "cannot write to the program's terminal after {} of {} bytes of input: {e}",
                            bytes.len() - rest.len(),
                            bytes.len()
                        ));
                    }
                },
                () = tokio::time::sleep_until(deadline) => {
                    return Err(stalled(bytes.len() - rest.len()));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn resize(&self, cols: u16, rows: u16) -> Result<(), String> {
        if cols == 0 || rows == 0 {
            return Err(format!(
                "cannot resize the terminal to {cols}x{rows}: it needs at least 1 column and 1 row"
            ));
        }
        self.master
            .resize(cols, rows)
            .map_err(|e| format!("cannot resize the terminal (TIOCSWINSZ): {e}"))?;
        {
            let mut info = self.info_guard();
            info.cols = cols;
            info.rows = rows;
        }
        // The terminal has its new size either way; a stale meta.json is only cosmetic.
        if let Err(e) = self.write_meta() {
            diag(&format!(
                "cannot update {} after a resize: {e}",
                self.dir.join(META_FILE).display()
            ));
        }
        Ok(())
    }

    /// Sends `signal` to the program's process group. A group that is gone is not an error:
    /// the caller wanted it to end, and it has.
    pub(crate) fn signal(&self, signal: i32) -> Result<(), String> {
        // Checked here: once the group is gone the kernel says ESRCH before it checks the number.
        if !(0..=libc::SIGRTMAX()).contains(&signal) {
            return Err(format!("{signal} is not a signal number (see `kill -l`)"));
        }
        // SAFETY: kill has no memory effects.
        if unsafe { libc::kill(-self.pgid, signal) } == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ESRCH) => Ok(()),
            _ => Err(format!(
                "cannot send signal {signal} to process group {}: {err}",
                self.pgid
            )),
        }
    }

    /// Counts a subscription until the guard is dropped.
    pub(crate) fn subscriber(&self) -> SubscriberGuard<'_> {
        self.subscribers.send_modify(|n| *n += 1);
        SubscriberGuard(&self.subscribers)
    }

    /// Records the program's end: `exit.json` first, then everyone is told.
    fn record_exit(&self, code: Option<i32>, signal: Option<i32>) {
        let exit = ExitInfo {
            code,
            signal,
            ended_at: files::now_rfc3339(),
        };
        diag(&format!("the program {}", exit.describe()));
        if let Err(e) = files::write_json_atomic(&self.dir, EXIT_FILE, &exit) {
            diag(&format!(
                "cannot write {}: {e}; the exit is still reported over the socket",
                self.dir.join(EXIT_FILE).display()
            ));
        }
        self.info_guard().exit = Some(exit);
        self.log.send_modify(|s| s.exited = true);
    }
}

pub(crate) struct SubscriberGuard<'a>(&'a watch::Sender<usize>);

impl Drop for SubscriberGuard<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// One line on stderr: before readiness the daemon reads it, afterwards it goes to
/// `monitor.log`. Never panics (eprintln! would, on a closed stderr).
pub(crate) fn diag(message: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "{} aifactory-pane[{}]: {message}",
        files::now_rfc3339(),
        std::process::id()
    );
}

/// The `aifactory-pane` binary: parses its arguments and runs the monitor (or, with
/// `--zygote`, the [`zygote`] that forks monitors for the daemon). Exits 2 for bad arguments,
/// 1 for a failed start (the reason on stderr, which the daemon reports), 0 once the session
/// finished.
pub fn main() -> ExitCode {
    // Started through /proc/self/fd/N, the kernel named the process `N`: `ps`, `top` and the
    // journal should say what it is.
    let _ = nix::sys::prctl::set_name(c"aifactory-pane");
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_some_and(|a| a == zygote::FLAG) {
        return zygote::serve(args.skip(1));
    }
    match MonitorArgs::parse(args) {
        Ok(args) => run(args),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "aifactory-pane: {}", e.explain());
            ExitCode::from(2)
        }
    }
}

/// The whole monitor: returns its exit status (1 only for a failed start). The program gets
/// the monitor's own environment.
pub fn run(args: MonitorArgs) -> ExitCode {
    let env = std::env::vars_os().collect();
    match prepare(3) {
        Ok(prepared) => ExitCode::from(run_prepared(args, env, prepared)),
        Err(e) => ExitCode::from(failed(&e)),
    }
}

/// A monitor made before its session is known: detached from the daemon, with a PTY and the
/// program's process waiting on it ([`stub`]).
pub(crate) struct Prepared {
    master: OwnedFd,
    stub: stub::Stub,
}

/// Detaches (closing every descriptor from `first_to_close` up), opens the PTY and forks the
/// program's process. Only in a process with one thread, before any runtime exists.
pub(crate) fn prepare(first_to_close: libc::c_uint) -> Result<Prepared, StartError> {
    process::detach(first_to_close)?;
    // The session's own size is set once it is known, before the program runs.
    let (master, slave) = pty::open(80, 24)?;
    let stub = stub::Stub::fork(slave)?;
    Ok(Prepared { master, stub })
}

/// The session `args` on a prepared monitor, its program with exactly `env`; returns the exit
/// status.
pub(crate) fn run_prepared(
    args: MonitorArgs,
    env: Vec<(OsString, OsString)>,
    prepared: Prepared,
) -> u8 {
    // Current-thread: one thread, no worker or blocking pool (nothing here uses it).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return failed(&StartError::Runtime(e)),
    };
    runtime.block_on(async move {
        let started = match start(&args, &env, prepared) {
            Ok(started) => started,
            Err(e) => return failed(&e),
        };
        serve(started).await
    })
}

fn failed(e: &StartError) -> u8 {
    let _ = writeln!(std::io::stderr(), "aifactory-pane: {e}");
    1
}

struct Started {
    session: Arc<Session>,
    listener: UnixListener,
    socket: PathBuf,
    output: OutputLog,
    reaper: process::Reaper,
}

/// Everything up to a running program and a listening socket. Dropping `prepared` on a
/// failure ends the waiting program process too (it sees end of file and exits).
fn start(
    args: &MonitorArgs,
    env: &[(OsString, OsString)],
    prepared: Prepared,
) -> Result<Started, StartError> {
    let Prepared { master, stub } = prepared;
    let dir = args.dir.clone();
    match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(StartError::PaneDir {
                path: dir,
                source: std::io::Error::other("not a directory"),
            });
        }
        Err(source) => return Err(StartError::PaneDir { path: dir, source }),
    }
    match std::fs::metadata(&args.cwd) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(StartError::Io {
                action: "use as the working directory",
                path: args.cwd.clone(),
                source: std::io::Error::other("not a directory"),
            });
        }
        Err(e) => return Err(StartError::io("use as the working directory", &args.cwd)(e)),
    }
    let output_path = dir.join(OUTPUT_LOG);
    let output = match OutputLog::create(&dir, args.log_max) {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(StartError::NotFresh { path: output_path });
        }
        Err(e) => return Err(StartError::io("create", &output_path)(e)),
    };

    let socket = dir.join(MONITOR_SOCKET);
    let listener = bind(&socket)?;
    let unbind = |e: StartError| {
        let _ = std::fs::remove_file(&socket);
        e
    };

    // Before the program exists, so even an instant exit is seen.
    let reaper = process::Reaper::new().map_err(|e| unbind(StartError::Signals(e)))?;
    let master = Master::new(master).map_err(|e| unbind(e.into()))?;
    // The program starts at the session's size, so it never sees another one.
    master
        .resize(args.cols, args.rows)
        .map_err(|e| unbind(StartError::io("size the terminal of", &dir)(e)))?;
    let pid = stub
        .exec(&args.command, &args.cwd, env)
        .map_err(|e| unbind(e.into()))?;
    // From here a failure must take the program down with it: nobody would own it.
    let abort = |e: StartError| {
        process::kill_and_reap(pid);
        unbind(e)
    };
    // The program's stat exists until it is reaped, and nothing reaps before `serve` runs.
    let start_time = process::start_time(pid).map_err(|e| {
        abort(StartError::io(
            "read the program's start time from",
            Path::new(&format!("/proc/{pid}/stat")),
        )(e))
    })?;
    let monitor_pid = std::process::id();
    let monitor_start_time = process::start_time(monitor_pid).map_err(|e| {
        abort(StartError::io(
            "read the monitor's start time from",
            Path::new("/proc/self/stat"),
        )(e))
    })?;
    let info = MonitorInfo {
        session_id: args.session.clone(),
        name: args.name.clone(),
        command: args.command.clone(),
        cwd: args.cwd.clone(),
        pid,
        pgid: pid,
        start_time,
        monitor_pid,
        monitor_start_time,
        cols: args.cols,
        rows: args.rows,
        output_end: 0,
        exit: None,
    };
    let session = Arc::new(Session {
        dir: dir.clone(),
        pgid: pid as i32,
        info: Mutex::new(info),
        log: watch::Sender::new(LogState::default()),
        master,
        input_turn: tokio::sync::Mutex::new(()),
        input_taken: watch::Sender::new(0),
        subscribers: watch::Sender::new(0),
    });
    Ok(Started {
        session,
        listener,
        socket: socket.clone(),
        output,
        reaper,
    })
}

/// Binds `monitor.sock` (0600). Readiness comes after this, so a daemon that read the
/// readiness line can always connect.
fn bind(socket: &Path) -> Result<UnixListener, StartError> {
    // sun_path holds 108 bytes including the terminating NUL.
    const MAX: usize = 107;
    let len = socket.as_os_str().len();
    if len > MAX {
        return Err(StartError::SocketPathTooLong {
            path: socket.to_path_buf(),
            len,
            max: MAX,
        });
    }
    let listener = UnixListener::bind(socket).map_err(StartError::io("bind", socket))?;
    // The pane directory is 0700 already; this keeps the socket private even if it is not.
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
        let _ = std::fs::remove_file(socket);
        StartError::io("set the mode of", socket)(e)
    })?;
    Ok(listener)
}

/// Readiness, then the session until it is finished and everyone was served.
async fn serve(started: Started) -> u8 {
    let Started {
        session,
        listener,
        socket,
        output,
        reaper,
    } = started;
    let pid = session.pgid as u32;
    if let Err(e) = announce(&session) {
        process::kill_and_reap(pid);
        let _ = std::fs::remove_file(&socket);
        return failed(&StartError::Ready(e));
    }
    redirect_stderr(&session.dir);
    // After readiness, off the path of the daemon's `sessions new`: nothing reads it before.
    if let Err(e) = session.write_meta() {
        diag(&format!(
            "cannot write {}: {e}; the session runs without it",
            session.dir.join(META_FILE).display()
        ));
    }
    let info = session.info();
    diag(&format!(
        "session {} started: pid {pid}, command {:?}",
        info.session_id, info.command
    ));

    tokio::spawn(reaper.run(session.clone(), pid));
    tokio::spawn(log::pump(session.clone(), output));
    tokio::spawn(server::accept(session.clone(), listener));

    let mut state = session.log.subscribe();
    let _ = state.wait_for(LogState::finished).await;
    if let Err(e) = session.write_meta() {
        diag(&format!(
            "cannot write the final {}: {e}",
            session.dir.join(META_FILE).display()
        ));
    }
    let end = session.log.borrow().end;
    diag(&format!("output complete at {end} bytes"));

    let mut subscribers = session.subscribers.subscribe();
    let served = tokio::time::timeout(SUBSCRIBER_FINISH_TIMEOUT, async {
        let _ = subscribers.wait_for(|n| *n == 0).await;
    })
    .await;
    if served.is_err() {
        diag(&format!(
            "{} subscriber(s) still had not taken all output after {} s; exiting anyway (everything is in output.log)",
            *session.subscribers.borrow(),
            SUBSCRIBER_FINISH_TIMEOUT.as_secs()
        ));
    }
    tokio::time::sleep(LINGER).await;
    if let Err(e) = std::fs::remove_file(&socket) {
        diag(&format!("cannot remove {}: {e}", socket.display()));
    }
    diag("exiting");
    0
}

/// Prints the one readiness line and closes stdout, so the daemon reading the pipe sees EOF.
fn announce(session: &Session) -> std::io::Result<()> {
    let line = serde_json::to_string(&session.info()).map_err(std::io::Error::other)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    drop(stdout);
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    nix::unistd::dup2_stdout(&null)?;
    Ok(())
}

/// From here on the daemon no longer reads our stderr: diagnostics (and panics) go to
/// `monitor.log`. If it cannot be opened, stderr stays where it was.
fn redirect_stderr(dir: &Path) {
    let path = dir.join(MONITOR_LOG);
    let opened = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path);
    let result = opened.and_then(|file| Ok(nix::unistd::dup2_stderr(&file)?));
    if let Err(e) = result {
        diag(&format!(
            "cannot send diagnostics to {}: {e}; they stay on the original stderr",
            path.display()
        ));
    }
}
