//! The control socket's listening end: taken from systemd (socket activation) or bound here.
//!
//! Binding never steals a live socket. A lock file beside the socket (`<socket>.lock`, flock'd
//! for the daemon's lifetime, released by the kernel when it dies) says whether another daemon
//! owns the path; a socket file left by a killed daemon is removed only after a connect to it
//! fails. The holder writes its pid into the lock file, so a daemon refused while the holder is
//! still starting up (not yet answering on the socket) can still name it.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aifactory_common::protocol::RunMode;
use aifactory_common::{Client, ClientOptions};
use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;

use crate::config::Config;
use crate::peer::PeerPolicy;

pub struct Listener {
    pub listener: UnixListener,
    pub path: PathBuf,
    /// Passed in by systemd: the path is systemd's to create and remove, not ours.
    pub activated: bool,
    _lock: Option<Flock<File>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "another aifactoryd {} already serves {}: stop it first (`systemctl stop aifactoryd`{}), or start this one with another --socket",
        pid.map(|p| format!("(pid {p})")).unwrap_or_else(|| "(starting up)".into()),
        socket.display(),
        pid.map(|p| format!(" or `kill {p}`")).unwrap_or_default()
    )]
    AlreadyRunning { socket: PathBuf, pid: Option<u32> },
    #[error(
        "something that is not this aifactoryd answers at {} ({detail}): stop it or choose another --socket",
        socket.display()
    )]
    Occupied { socket: PathBuf, detail: String },
    #[error("{} exists and is not a socket: remove it or choose another --socket", path.display())]
    NotASocket { path: PathBuf },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("socket activation failed: {0}")]
    Activation(String),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ListenError + use<> {
    let path = path.to_path_buf();
    move |source| ListenError::Io {
        action,
        path,
        source,
    }
}

/// Takes the socket systemd passed (`LISTEN_FDS`), or binds `config.socket`.
pub async fn open(config: &Config, policy: &PeerPolicy) -> Result<Listener, ListenError> {
    if let Some(listener) = activated()? {
        return Ok(listener);
    }
    bind(config, policy).await
}

fn activated() -> Result<Option<Listener>, ListenError> {
    let mut fds = sd_notify::listen_fds().map_err(|e| ListenError::Activation(e.to_string()))?;
    let Some(fd) = fds.next() else {
        return Ok(None);
    };
    if fds.len() > 0 {
        tracing::warn!(
            extra = fds.len(),
            "systemd passed more than one socket; serving only the first"
        );
    }
    // SAFETY: systemd hands us ownership of the listening fds starting at 3; nothing else in
    // this process uses fd 3.
    let std_listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    std_listener
        .set_nonblocking(true)
        .map_err(|e| ListenError::Activation(format!("fd {fd}: {e}")))?;
    let path = std_listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf))
        .ok_or_else(|| {
            ListenError::Activation(format!(
                "fd {fd} is not a Unix stream socket bound to a path: check ListenStream= in aifactoryd.socket"
            ))
        })?;
    let listener = UnixListener::from_std(std_listener)
        .map_err(|e| ListenError::Activation(format!("fd {fd}: {e}")))?;
    tracing::info!(socket = %path.display(), "serving the socket passed by systemd");
    Ok(Some(Listener {
        listener,
        path,
        activated: true,
        _lock: None,
    }))
}

