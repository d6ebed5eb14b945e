//! The `sessions` table: every SQL statement of the registry, each a named function, and
//! the mapping of a row to a [`SessionInfo`].
//!
//! Statements on a `sessions new`'s path are prepared once (`prepare_cached`): parsing them
//! again for every session was a measurable part of its cost.

use std::path::PathBuf;

use aifactory_common::pane::{ExitInfo, MonitorInfo};
use aifactory_common::protocol::{SessionInfo, SessionState};
use rusqlite::{Connection, OptionalExtension, Row, params};

const COLUMNS: &str = "id, name, command, cwd, pane_dir, cols, rows, state, pid, monitor_pid, \
     exit_code, exit_signal, ended_at, lost_reason, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<SessionInfo> {
    let command: String = row.get(2)?;
    let state: String = row.get(7)?;
    let code: Option<i32> = row.get(10)?;
    let signal: Option<i32> = row.get(11)?;
    let ended_at: Option<String> = row.get(12)?;
    Ok(SessionInfo {
        id: row.get(0)?,
        name: row.get(1)?,
        command: serde_json::from_str(&command).unwrap_or_default(),
        cwd: PathBuf::from(row.get::<_, String>(3)?),
        pane_dir: PathBuf::from(row.get::<_, String>(4)?),
        cols: row.get(5)?,
        rows: row.get(6)?,
        state: SessionState::parse(&state).unwrap_or(SessionState::Lost),
        pid: row.get(8)?,
        monitor_pid: row.get(9)?,
        // A lost session has an end time but no exit status: nobody saw how it ended.
        exit: ended_at
            .filter(|_| state == "exited")
            .map(|ended_at| ExitInfo {
                code,
                signal,
                ended_at,
            }),
        lost_reason: row.get(13)?,
        output_blocked: None,
        created_at: row.get(14)?,
    })
}

/// By id, else the newest session of that name (a running one first).
pub(super) fn by_key(
    conn: &rusqlite::Connection,
    key: &str,
) -> rusqlite::Result<Option<SessionInfo>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM sessions WHERE id = ?1 OR name = ?1
         ORDER BY id = ?1 DESC, state IN ('starting', 'running') DESC, created_at DESC, rowid DESC
         LIMIT 1"
    ))?
    .query_row(params![key], from_row)
    .optional()
}

/// Every session, oldest first.
pub(super) fn all(conn: &Connection) -> rusqlite::Result<Vec<SessionInfo>> {
    conn.prepare(&format!(
        "SELECT {COLUMNS} FROM sessions ORDER BY created_at, rowid"
    ))?
    .query_map([], from_row)?
    .collect()
}

pub(super) fn running_count(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row(
        "SELECT count(*) FROM sessions WHERE state = 'running'",
        [],
        |r| r.get(0),
    )
}

/// The id of the starting or running session named `name`, if there is one.
pub(super) fn live_with_name(conn: &Connection, name: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT id FROM sessions WHERE name = ?1 AND state IN ('starting', 'running')",
    )?
    .query_row(params![name], |r| r.get(0))
    .optional()
}

/// A session about to start, as [`insert`] records it.
pub(super) struct NewSession {
    pub name: Option<String>,
    /// The command as a JSON array.
    pub command: String,
    pub cwd: String,
    pub cols: u16,
    pub rows: u16,
    /// The panes root: the session's pane directory is `<root>/<id>`.
    pub root: String,
}

/// Records a `starting` session under a fresh random id; returns the id.
pub(super) fn insert(conn: &Connection, new: &NewSession) -> rusqlite::Result<String> {
    conn.prepare_cached(
        "INSERT INTO sessions (id, name, command, cwd, pane_dir, cols, rows, state, created_at)
         SELECT id, ?1, ?2, ?3, ?6 || '/' || id, ?4, ?5, 'starting',
                strftime('%Y-%m-%dT%H:%M:%fZ','now')
         FROM (SELECT 's-' || lower(hex(randomblob(4))) AS id)
         RETURNING id",
    )?
    .query_row(
        params![new.name, new.command, new.cwd, new.cols, new.rows, new.root],
        |r| r.get(0),
    )
}

