//! The migration lock: `flock` on `<state dir>/migrate.lock`. The kernel drops it when the
//! holder dies, so a SIGKILL can never leave it stuck; the file's JSON ([`LockHolder`]: pid,
//! host, start, versions) is for diagnostics only. A waiter logs the holder every 5 s and asks
//! systemd for more start-up time meanwhile.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use aifactory_common::diagnose::{LockHolder, LockState};
use nix::fcntl::{Flock, FlockArg};

use super::MigrateError;
use crate::notify;

pub const LOCK_FILE: &str = "migrate.lock";
const LOCK_LOG_EVERY: Duration = Duration::from_secs(5);

/// The held migration lock; released when dropped (or by the kernel if we die).
pub struct MigrateLock {
    lock: Flock<File>,
    info: LockHolder,
}

impl MigrateLock {
    fn record(&mut self) {
        let text = serde_json::to_string(&self.info).unwrap_or_default();
        let file: &mut File = &mut self.lock;
        // Diagnostics only: a failure to write them does not matter for correctness.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = file.write_all(text.as_bytes());
    }

    pub(super) fn set_versions(&mut self, from: u32, to: u32) {
        self.info.from = Some(from);
        self.info.to = Some(to);
        self.record();
    }
}

/// Who holds (or last held) the lock, from the lock file's text.
pub fn read_holder(state_dir: &Path) -> LockHolder {
    let mut text = String::new();
    if let Ok(mut f) = File::open(state_dir.join(LOCK_FILE)) {
        let _ = f.read_to_string(&mut text);
    }
    serde_json::from_str(&text).unwrap_or_default()
}

/// Whether someone holds the lock now (without taking it for long).
pub fn lock_is_held(state_dir: &Path) -> bool {
    let Ok(file) = File::open(state_dir.join(LOCK_FILE)) else {
        return false;
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(_) => false,
        Err((_, errno)) => errno == nix::errno::Errno::EWOULDBLOCK,
    }
}

/// The lock as `migrate --status` and the doctor report it.
pub fn state(state_dir: &Path) -> LockState {
    let holder = read_holder(state_dir);
    LockState {
        held: lock_is_held(state_dir),
        holder_alive: holder.pid.is_some_and(|pid| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
        }),
        holder_pid: holder.pid,
        holder_host: holder.host,
        since: holder.started,
    }
}

/// Takes the migration lock, waiting up to `timeout` for another holder.
pub fn lock(state_dir: &Path, timeout: Duration) -> Result<MigrateLock, MigrateError> {
    let path = state_dir.join(LOCK_FILE);
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| MigrateError::Io {
                action: "open the migration lock",
                path: path.clone(),
                message: e.to_string(),
            })
    };
    let lock = match Flock::lock(open()?, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            wait_for_lock(open()?, &path, state_dir, timeout)?
        }
        Err((_, errno)) => {
            return Err(MigrateError::Io {
                action: "lock",
                path,
                message: errno.to_string(),
            });
        }
    };
    let mut held = MigrateLock {
        lock,
        info: LockHolder {
            pid: Some(std::process::id()),
            host: nix::unistd::gethostname()
                .ok()
                .map(|h| h.to_string_lossy().into_owned()),
            started: Some(aifactory_common::time::now_rfc3339()),
            from: None,
            to: None,
        },
    };
    held.record();
    Ok(held)
}

/// Blocks in `flock` on a helper thread while this one logs the holder every 5 s and asks
/// systemd for more start-up time.
fn wait_for_lock(
    file: File,
    path: &Path,
    state_dir: &Path,
    timeout: Duration,
) -> Result<Flock<File>, MigrateError> {
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Flock::lock(file, FlockArg::LockExclusive));
    });
    loop {
        let holder = read_holder(state_dir);
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(MigrateError::LockTimeout {
                lock: path.to_path_buf(),
                holder,
                waited_s: waited.as_secs(),
            });
        }
        tracing::warn!(
            holder_pid = holder.pid.unwrap_or(0),
            waited_s = waited.as_secs(),
            "waiting for the migration lock held by {holder}"
        );
        let slice = LOCK_LOG_EVERY.min(timeout - waited);
        notify::extend_timeout(slice + LOCK_LOG_EVERY);
        match rx.recv_timeout(slice) {
            Ok(Ok(lock)) => return Ok(lock),
            Ok(Err((_, errno))) => {
                return Err(MigrateError::Io {
                    action: "lock",
                    path: path.to_path_buf(),
                    message: errno.to_string(),
                });
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(MigrateError::Io {
                    action: "wait for the lock",
                    path: path.to_path_buf(),
                    message: "the waiting thread stopped".into(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_times_out_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock(dir.path(), Duration::from_secs(1)).unwrap();
        // flock locks belong to the open file description, so a second open in this process
        // contends like another process would.
        let err = match lock(dir.path(), Duration::from_millis(300)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a held lock was taken twice"),
        };
        assert!(
            err.contains(&format!("held by pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("ps -p"), "{err}");
    }
}
