-- A sandbox's life beside its state: when it last started, when its
-- participant last did something in it, when its time runs out
-- (sandbox.max_lifetime, moved by a renewal), and why it sleeps ("idle":
-- put to sleep after sandbox.idle_timeout, woken by the next visit;
-- "lifetime": stopped at its end, until an organizer renews it).
ALTER TABLE sandboxes ADD COLUMN started_at TEXT NOT NULL DEFAULT '';
ALTER TABLE sandboxes ADD COLUMN last_active TEXT NOT NULL DEFAULT '';
ALTER TABLE sandboxes ADD COLUMN expires_at TEXT NOT NULL DEFAULT '';
ALTER TABLE sandboxes ADD COLUMN sleep TEXT NOT NULL DEFAULT '';