pub(super) fn delete(conn: &Connection, id: &str) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM sessions WHERE id = ?1", params![id])
}

/// Records that the session's program runs, as its monitor reported; returns the session as
/// recorded (`None` if its row is gone).
pub(super) fn record_running(
    conn: &Connection,
    id: &str,
    info: &MonitorInfo,
) -> rusqlite::Result<Option<SessionInfo>> {
    conn.prepare_cached(&format!(
        "UPDATE sessions SET state = 'running', pid = ?2, start_time = ?3,
            monitor_pid = ?4, monitor_start_time = ?5, cols = ?6, rows = ?7
         WHERE id = ?1
         RETURNING {COLUMNS}"
    ))?
    .query_row(
        params![
            id,
            info.pid,
            info.start_time as i64,
            info.monitor_pid,
            info.monitor_start_time as i64,
            info.cols,
            info.rows
        ],
        from_row,
    )
    .optional()
}

pub(super) fn record_exited(
    conn: &Connection,
    id: &str,
    exit: &ExitInfo,
) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE sessions SET state = 'exited', exit_code = ?2, exit_signal = ?3, ended_at = ?4
         WHERE id = ?1",
        params![id, exit.code, exit.signal, exit.ended_at],
    )
}

pub(super) fn record_lost(conn: &Connection, id: &str, reason: &str) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE sessions SET state = 'lost', lost_reason = ?2,
            ended_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')
         WHERE id = ?1",
        params![id, reason],
    )
}

pub(super) fn set_size(
    conn: &Connection,
    id: &str,
    cols: u16,
    rows: u16,
) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE sessions SET cols = ?2, rows = ?3 WHERE id = ?1",
        params![id, cols, rows],
    )
}

/// The program's pid and start time as recorded: together they name one process.
pub(super) fn program(
    conn: &Connection,
    id: &str,
) -> rusqlite::Result<Option<(Option<u32>, Option<u64>)>> {
    conn.query_row(
        "SELECT pid, start_time FROM sessions WHERE id = ?1",
        params![id],
        |r| {
            Ok((
                r.get::<_, Option<u32>>(0)?,
                r.get::<_, Option<i64>>(1)?.map(|s| s as u64),
            ))
        },
    )
    .optional()
}

/// The monitor's pid and start time as recorded: together they name one process.
pub(super) fn monitor(
    conn: &Connection,
    id: &str,
) -> rusqlite::Result<Option<(Option<u32>, Option<u64>)>> {
    conn.query_row(
        "SELECT monitor_pid, monitor_start_time FROM sessions WHERE id = ?1",
        params![id],
        |r| {
            Ok((
                r.get::<_, Option<u32>>(0)?,
                r.get::<_, Option<i64>>(1)?.map(|s| s as u64),
            ))
        },
    )
    .optional()
}

/// A session recorded as starting or running, to re-adopt at startup.
pub(super) struct Recorded {
    pub id: String,
    pub pid: Option<u32>,
    pub start_time: Option<i64>,
    pub monitor_pid: Option<u32>,
    pub monitor_start_time: Option<i64>,
    pub pane_dir: PathBuf,
}

pub(super) fn live(conn: &Connection) -> rusqlite::Result<Vec<Recorded>> {
    conn.prepare(
        "SELECT id, pid, start_time, monitor_pid, monitor_start_time, pane_dir
         FROM sessions WHERE state IN ('starting', 'running')",
    )?
    .query_map([], |r| {
        Ok(Recorded {
            id: r.get(0)?,
            pid: r.get(1)?,
            start_time: r.get(2)?,
            monitor_pid: r.get(3)?,
            monitor_start_time: r.get(4)?,
            pane_dir: PathBuf::from(r.get::<_, String>(5)?),
        })
    })?
    .collect()
}
