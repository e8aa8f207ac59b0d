-- API tokens: what they may do (scopes, comma-separated; * is everything),
-- until when, whether they were revoked, and the participant a
-- participant's token acts for.
ALTER TABLE tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT '*';
ALTER TABLE tokens ADD COLUMN expires_at TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN revoked INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN user_name TEXT NOT NULL DEFAULT '';

-- Identities from sign-in providers (provider:subject), each linked to the
-- participant it signed up as.
CREATE TABLE identities (
    id_key     TEXT PRIMARY KEY,
    handle     TEXT NOT NULL,
    email      TEXT NOT NULL DEFAULT '',
    user_name  TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    created_at TEXT NOT NULL
);
CREATE INDEX identities_user ON identities(user_name);

-- Invite codes: a group's way in for self-onboarding. The code is stored as
-- its SHA-256 hash; id is a short public name for listing and revoking.
CREATE TABLE invites (
    hash       TEXT PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    group_name TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE ON UPDATE CASCADE,
    max_uses   INTEGER NOT NULL,
    used       INTEGER NOT NULL DEFAULT 0,
    revoked    INTEGER NOT NULL DEFAULT 0,
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);

-- Web sessions of participants too (signed in with a provider): their
-- role and whose they are.
ALTER TABLE admin_sessions ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE admin_sessions ADD COLUMN user_name TEXT NOT NULL DEFAULT '';
