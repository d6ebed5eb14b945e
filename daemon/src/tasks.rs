//! The tasks registry (the `tasks` table: spec, worktree, phase, progress) and the rules of
//! the board: which phase may follow which, and who may move a task. Every change is committed
//! before its event is published, so a client that hears of it can always read it back.
//!
//! Every SQL statement about a task is a named function here. Running the agents is the
//! supervisor's job; this module only keeps the record, and knows nothing of the supervisor.

use aifactory_common::echo::echo;
use std::path::{Path, PathBuf};

use aifactory_common::protocol::{
    EventKind, Failure, Progress, ResourceUsage, StallEvidence, TaskInfo, TaskPhase, Usage,
};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use crate::events::EventBus;
use crate::progress::PROGRESS_FILE;
use crate::store::{NOW, Store, StoreError, json_column};

pub const COLUMNS: &str = "t.id, t.project_id, p.name, t.spec_id, t.title, t.agent, t.phase, \
     t.progress_percent, t.subtasks_done, t.subtasks_total, t.session_id, t.attempts, t.worktree, \
     t.branch, t.notes, t.stall, t.waiting_input, t.last_output_at, t.last_progress_at, \
     t.last_error, t.created_at, t.updated_at, t.agent_session_id, t.input_tokens, \
     t.output_tokens, t.cache_read_tokens, t.cache_write_tokens, t.cost_usd, t.turns, t.last_tool, \
     t.failure, t.resources, t.confinement";
const FROM: &str = "tasks t JOIN projects p ON p.id = t.project_id";
const MAX_TITLE_LEN: usize = 200;

/// What is wrong with a request about a task record. The handlers turn it into the wire's
/// `ErrorReply` (with its code) in one place.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("no task with id or spec id `{}`: see `aifactoryctl tasks list`", echo(.0))]
    NotFound(String),
    #[error(
        "spec id `{}` is used in several projects: name the task by id ({candidates})",
        echo(key)
    )]
    Ambiguous { key: String, candidates: String },
    #[error(
        "spec id `{}` is not usable: use 1 to 64 of a-z, 0-9 and `-`, starting with a letter or digit (e.g. `001-login-page`)",
        echo(.0)
    )]
    BadSpecId(String),
    #[error("title is not usable: give 1 to {MAX_TITLE_LEN} printable characters")]
    BadTitle,
    #[error(
        "this project already has a task for spec `{spec_id}` ({existing}): use it, or remove it first (`aifactoryctl tasks remove {existing}`)"
    )]
    SpecTaken { spec_id: String, existing: String },
    #[error("task {id} cannot move from {} to {}", from.as_str(), to.as_str())]
    Transition {
        id: String,
        from: TaskPhase,
        to: TaskPhase,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a task's worktree lives inside its project.
pub fn worktree_path(project: &Path, spec_id: &str) -> PathBuf {
    project
        .join(".aifactory")
        .join("worktrees")
        .join("tasks")
        .join(spec_id)
}

pub fn spec_dir(worktree: &Path, spec_id: &str) -> PathBuf {
    worktree.join(".aifactory").join("specs").join(spec_id)
}

pub fn branch(spec_id: &str) -> String {
    format!("aifactory/{spec_id}")
}

/// `[a-z0-9][a-z0-9-]{0,63}`: it names a directory and a branch, so nothing else.
pub fn check_spec_id(spec_id: &str) -> Result<(), TaskError> {
    let bytes = spec_id.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 64
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(TaskError::BadSpecId(spec_id.to_string()))
    }
}

pub fn check_title(title: &str) -> Result<(), TaskError> {
    if title.trim().is_empty()
        || title.chars().count() > MAX_TITLE_LEN
        || title.chars().any(char::is_control)
    {
        return Err(TaskError::BadTitle);
    }
    Ok(())
}

