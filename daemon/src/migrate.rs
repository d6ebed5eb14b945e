//! Schema migrations, run at startup before READY=1 (and by `aifactoryd migrate`).
//!
//! - Embedded, ordered SQL files (`daemon/migrations/NNNN_name.sql`), each applied in its own
//!   transaction and recorded in `schema_migrations` with its SHA-256, time, duration and pid,
//!   so a kill at any instant leaves the previous version intact.
//! - Guarded by `flock` on `<state dir>/migrate.lock`: the kernel drops it when the holder
//!   dies, so a SIGKILL can never leave it stuck. The file's text (holder pid, host, start,
//!   versions) is for diagnostics only.
//! - A non-empty database is backed up (SQLite online backup) before pending migrations.
//! - Refuses a database newer than this binary or one whose applied migrations differ from the
//!   embedded ones, and verifies afterwards that every table and column the code uses exists.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aifactory_common::diagnose::{LockState, MigrationStatus};
use nix::fcntl::{Flock, FlockArg};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};

use crate::notify;

#[derive(Debug)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. A test checks this list against `daemon/migrations/`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "projects",
        sql: include_str!("../migrations/0001_projects.sql"),
    },
    Migration {
        version: 2,
        name: "legacy_imports",
        sql: include_str!("../migrations/0002_legacy_imports.sql"),
    },
    Migration {
        version: 3,
        name: "sessions",
        sql: include_str!("../migrations/0003_sessions.sql"),
    },
    Migration {
        version: 4,
        name: "tasks",
        sql: include_str!("../migrations/0004_tasks.sql"),
    },
];

/// Every table and column the code reads or writes, with the migration that brings it.
/// Checked after migrating, so a schema that lacks one stops startup instead of failing in the
/// middle of serving.
pub const EXPECTED_SCHEMA: &[(&str, u32, &[&str])] = &[
    (
        "schema_migrations",
        1,
        &[
            "version",
            "name",
            "checksum",
            "applied_at",
            "duration_ms",
            "applied_by_pid",
        ],
    ),
    (
        "projects",
        1,
        &[
            "id",
            "name",
            "path",
            "origin_url",
            "provider",
            "detected_provider",
            "provider_manual",
            "default_branch",
            "created_at",
        ],
    ),
    (
        "sessions",
        3,
        &[
            "id",
            "name",
            "command",
            "cwd",
            "pane_dir",
            "cols",
            "rows",
            "state",
            "pid",
            "start_time",
            "monitor_pid",
            "monitor_start_time",
            "exit_code",
            "exit_signal",
            "ended_at",
            "lost_reason",
            "created_at",
        ],
    ),
    (
        "legacy_imports",
        2,
        &["id", "source", "imported_at", "imported", "skipped"],
    ),
    (
        "tasks",
        4,
        &[
            "id",
            "project_id",
            "spec_id",
            "title",
            "agent",
            "phase",
            "phase_before_stall",
            "progress_percent",
            "subtasks_done",
            "subtasks_total",
            "session_id",
            "attempts",
            "worktree",
            "branch",
            "notes",
            "stall",
            "waiting_input",
            "last_output_at",
            "last_progress_at",
            "last_error",
            "created_at",
            "updated_at",
        ],
    ),
    ("events", 4, &["seq", "at_ms", "kind"]),
];

