//! A private tmux server (its own socket and home, no config file, `sh` as its shell): the
//! peer the benchmarks measure sessions against, and the terminal the attach test types in.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};

/// Why a tmux server could not be started or did not do what it was told.
#[derive(Debug, thiserror::Error)]
pub enum TmuxError {
    #[error("cannot create a temporary directory for tmux: {0}")]
    TempDir(#[source] io::Error),
    #[error("cannot run {exe}: {source}")]
    Run {
        exe: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`tmux {args}` failed ({status}): {stderr}")]
    Failed {
        args: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("cannot read the tmux server's pid from {0:?}")]
    Pid(String),
}

/// A running tmux server; killed (with its sessions) when dropped.
pub struct Tmux {
    exe: PathBuf,
    dir: tempfile::TempDir,
    pid: u32,
}

impl Tmux {
    /// Starts a server with `exe`, its first session made by `new-session -d first...` (the
    /// server lives as long as a session does).
    pub fn start(exe: &Path, first: &[&str]) -> Result<Tmux, TmuxError> {
        let dir = tempfile::Builder::new()
            .prefix("aifactory-tmux-")
            .tempdir()
            .map_err(TmuxError::TempDir)?;
        let mut tmux = Tmux {
            exe: exe.to_path_buf(),
            dir,
            pid: 0,
        };
        let mut args = vec!["-f", "/dev/null", "new-session", "-d"];
        args.extend_from_slice(first);
        tmux.run(&args)?;
        let out = tmux.run(&["display-message", "-p", "#{pid}"])?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        tmux.pid = text.parse().map_err(|_| TmuxError::Pid(text))?;
        Ok(tmux)
    }

    /// `tmux -S <private socket> args...` with nothing of the caller's environment but PATH.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("SHELL", "/bin/sh")
            .arg("-S")
            .arg(self.dir.path().join("tmux.sock"))
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a tmux command; an error unless it succeeds.
    pub fn run(&self, args: &[&str]) -> Result<Output, TmuxError> {
        let out = self
            .command(args)
            .output()
            .map_err(|source| TmuxError::Run {
                exe: self.exe.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(TmuxError::Failed {
                args: args.join(" "),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(out)
    }

    /// Runs a tmux command; fails the test unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> Output {
        self.run(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Tmux::ok`]'s standard output as text.
    pub fn ok_text(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.ok(args).stdout).into_owned()
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The server's private directory (its socket and home), for files of its sessions.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn session_count(&self) -> usize {
        self.ok_text(&["list-sessions"]).lines().count()
    }

    /// Clients attached to the server (`list-clients`).
    pub fn client_count(&self) -> usize {
        self.ok_text(&["list-clients"]).lines().count()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .command(&["kill-server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