/// Whether a task may move from `from` to `to`.
pub fn transition_allowed(from: TaskPhase, to: TaskPhase) -> bool {
    use TaskPhase::*;
    if from == to {
        return false;
    }
    match from {
        // A start (or restart) begins with planning.
        Backlog | Done | Failed | Stopped => to == Planning,
        // While an agent works, it reports phases; the daemon ends, stops or stalls it.
        Planning | Coding | Qa | Stalled => to != Backlog,
    }
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<TaskInfo> {
    let phase: String = row.get(6)?;
    let worktree = PathBuf::from(row.get::<_, String>(12)?);
    let spec_id: String = row.get(3)?;
    let notes: String = row.get(14)?;
    let stall: Option<String> = row.get(15)?;
    let failure: Option<String> = row.get(30)?;
    let resources: Option<String> = row.get(31)?;
    let spec_dir = spec_dir(&worktree, &spec_id);
    Ok(TaskInfo {
        id: row.get(0)?,
        project_id: row.get(1)?,
        project_name: row.get(2)?,
        title: row.get(4)?,
        agent: row.get(5)?,
        phase: TaskPhase::parse(&phase).unwrap_or(TaskPhase::Failed),
        progress: Progress {
            percent: row.get(7)?,
            subtasks_done: row.get(8)?,
            subtasks_total: row.get(9)?,
        },
        session_id: row.get(10)?,
        attempts: row.get(11)?,
        branch: row.get(13)?,
        notes: serde_json::from_str(&notes).unwrap_or_default(),
        stall: stall.and_then(|s| serde_json::from_str(&s).ok()),
        waiting_input: row.get(16)?,
        last_output_at: row.get(17)?,
        last_progress_at: row.get(18)?,
        last_error: row.get(19)?,
        created_at: row.get(20)?,
        updated_at: row.get(21)?,
        agent_session_id: row.get(22)?,
        usage: usage_at(row, 23)?,
        turns: row.get(28)?,
        last_tool: row.get(29)?,
        failure: failure.and_then(|f| serde_json::from_str(&f).ok()),
        resources: resources.and_then(|r| serde_json::from_str(&r).ok()),
        confinement: row.get(32)?,
        progress_file: spec_dir.join(PROGRESS_FILE),
        spec_dir,
        worktree,
        spec_id,
    })
}

/// The five usage columns of a row from `first` on (tokens in, out, cache read, cache write,
/// cost): SQLite integers are signed, and a count is never below zero.
pub fn usage_at(row: &Row<'_>, first: usize) -> rusqlite::Result<Usage> {
    let count = |i: usize| -> rusqlite::Result<u64> {
        Ok(u64::try_from(row.get::<_, i64>(first + i)?).unwrap_or(0))
    };
    Ok(Usage {
        input_tokens: count(0)?,
        output_tokens: count(1)?,
        cache_read_tokens: count(2)?,
        cache_write_tokens: count(3)?,
        cost_usd: row.get(first + 4)?,
    })
}

pub fn by_id(conn: &Connection, id: &str) -> rusqlite::Result<Option<TaskInfo>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM {FROM} WHERE t.id = ?1"),
        params![id],
        from_row,
    )
    .optional()
}

/// By id, else by spec id when exactly one task has it.
pub fn by_key(conn: &Connection, key: &str) -> rusqlite::Result<Result<TaskInfo, TaskError>> {
    if let Some(task) = by_id(conn, key)? {
        return Ok(Ok(task));
    }
    let matches: Vec<TaskInfo> = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE t.spec_id = ?1 ORDER BY t.created_at"
        ))?
        .query_map(params![key], from_row)?
        .collect::<rusqlite::Result<_>>()?;
    let mut matches = matches.into_iter();
    Ok(match (matches.next(), matches.len()) {
        (None, _) => Err(TaskError::NotFound(key.to_string())),
        (Some(task), 0) => Ok(task),
        (Some(first), _) => Err(TaskError::Ambiguous {
            key: key.to_string(),
            candidates: std::iter::once(first)
                .chain(matches)
                .map(|t| format!("{} in {}", t.id, t.project_name))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    })
}

pub fn list(conn: &Connection, project_id: Option<&str>) -> rusqlite::Result<Vec<TaskInfo>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE ?1 IS NULL OR t.project_id = ?1
         ORDER BY t.created_at, t.rowid"
    ))?
    .query_map(params![project_id], from_row)?
    .collect()
}

/// What a new task row holds.
pub struct NewTask {
    pub project_id: String,
    pub spec_id: String,
    pub title: String,
    pub agent: String,
    pub worktree: PathBuf,
}

/// The task of `project_id` that works on `spec_id`, if any.
pub fn id_for_spec(
    conn: &Connection,
    project_id: &str,
    spec_id: &str,
) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT id FROM tasks WHERE project_id = ?1 AND spec_id = ?2",
        params![project_id, spec_id],
        |r| r.get(0),
    )
    .optional()
}

