-- Organizers' browser sessions on the dashboard (the cookie holds the
-- secret; this table its SHA-256 hash). csrf is the session's anti-forgery
-- token, sent back with every state-changing request.
CREATE TABLE admin_sessions (
    hash       TEXT PRIMARY KEY,
    actor      TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- Configuration files kept in the database and edited on the dashboard:
-- groups YAML, assistants' base files, VS Code settings, extension lists.
CREATE TABLE config_files (
    name       TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    content    TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL
);
