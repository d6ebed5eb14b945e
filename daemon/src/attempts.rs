//! Each attempt of each task's agent, kept in the `attempts` table: begun when its session
//! starts, ended with how its program ended, why it failed and what it used. The tasks row keeps
//! only the latest attempt; this is the history the task page shows.

use aifactory_common::pane::ExitInfo;
use aifactory_common::protocol::{AttemptInfo, Failure, ResourceUsage};
use rusqlite::{Connection, Transaction, params};

use crate::store::{NOW, json_column};

/// An attempt begins: number `attempt` of its run, in `session_id`, with the task's agent.
pub fn begin(
    tx: &Transaction,
    task_id: &str,
    session_id: &str,
    attempt: u32,
) -> rusqlite::Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO attempts (task_id, n, attempt, session_id, agent, started_at)
             SELECT ?1, coalesce((SELECT max(n) FROM attempts WHERE task_id = ?1), 0) + 1,
                    ?2, ?3, agent, {NOW}
             FROM tasks WHERE id = ?1"
        ),
        params![task_id, attempt, session_id],
    )?;
    Ok(())
}

/// How the task's latest attempt ended. An attempt already ended (or none) is left as it is.
pub fn end(
    tx: &Transaction,
    task_id: &str,
    reason: &str,
    exit: Option<&ExitInfo>,
    failure: Option<&Failure>,
    resources: Option<&ResourceUsage>,
) -> rusqlite::Result<()> {
    tx.execute(
        &format!(
            "UPDATE attempts SET ended_at = {NOW}, reason = ?2, exit = ?3, failure = ?4,
                 resources = ?5
             WHERE task_id = ?1 AND ended_at IS NULL
               AND n = (SELECT max(n) FROM attempts WHERE task_id = ?1)"
        ),
        params![
            task_id,
            reason,
            json_column(exit)?,
            json_column(failure)?,
            json_column(resources)?
        ],
    )?;
    Ok(())
}

/// Every attempt of the task, oldest first.
pub fn list(conn: &Connection, task_id: &str) -> rusqlite::Result<Vec<AttemptInfo>> {
    // A field this daemon cannot read (written by a newer one) shows as unknown, not fatal.
    fn parse<T: serde::de::DeserializeOwned>(text: Option<String>) -> Option<T> {
        text.and_then(|t| serde_json::from_str(&t).ok())
    }
    conn.prepare_cached(
        "SELECT n, attempt, session_id, agent, started_at, ended_at, reason, exit, failure,
                resources
         FROM attempts WHERE task_id = ?1 ORDER BY n",
    )?
    .query_map(params![task_id], |row| {
        Ok(AttemptInfo {
            n: row.get(0)?,
            attempt: row.get(1)?,
            session_id: row.get(2)?,
            agent: row.get(3)?,
            started_at: row.get(4)?,
            ended_at: row.get(5)?,
            reason: row.get(6)?,
            exit: parse(row.get(7)?),
            failure: parse(row.get(8)?),
            resources: parse(row.get(9)?),
        })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::MIGRATIONS;
    use aifactory_common::protocol::FailureKind;

    /// A database at schema `version` with one project and one task.
    fn db_at(version: u32) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        for m in MIGRATIONS.iter().filter(|m| m.version <= version) {
            conn.execute_batch(m.sql).unwrap();
        }
        conn.execute_batch(
            "INSERT INTO projects (id, name, path, provider, detected_provider, default_branch, created_at)
               VALUES ('p-1', 'demo', '/srv/demo', 'none', 'none', 'main', '2026-12-01T00:00:00Z');
             INSERT INTO tasks (id, project_id, spec_id, title, agent, phase, worktree, branch, created_at, updated_at)
               VALUES ('t-1', 'p-1', '001-x', 'x', 'claude', 'backlog', '/srv/demo/wt', 'b', '2026-12-01T00:00:00Z', '2026-12-01T00:00:00Z');",
        )
        .unwrap();
        conn
    }

    #[test]
    fn attempts_begin_and_end_in_order_and_an_ended_one_stays_ended() {
        let mut conn = db_at(7);
        let tx = conn.transaction().unwrap();
        begin(&tx, "t-1", "s-1", 1).unwrap();
        let failure = Failure {
            kind: FailureKind::RateLimit,
            message: "429".into(),
            fix: "wait".into(),
            retry_after_ms: Some(1000),
        };
        end(&tx, "t-1", "restarting", None, Some(&failure), None).unwrap();
        begin(&tx, "t-1", "s-2", 2).unwrap();
        end(&tx, "t-1", "done", None, None, None).unwrap();
        // A second end (a stop after the runner recorded it) changes nothing.
        end(&tx, "t-1", "stopped", None, None, None).unwrap();
        begin(&tx, "t-1", "s-3", 1).unwrap();
        tx.commit().unwrap();
        let list = list(&conn, "t-1").unwrap();
        let summary: Vec<_> = list
            .iter()
            .map(|a| (a.n, a.attempt, a.session_id.as_str(), a.reason.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                (1, 1, "s-1", Some("restarting")),
                (2, 2, "s-2", Some("done")),
                (3, 1, "s-3", None)
            ]
        );
        assert_eq!(list[0].failure.as_ref(), Some(&failure));
        assert_eq!(list[0].agent, "claude");
        assert!(list[2].ended_at.is_none());
    }

    #[test]
    fn the_migration_keeps_each_tasks_latest_attempt() {
        let conn = db_at(6);
        conn.execute_batch(
            "UPDATE tasks SET attempts = 2, session_id = 's-9', phase = 'failed',
                 last_error = 'no attempts left', failure = '{\"kind\":\"auth\",\"message\":\"401\",\"fix\":\"log in\",\"retry_after_ms\":null}'
             WHERE id = 't-1'",
        )
        .unwrap();
        conn.execute_batch(MIGRATIONS[6].sql).unwrap();
        let list = list(&conn, "t-1").unwrap();
        assert_eq!(list.len(), 1, "{list:?}");
        let a = &list[0];
        assert_eq!((a.n, a.attempt, a.session_id.as_str()), (1, 2, "s-9"));
        assert_eq!(a.reason.as_deref(), Some("no attempts left"));
        assert_eq!(a.failure.as_ref().map(|f| f.kind), Some(FailureKind::Auth));
        assert!(a.ended_at.is_some(), "a failed task's attempt has ended");
    }
}
