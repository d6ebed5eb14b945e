-- Imports of the old product's ~/.aifactory/projects.json, so `doctor` can tell whether one
-- was imported.
CREATE TABLE legacy_imports (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    imported    INTEGER NOT NULL,
    skipped     INTEGER NOT NULL
);