pub fn insert(tx: &Transaction, new: &NewTask) -> rusqlite::Result<Result<TaskInfo, TaskError>> {
    if let Some(existing) = id_for_spec(tx, &new.project_id, &new.spec_id)? {
        return Ok(Err(TaskError::SpecTaken {
            spec_id: new.spec_id.clone(),
            existing,
        }));
    }
    let id: String = tx.query_row(
        &format!(
            "INSERT INTO tasks (id, project_id, spec_id, title, agent, phase, worktree, branch,
                                created_at, updated_at)
             VALUES ('t-' || lower(hex(randomblob(4))), ?1, ?2, ?3, ?4, 'backlog', ?5, ?6, {NOW}, {NOW})
             RETURNING id"
        ),
        params![
            new.project_id,
            new.spec_id,
            new.title,
            new.agent,
            new.worktree.to_string_lossy(),
            branch(&new.spec_id)
        ],
        |r| r.get(0),
    )?;
    Ok(by_id(tx, &id)?.ok_or(TaskError::NotFound(id)))
}

/// Moves a task to `to` when the rules allow it, running `also` in the same transaction;
/// returns the phase it left.
pub fn set_phase(
    tx: &Transaction,
    id: &str,
    to: TaskPhase,
    also: impl FnOnce(&Transaction) -> rusqlite::Result<()>,
) -> rusqlite::Result<Result<TaskPhase, TaskError>> {
    let Some(task) = by_id(tx, id)? else {
        return Ok(Err(TaskError::NotFound(id.to_string())));
    };
    if !transition_allowed(task.phase, to) {
        return Ok(Err(TaskError::Transition {
            id: id.to_string(),
            from: task.phase,
            to,
        }));
    }
    let before_stall = (to == TaskPhase::Stalled).then(|| task.phase.as_str());
    tx.execute(
        &format!(
            "UPDATE tasks SET phase = ?2, phase_before_stall = coalesce(?3, phase_before_stall),
                 stall = CASE WHEN ?2 = 'stalled' THEN stall ELSE NULL END, updated_at = {NOW}
             WHERE id = ?1"
        ),
        params![id, to.as_str(), before_stall],
    )?;
    also(tx)?;
    Ok(Ok(task.phase))
}

/// The phase a stalled task goes back to when its agent shows life again.
pub fn phase_before_stall(conn: &Connection, id: &str) -> rusqlite::Result<Option<TaskPhase>> {
    let text: Option<String> = conn
        .query_row(
            "SELECT phase_before_stall FROM tasks WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    Ok(text.as_deref().and_then(TaskPhase::parse))
}

pub fn set_stall(tx: &Transaction, id: &str, evidence: &StallEvidence) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE tasks SET stall = ?2 WHERE id = ?1",
        params![id, serde_json::to_string(evidence).unwrap_or_default()],
    )?;
    Ok(())
}

/// A new run begins: its session, attempt 1, and nothing left from the last run.
pub fn begin_run(tx: &Transaction, id: &str, session_id: &str) -> rusqlite::Result<()> {
    tx.execute(
        &format!(
            "UPDATE tasks SET session_id = ?2, attempts = 1, last_error = NULL, failure = NULL,
                 resources = NULL,
                 waiting_input = NULL, progress_percent = NULL,
                 subtasks_done = NULL, subtasks_total = NULL,
                 last_output_at = NULL, last_progress_at = NULL,
                 updated_at = {NOW}
             WHERE id = ?1"
        ),
        params![id, session_id],
    )?;
    Ok(())
}

/// Why the latest attempt failed (`None`: it did not).
pub fn set_failure(tx: &Transaction, id: &str, failure: Option<&Failure>) -> rusqlite::Result<()> {
    let json = json_column(failure)?;
    tx.execute(
        &format!("UPDATE tasks SET failure = ?2, updated_at = {NOW} WHERE id = ?1"),
        params![id, json],
    )?;
    Ok(())
}

/// What the latest attempt used, as it ended (`None`: it had no cgroup).
pub fn set_resources(
    tx: &Transaction,
    id: &str,
    resources: Option<&ResourceUsage>,
) -> rusqlite::Result<()> {
    let json = json_column(resources)?;
    tx.execute(
        &format!("UPDATE tasks SET resources = ?2, updated_at = {NOW} WHERE id = ?1"),
        params![id, json],
    )?;
    Ok(())
}

/// How the latest attempt was confined, in words (its cage and its limits).
pub fn set_confinement(tx: &Transaction, id: &str, confinement: &str) -> rusqlite::Result<()> {
    tx.execute(
        &format!("UPDATE tasks SET confinement = ?2, updated_at = {NOW} WHERE id = ?1"),
        params![id, confinement],
    )?;
    Ok(())
}

/// A fresh start forgets the agent's conversation, so nothing resumes it.
pub fn forget_conversation(tx: &Transaction, id: &str) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE tasks SET agent_session_id = NULL WHERE id = ?1",
        params![id],
    )?;
    Ok(())
}

