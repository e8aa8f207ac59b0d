-- What people read about a group (a title: "Team Alpha") and a
-- participant's e-mail address (access cards, mail merges, the assistants'
-- git identity, joining through an invite as a listed participant), from
-- thon.yaml's groups.
ALTER TABLE groups ADD COLUMN title TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN email TEXT NOT NULL DEFAULT '';
