-- How long each participant's sandbox has run over the event (thon usage):
-- the periods already closed, in milliseconds, and the one open now, from
-- running_since to seen_at (the last time it was seen running; both '' when
-- it is not running). Kept across daemon restarts; gone with the user.
CREATE TABLE sandbox_running (
    user_name     TEXT PRIMARY KEY REFERENCES users(name) ON DELETE CASCADE,
    closed_ms     INTEGER NOT NULL DEFAULT 0,
    running_since TEXT NOT NULL DEFAULT '',
    seen_at       TEXT NOT NULL DEFAULT ''
);
