-- AI gateway keys: one per user (per-user mode) or per group (per-group
-- mode). Only the SHA-256 hash of the current key is stored; the key itself
-- is derived from a secret in the data directory, so a recreated sandbox gets
-- the same key. Rotation bumps the generation.
CREATE TABLE gateway_keys (
    id         TEXT PRIMARY KEY,         -- "user:alice" or "group:alpha"
    kind       TEXT NOT NULL,            -- user | group
    owner      TEXT NOT NULL,            -- the user or group name
    generation INTEGER NOT NULL DEFAULT 1,
    hash       TEXT NOT NULL UNIQUE,
    revoked    INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    rotated_at TEXT NOT NULL
);

-- Usage per key, per model, per minute.
CREATE TABLE gateway_usage (
    key_id            TEXT NOT NULL,
    model             TEXT NOT NULL,
    minute            TEXT NOT NULL,     -- RFC 3339, UTC, truncated to the minute
    requests          INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    rejections        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, model, minute)
);
CREATE INDEX gateway_usage_minute ON gateway_usage(minute);
