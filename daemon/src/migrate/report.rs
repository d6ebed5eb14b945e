//! What `aifactoryd migrate [--status | --dry-run]` finds or does, as typed values: the binary
//! prints them (their `Display` is the text a person reads; `--status --json` and `aifactoryd
//! check --json` serialize the [`MigrationStatus`] instead). Status and dry runs only read: they
//! never create the database or its directory.

use std::fmt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aifactory_common::diagnose::MigrationStatus;
use rusqlite::Connection;

use super::{
    Applied, BACKUP_DIR, Known, MigrateError, Migration, Outcome, applied, checksum, lock, migrate,
    newest_backup, plan,
};
use crate::store::DB_FILE;

/// `aifactoryd migrate`: the database brought up to date.
#[derive(Debug)]
pub struct ApplyReport {
    pub file: PathBuf,
    pub outcome: Outcome,
}

/// Migrates `state_dir`'s database (creating both if needed) under the migration lock.
pub fn apply(
    state_dir: &Path,
    lock_timeout: Duration,
    known: Known,
) -> Result<ApplyReport, MigrateError> {
    let file = state_dir.join(DB_FILE);
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
    let mut conn = Connection::open(&file).map_err(|e| read_error(&file, e))?;
    let outcome = migrate(&mut conn, &file, state_dir, &mut lock, known)?;
    Ok(ApplyReport { file, outcome })
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = &self.outcome;
        if outcome.applied.is_empty() {
            writeln!(
                f,
                "{}: schema version {} is up to date",
                self.file.display(),
                outcome.to
            )?;
        }
        if let Some(backup) = &outcome.backup {
            writeln!(
                f,
                "backed up version {} to {}",
                outcome.from,
                backup.display()
            )?;
        }
        for (m, took) in &outcome.applied {
            writeln!(
                f,
                "applied {:04}_{} in {} ms",
                m.version,
                m.name,
                took.as_millis()
            )?;
        }
        Ok(())
    }
}

/// `aifactoryd migrate --dry-run`: what a run would do.
#[derive(Debug)]
pub enum DryRun {
    /// No database yet: it would be created and get every known migration.
    NoDatabase {
        file: PathBuf,
        known: &'static [Migration],
    },
    UpToDate {
        file: PathBuf,
        version: u32,
    },
    Pending {
        file: PathBuf,
        current: u32,
        backup_dir: PathBuf,
        pending: Vec<&'static Migration>,
    },
}

/// Plans a run on `state_dir`'s database without changing anything.
pub fn dry_run(state_dir: &Path, known: Known) -> Result<DryRun, MigrateError> {
    let file = state_dir.join(DB_FILE);
    if !file.exists() {
        return Ok(DryRun::NoDatabase {
            file,
            known: known.migrations(),
        });
    }
    let conn = open_read_only(&file)?;
    let (current, pending) = plan(&conn, &file, state_dir, known)?;
    Ok(if pending.is_empty() {
        DryRun::UpToDate {
            file,
            version: current,
        }
    } else {
        DryRun::Pending {
            file,
            current,
            backup_dir: state_dir.join(BACKUP_DIR),
            pending,
        }
    })
}

impl fmt::Display for DryRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let would_apply = |f: &mut fmt::Formatter<'_>, m: &Migration| {
            writeln!(
                f,
                "would apply {:04}_{} (sha256 {})",
                m.version,
                m.name,
                checksum(m.sql)
            )
        };
        match self {
            DryRun::NoDatabase { file, known } => {
                writeln!(
                    f,
                    "{} does not exist yet: it would be created and get:",
                    file.display()
                )?;
                known.iter().try_for_each(|m| would_apply(f, m))
            }
            DryRun::UpToDate { file, version } => writeln!(
                f,
                "{}: schema version {version} is up to date; nothing to do",
                file.display()
            ),
            DryRun::Pending {
                file,
                current,
                backup_dir,
                pending,
            } => {
                if *current > 0 {
                    writeln!(
                        f,
                        "would back up {} to {}/aifactory-v{current}-<time>.db",
                        file.display(),
                        backup_dir.display()
                    )?;
                }
                pending.iter().try_for_each(|m| would_apply(f, m))
            }
        }
    }
}

/// `aifactoryd migrate --status`: the summary (also sent as JSON) and the ledger behind it.
#[derive(Debug)]
pub struct StatusReport {
    pub status: MigrationStatus,
    pub rows: Vec<Applied>,
    /// The migrations this binary knows, each shown with its state.
    pub known: &'static [Migration],
}

/// The migration state of `state_dir`'s database, read-only (nothing is created).
pub fn status(state_dir: &Path, known: Known) -> Result<StatusReport, MigrateError> {
    let file = state_dir.join(DB_FILE);
    let rows = if file.exists() {
        applied(&open_read_only(&file)?).map_err(|e| read_error(&file, e))?
    } else {
        Vec::new()
    };
    let name = |version: u32, name: &str| format!("{version:04}_{name}");
    let mut pending = Vec::new();
    let mut checksum_mismatch = Vec::new();
    for m in known.migrations() {
        match rows.iter().find(|r| r.version == m.version) {
            Some(r) if r.checksum != checksum(m.sql) => {
                checksum_mismatch.push(name(m.version, m.name))
            }
            Some(_) => {}
            None => pending.push(name(m.version, m.name)),
        }
    }
    let status = MigrationStatus {
        exists: file.exists(),
        database: file,
        schema_version: rows.iter().map(|r| r.version).max().unwrap_or(0),
        known_version: known.latest(),
        pending,
        checksum_mismatch,
        unknown_applied: rows
            .iter()
            .filter(|r| r.version > known.latest())
            .map(|r| name(r.version, &r.name))
            .collect(),
        lock: super::lock::state(state_dir),
        newest_backup: newest_backup(state_dir),
    };
    Ok(StatusReport {
        status,
        rows,
        known: known.migrations(),
    })
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = &self.status;
        writeln!(
            f,
            "database       {}{}",
            report.database.display(),
            if report.exists {
                ""
            } else {
                " (not created yet)"
            }
        )?;
        writeln!(
            f,
            "schema         version {}; this aifactoryd knows {}",
            report.schema_version, report.known_version
        )?;
        for m in self.known {
            let sum = checksum(m.sql);
            let state = match self.rows.iter().find(|r| r.version == m.version) {
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
            writeln!(f, "  {:04}_{:<20} {state}  sha256 {sum}", m.version, m.name)?;
        }
        for unknown in &report.unknown_applied {
            writeln!(
                f,
                "  {unknown:<25} applied by a newer aifactoryd (unknown here)"
            )?;
        }
        writeln!(f, "lock           {}", report.lock)?;
        writeln!(
            f,
            "newest backup  {}",
            report
                .newest_backup
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "none".into())
        )
    }
}

fn open_read_only(file: &Path) -> Result<Connection, MigrateError> {
    Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| read_error(file, e))
}

fn read_error(file: &Path, e: rusqlite::Error) -> MigrateError {
    MigrateError::Read {
        file: file.to_path_buf(),
        message: e.to_string(),
    }
}
