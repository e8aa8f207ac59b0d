-- Groups and users: the event's participants. Names are DNS-label safe,
-- validated at the edge before they get here.
CREATE TABLE groups (
    name       TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);

CREATE TABLE users (
    name       TEXT PRIMARY KEY,
    group_name TEXT NOT NULL REFERENCES groups(name) ON UPDATE CASCADE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX users_group ON users(group_name);

-- The last known state of each participant's sandbox. The engine is the
-- truth; the orchestrator writes what it learns here so reads are cheap.
CREATE TABLE sandboxes (
    user_name   TEXT PRIMARY KEY REFERENCES users(name) ON DELETE CASCADE,
    instance_id TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL,
    endpoint    TEXT NOT NULL DEFAULT '',
    image       TEXT NOT NULL DEFAULT '',
    spec_hash   TEXT NOT NULL DEFAULT '',
    workspace   TEXT NOT NULL DEFAULT '',
    error       TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL DEFAULT '',
    updated_at  TEXT NOT NULL
);

-- Every change: who, what, when. Never updated, only appended.
CREATE TABLE events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    time   TEXT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_time ON events(time);

-- API tokens, stored as SHA-256 hashes (the tokens are 256-bit random).
CREATE TABLE tokens (
    name       TEXT PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_used  TEXT NOT NULL DEFAULT ''
);

-- Small JSON documents: the sandbox settings applied by the last import.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