async fn bind(config: &Config, policy: &PeerPolicy) -> Result<Listener, ListenError> {
    let path = config.socket.clone();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let dir_mode = match config.mode {
            RunMode::User => 0o700,
            RunMode::System => 0o755,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(dir_mode)
            .create(dir)
            .map_err(io_err("create the socket directory", dir))?;
    }
    let lock_path = lock_path(&path);
    let lock_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io_err("open the socket lock", &lock_path))?;
    let lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            // A holder that locked an instant ago may not have written its pid yet: the file
            // is read again after asking the socket.
            let pid = match holder_pid(&lock_path) {
                Some(pid) => Some(pid),
                None => match probe_pid(&path).await {
                    Some(pid) => Some(pid),
                    None => holder_pid(&lock_path),
                },
            };
            return Err(ListenError::AlreadyRunning { pid, socket: path });
        }
        Err((_, errno)) => {
            return Err(ListenError::Io {
                action: "lock",
                path: lock_path,
                source: errno.into(),
            });
        }
    };
    record_holder(&lock, &lock_path);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if !meta.file_type().is_socket() => return Err(ListenError::NotASocket { path }),
        Ok(_) => reclaim_stale(&path).await?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("inspect", &path)(e)),
    }
    // The process umask (0077) keeps the fresh socket private until it gets its final mode.
    let listener = UnixListener::bind(&path).map_err(io_err("bind", &path))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(config.socket_mode))
        .map_err(io_err("set the mode of", &path))?;
    if config.mode == RunMode::System {
        match policy.group_gid() {
            Some(gid) => nix::unistd::chown(&path, None, Some(gid))
                .map_err(|e| io_err("give the socket group to", &path)(e.into()))?,
            None => tracing::warn!(
                group = policy.group_name(),
                "socket group does not exist, so only root and the daemon's user can connect: create it with `groupadd --system {}` or set socket_group",
                policy.group_name()
            ),
        }
    }
    tracing::info!(socket = %path.display(), mode = format!("{:04o}", config.socket_mode), "listening");
    Ok(Listener {
        listener,
        path,
        activated: false,
        _lock: Some(lock),
    })
}

pub fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Writes our pid into the lock we hold. Failing to is not fatal: the lock still guards the
/// path, and a refused daemon falls back to asking the socket.
fn record_holder(lock: &File, lock_path: &Path) {
    let written = lock
        .set_len(0)
        .and_then(|()| (&*lock).write_all(format!("{}\n", std::process::id()).as_bytes()));
    if let Err(e) = written {
        tracing::warn!(lock = %lock_path.display(), error = %e, "cannot record our pid in the socket lock");
    }
}

/// The pid the lock's holder wrote, if that process is alive (a pid left by a daemon that died
/// without a successor is ignored).
fn holder_pid(lock_path: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(lock_path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&pid| pid > 0)?;
    let alive =
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(pid).ok()?), None) {
            Ok(()) | Err(nix::errno::Errno::EPERM) => true,
            Err(_) => false,
        };
    alive.then_some(pid)
}

/// We hold the lock, so no live aifactoryd owns this path; still, remove the file only if
/// nothing answers on it.
async fn reclaim_stale(path: &Path) -> Result<(), ListenError> {
    match tokio::net::UnixStream::connect(path).await {
        Ok(_) => {
            let detail = match probe_pid(path).await {
                Some(pid) => format!("an aifactoryd with pid {pid} that holds no lock"),
                None => "a process that accepts connections".into(),
            };
            Err(ListenError::Occupied {
                socket: path.to_path_buf(),
                detail,
            })
        }
        Err(_) => {
            std::fs::remove_file(path).map_err(io_err("remove the stale socket", path))?;
            tracing::info!(socket = %path.display(), "removed a stale socket left by a daemon that is gone");
            Ok(())
        }
    }
}

/// Asks whoever answers at `path` for its pid.
async fn probe_pid(path: &Path) -> Option<u32> {
    let mut opts = ClientOptions::new(path, "aifactoryd");
    opts.handshake_timeout = Duration::from_secs(2);
    let ask = async {
        let client = Client::connect(&opts).await.ok()?;
        client.status().await.ok().map(|s| s.pid)
    };
    tokio::time::timeout(Duration::from_secs(3), ask)
        .await
        .ok()
        .flatten()
}

impl Listener {
    /// Removes the socket file we bound (systemd owns an activated one).
    pub fn remove_socket_file(&self) {
        if self.activated {
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(socket = %self.path.display(), error = %e, "cannot remove the socket file");
        }
    }
}