pub const LOCK_FILE: &str = "migrate.lock";
pub const BACKUP_DIR: &str = "backups";
const BACKUPS_KEPT: usize = 5;
const LOCK_LOG_EVERY: Duration = Duration::from_secs(5);

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version        INTEGER PRIMARY KEY,
    name           TEXT NOT NULL,
    checksum       TEXT NOT NULL,
    applied_at     TEXT NOT NULL,
    duration_ms    INTEGER NOT NULL,
    applied_by_pid INTEGER NOT NULL
)";

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "the database {} has schema version {db}, newer than the {known} this aifactoryd knows (a downgrade): run the newer aifactoryd again, or restore a backup made before the upgrade ({})",
        file.display(),
        newest_backup_text(backup)
    )]
    Downgrade {
        file: PathBuf,
        db: u32,
        known: u32,
        backup: Option<PathBuf>,
    },
    #[error(
        "migration {version:04}_{name} was applied to {} with checksum {applied}, but this aifactoryd embeds {embedded}: the migration was changed after it ran; install the aifactoryd that applied it, or restore a backup ({})",
        file.display(),
        newest_backup_text(backup)
    )]
    Checksum {
        file: PathBuf,
        version: u32,
        name: String,
        applied: String,
        embedded: String,
        backup: Option<PathBuf>,
    },
    #[error(
        "the database {} is at schema version {current} but migration {missing:04}_{name} is not recorded as applied: its schema_migrations table was edited; restore a backup ({})",
        file.display(),
        newest_backup_text(backup)
    )]
    Gap {
        file: PathBuf,
        missing: u32,
        name: String,
        current: u32,
        backup: Option<PathBuf>,
    },
    #[error(
        "the database {} lacks what this aifactoryd uses: {}: the schema was changed by hand or a migration was skipped; restore a backup ({}) or move the file away to start afresh",
        file.display(),
        missing.join(", "),
        newest_backup_text(backup)
    )]
    SchemaMismatch {
        file: PathBuf,
        missing: Vec<String>,
        backup: Option<PathBuf>,
    },
    #[error(
        "the migration lock {} is held by pid {}{} since {}: waited {waited_s} s; check that process (`ps -p {}`); if it is gone the kernel has already released the lock, so just start again",
        lock.display(),
        holder.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
        holder.host.as_ref().map(|h| format!(" on {h}")).unwrap_or_default(),
        holder.started.as_deref().unwrap_or("an unknown time"),
        holder.pid.map(|p| p.to_string()).unwrap_or_else(|| "<pid>".into())
    )]
    LockTimeout {
        lock: PathBuf,
        holder: LockHolder,
        waited_s: u64,
    },
    #[error("migration {version:04}_{name} failed on {}: {message}; the database stays at version {}", file.display(), version - 1)]
    Apply {
        file: PathBuf,
        version: u32,
        name: String,
        message: String,
    },
    #[error("cannot back up {} to {}: {message}; no migration was applied", file.display(), backup.display())]
    Backup {
        file: PathBuf,
        backup: PathBuf,
        message: String,
    },
    #[error("cannot {action} {}: {message}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("cannot read {}: {message}", file.display())]
    Read { file: PathBuf, message: String },
}

fn newest_backup_text(backup: &Option<PathBuf>) -> String {
    match backup {
        Some(path) => format!("newest backup: {}", path.display()),
        None => "no backup exists".into(),
    }
}

pub fn checksum(sql: &str) -> String {
    let digest = Sha256::digest(sql.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The migrations this binary knows: all of them, or fewer under a test hook.
pub fn known() -> &'static [Migration] {
    let limit = test_hooks::migration_limit().unwrap_or(u32::MAX);
    let n = MIGRATIONS.iter().take_while(|m| m.version <= limit).count();
    &MIGRATIONS[..n]
}

pub fn latest_known() -> u32 {
    known().last().map_or(0, |m| m.version)
}

/// Who holds (or last held) the migration lock, from the lock file's text.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LockHolder {
    pub pid: Option<u32>,
    pub host: Option<String>,
    pub started: Option<String>,
    pub from: Option<u32>,
    pub to: Option<u32>,
}

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

    fn set_versions(&mut self, from: u32, to: u32) {
        self.info.from = Some(from);
        self.info.to = Some(to);
        self.record();
    }
}

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

fn now_utc() -> String {
    // SQLite is already linked and knows the calendar; no clock crate needed.
    Connection::open_in_memory()
        .and_then(|c| {
            c.query_row("SELECT strftime('%Y-%m-%dT%H:%M:%SZ','now')", [], |r| {
                r.get::<_, String>(0)
            })
        })
        .unwrap_or_default()
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
            started: Some(now_utc()),
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
            "waiting for the migration lock held by pid {}",
            holder
                .pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "?".into())
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

/// One row of `schema_migrations`.
#[derive(Debug, Clone)]
pub struct Applied {
    pub version: u32,
    pub name: String,
    pub checksum: String,
    pub applied_at: String,
    pub duration_ms: i64,
    pub applied_by_pid: u32,
}

