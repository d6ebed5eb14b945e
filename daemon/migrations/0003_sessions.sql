-- Terminal sessions (rmux): each runs under its own pane monitor, which outlives the daemon.
CREATE TABLE sessions (
    id                 TEXT PRIMARY KEY,
    name               TEXT,
    command            TEXT NOT NULL,     -- JSON array
    cwd                TEXT NOT NULL,
    pane_dir           TEXT NOT NULL,
    cols               INTEGER NOT NULL,
    rows               INTEGER NOT NULL,
    state              TEXT NOT NULL,     -- starting | running | exited | lost
    pid                INTEGER,
    start_time         INTEGER,           -- /proc/<pid>/stat field 22
    monitor_pid        INTEGER,
    monitor_start_time INTEGER,
    exit_code          INTEGER,
    exit_signal        INTEGER,
    ended_at           TEXT,
    lost_reason        TEXT,
    created_at         TEXT NOT NULL
);
-- A name is unique among sessions whose program may still run.
CREATE UNIQUE INDEX sessions_live_name ON sessions (name)
    WHERE name IS NOT NULL AND state IN ('starting', 'running');
