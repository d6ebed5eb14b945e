//! Starting a session: checking its spec, recording it, creating its pane directory and
//! having a monitor start its program.

use aifactory_common::echo::echo;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use aifactory_common::pane::MonitorInfo;
use aifactory_common::protocol::{EventKind, SessionInfo, SessionSpec};
use aifactory_pane::{Cage, MonitorArgs};

use super::{MAX_NAME_LEN, SessionError, Sessions, marker, records};
use crate::panes;

const DEFAULT_COLS: u16 = 120;
const DEFAULT_ROWS: u16 = 40;

/// What holds a task's agent in: its cage, and the cgroup directories it joins.
#[derive(Debug, Clone, Default)]
pub struct Confinement {
    pub cage: Option<Cage>,
    pub cgroups: Vec<std::path::PathBuf>,
}

impl Sessions {
    /// Starts a program in a new session.
    pub async fn create(self: &Arc<Self>, spec: SessionSpec) -> Result<SessionInfo, SessionError> {
        self.create_confined(spec, Confinement::default()).await
    }

    /// Starts a program in a new session, confined as `confinement` says (a task's agent: its
    /// cage and cgroup are the daemon's decision, never a client's).
    pub async fn create_confined(
        self: &Arc<Self>,
        mut spec: SessionSpec,
        confinement: Confinement,
    ) -> Result<SessionInfo, SessionError> {
        if spec.command.first().is_none_or(String::is_empty) {
            return Err(SessionError::NoCommand);
        }
        if let Some(name) = &spec.name {
            check_name(name)?;
        }
        spec.cwd = working_dir(&spec.cwd)?;
        for (key, value) in &spec.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(SessionError::BadEnvName(key.clone()));
            }
            if value.contains('\0') {
                return Err(SessionError::NulInEnv(key.clone()));
            }
        }
        if let Some(arg) = spec.command.iter().find(|a| a.contains('\0')) {
            return Err(SessionError::NulInArg(arg.clone()));
        }
        let cols = spec.cols.unwrap_or(DEFAULT_COLS).max(1);
        let rows = spec.rows.unwrap_or(DEFAULT_ROWS).max(1);
        let new = records::NewSession {
            name: spec.name.clone(),
            command: serde_json::to_string(&spec.command).unwrap_or_default(),
            cwd: spec.cwd.to_string_lossy().into_owned(),
            cols,
            rows,
            root: self.panes.path.to_string_lossy().into_owned(),
        };
        let inserted = self
            .store
            .write_process_state(move |tx| {
                if let Some(name) = &new.name
                    && let Some(id) = records::live_with_name(tx, name)?
                {
                    return Ok(Err(SessionError::NameTaken {
                        name: name.clone(),
                        id,
                    }));
                }
                records::insert(tx, &new).map(Ok)
            })
            .await??;
        match self
            .spawn_monitor(&inserted, &spec, cols, rows, confinement)
            .await
        {
            Ok(info) => {
                let session = self.record_running(&inserted, &info).await?;
                let _ = self.state_channel(&inserted);
                // Made in this daemon's panes root just now.
                let pane_dir = self.panes.path.join(&inserted);
                self.clone().watch(inserted.clone(), pane_dir);
                tracing::info!(session_id = %inserted, pid = info.pid, command = %echo(&spec.command.join(" ")), "session started");
                self.events
                    .publish(EventKind::SessionCreated {
                        session_id: inserted.clone(),
                        name: spec.name.clone(),
                    })
                    .await;
                session.ok_or(SessionError::NotFound(inserted))
            }
            Err(e) => {
                let id = inserted.clone();
                let _ = self
                    .store
                    .write_process_state(move |tx| records::delete(tx, &id))
                    .await;
                let _ = std::fs::remove_dir_all(self.panes.path.join(&inserted));
                tracing::warn!(session_id = %inserted, "session did not start: {e}");
                Err(e)
            }
        }
    }

    /// Creates the pane directory and starts the monitor; returns what it reported once the
    /// program runs.
    async fn spawn_monitor(
        &self,
        id: &str,
        spec: &SessionSpec,
        cols: u16,
        rows: u16,
        confinement: Confinement,
    ) -> Result<MonitorInfo, SessionError> {
        let dir = panes::create_session_dir(&self.panes.path, id)?;
        let args = MonitorArgs {
            dir,
            session: id.to_string(),
            name: spec.name.clone(),
            cwd: spec.cwd.clone(),
            cols,
            rows,
            log_max: self.pane_log_max,
            command: spec.command.clone(),
            cage: confinement.cage,
            cgroups: confinement.cgroups,
        };
        // The mark last: a session's own variables cannot hide it.
        let env = base_env()
            .into_iter()
            .chain(spec.env.iter().cloned())
            .chain(marker::env(id, self.store.file()));
        self.launcher
            .start(&args, env)
            .await
            .map_err(SessionError::from)
    }

    /// Records that the session's program runs; returns the session as recorded (`None` if its
    /// row is gone).
    pub(super) async fn record_running(
        &self,
        id: &str,
        info: &MonitorInfo,
    ) -> Result<Option<SessionInfo>, SessionError> {
        let id = id.to_string();
        let info = info.clone();
        Ok(self
            .store
            .write_process_state(move |tx| records::record_running(tx, &id, &info))
            .await?)
    }
}