pub fn applied(conn: &Connection) -> rusqlite::Result<Vec<Applied>> {
    let exists: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(
        "SELECT version, name, checksum, applied_at, duration_ms, applied_by_pid
         FROM schema_migrations ORDER BY version",
    )?;
    stmt.query_map([], |r| {
        Ok(Applied {
            version: r.get(0)?,
            name: r.get(1)?,
            checksum: r.get(2)?,
            applied_at: r.get(3)?,
            duration_ms: r.get(4)?,
            applied_by_pid: r.get(5)?,
        })
    })?
    .collect()
}

pub fn newest_backup(state_dir: &Path) -> Option<PathBuf> {
    backups(state_dir).pop()
}

/// Backups, oldest first (their names sort by time).
fn backups(state_dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(state_dir.join(BACKUP_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("aifactory-v") && n.ends_with(".db"))
        })
        .collect();
    found.sort_by_key(|p| {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        // aifactory-v<from>-<timestamp>.db: sort by timestamp, then name.
        name.map(|n| {
            let stamp = n
                .rsplit_once('-')
                .map(|(_, s)| s.to_string())
                .unwrap_or_default();
            (stamp, n)
        })
    });
    found
}

/// What a migration run found and did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub from: u32,
    pub to: u32,
    pub applied: Vec<(u32, &'static str, u64)>,
    pub backup: Option<PathBuf>,
}

/// Checks the database against the embedded migrations: refuses a downgrade or a changed
/// migration. Returns the current version and the pending migrations.
pub fn plan(
    conn: &Connection,
    file: &Path,
    state_dir: &Path,
) -> Result<(u32, Vec<&'static Migration>), MigrateError> {
    let rows = applied(conn).map_err(|e| MigrateError::Read {
        file: file.to_path_buf(),
        message: e.to_string(),
    })?;
    let current = rows.iter().map(|r| r.version).max().unwrap_or(0);
    let known = known();
    if current > latest_known() {
        return Err(MigrateError::Downgrade {
            file: file.to_path_buf(),
            db: current,
            known: latest_known(),
            backup: newest_backup(state_dir),
        });
    }
    for row in &rows {
        let embedded = known.iter().find(|m| m.version == row.version);
        let embedded_sum = embedded.map(|m| checksum(m.sql)).unwrap_or_default();
        if embedded_sum != row.checksum {
            return Err(MigrateError::Checksum {
                file: file.to_path_buf(),
                version: row.version,
                name: row.name.clone(),
                applied: row.checksum.clone(),
                embedded: embedded_sum,
                backup: newest_backup(state_dir),
            });
        }
    }
    let pending: Vec<&'static Migration> = known
        .iter()
        .filter(|m| !rows.iter().any(|r| r.version == m.version))
        .collect();
    // A hole below the current version means the ledger was edited: applying the missing
    // migration now, over a newer schema, could do anything.
    if let Some(hole) = pending.iter().find(|m| m.version < current) {
        return Err(MigrateError::Gap {
            file: file.to_path_buf(),
            missing: hole.version,
            name: hole.name.to_string(),
            current,
            backup: newest_backup(state_dir),
        });
    }
    Ok((current, pending))
}

/// Brings the database to the newest known version. The caller holds the lock.
pub fn migrate(
    conn: &mut Connection,
    file: &Path,
    state_dir: &Path,
    lock: &mut MigrateLock,
) -> Result<Outcome, MigrateError> {
    let (from, pending) = plan(conn, file, state_dir)?;
    let to = pending.last().map_or(from, |m| m.version);
    lock.set_versions(from, to);
    let mut outcome = Outcome {
        from,
        to,
        ..Outcome::default()
    };
    if pending.is_empty() {
        verify(conn, file, state_dir)?;
        return Ok(outcome);
    }
    if from > 0 {
        outcome.backup = Some(backup(conn, file, state_dir, from)?);
    }
    let io = |e: rusqlite::Error, m: &Migration| MigrateError::Apply {
        file: file.to_path_buf(),
        version: m.version,
        name: m.name.to_string(),
        message: e.to_string(),
    };
    for m in pending {
        let started = Instant::now();
        tracing::info!(version = m.version, name = m.name, "applying migration");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| io(e, m))?;
        tx.execute_batch(CREATE_LEDGER).map_err(|e| io(e, m))?;
        tx.execute_batch(m.sql).map_err(|e| io(e, m))?;
        test_hooks::pause_inside_migration(m.version);
        let ms = started.elapsed().as_millis() as u64;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at, duration_ms, applied_by_pid)
             VALUES (?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?4, ?5)",
            rusqlite::params![m.version, m.name, checksum(m.sql), ms as i64, std::process::id()],
        )
        .map_err(|e| io(e, m))?;
        tx.commit().map_err(|e| io(e, m))?;
        outcome.applied.push((m.version, m.name, ms));
    }
    verify(conn, file, state_dir)?;
    Ok(outcome)
}

