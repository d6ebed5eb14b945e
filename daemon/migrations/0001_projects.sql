-- Projects: git work trees that agents work on.
CREATE TABLE projects (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    path              TEXT NOT NULL UNIQUE,
    origin_url        TEXT,
    provider          TEXT NOT NULL,
    detected_provider TEXT NOT NULL,
    provider_manual   INTEGER NOT NULL DEFAULT 0,
    default_branch    TEXT NOT NULL,
    created_at        TEXT NOT NULL
);