fn check_name(name: &str) -> Result<(), SessionError> {
    let id_shaped = name.len() == 10
        && name.starts_with("s-")
        && name[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if name.trim().is_empty()
        || name.len() > MAX_NAME_LEN
        || name.chars().any(char::is_control)
        || id_shaped
    {
        return Err(SessionError::BadName(name.to_string()));
    }
    Ok(())
}

/// The environment every session starts from; the session's own variables are added on top.
fn base_env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "PATH" | "HOME" | "USER" | "LOGNAME" | "SHELL" | "LANG" | "TZ"
            ) || k.starts_with("LC_")
        })
        .collect();
    env.push(("TERM".into(), "xterm-256color".into()));
    env
}

/// `cwd` as it is stored: absolute, without `.` and `..`, naming the directory the kernel
/// enters. `..` is read lexically; a path whose lexical reading is not the kernel's (a `..`
/// after a symbolic link) or that the kernel cannot read at all (a `..` after a directory that
/// does not exist) is refused with why.
fn working_dir(cwd: &Path) -> Result<PathBuf, SessionError> {
    if !cwd.is_absolute() {
        return Err(SessionError::BadCwd(cwd.to_path_buf()));
    }
    let lexical = lexically_normal(cwd);
    if cwd.components().any(|c| c == Component::ParentDir) {
        let entered = std::fs::canonicalize(cwd).map_err(|e| SessionError::CwdUnresolvable {
            path: cwd.to_path_buf(),
            reason: match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "a directory before one of its `..` does not exist".into()
                }
                _ => e.to_string(),
            },
        })?;
        let named = std::fs::canonicalize(&lexical).ok();
        if named.as_ref() != Some(&entered) {
            return Err(SessionError::CwdThroughSymlink {
                path: cwd.to_path_buf(),
                lexical,
                entered,
            });
        }
    }
    if !lexical.is_dir() {
        return Err(SessionError::BadCwd(cwd.to_path_buf()));
    }
    Ok(lexical)
}

/// `path` without `.` and `..` components, read as text (`/..` is `/`, as POSIX says).
fn lexically_normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_and_dot_dot_are_read_as_text() {
        for (given, normal) in [
            ("/a/./b/../../c/", "/c"),
            ("/..", "/"),
            ("/a/b/..", "/a"),
            ("/a//b", "/a/b"),
        ] {
            assert_eq!(
                lexically_normal(Path::new(given)),
                Path::new(normal),
                "{given}"
            );
        }
    }

    #[test]
    fn a_dot_dot_the_kernel_reads_otherwise_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(base.join("a/b")).unwrap();
        assert_eq!(working_dir(&base.join("a/b/..")).unwrap(), base.join("a"));
        std::os::unix::fs::symlink(base.join("a/b"), base.join("link")).unwrap();
        let err = working_dir(&base.join("link/..")).unwrap_err();
        assert!(
            matches!(&err, SessionError::CwdThroughSymlink { entered, .. } if *entered == base.join("a")),
            "{err}"
        );
        let err = working_dir(&base.join("none/../a")).unwrap_err();
        assert!(matches!(err, SessionError::CwdUnresolvable { .. }), "{err}");
        assert!(matches!(
            working_dir(Path::new("a/b")),
            Err(SessionError::BadCwd(_))
        ));
    }
}
