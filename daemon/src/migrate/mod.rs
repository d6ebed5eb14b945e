//! Schema migrations, run at startup before READY=1 (and by `aifactoryd migrate`).
//!
//! Here: the embedded, ordered migration list (`daemon/migrations/NNNN_name.sql`), the plan
//! (refusing a database newer than this binary, or one whose applied migrations differ from
//! the embedded ones) and the run, each migration in its own transaction recorded in the
//! [`ledger`] so a kill at any instant leaves the previous version intact. Around it: the
//! [`lock`] that keeps two runs apart, the [`backup`] taken before migrating a non-empty
//! database, the [`verify`] of every table and column the code uses, and the typed
//! [`report`]s `aifactoryd migrate` prints.

mod backup;
mod ledger;
mod lock;
pub mod report;
mod verify;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aifactory_common::diagnose::LockHolder;
use rusqlite::{Connection, TransactionBehavior};
use sha2::{Digest, Sha256};

pub use backup::{BACKUP_DIR, newest_backup};
pub use ledger::{Applied, applied};
pub use lock::{LOCK_FILE, MigrateLock, lock};
pub use verify::{EXPECTED_SCHEMA, verify};

use crate::hooks::Hooks;

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
        sql: include_str!("../../migrations/0001_projects.sql"),
    },
    Migration {
        version: 2,
        name: "legacy_imports",
        sql: include_str!("../../migrations/0002_legacy_imports.sql"),
    },
    Migration {
        version: 3,
        name: "sessions",
        sql: include_str!("../../migrations/0003_sessions.sql"),
    },
    Migration {
        version: 4,
        name: "tasks",
        sql: include_str!("../../migrations/0004_tasks.sql"),
    },
    Migration {
        version: 5,
        name: "agents",
        sql: include_str!("../../migrations/0005_agents.sql"),
    },
    Migration {
        version: 6,
        name: "resources",
        sql: include_str!("../../migrations/0006_resources.sql"),
    },
    Migration {
        version: 7,
        name: "attempts",
        sql: include_str!("../../migrations/0007_attempts.sql"),
    },
];

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
        "the migration lock {} is held by {holder}: waited {waited_s} s; check that process (`ps -p {}`); if it is gone the kernel has already released the lock, so just start again",
        lock.display(),
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

/// The migrations a binary knows, and what runs inside each one's transaction: every one and
/// nothing for the shipped daemon (no [`Hooks`]); fewer, or a pause, under a test build's.
#[derive(Debug, Clone, Copy)]
pub struct Known {
    migrations: &'static [Migration],
    inside: Option<fn(u32)>,
}

impl Known {
    pub fn new(hooks: &Hooks) -> Known {
        let limit = hooks.migration_limit.unwrap_or(u32::MAX);
        let n = MIGRATIONS.iter().take_while(|m| m.version <= limit).count();
        Known {
            migrations: &MIGRATIONS[..n],
            inside: hooks.inside_migration,
        }
    }

    pub fn migrations(&self) -> &'static [Migration] {
        self.migrations
    }

    pub fn latest(&self) -> u32 {
        self.migrations.last().map_or(0, |m| m.version)
    }
}

/// What a migration run found and did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub from: u32,
    pub to: u32,
    /// Applied by this run, in order, each with how long it took.
    pub applied: Vec<(&'static Migration, Duration)>,
    pub backup: Option<PathBuf>,
}

/// Checks the database against the embedded migrations: refuses a downgrade or a changed
/// migration. Returns the current version and the pending migrations.
pub fn plan(
    conn: &Connection,
    file: &Path,
    state_dir: &Path,
    known: Known,
) -> Result<(u32, Vec<&'static Migration>), MigrateError> {
    let rows = applied(conn).map_err(|e| MigrateError::Read {
        file: file.to_path_buf(),
        message: e.to_string(),
    })?;
    let current = rows.iter().map(|r| r.version).max().unwrap_or(0);
    if current > known.latest() {
        return Err(MigrateError::Downgrade {
            file: file.to_path_buf(),
            db: current,
            known: known.latest(),
            backup: newest_backup(state_dir),
        });
    }
    for row in &rows {
        let embedded = known.migrations.iter().find(|m| m.version == row.version);
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
        .migrations
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
    known: Known,
) -> Result<Outcome, MigrateError> {
    let (from, pending) = plan(conn, file, state_dir, known)?;
    let to = pending.last().map_or(from, |m| m.version);
    lock.set_versions(from, to);
    let mut outcome = Outcome {
        from,
        to,
        ..Outcome::default()
    };
    if pending.is_empty() {
        verify(conn, file, state_dir, known)?;
        return Ok(outcome);
    }
    if from > 0 {
        outcome.backup = Some(backup::backup(conn, file, state_dir, from)?);
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
        ledger::ensure(&tx).map_err(|e| io(e, m))?;
        tx.execute_batch(m.sql).map_err(|e| io(e, m))?;
        if let Some(inside) = known.inside {
            inside(m.version);
        }
        let took = started.elapsed();
        let ms = took.as_millis() as u64;
        ledger::record(&tx, m, ms).map_err(|e| io(e, m))?;
        tx.commit().map_err(|e| io(e, m))?;
        outcome.applied.push((m, took));
    }
    verify(conn, file, state_dir, known)?;
    Ok(outcome)
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
        let all = Known::new(&Hooks::default());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.db");
        let mut conn = Connection::open(&file).unwrap();
        let mut lock = lock(dir.path(), Duration::from_secs(1)).unwrap();
        let out = migrate(&mut conn, &file, dir.path(), &mut lock, all).unwrap();
        assert_eq!((out.from, out.to), (0, all.latest()));
        assert!(out.backup.is_none(), "an empty database needs no backup");
        let rows = applied(&conn).unwrap();
        assert_eq!(rows.len(), MIGRATIONS.len());
        assert_eq!(rows[0].checksum, checksum(MIGRATIONS[0].sql));
        assert_eq!(rows[0].applied_by_pid, std::process::id());
        // A second run has nothing to do.
        let again = migrate(&mut conn, &file, dir.path(), &mut lock, all).unwrap();
        assert!(again.applied.is_empty());
    }

    #[test]
    fn a_hole_in_the_ledger_is_refused() {
        let all = Known::new(&Hooks::default());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.db");
        let mut conn = Connection::open(&file).unwrap();
        let mut lock = lock(dir.path(), Duration::from_secs(1)).unwrap();
        migrate(&mut conn, &file, dir.path(), &mut lock, all).unwrap();
        conn.execute("DELETE FROM schema_migrations WHERE version = 1", [])
            .unwrap();
        let err = plan(&conn, &file, dir.path(), all).unwrap_err().to_string();
        assert!(
            err.contains("migration 0001_projects is not recorded"),
            "{err}"
        );
    }
}
