//! The daemon's side of starting a monitor: the `aifactory-pane` binary beside the daemon's
//! own, opened once at startup, and a start that returns once the program runs.
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
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aifactory_common::pane::MonitorInfo;
use tokio::io::AsyncReadExt;

use super::MonitorArgs;

/// The monitor binary's file name, beside the daemon's.
pub const MONITOR_BIN: &str = "aifactory-pane";
/// How long a new monitor may take to report that the program runs.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a monitor that failed to start may take to exit and say why.
const FAILED_EXIT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "cannot find the daemon's own executable to look for {MONITOR_BIN} beside it: {0}: is /proc mounted?"
    )]
    CurrentExe(std::io::Error),
    #[error(
        "the pane monitor {} is missing or unreadable ({source}): install it beside aifactoryd, from the same build (`cargo build --release -p aifactoryd` builds both; the package installs both in /usr/bin)",
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

/// The monitor binary, held open for the daemon's lifetime.
#[derive(Debug)]
pub struct Launcher {
    file: File,
    path: PathBuf,
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
        })
    }

    /// Where the binary was found (at startup; the path may name another file by now).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a monitor with `args`; the program gets exactly `env`. Returns the monitor's
    /// report once the program runs, or why it did not start. The monitor stays this
    /// daemon's child until the daemon exits; a task reaps it whenever it ends.
    pub async fn start(
        &self,
        args: &MonitorArgs,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<MonitorInfo, String> {
        // The descriptor is close-on-exec: the kernel resolves the path before closing it.
        // (That works for an ELF binary, which the monitor is; a script's interpreter would
        // find the descriptor closed.)
        let mut cmd =
            tokio::process::Command::new(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
        cmd.arg0(MONITOR_BIN)
            .args(args.to_args())
            .env_clear()
            .envs(
                env.into_iter()
                    .map(|(k, v)| (OsString::from(k), OsString::from(v))),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start the pane monitor {} (opened at startup): {e}",
                self.path.display()
            )
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
        let status = match ended {
            Ok(Ok(status)) => status.to_string(),
            Ok(Err(e)) => format!("cannot wait for it: {e}"),
            Err(_) => {
                // Neither a report nor an exit: it must not start the program later, unseen.
                let _ = child.start_kill();
                format!(
                    "no report within {} s, so it was killed",
                    START_TIMEOUT.as_secs()
                )
            }
        };
        Err(format!(
            "the session's program did not start ({status}): {}",
            err.trim()
        ))
    }
}
