//! The state database: one SQLite file (`<state dir>/aifactory.db`), owned by one thread.
//!
//! Every read and write goes through that thread as a job, so no lock is ever held across an
//! `.await` and writes are serialised. A write is a transaction that commits before its caller
//! hears success, and rolls back if the job fails or panics. A failed write is reported with
//! the file, the OS error and the fix, and the store keeps serving reads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::storage::{self, Cause};
use aifactory_common::protocol::StoreHealth;
use aifactory_common::sync::lock;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

pub const DB_FILE: &str = "aifactory.db";
/// The time now as the store writes it (RFC 3339 UTC, milliseconds), for SQL text.
pub(crate) const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

/// A value kept as a JSON text column (`None`: NULL).
pub(crate) fn json_column<T: serde::Serialize>(
    value: Option<&T>,
) -> rusqlite::Result<Option<String>> {
    value
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

enum Message {
    Run(Job),
    /// Close the connection (checkpointing the WAL) and stop, then say so.
    Close(oneshot::Sender<()>),
}

/// How far a commit must have reached before the caller hears of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// On disk (fsync'd): survives a power loss.
    Full,
    /// In the WAL, not yet synced: survives any crash of the process.
    CrashSafe,
}

/// A handle to the owner thread; cheap to clone.
#[derive(Clone)]
pub struct Store {
    jobs: std::sync::mpsc::Sender<Message>,
    file: Arc<PathBuf>,
    health: Arc<Mutex<StoreHealth>>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The write did not happen; the message names the file, the OS error and the fix.
    #[error("{0}")]
    WriteFailed(String),
    #[error("database error on {file}: {message}")]
    Sqlite { file: String, message: String },
    #[error(
        "the state database's owner thread has stopped: restart aifactoryd (and report this bug)"
    )]
    Gone,
}

/// Opens the database read-write (creating it), or read-only when the file or its directory
/// does not allow writes. Returns the connection and, when read-only, why.
pub fn open(file: &Path) -> Result<(Connection, Option<String>), StoreError> {
    let rw = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(file, rw).map_err(|e| open_error(file, &e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| sqlite_error(file, &e))?;
    let readonly = conn
        .is_readonly(rusqlite::MAIN_DB)
        .map_err(|e| sqlite_error(file, &e))?;
    let wal =
        conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get::<_, String>(0));
    let setup = wal.and_then(|_| {
        conn.pragma_update(None, "foreign_keys", true)?;
        // FULL: a commit is on disk before we acknowledge it, even across a power cut.
        conn.pragma_update(None, "synchronous", "FULL")
    });
    match (readonly, setup) {
        (false, Ok(())) => Ok((conn, None)),
        (_, result) => {
            let why = match result {
                Err(e) => classify(&conn, file, &e).to_string(),
                Ok(()) => readonly_reason(file),
            };
            drop(conn);
            open_readonly(file).map(|conn| (conn, Some(why)))
        }
    }
}

/// Read-only fallback: a plain read-only open first (it sees the WAL); if the directory
/// refuses even SQLite's shared-memory file, `immutable=1`, which reads the main file alone.
fn open_readonly(file: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let plain = Connection::open_with_flags(file, flags).and_then(|conn| {
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })?;
        Ok(conn)
    });
    let conn = match plain {
        Ok(conn) => conn,
        Err(_) => {
            let wal = wal_path(file);
            if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
                tracing::warn!(
                    wal = %wal.display(),
                    "the write-ahead log cannot be read without writing beside it, so its latest commits are not visible until the directory is writable again"
                );
            }
            let uri = format!("file:{}?immutable=1", percent_encode_path(file));
            Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
                .map_err(|e| open_error(file, &e))?
        }
    };
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(|e| sqlite_error(file, &e))?;
    Ok(conn)
}

fn wal_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

fn percent_encode_path(path: &Path) -> String {
    let mut out = String::new();
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'?' | b'#' | b'%' => out.push_str(&format!("%{b:02X}")),
            _ => out.push(*b as char),
        }
    }
    out
}

fn readonly_reason(file: &Path) -> String {
    if storage::cause(dir_of(file), None) == Some(Cause::ReadOnlyMount) {
        return format!(
            "the database {} is read-only: {}, then restart aifactoryd",
            file.display(),
            Cause::ReadOnlyMount.fix(dir_of(file))
        );
    }
    format!(
        "the database {} is read-only for uid {}: make it and its directory writable (`chmod u+w {} {}`) or check for a read-only mount, then restart aifactoryd",
        file.display(),
        nix::unistd::geteuid(),
        file.display(),
        dir_of(file).display()
    )
}

fn dir_of(file: &Path) -> &Path {
    file.parent().unwrap_or(Path::new("."))
}

fn open_error(file: &Path, e: &rusqlite::Error) -> StoreError {
    StoreError::WriteFailed(format!(
        "cannot open the database {}: {e}: check that {} exists and is readable and writable by uid {}",
        file.display(),
        dir_of(file).display(),
        nix::unistd::geteuid()
    ))
}

pub fn sqlite_error(file: &Path, e: &rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        file: file.display().to_string(),
        message: e.to_string(),
    }
}

