//! Each task's transcript (the `transcript` table): the typed events its agent's adapter read,
//! numbered per task, bounded by dropping the oldest, and what they change in the task's record
//! (its conversation id, usage and cost, turns, last tool). Every SQL statement about a
//! transcript is a named function here.

use aifactory_common::protocol::{AgentEvent, Transcript, TranscriptEntry};
use aifactory_common::time::now_rfc3339_ms;
use rusqlite::{Connection, Transaction, params};

/// Entries kept per task; older ones are dropped (and counted) as new ones come.
pub const MAX_ENTRIES: u64 = 5_000;

/// Stores `event` as the task's next entry, applies it to the task's record, and returns the
/// entry. `None` when the task is gone.
pub fn append(
    tx: &Transaction,
    task_id: &str,
    attempt: u32,
    event: AgentEvent,
) -> rusqlite::Result<Option<TranscriptEntry>> {
    let seq: Option<i64> = match tx.query_row(
        "UPDATE tasks SET transcript_seq = transcript_seq + 1 WHERE id = ?1
         RETURNING transcript_seq",
        params![task_id],
        |row| row.get(0),
    ) {
        Ok(seq) => Some(seq),
        Err(rusqlite::Error::QueryReturnedNoRows) => None,
        Err(e) => return Err(e),
    };
    let Some(seq) = seq.map(sql_count) else {
        return Ok(None);
    };
    let entry = TranscriptEntry {
        seq,
        attempt,
        at: now_rfc3339_ms(),
        event,
    };
    let json = serde_json::to_string(&entry.event)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.prepare_cached(
        "INSERT INTO transcript (task_id, seq, attempt, at, event) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![task_id, to_sql(seq), attempt, entry.at, json])?;
    if seq > MAX_ENTRIES {
        let oldest_kept = seq - MAX_ENTRIES + 1;
        tx.prepare_cached("DELETE FROM transcript WHERE task_id = ?1 AND seq < ?2")?
            .execute(params![task_id, to_sql(oldest_kept)])?;
        tx.prepare_cached("UPDATE tasks SET transcript_dropped = ?2 WHERE id = ?1")?
            .execute(params![task_id, to_sql(oldest_kept - 1)])?;
    }
    apply_to_task(tx, task_id, &entry.event)?;
    Ok(Some(entry))
}

/// What an event changes in the task's record.
fn apply_to_task(tx: &Transaction, task_id: &str, event: &AgentEvent) -> rusqlite::Result<()> {
    match event {
        AgentEvent::Started {
            agent_session_id, ..
        } => {
            tx.prepare_cached("UPDATE tasks SET agent_session_id = ?2 WHERE id = ?1")?
                .execute(params![task_id, agent_session_id])?;
        }
        AgentEvent::ToolCall { tool, .. } => {
            tx.prepare_cached("UPDATE tasks SET last_tool = ?2 WHERE id = ?1")?
                .execute(params![task_id, tool])?;
        }
        AgentEvent::Result(result) => {
            let u = result.usage;
            tx.prepare_cached(
                "UPDATE tasks SET input_tokens = input_tokens + ?2,
                    output_tokens = output_tokens + ?3,
                    cache_read_tokens = cache_read_tokens + ?4,
                    cache_write_tokens = cache_write_tokens + ?5,
                    cost_usd = CASE WHEN ?6 IS NULL THEN cost_usd ELSE COALESCE(cost_usd, 0) + ?6 END,
                    turns = CASE WHEN ?7 IS NULL THEN turns ELSE COALESCE(turns, 0) + ?7 END
                 WHERE id = ?1",
            )?
            .execute(params![
                task_id,
                to_sql(u.input_tokens),
                to_sql(u.output_tokens),
                to_sql(u.cache_read_tokens),
                to_sql(u.cache_write_tokens),
                u.cost_usd,
                result.turns
            ])?;
        }
        AgentEvent::Message { .. } | AgentEvent::ToolResult { .. } | AgentEvent::Denied { .. } => {}
    }
    Ok(())
}

/// The task's kept entries after `after` (`None`: all), oldest first.
pub fn after(conn: &Connection, task_id: &str, after: Option<u64>) -> rusqlite::Result<Transcript> {
    let dropped = conn.query_row(
        "SELECT transcript_dropped FROM tasks WHERE id = ?1",
        params![task_id],
        |row| row.get(0).map(sql_count),
    )?;
    let entries = conn
        .prepare_cached(
            "SELECT seq, attempt, at, event FROM transcript WHERE task_id = ?1 AND seq > ?2
             ORDER BY seq",
        )?
        .query_map(params![task_id, to_sql(after.unwrap_or(0))], |row| {
            let json: String = row.get(3)?;
            Ok((row.get(0).map(sql_count)?, row.get(1)?, row.get(2)?, json))
        })?
        .filter_map(|row| match row {
            // A row this daemon cannot read (written by a newer one) is left out, not fatal.
            Ok((seq, attempt, at, json)) => serde_json::from_str(&json).ok().map(|event| {
                Ok(TranscriptEntry {
                    seq,
                    attempt,
                    at,
                    event,
                })
            }),
            Err(e) => Some(Err(e)),
        })
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Transcript {
        task_id: task_id.to_string(),
        entries,
        dropped,
    })
}

/// SQLite integers are signed; counts here never go below zero or past `i64::MAX`.
fn sql_count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
