//! What the installed `aifactoryd check --json` reports of this machine (config, profiles,
//! migrations, lock, state directory, panes root), and why it may report nothing.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use aifactory_common::diagnose::LocalFacts;

use super::{Online, Paths};
use crate::cli::Cli;

/// Why `aifactoryd check` gave no report; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LocalFactsError {
    #[error(
        "aifactoryd is neither next to aifactoryctl nor on PATH: install it, or put it on PATH"
    )]
    NotFound,
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
        "{} check printed something else than its report ({source}): is it the same version as aifactoryctl?",
        exe.display()
    )]
    Unreadable {
        exe: PathBuf,
        source: serde_json::Error,
    },
}

/// `aifactoryd` next to this aifactoryctl, else on PATH.
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

/// Runs the installed daemon's `check` with the paths given, else those the running daemon
/// uses (if it answers).
pub async fn local_facts(
    cli: &Cli,
    online: Option<&Online>,
    given: &Paths<'_>,
) -> Result<LocalFacts, LocalFactsError> {
    let exe = daemon_binary().ok_or(LocalFactsError::NotFound)?;
    let mut cmd = tokio::process::Command::new(&exe);
    let state_dir = given
        .state_dir
        .map(Path::to_path_buf)
        .or_else(|| online.map(|o| o.status.state_dir.clone()));
    let config = given
        .config
        .map(Path::to_path_buf)
        .or_else(|| online.and_then(|o| o.status.config_file.clone()));
    if let Some(dir) = state_dir {
        cmd.arg("--state-dir").arg(dir);
    }
    if let Some(file) = config {
        cmd.arg("--config").arg(file);
    }
    if let Some(socket) = &cli.socket {
        cmd.arg("--socket").arg(socket);
    }
    let out = cmd
        .arg("check")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| LocalFactsError::CannotRun {
            exe: exe.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(LocalFactsError::Failed {
            exe,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|source| LocalFactsError::Unreadable { exe, source })
}