/// Another attempt of the same run, in a new session.
pub fn set_attempt(
    tx: &Transaction,
    id: &str,
    session_id: &str,
    attempt: u32,
) -> rusqlite::Result<()> {
    tx.execute(
        &format!(
            "UPDATE tasks SET session_id = ?2, attempts = ?3, updated_at = {NOW} WHERE id = ?1"
        ),
        params![id, session_id, attempt],
    )?;
    Ok(())
}

pub fn set_last_error(tx: &Transaction, id: &str, reason: &str) -> rusqlite::Result<()> {
    tx.execute(
        &format!("UPDATE tasks SET last_error = ?2, updated_at = {NOW} WHERE id = ?1"),
        params![id, reason],
    )?;
    Ok(())
}

/// A run ended: why (when it failed; a success keeps the last error), and nobody waits for
/// input any more.
pub fn record_end(tx: &Transaction, id: &str, error: Option<&str>) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE tasks SET last_error = coalesce(?2, last_error), waiting_input = NULL WHERE id = ?1",
        params![id, error],
    )?;
    Ok(())
}

/// The agent's reported progress; `notes` (a JSON list) only when they changed.
pub fn set_progress(
    tx: &Transaction,
    id: &str,
    progress: &Progress,
    notes: Option<&str>,
) -> rusqlite::Result<()> {
    tx.execute(
        &format!(
            "UPDATE tasks SET progress_percent = ?2, subtasks_done = ?3, subtasks_total = ?4,
                 notes = coalesce(?5, notes), last_progress_at = {NOW}, updated_at = {NOW}
             WHERE id = ?1"
        ),
        params![
            id,
            progress.percent,
            progress.subtasks_done,
            progress.subtasks_total,
            notes
        ],
    )?;
    Ok(())
}

/// The agent printed something (the time is kept in memory and written now and then).
pub fn touch_output(tx: &Transaction, id: &str) -> rusqlite::Result<()> {
    tx.execute(
        &format!("UPDATE tasks SET last_output_at = {NOW} WHERE id = ?1"),
        params![id],
    )?;
    Ok(())
}

/// The agent wrote its progress file, saying nothing new.
pub fn touch_progress(tx: &Transaction, id: &str) -> rusqlite::Result<()> {
    tx.execute(
        &format!("UPDATE tasks SET last_progress_at = {NOW} WHERE id = ?1"),
        params![id],
    )?;
    Ok(())
}

/// The prompt the agent waits at, or `None` once it goes on.
pub fn set_waiting(tx: &Transaction, id: &str, prompt: Option<&str>) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE tasks SET waiting_input = ?2 WHERE id = ?1",
        params![id, prompt],
    )?;
    Ok(())
}

pub fn delete(tx: &Transaction, id: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM tasks WHERE id = ?1", params![id])?;
    Ok(())
}

/// Publishes a phase change that was committed.
pub async fn announce_phase(
    events: &EventBus,
    id: &str,
    from: TaskPhase,
    to: TaskPhase,
    reason: &str,
) {
    tracing::info!(task_id = %id, from = from.as_str(), to = to.as_str(), "task {reason}: {} -> {}", from.as_str(), to.as_str());
    events
        .publish(EventKind::TaskPhase {
            task_id: id.to_string(),
            from,
            to,
            reason: reason.to_string(),
        })
        .await;
}

/// Looks a task up by key in the store.
pub async fn show(store: &Store, key: String) -> Result<TaskInfo, TaskError> {
    store.read(move |conn| by_key(conn, &key)).await?
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskPhase::*;

    #[test]
    fn spec_ids() {
        for ok in ["a", "001-login", "x-y-z", &"a".repeat(64)] {
            assert!(check_spec_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "A",
            "a/b",
            "..",
            "a_b",
            "a b",
            &"a".repeat(65),
            "é",
        ] {
            let err = check_spec_id(bad).unwrap_err();
            assert!(matches!(err, TaskError::BadSpecId(_)), "{bad}");
        }
    }

    #[test]
    fn transitions() {
        assert!(transition_allowed(Backlog, Planning));
        assert!(!transition_allowed(Backlog, Coding));
        assert!(!transition_allowed(Backlog, Done));
        assert!(transition_allowed(Planning, Coding));
        assert!(transition_allowed(Qa, Coding));
        assert!(transition_allowed(Coding, Stalled));
        assert!(transition_allowed(Stalled, Coding));
        assert!(transition_allowed(Coding, Stopped));
        assert!(!transition_allowed(Coding, Backlog));
        assert!(!transition_allowed(Coding, Coding));
        assert!(!transition_allowed(Done, Coding));
        assert!(transition_allowed(Done, Planning));
        assert!(transition_allowed(Stopped, Planning));
        assert!(!transition_allowed(Stopped, Done));
    }
}
