//! Each task's transcript (the `transcript` table): the typed events its agent's adapter read,
//! numbered per task, bounded by dropping the oldest, and what they change in the task's record
//! (its conversation id, usage and cost, turns, last tool). Every SQL statement about a
//! transcript is a named function here.
//!
//! A result whose usage is its thread's running total (codex's, see
//! [`adapters::reports_thread_total`]) adds only what is new since the same thread's last such
//! result still kept; the entry itself keeps what the CLI reported.

use aifactory_common::agent::{AgentResult, Usage};
use aifactory_common::protocol::{AgentEvent, Transcript, TranscriptEntry};
use aifactory_common::time::now_rfc3339_ms;
use rusqlite::{Connection, Transaction, params};

use crate::adapters;

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
    apply_to_task(tx, task_id, &entry)?;
    Ok(Some(entry))
}

/// What an entry's event changes in the task's record.
fn apply_to_task(tx: &Transaction, task_id: &str, entry: &TranscriptEntry) -> rusqlite::Result<()> {
    let event = &entry.event;
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
            let u = usage_added(tx, task_id, entry, result)?;
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

/// What `result` (the event of `entry`) adds to the task's usage: its usage, less the same
/// thread's last total when it reports a running total.
fn usage_added(
    tx: &Transaction,
    task_id: &str,
    entry: &TranscriptEntry,
    result: &AgentResult,
) -> rusqlite::Result<Usage> {
    if !adapters::reports_thread_total(result) {
        return Ok(result.usage);
    }
    let earlier = tx
        .prepare_cached(
            "SELECT attempt, event FROM transcript WHERE task_id = ?1 AND seq < ?2 ORDER BY seq",
        )?
        .query_map(params![task_id, to_sql(entry.seq)], |row| {
            Ok((row.get::<_, u32>(0)?, row.get::<_, String>(1)?))
        })?
        .filter_map(|row| match row {
            // An entry this daemon cannot read does not count.
            Ok((attempt, json)) => serde_json::from_str(&json)
                .ok()
                .map(|event| Ok((attempt, event))),
            Err(e) => Some(Err(e)),
        })
        .collect::<rusqlite::Result<Vec<(u32, AgentEvent)>>>()?;
    Ok(match thread_total_before(&earlier, entry.attempt) {
        Some(before) => result.usage.minus(before),
        None => result.usage,
    })
}

/// The running total last reported, among `earlier` entries (attempt, event; oldest first), in
/// the thread that attempt `attempt` started or resumed.
fn thread_total_before(earlier: &[(u32, AgentEvent)], attempt: u32) -> Option<Usage> {
    let thread_of = |attempt: u32| {
        earlier.iter().rev().find_map(|(at, event)| match event {
            AgentEvent::Started {
                agent_session_id, ..
            } if *at == attempt => Some(agent_session_id.as_str()),
            _ => None,
        })
    };
    let thread = thread_of(attempt)?;
    earlier.iter().rev().find_map(|(at, event)| match event {
        AgentEvent::Result(r)
            if adapters::reports_thread_total(r) && thread_of(*at) == Some(thread) =>
        {
            Some(r.usage)
        }
        _ => None,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn started(thread: &str) -> AgentEvent {
        AgentEvent::Started {
            agent_session_id: thread.into(),
            model: None,
            tools: Vec::new(),
        }
    }

    fn result(status: &str, ok: bool, output_tokens: u64) -> AgentEvent {
        AgentEvent::Result(AgentResult {
            ok,
            status: status.into(),
            message: None,
            turns: Some(1),
            duration_ms: None,
            usage: Usage {
                input_tokens: output_tokens * 5,
                output_tokens,
                ..Usage::default()
            },
        })
    }

    #[test]
    fn a_resumed_codex_thread_adds_only_what_is_new() {
        let earlier = vec![
            (1, started("t-1")),
            (1, result("turn.completed", true, 40)),
            // A failed run of the same thread reports no usage and does not count.
            (2, started("t-1")),
            (2, result("turn.failed", false, 0)),
            (3, started("t-1")),
        ];
        let before = thread_total_before(&earlier, 3).expect("the thread's last total");
        assert_eq!(before.output_tokens, 40);
        let AgentEvent::Result(now) = result("turn.completed", true, 60) else {
            unreachable!()
        };
        let added = now.usage.minus(before);
        assert_eq!((added.input_tokens, added.output_tokens), (100, 20));
    }

    #[test]
    fn a_fresh_thread_or_a_per_run_result_counts_whole() {
        // `--fresh`: a new thread starts its total from nothing.
        let earlier = vec![
            (1, started("t-1")),
            (1, result("turn.completed", true, 40)),
            (2, started("t-2")),
        ];
        assert_eq!(thread_total_before(&earlier, 2), None);
        // An attempt that has not said which thread it is in.
        assert_eq!(thread_total_before(&earlier[..2], 2), None);
        // Claude Code's results are per run: never a running total.
        let AgentEvent::Result(claude) = result("success", true, 40) else {
            unreachable!()
        };
        assert!(!adapters::reports_thread_total(&claude));
        let earlier = vec![
            (1, started("s-1")),
            (1, result("success", true, 40)),
            (2, started("s-1")),
        ];
        assert_eq!(thread_total_before(&earlier, 2), None);
    }
}
