-- What the daemon reads of each task's agent: its conversation id (which a restart resumes),
-- its usage and cost over every attempt, and why its latest attempt failed.
ALTER TABLE tasks ADD COLUMN agent_session_id   TEXT;
ALTER TABLE tasks ADD COLUMN input_tokens       INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN output_tokens      INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN cache_read_tokens  INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN cost_usd           REAL;
ALTER TABLE tasks ADD COLUMN turns              INTEGER;
ALTER TABLE tasks ADD COLUMN last_tool          TEXT;
ALTER TABLE tasks ADD COLUMN failure            TEXT;  -- JSON Failure of the latest attempt
-- The last transcript seq given out, and how many old entries were dropped to bound it.
ALTER TABLE tasks ADD COLUMN transcript_seq     INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN transcript_dropped INTEGER NOT NULL DEFAULT 0;

-- Each task's transcript: the typed events its agent's adapter read, oldest pruned first.
CREATE TABLE transcript (
    task_id TEXT    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    at      TEXT    NOT NULL,
    event   TEXT    NOT NULL,  -- JSON AgentEvent
    PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;
