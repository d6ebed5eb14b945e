-- Every attempt of every task's agent, oldest first: when it ran, how its session ended, why it
-- failed and what it used. The tasks row keeps only the latest attempt's; the task page shows
-- the whole history. `n` counts over the task's life; `attempt` within its run (a start
-- begins a run at 1, each automatic restart counts up), as `tasks.attempts` does.
CREATE TABLE attempts (
    task_id    TEXT    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    n          INTEGER NOT NULL,
    attempt    INTEGER NOT NULL,
    session_id TEXT    NOT NULL,
    agent      TEXT    NOT NULL,
    started_at TEXT    NOT NULL,
    ended_at   TEXT,
    reason     TEXT,
    exit       TEXT,  -- JSON ExitInfo
    failure    TEXT,  -- JSON Failure
    resources  TEXT,  -- JSON ResourceUsage
    PRIMARY KEY (task_id, n)
) WITHOUT ROWID;

-- What is known of the attempts made before this table: each task's latest (its start time
-- unknown: the task's last change stands in for it and, unless it still runs, for its end).
INSERT INTO attempts (task_id, n, attempt, session_id, agent, started_at, ended_at, reason, failure, resources)
SELECT id, 1, attempts, session_id, agent, updated_at,
       CASE WHEN phase IN ('planning', 'coding', 'qa', 'stalled') THEN NULL ELSE updated_at END,
       last_error, failure, resources
FROM tasks
WHERE attempts > 0 AND session_id IS NOT NULL;
