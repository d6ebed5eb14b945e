//! The `schema_migrations` table: which migrations a database has, with the SHA-256 each had
//! when it ran, its time, duration and the pid that applied it.

use rusqlite::{Connection, OptionalExtension, Transaction};

use super::{Migration, checksum};

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version        INTEGER PRIMARY KEY,
    name           TEXT NOT NULL,
    checksum       TEXT NOT NULL,
    applied_at     TEXT NOT NULL,
    duration_ms    INTEGER NOT NULL,
    applied_by_pid INTEGER NOT NULL
)";

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

/// Every applied migration, oldest first; none when the table does not exist yet.
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

/// Creates the ledger inside a migration's transaction, so the first migration brings it.
pub(super) fn ensure(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(CREATE_LEDGER)
}

/// Records `m` as applied, in the same transaction as its SQL.
pub(super) fn record(tx: &Transaction<'_>, m: &Migration, ms: u64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO schema_migrations (version, name, checksum, applied_at, duration_ms, applied_by_pid)
         VALUES (?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?4, ?5)",
        rusqlite::params![m.version, m.name, checksum(m.sql), ms as i64, std::process::id()],
    )
    .map(drop)
}