/// Turns a failed write into a message that names the file, the OS error and the fix.
pub fn classify(conn: &Connection, file: &Path, e: &rusqlite::Error) -> StoreError {
    use rusqlite::ffi::ErrorCode;
    let Some(code) = e.sqlite_error_code() else {
        return sqlite_error(file, e);
    };
    // SAFETY: the handle is valid for the connection's lifetime and only read here.
    let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(conn.handle()) };
    let os = if errno != 0 {
        std::io::Error::from_raw_os_error(errno).to_string()
    } else {
        "no OS error".into()
    };
    let dir = dir_of(file).display();
    let file_shown = file.display();
    let uid = nix::unistd::geteuid();
    // What the filesystem says beats what SQLite's code suggests: a read-only mount shows as
    // "cannot open" or "read-only", a full disk as an I/O error.
    let io = matches!(
        code,
        ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
    );
    let errno = (errno != 0).then_some(errno);
    if let Some(cause) = storage::cause(dir_of(file), errno).filter(|_| io) {
        return StoreError::WriteFailed(format!(
            "cannot write {file_shown} ({e}; {os}): {}, then retry; nothing was saved",
            cause.fix(dir_of(file))
        ));
    }
    let message = match code {
        ErrorCode::ReadOnly | ErrorCode::PermissionDenied => format!(
            "cannot write {file_shown}: the database is read-only ({e}; {os}): make it and {dir} writable by uid {uid} (`chmod u+w {file_shown} {dir}`) or remount the filesystem read-write; nothing was saved"
        ),
        ErrorCode::DiskFull => format!(
            "cannot write {file_shown}: the disk is full ({e}; {os}): free space on the filesystem holding {dir} (`df -h {dir}`), then retry; nothing was saved"
        ),
        ErrorCode::CannotOpen => format!(
            "cannot write {file_shown}: SQLite cannot create its journal files in {dir} ({e}; {os}): make {dir} writable by uid {uid}; nothing was saved"
        ),
        ErrorCode::SystemIoFailure => format!(
            "cannot write {file_shown}: I/O error ({e}; {os}): check the disk (`dmesg`, `df -h {dir}`), then retry; nothing was saved"
        ),
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => format!(
            "cannot write {file_shown}: another process holds the database lock ({e}): find it with `fuser {file_shown}` and stop it; nothing was saved"
        ),
        _ => return sqlite_error(file, e),
    };
    StoreError::WriteFailed(message)
}

impl Store {
    /// Hands the connection to a new owner thread.
    pub fn start(
        conn: Connection,
        file: PathBuf,
        readonly: Option<String>,
    ) -> std::io::Result<Store> {
        let (jobs, queue) = std::sync::mpsc::channel::<Message>();
        let mut conn = conn;
        std::thread::Builder::new()
            .name("aifactoryd-store".into())
            .spawn(move || {
                while let Ok(message) = queue.recv() {
                    match message {
                        Message::Run(job) => job(&mut conn),
                        Message::Close(done) => {
                            if let Err((_, e)) = conn.close() {
                                tracing::warn!(error = %e, "closing the database failed; SQLite recovers the WAL at the next start");
                            }
                            let _ = done.send(());
                            return;
                        }
                    }
                }
            })?;
        let health = match readonly {
            Some(reason) => StoreHealth::ReadOnly { reason },
            None => StoreHealth::Writable,
        };
        Ok(Store {
            jobs,
            file: Arc::new(file),
            health: Arc::new(Mutex::new(health)),
        })
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn health(&self) -> StoreHealth {
        lock(&self.health).clone()
    }

    fn set_health(&self, health: StoreHealth) {
        *lock(&self.health) = health;
    }

    /// Runs `job` on the owner thread.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(job(conn));
        });
        self.jobs
            .send(Message::Run(job))
            .map_err(|_| StoreError::Gone)?;
        rx.await.map_err(|_| StoreError::Gone)
    }

    /// Closes the database after every queued job: the WAL is checkpointed into the main file,
    /// so a stopped daemon leaves one self-contained file behind.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Message::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Reads outside any write transaction.
    pub async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let file = self.file.clone();
        self.run(move |conn| query(conn).map_err(|e| sqlite_error(&file, &e)))
            .await?
    }

    /// Runs `work` in an immediate transaction and commits it. `work` returns either a domain
    /// outcome (`Ok`, committed even when the outcome is a refusal) or a SQLite error (rolled
    /// back). Only a committed transaction is reported as done.
    pub async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Transaction) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_with(Durability::Full, work).await
    }

    /// Like [`Store::write`], for rows that only describe processes: committed and safe
    /// against any crash of the daemon, but not synced to disk before returning (SQLite's
    /// `synchronous=NORMAL` in WAL mode). Only a power loss can undo such a commit, and a power
    /// loss also ends the processes it describes.
    pub async fn write_process_state<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Transaction) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_with(Durability::CrashSafe, work).await
    }

    async fn write_with<T: Send + 'static>(
        &self,
        durability: Durability,
        work: impl FnOnce(&Transaction) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        if let StoreHealth::ReadOnly { reason } = self.health() {
            return Err(StoreError::WriteFailed(reason));
        }
        let file = self.file.clone();
        let result = self
            .run(move |conn| {
                let relaxed = durability == Durability::CrashSafe;
                let attempt = (|| {
                    if relaxed {
                        conn.pragma_update(None, "synchronous", "NORMAL")?;
                    }
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    let value = work(&tx)?;
                    tx.commit()?;
                    Ok(value)
                })();
                // Every other write stays fully synced, whatever happened above.
                if relaxed && let Err(e) = conn.pragma_update(None, "synchronous", "FULL") {
                    tracing::error!(error = %e, "cannot restore synchronous=FULL");
                }
                attempt.map_err(|e| classify(conn, &file, &e))
            })
            .await?;
        match &result {
            Ok(_) => self.set_health(StoreHealth::Writable),
            Err(StoreError::WriteFailed(reason)) => {
                tracing::error!(file = %self.file.display(), "{reason}");
                self.set_health(StoreHealth::WriteFailed {
                    reason: reason.clone(),
                });
            }
            Err(_) => {}
        }
        result
    }
}
