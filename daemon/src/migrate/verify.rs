//! What the code expects of the schema ([`EXPECTED_SCHEMA`]: every table and column it uses,
//! with the migration that brings it) and the check of a live database against it, run after
//! migrating so a hand-edited schema stops startup instead of failing in the middle of serving.

use std::path::Path;

use rusqlite::Connection;

use super::backup::newest_backup;
use super::{Known, MigrateError};

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

/// Compares the live schema with [`EXPECTED_SCHEMA`].
/// Tables and columns added after the newest migration `known` holds are not expected.
pub fn verify(
    conn: &Connection,
    file: &Path,
    state_dir: &Path,
    known: Known,
) -> Result<(), MigrateError> {
    let mut missing = Vec::new();
    let known = known.latest();
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::hooks::Hooks;
    use crate::migrate::{lock, migrate};

    #[test]
    fn missing_column_is_reported() {
        let all = Known::new(&Hooks::default());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.db");
        let mut conn = Connection::open(&file).unwrap();
        let mut lock = lock(dir.path(), Duration::from_secs(1)).unwrap();
        migrate(&mut conn, &file, dir.path(), &mut lock, all).unwrap();
        conn.execute_batch("ALTER TABLE projects DROP COLUMN default_branch")
            .unwrap();
        let err = verify(&conn, &file, dir.path(), all)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("table projects has no column default_branch"),
            "{err}"
        );
    }
}
