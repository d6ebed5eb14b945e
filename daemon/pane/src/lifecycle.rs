//! One monitor from start to exit: preparing the process ([`prepare`]), starting the session
//! on it ([`run_prepared`]: the program, `monitor.sock`, readiness on stdout) and serving it
//! until it is finished and every subscriber was served.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aifactory_common::pane::{META_FILE, MONITOR_SOCKET, MonitorInfo, OUTPUT_LOG};
use tokio::net::UnixListener;
use tokio::sync::watch;

use super::log::{self, LogState, OutputLog};
use super::pty::{self, Master};
use super::{
    LINGER, MONITOR_LOG, MonitorArgs, SUBSCRIBER_FINISH_TIMEOUT, Session, diag, process, server,
    stub,
};

/// Why a monitor could not start. Each message names what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
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

pub(crate) fn failed(e: &StartError) -> u8 {
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
        .exec(
            &args.command,
            &args.cwd,
            env,
            args.cage.as_ref(),
            &args.cgroups,
        )
        .map_err(|e| unbind(e.into()))?;
    // From here a failure must take the program down with it: nobody would own it.
    let abort = |e: StartError| {
        process::kill_and_reap(pid);
        unbind(e)
    };
    // The program's stat exists until it is reaped, and nothing reaps before `serve` runs.
    let start_time = aifactory_common::procfs::start_time(pid).map_err(|e| {
        abort(StartError::io(
            "read the program's start time from",
            Path::new(&format!("/proc/{pid}/stat")),
        )(e))
    })?;
    let monitor_pid = std::process::id();
    let monitor_start_time = aifactory_common::procfs::start_time(monitor_pid).map_err(|e| {
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
        output_blocked: watch::Sender::new(None),
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