/// Copies the live database with SQLite's online backup API and keeps the newest five.
fn backup(
    conn: &Connection,
    file: &Path,
    state_dir: &Path,
    from: u32,
) -> Result<PathBuf, MigrateError> {
    let dir = state_dir.join(BACKUP_DIR);
    let stamp = now_utc().replace([':', '-'], "");
    let path = dir.join(format!("aifactory-v{from}-{stamp}.db"));
    let err = |message: String| MigrateError::Backup {
        file: file.to_path_buf(),
        backup: path.clone(),
        message,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| err(e.to_string()))?;
    conn.backup(
        rusqlite::MAIN_DB,
        &path,
        None::<fn(rusqlite::backup::Progress)>,
    )
    .map_err(|e| err(e.to_string()))?;
    tracing::info!(backup = %path.display(), "backed up the database before migrating");
    let all = backups(state_dir);
    for old in all.iter().take(all.len().saturating_sub(BACKUPS_KEPT)) {
        if let Err(e) = std::fs::remove_file(old) {
            tracing::warn!(backup = %old.display(), error = %e, "cannot remove an old backup");
        }
    }
    Ok(path)
}

/// Compares the live schema with [`EXPECTED_SCHEMA`].
pub fn verify(conn: &Connection, file: &Path, state_dir: &Path) -> Result<(), MigrateError> {
    let mut missing = Vec::new();
    let known = latest_known();
    for (table, since, columns) in EXPECTED_SCHEMA {
        if *since > known {
            continue;
        }
        let have: Vec<String> = conn
            .prepare(&format!("PRAGMA table_info({table})"))
            .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(1))?.collect())
            .map_err(|e| MigrateError::Read {
                file: file.to_path_buf(),
                message: e.to_string(),
            })?;
        if have.is_empty() {
            missing.push(format!("table {table}"));
            continue;
        }
        for column in *columns {
            if !have.iter().any(|c| c == column) {
                missing.push(format!("table {table} has no column {column}"));
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(MigrateError::SchemaMismatch {
            file: file.to_path_buf(),
            missing,
            backup: newest_backup(state_dir),
        })
    }
}

/// Switches only the test suite turns on (cargo feature `test-hooks`).
mod test_hooks {
    #[cfg(feature = "test-hooks")]
    fn env_u32(name: &str) -> Option<u32> {
        std::env::var(name).ok()?.parse().ok()
    }

    /// `AIFACTORY_TEST_MIGRATION_LIMIT=N`: behave as a binary that knows migrations up to N.
    pub fn migration_limit() -> Option<u32> {
        #[cfg(feature = "test-hooks")]
        return env_u32("AIFACTORY_TEST_MIGRATION_LIMIT");
        #[cfg(not(feature = "test-hooks"))]
        None
    }

