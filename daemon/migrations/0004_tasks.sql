-- Tasks (specs on the board), each worked on by an agent in an rmux session.
CREATE TABLE tasks (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL REFERENCES projects (id),
    spec_id           TEXT NOT NULL,
    title             TEXT NOT NULL,
    agent             TEXT NOT NULL,
    phase             TEXT NOT NULL,  -- backlog | planning | coding | qa | done | failed | stopped | stalled
    phase_before_stall TEXT,
    progress_percent  INTEGER,
    subtasks_done     INTEGER,
    subtasks_total    INTEGER,
    session_id        TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    worktree          TEXT NOT NULL,
    branch            TEXT NOT NULL,
    notes             TEXT NOT NULL DEFAULT '[]',  -- JSON array, newest last
    stall             TEXT,                        -- JSON StallEvidence while stalled
    waiting_input     TEXT,
    last_output_at    TEXT,
    last_progress_at  TEXT,
    last_error        TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    UNIQUE (project_id, spec_id)
);

-- The event stream, so a client that reconnects (even to a restarted daemon) resumes from the
-- last sequence number it saw. Old rows are pruned; `seq` never goes back.
CREATE TABLE events (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    kind  TEXT NOT NULL  -- JSON EventKind
);
