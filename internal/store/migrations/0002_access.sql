-- Personal access links: one-time tokens, stored as SHA-256 hashes.
CREATE TABLE access_tokens (
    hash       TEXT PRIMARY KEY,
    user_name  TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX access_tokens_user ON access_tokens(user_name);

-- Browser sessions for one participant's sandbox (the cookie holds the
-- secret; this table its SHA-256 hash).
CREATE TABLE sessions (
    hash       TEXT PRIMARY KEY,
    user_name  TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_name);

-- Optional per-participant passwords (bcrypt).
CREATE TABLE passwords (
    user_name  TEXT PRIMARY KEY REFERENCES users(name) ON DELETE CASCADE,
    hash       TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Port mode: each participant's HTTPS port, kept across restarts.
CREATE TABLE ports (
    user_name TEXT PRIMARY KEY REFERENCES users(name) ON DELETE CASCADE,
    port      INTEGER NOT NULL UNIQUE
);