    /// `AIFACTORY_TEST_PAUSE_IN_MIGRATION=N`: stop inside migration N's open transaction, so a
    /// test can SIGKILL the daemon there.
    pub fn pause_inside_migration(_version: u32) {
        #[cfg(feature = "test-hooks")]
        if env_u32("AIFACTORY_TEST_PAUSE_IN_MIGRATION") == Some(_version) {
            eprintln!("test hook: paused inside migration {_version}");
            loop {
                std::thread::park();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_list_matches_the_migrations_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let embedded: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("{:04}_{}.sql", m.version, m.name))
            .collect();
        assert_eq!(
            files, embedded,
            "every file in daemon/migrations must be listed in MIGRATIONS, in order"
        );
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "versions are contiguous from 1");
            let on_disk =
                std::fs::read_to_string(dir.join(format!("{:04}_{}.sql", m.version, m.name)))
                    .unwrap();
            assert_eq!(on_disk, m.sql);
        }
    }

    #[test]
    fn fresh_database_migrates_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.db");
        let mut conn = Connection::open(&file).unwrap();
        let mut lock = lock(dir.path(), Duration::from_secs(1)).unwrap();
        let out = migrate(&mut conn, &file, dir.path(), &mut lock).unwrap();
        assert_eq!((out.from, out.to), (0, latest_known()));
        assert!(out.backup.is_none(), "an empty database needs no backup");
        let rows = applied(&conn).unwrap();
        assert_eq!(rows.len(), MIGRATIONS.len());
        assert_eq!(rows[0].checksum, checksum(MIGRATIONS[0].sql));
        assert_eq!(rows[0].applied_by_pid, std::process::id());
        // A second run has nothing to do.
        let again = migrate(&mut conn, &file, dir.path(), &mut lock).unwrap();
        assert!(again.applied.is_empty());
    }

    #[test]
    fn a_hole_in_the_ledger_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.db");
        let mut conn = Connection::open(&file).unwrap();
        let mut lock = lock(dir.path(), Duration::from_secs(1)).unwrap();
        migrate(&mut conn, &file, dir.path(), &mut lock).unwrap();
        conn.execute("DELETE FROM schema_migrations WHERE version = 1", [])
            .unwrap();
        let err = plan(&conn, &file, dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("migration 0001_projects is not recorded"),
            "{err}"
        );
    }

    #[test]
    fn missing_column_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.db");
        let mut conn = Connection::open(&file).unwrap();
        let mut lock = lock(dir.path(), Duration::from_secs(1)).unwrap();
        migrate(&mut conn, &file, dir.path(), &mut lock).unwrap();
        conn.execute_batch("ALTER TABLE projects DROP COLUMN default_branch")
            .unwrap();
        let err = verify(&conn, &file, dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("table projects has no column default_branch"),
            "{err}"
        );
    }

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

/// What `aifactoryd migrate` was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Apply,
    DryRun,
    Status,
    /// `--status --json`, for `aifactoryctl doctor`.
    StatusJson,
}

/// `aifactoryd migrate [--status | --dry-run]`: prints what it found or did.
pub fn command(
    state_dir: &Path,
    lock_timeout: Duration,
    what: Command,
) -> Result<(), MigrateError> {
    let file = state_dir.join(crate::store::DB_FILE);
    let read_err = |e: rusqlite::Error| MigrateError::Read {
        file: file.clone(),
        message: e.to_string(),
    };
    if what == Command::Apply {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|e| MigrateError::Io {
                action: "create",
                path: state_dir.to_path_buf(),
                message: e.to_string(),
            })?;
        let mut lock = lock(state_dir, lock_timeout)?;
        let mut conn = Connection::open(&file).map_err(read_err)?;
        let outcome = migrate(&mut conn, &file, state_dir, &mut lock)?;
        if outcome.applied.is_empty() {
            println!(
                "{}: schema version {} is up to date",
                file.display(),
                outcome.to
            );
        }
        if let Some(backup) = &outcome.backup {
            println!("backed up version {} to {}", outcome.from, backup.display());
        }
        for (version, name, ms) in &outcome.applied {
            println!("applied {version:04}_{name} in {ms} ms");
        }
        return Ok(());
    }
    if what == Command::StatusJson {
        let report = status(state_dir)?;
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
        return Ok(());
    }
    // Status and dry runs only read: never create the database or its directory.
    let rows = if file.exists() {
        let conn = Connection::open_with_flags(&file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(read_err)?;
        if what == Command::DryRun {
            let (current, pending) = plan(&conn, &file, state_dir)?;
            if pending.is_empty() {
                println!(
                    "{}: schema version {current} is up to date; nothing to do",
                    file.display()
                );
            } else {
                if current > 0 {
                    println!(
                        "would back up {} to {}/aifactory-v{current}-<time>.db",
                        file.display(),
                        state_dir.join(BACKUP_DIR).display()
                    );
                }
                print_would_apply(pending);
            }
            return Ok(());
        }
        applied(&conn).map_err(read_err)?
    } else {
        if what == Command::DryRun {
            println!(
                "{} does not exist yet: it would be created and get:",
                file.display()
            );
            print_would_apply(known());
            return Ok(());
        }
        Vec::new()
    };
    print!("{}", status_text(state_dir, &file, &rows));
    Ok(())
}

