//! What the installed `aifactoryd check --json` reports of this machine (config, profiles,
//! migrations, lock, state directory, panes root), and why it may report nothing.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use aifactory_common::diagnose::LocalFacts;

use crate::bounds;

/// Why `aifactoryd check` gave no report; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LocalFactsError {
    #[error("aifactoryd is neither next to {program} nor on PATH: install it, or put it on PATH")]
    NotFound { program: &'static str },
    #[error("cannot run {} check: {source}", exe.display())]
    CannotRun {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("{} check failed ({status}): {stderr}", exe.display())]
    Failed {
        exe: PathBuf,
        status: ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
    #[error(
        "{} check printed something else than its report ({source}): is it the same version as {program}?",
        exe.display()
    )]
    Unreadable {
        exe: PathBuf,
        program: &'static str,
        source: serde_json::Error,
    },
    #[error("{} check gave no report within {} s", exe.display(), after.as_secs())]
    TimedOut { exe: PathBuf, after: Duration },
}

/// How to run `aifactoryd check`: the paths the caller chose (each `None`: the daemon's own
/// default), and who asks.
pub struct Args {
    /// The program running the doctor: `aifactoryd` is looked for beside it.
    pub program: &'static str,
    pub state_dir: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub socket: Option<PathBuf>,
}

/// `aifactoryd` next to this program, else on PATH.
fn daemon_binary() -> Option<PathBuf> {
    let sibling = std::env::current_exe()
        .ok()?
        .parent()
        .map(|d| d.join("aifactoryd"));
    if let Some(p) = sibling.filter(|p| p.is_file()) {
        return Some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("aifactoryd"))
        .find(|p| p.is_file())
}

/// Runs the installed daemon's `check` with `args`, within [`bounds::LOCAL_CHECK`] (it is
/// killed past it).
pub async fn facts(args: &Args) -> Result<LocalFacts, LocalFactsError> {
    let exe = daemon_binary().ok_or(LocalFactsError::NotFound {
        program: args.program,
    })?;
    let mut cmd = tokio::process::Command::new(&exe);
    if let Some(dir) = &args.state_dir {
        cmd.arg("--state-dir").arg(dir);
    }
    if let Some(file) = &args.config {
        cmd.arg("--config").arg(file);
    }
    if let Some(socket) = &args.socket {
        cmd.arg("--socket").arg(socket);
    }
    let run = cmd
        .arg("check")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(bounds::LOCAL_CHECK, run).await {
        Ok(out) => out.map_err(|source| LocalFactsError::CannotRun {
            exe: exe.clone(),
            source,
        })?,
        Err(_) => {
            return Err(LocalFactsError::TimedOut {
                exe,
                after: bounds::LOCAL_CHECK,
            });
        }
    };
    if !out.status.success() {
        return Err(LocalFactsError::Failed {
            exe,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    serde_json::from_slice(&out.stdout).map_err(|source| LocalFactsError::Unreadable {
        exe,
        program: args.program,
        source,
    })
}