fn print_would_apply<'a>(migrations: impl IntoIterator<Item = &'a Migration>) {
    for m in migrations {
        println!(
            "would apply {:04}_{} (sha256 {})",
            m.version,
            m.name,
            checksum(m.sql)
        );
    }
}

/// What `migrate --status` reports, for people and (as JSON) for `aifactoryctl doctor`.
pub fn status_report(state_dir: &Path, file: &Path, rows: &[Applied]) -> MigrationStatus {
    let name = |version: u32, name: &str| format!("{version:04}_{name}");
    let mut pending = Vec::new();
    let mut checksum_mismatch = Vec::new();
    for m in known() {
        match rows.iter().find(|r| r.version == m.version) {
            Some(r) if r.checksum != checksum(m.sql) => {
                checksum_mismatch.push(name(m.version, m.name))
            }
            Some(_) => {}
            None => pending.push(name(m.version, m.name)),
        }
    }
    let holder = read_holder(state_dir);
    let lock = LockState {
        held: lock_is_held(state_dir),
        holder_pid: holder.pid,
        holder_host: holder.host.clone(),
        since: holder.started.clone(),
        holder_alive: holder.pid.is_some_and(|pid| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
        }),
    };
    MigrationStatus {
        database: file.to_path_buf(),
        exists: file.exists(),
        schema_version: rows.iter().map(|r| r.version).max().unwrap_or(0),
        known_version: latest_known(),
        pending,
        checksum_mismatch,
        unknown_applied: rows
            .iter()
            .filter(|r| r.version > latest_known())
            .map(|r| name(r.version, &r.name))
            .collect(),
        lock,
        newest_backup: newest_backup(state_dir),
    }
}

/// The migration state of `state_dir`'s database, read-only (nothing is created).
pub fn status(state_dir: &Path) -> Result<MigrationStatus, MigrateError> {
    let file = state_dir.join(crate::store::DB_FILE);
    let rows = if file.exists() {
        Connection::open_with_flags(&file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|conn| applied(&conn))
            .map_err(|e| MigrateError::Read {
                file: file.clone(),
                message: e.to_string(),
            })?
    } else {
        Vec::new()
    };
    Ok(status_report(state_dir, &file, &rows))
}

fn status_text(state_dir: &Path, file: &Path, rows: &[Applied]) -> String {
    use std::fmt::Write as _;
    let report = status_report(state_dir, file, rows);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "database       {}{}",
        file.display(),
        if report.exists {
            ""
        } else {
            " (not created yet)"
        }
    );
    let _ = writeln!(
        out,
        "schema         version {}; this aifactoryd knows {}",
        report.schema_version, report.known_version
    );
    for m in known() {
        let sum = checksum(m.sql);
        let state = match rows.iter().find(|r| r.version == m.version) {
            Some(r) if r.checksum == sum => format!(
                "applied {} in {} ms by pid {}",
                r.applied_at, r.duration_ms, r.applied_by_pid
            ),
            Some(r) => format!(
                "CHECKSUM MISMATCH: applied {} with sha256 {}",
                r.applied_at, r.checksum
            ),
            None => "pending".into(),
        };
        let _ = writeln!(
            out,
            "  {:04}_{:<20} {state}  sha256 {sum}",
            m.version, m.name
        );
    }
    for unknown in &report.unknown_applied {
        let _ = writeln!(
            out,
            "  {unknown:<25} applied by a newer aifactoryd (unknown here)"
        );
    }
    let lock = &report.lock;
    let lock_line = if lock.held {
        format!(
            "held by pid {} on {} since {} ({})",
            lock.holder_pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "?".into()),
            lock.holder_host.as_deref().unwrap_or("?"),
            lock.since.as_deref().unwrap_or("?"),
            if lock.holder_alive {
                "alive"
            } else {
                "not visible from here"
            }
        )
    } else {
        "free".into()
    };
    let _ = writeln!(out, "lock           {lock_line}");
    let _ = writeln!(
        out,
        "newest backup  {}",
        report
            .newest_backup
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "none".into())
    );
    out
}
