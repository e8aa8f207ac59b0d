// Package store persists THON's state: groups, users, the last known state of
// every sandbox, the audit log of every change, API token hashes and settings.
//
// SQLite (pure Go, WAL) is the embedded default; PostgreSQL (through pgx)
// holds the state when several daemon or gateway replicas share it. Queries
// and migrations are written once, in the SQL both speak; db.go holds the few
// differences between the two dialects.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations/*.sql
var migrations embed.FS

var (
	// ErrNotFound: no such row.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the row exists already, or a constraint refuses the change.
	ErrConflict = errors.New("conflict")
)

// Store is the state of one THON deployment, in SQLite or PostgreSQL.
type Store struct {
	db  *db
	now func() time.Time
}

// Open opens the database and applies pending migrations.
//
// path is either a SQLite file path (created if needed; the embedded
// default) or a PostgreSQL connection URL, postgres://user:password@host:port/dbname?sslmode=…
// (or postgresql://…), opened through pgx's database/sql driver; the
// database must exist, and the tables are created in it. Several processes
// may open the same PostgreSQL database at once: migrations are applied by
// one of them, under an advisory lock.
func Open(ctx context.Context, path string) (*Store, error) {
	d, err := openDB(path)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", redact(path), err)
	}
	s := &Store{db: d, now: func() time.Time { return time.Now().UTC() }}
	if d.dialect == postgres {
		if err := d.PingContext(ctx); err != nil {
			d.Close()
			return nil, fmt.Errorf("connect to PostgreSQL at %s: %w", redact(path), err)
		}
	}
	if err := s.migrate(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("migrate database %s: %w", redact(path), err)
	}
	return s, nil
}

// SetClock replaces the store's clock (tests of expiry).
func (s *Store) SetClock(now func() time.Time) { s.now = func() time.Time { return now().UTC() } }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// migrate applies the pending migrations in one transaction, so a failing
// one leaves the schema as it was. On PostgreSQL an advisory lock makes a
// second process starting at the same time wait, then find nothing to do.
func (s *Store) migrate(ctx context.Context) error {
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(files)
	return s.tx(ctx, func(tx *txn) error {
		if err := tx.lockMigrations(ctx); err != nil {
			return fmt.Errorf("lock schema_migrations: %w", err)
		}
		if _, err := tx.ExecContext(ctx, tx.dialect.schema(`CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`)); err != nil {
			return err
		}
		var current int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
			return err
		}
		for _, f := range files {
			base := strings.TrimPrefix(f, "migrations/")
			v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
			if err != nil {
				return fmt.Errorf("migration %s: name must start with a number", f)
			}
			if v <= current {
				continue
			}
			body, err := migrations.ReadFile(f)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, tx.dialect.schema(string(body))); err != nil {
				return fmt.Errorf("apply %s: %w", base, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, v, s.stamp()); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Store) stamp() string { return s.now().Format(time.RFC3339Nano) }

func parseTime(v string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, v)
	return t
}

func (s *Store) tx(ctx context.Context, fn func(*txn) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Group is a group of participants.
type Group struct {
	Name      string    `json:"name"`
	Title     string    `json:"title,omitempty"` // what people read; "" shows the name
	Users     []string  `json:"users"`
	CreatedAt time.Time `json:"created_at"`
}

// User is one participant.
type User struct {
	Name      string    `json:"name"`
	Group     string    `json:"group"`
	Email     string    `json:"email,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Sandbox is the last known state of a participant's sandbox.
type Sandbox struct {
	User       string    `json:"user"`
	InstanceID string    `json:"instance_id"`
	State      string    `json:"state"`
	Endpoint   string    `json:"endpoint"`
	Image      string    `json:"image"`
	SpecHash   string    `json:"spec_hash"`
	Workspace  string    `json:"workspace"`
	Error      string    `json:"error"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	// StartedAt is when THON last started it; LastActive when its
	// participant last did something in it (as recorded, up to a minute
	// late); Expires when its time runs out (zero: never); Sleep why it
	// sleeps ("" awake, or SleepIdle, SleepLifetime). None of them is
	// changed by PutSandbox.
	StartedAt  time.Time `json:"started_at"`
	LastActive time.Time `json:"last_active"`
	Expires    time.Time `json:"expires"`
	Sleep      string    `json:"sleep"`
}

// Why a sandbox sleeps (Sandbox.Sleep).
const (
	SleepIdle     = "idle"     // put to sleep after sandbox.idle_timeout; the next visit wakes it
	SleepLifetime = "lifetime" // stopped at the end of sandbox.max_lifetime; an organizer renews it
)

// Event is one line of the audit log.
type Event struct {
	ID     int64     `json:"id"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// Groups lists every group with its users, by name.
func (s *Store) Groups(ctx context.Context) ([]Group, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT g.name, g.title, g.created_at, COALESCE(u.name, '') FROM groups g LEFT JOIN users u ON u.group_name = g.name ORDER BY g.name, u.name`)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	defer rows.Close()
	var out []Group
	for rows.Next() {
		var name, title, created, user string
		if err := rows.Scan(&name, &title, &created, &user); err != nil {
			return nil, err
		}
		if len(out) == 0 || out[len(out)-1].Name != name {
			out = append(out, Group{Name: name, Title: title, Users: []string{}, CreatedAt: parseTime(created)})
		}
		if user != "" {
			g := &out[len(out)-1]
			g.Users = append(g.Users, user)
		}
	}
	return out, rows.Err()
}

// Group returns one group with its users.
func (s *Store) Group(ctx context.Context, name string) (Group, error) {
	g := Group{Name: name, Users: []string{}}
	var created string
	err := s.db.QueryRowContext(ctx, `SELECT title, created_at FROM groups WHERE name = ?`, name).Scan(&g.Title, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Group{}, fmt.Errorf("group %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return Group{}, err
	}
	g.CreatedAt = parseTime(created)
	users, err := s.Users(ctx, name)
	for _, u := range users {
		g.Users = append(g.Users, u.Name)
	}
	return g, err
}

// CreateGroup adds a group; ErrConflict if it exists.
func (s *Store) CreateGroup(ctx context.Context, name string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO groups (name, created_at) VALUES (?, ?)`, name, s.stamp())
	if isUnique(err) {
		return fmt.Errorf("group %s: %w", name, ErrConflict)
	}
	return err
}

// DeleteGroup removes an empty group.
func (s *Store) DeleteGroup(ctx context.Context, name string) error {
	return s.tx(ctx, func(tx *txn) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE group_name = ?`, name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("group %s still has %d users: %w", name, n, ErrConflict)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM groups WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return fmt.Errorf("group %s: %w", name, ErrNotFound)
		}
		return nil
	})
}

// Users lists participants, optionally only those of the given groups.
func (s *Store) Users(ctx context.Context, groups ...string) ([]User, error) {
	q := `SELECT name, group_name, email, created_at FROM users`
	args := make([]any, len(groups))
	if len(groups) > 0 {
		q += ` WHERE group_name IN (?` + strings.Repeat(",?", len(groups)-1) + `)`
		for i, g := range groups {
			args[i] = g
		}
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY group_name, name`, args...)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		var u User
		var created string
		if err := rows.Scan(&u.Name, &u.Group, &u.Email, &created); err != nil {
			return nil, err
		}
		u.CreatedAt = parseTime(created)
		out = append(out, u)
	}
	return out, rows.Err()
}

// User returns one participant.
func (s *Store) User(ctx context.Context, name string) (User, error) {
	var u User
	var created string
	err := s.db.QueryRowContext(ctx, `SELECT name, group_name, email, created_at FROM users WHERE name = ?`, name).Scan(&u.Name, &u.Group, &u.Email, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %s: %w", name, ErrNotFound)
	}
	u.CreatedAt = parseTime(created)
	return u, err
}

// CreateUser adds a participant to an existing group.
func (s *Store) CreateUser(ctx context.Context, name, group string) error {
	return s.tx(ctx, func(tx *txn) error {
		if err := requireGroup(ctx, tx, group); err != nil {
			return err
		}
		now := s.stamp()
		_, err := tx.ExecContext(ctx, `INSERT INTO users (name, group_name, created_at, updated_at) VALUES (?, ?, ?, ?)`, name, group, now, now)
		if isUnique(err) {
			return fmt.Errorf("user %s: %w", name, ErrConflict)
		}
		return err
	})
}

// MoveUser puts a participant in another existing group.
func (s *Store) MoveUser(ctx context.Context, name, group string) error {
	return s.tx(ctx, func(tx *txn) error {
		if err := requireGroup(ctx, tx, group); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE users SET group_name = ?, updated_at = ? WHERE name = ?`, group, s.stamp(), name)
		if err != nil {
			return err
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return fmt.Errorf("user %s: %w", name, ErrNotFound)
		}
		return nil
	})
}

// DeleteUser removes a participant (and their sandbox record).
func (s *Store) DeleteUser(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete user %s: %w", name, err)
	}
	if k, _ := res.RowsAffected(); k == 0 {
		return fmt.Errorf("user %s: %w", name, ErrNotFound)
	}
	return nil
}

func requireGroup(ctx context.Context, tx *txn, group string) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM groups WHERE name = ?`, group).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("group %s: %w", group, ErrNotFound)
	}
	return nil
}

// ImportGroup is one group of an import; a Title of "" keeps the one
// stored.
type ImportGroup struct{ Name, Title string }

// ImportUser is one participant of an import; an Email of "" keeps the one
// stored.
type ImportUser struct{ Name, Group, Email string }

// ImportResult says what an import changed.
type ImportResult struct {
	GroupsAdded []string          `json:"groups_added"`
	UsersAdded  []string          `json:"users_added"`
	UsersMoved  map[string]string `json:"users_moved"` // user → new group
	// Updated are groups whose title and users whose e-mail changed.
	Updated   []string `json:"updated,omitempty"`
	Unchanged int      `json:"unchanged"`
	// NotListed are users in the store that the import did not mention; they are kept.
	NotListed []string `json:"not_listed"`
}

// Import upserts groups and users in one transaction: new ones are added,
// users listed under another group are moved, titles and e-mails given are
// set, nothing is deleted.
func (s *Store) Import(ctx context.Context, groups []ImportGroup, users []ImportUser) (ImportResult, error) {
	res := ImportResult{GroupsAdded: []string{}, UsersAdded: []string{}, UsersMoved: map[string]string{}, NotListed: []string{}}
	err := s.tx(ctx, func(tx *txn) error {
		now := s.stamp()
		for _, g := range groups {
			r, err := tx.ExecContext(ctx, `INSERT INTO groups (name, title, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`, g.Name, g.Title, now)
			if err != nil {
				return fmt.Errorf("import group %s: %w", g.Name, err)
			}
			if k, _ := r.RowsAffected(); k > 0 {
				res.GroupsAdded = append(res.GroupsAdded, g.Name)
				continue
			}
			if g.Title == "" {
				continue
			}
			r, err = tx.ExecContext(ctx, `UPDATE groups SET title = ? WHERE name = ? AND title <> ?`, g.Title, g.Name, g.Title)
			if err != nil {
				return fmt.Errorf("import group %s: %w", g.Name, err)
			}
			if k, _ := r.RowsAffected(); k > 0 {
				res.Updated = append(res.Updated, g.Name)
			}
		}
		listed := map[string]bool{}
		for _, u := range users {
			listed[u.Name] = true
			var cur, email string
			err := tx.QueryRowContext(ctx, `SELECT group_name, email FROM users WHERE name = ?`, u.Name).Scan(&cur, &email)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				if _, err := tx.ExecContext(ctx, `INSERT INTO users (name, group_name, email, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`, u.Name, u.Group, u.Email, now, now); err != nil {
					return fmt.Errorf("import user %s: %w", u.Name, classify(err))
				}
				res.UsersAdded = append(res.UsersAdded, u.Name)
				continue
			case err != nil:
				return err
			}
			if u.Email != "" && u.Email != email {
				if _, err := tx.ExecContext(ctx, `UPDATE users SET email = ?, updated_at = ? WHERE name = ?`, u.Email, now, u.Name); err != nil {
					return fmt.Errorf("import user %s: %w", u.Name, classify(err))
				}
				res.Updated = append(res.Updated, u.Name)
			}
			switch {
			case cur != u.Group:
				if _, err := tx.ExecContext(ctx, `UPDATE users SET group_name = ?, updated_at = ? WHERE name = ?`, u.Group, now, u.Name); err != nil {
					return fmt.Errorf("import user %s: %w", u.Name, classify(err))
				}
				res.UsersMoved[u.Name] = u.Group
			case u.Email == "" || u.Email == email:
				res.Unchanged++
			}
		}
		rows, err := tx.QueryContext(ctx, `SELECT name FROM users ORDER BY name`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				return err
			}
			if !listed[n] {
				res.NotListed = append(res.NotListed, n)
			}
		}
		return rows.Err()
	})
	return res, err
}

// Sandboxes returns every sandbox record, keyed by user.
func (s *Store) Sandboxes(ctx context.Context) (map[string]Sandbox, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+sandboxColumns+` FROM sandboxes`)
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	defer rows.Close()
	out := map[string]Sandbox{}
	for rows.Next() {
		b, err := scanSandbox(rows)
		if err != nil {
			return nil, err
		}
		out[b.User] = b
	}
	return out, rows.Err()
}

// Sandbox returns one sandbox record; ErrNotFound when there is none.
func (s *Store) Sandbox(ctx context.Context, user string) (Sandbox, error) {
	b, err := scanSandbox(s.db.QueryRowContext(ctx, `SELECT `+sandboxColumns+` FROM sandboxes WHERE user_name = ?`, user))
	if errors.Is(err, sql.ErrNoRows) {
		return Sandbox{}, fmt.Errorf("sandbox of %s: %w", user, ErrNotFound)
	}
	return b, err
}

const sandboxColumns = `user_name, instance_id, state, endpoint, image, spec_hash, workspace, error, created_at, updated_at,
	started_at, last_active, expires_at, sleep`

func scanSandbox(r interface{ Scan(...any) error }) (Sandbox, error) {
	var b Sandbox
	var created, updated, started, active, expires string
	err := r.Scan(&b.User, &b.InstanceID, &b.State, &b.Endpoint, &b.Image, &b.SpecHash, &b.Workspace, &b.Error, &created, &updated,
		&started, &active, &expires, &b.Sleep)
	b.CreatedAt, b.UpdatedAt = parseTime(created), parseTime(updated)
	b.StartedAt, b.LastActive, b.Expires = parseTime(started), parseTime(active), parseTime(expires)
	return b, err
}

// SandboxTimes changes a sandbox's life beside its state; nil fields are
// kept.
type SandboxTimes struct {
	StartedAt, Expires *time.Time
	Sleep              *string
}

// SetSandboxTimes records when a sandbox started, when its time runs out,
// or why it sleeps. A user without a sandbox record is not an error: there
// is nothing to change.
func (s *Store) SetSandboxTimes(ctx context.Context, user string, t SandboxTimes) error {
	var sets []string
	var args []any
	stamp := func(v time.Time) string {
		if v.IsZero() {
			return ""
		}
		return v.UTC().Format(time.RFC3339Nano)
	}
	if t.StartedAt != nil {
		sets, args = append(sets, "started_at = ?"), append(args, stamp(*t.StartedAt))
	}
	if t.Expires != nil {
		sets, args = append(sets, "expires_at = ?"), append(args, stamp(*t.Expires))
	}
	if t.Sleep != nil {
		sets, args = append(sets, "sleep = ?"), append(args, *t.Sleep)
	}
	if len(sets) == 0 {
		return nil
	}
	_, err := s.db.ExecContext(ctx, `UPDATE sandboxes SET `+strings.Join(sets, ", ")+` WHERE user_name = ?`, append(args, user)...)
	if err != nil {
		return fmt.Errorf("record sandbox times of %s: %w", user, classify(err))
	}
	return nil
}

// RecordActivity records participants' last activity, never moving one
// back, in one transaction.
func (s *Store) RecordActivity(ctx context.Context, last map[string]time.Time) error {
	if len(last) == 0 {
		return nil
	}
	return s.tx(ctx, func(tx *txn) error {
		stmt, err := tx.PrepareContext(ctx, `UPDATE sandboxes SET last_active = ? WHERE user_name = ? AND last_active < ?`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for user, at := range last {
			// Fixed width, so that the text compares as the time does.
			v := at.UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
			if _, err := stmt.ExecContext(ctx, v, user, v); err != nil {
				return fmt.Errorf("record activity of %s: %w", user, classify(err))
			}
		}
		return nil
	})
}

// PutSandbox records a sandbox's state (insert or replace).
func (s *Store) PutSandbox(ctx context.Context, b Sandbox) error {
	created := ""
	if !b.CreatedAt.IsZero() {
		created = b.CreatedAt.UTC().Format(time.RFC3339Nano)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO sandboxes (user_name, instance_id, state, endpoint, image, spec_hash, workspace, error, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (user_name) DO UPDATE SET instance_id = excluded.instance_id, state = excluded.state, endpoint = excluded.endpoint,
			image = excluded.image, spec_hash = excluded.spec_hash, workspace = excluded.workspace, error = excluded.error,
			created_at = excluded.created_at, updated_at = excluded.updated_at`,
		b.User, b.InstanceID, b.State, b.Endpoint, b.Image, b.SpecHash, b.Workspace, b.Error, created, s.stamp())
	if err != nil {
		return fmt.Errorf("record sandbox %s: %w", b.User, classify(err))
	}
	return nil
}

// DeleteSandbox forgets a sandbox record.
func (s *Store) DeleteSandbox(ctx context.Context, user string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM sandboxes WHERE user_name = ?`, user)
	return err
}

// AddEvent appends to the audit log.
func (s *Store) AddEvent(ctx context.Context, actor, action, target, detail string) (Event, error) {
	e := Event{Time: s.now(), Actor: actor, Action: action, Target: target, Detail: detail}
	err := s.db.QueryRowContext(ctx, `INSERT INTO events (time, actor, action, target, detail) VALUES (?, ?, ?, ?, ?) RETURNING id`,
		e.Time.Format(time.RFC3339Nano), actor, action, target, detail).Scan(&e.ID)
	if err != nil {
		return Event{}, fmt.Errorf("record event %s: %w", action, err)
	}
	return e, nil
}

// Events returns up to limit events with an ID above after, newest last.
// With after = 0 it returns the newest limit events.
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]Event, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	var rows *sql.Rows
	var err error
	if after > 0 {
		rows, err = s.db.QueryContext(ctx, `SELECT id, time, actor, action, target, detail FROM events WHERE id > ? ORDER BY id LIMIT ?`, after, limit)
	} else {
		rows, err = s.db.QueryContext(ctx, `SELECT * FROM (SELECT id, time, actor, action, target, detail FROM events ORDER BY id DESC LIMIT ?) AS newest ORDER BY id`, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	out := []Event{}
	for rows.Next() {
		var e Event
		var t string
		if err := rows.Scan(&e.ID, &t, &e.Actor, &e.Action, &e.Target, &e.Detail); err != nil {
			return nil, err
		}
		e.Time = parseTime(t)
		out = append(out, e)
	}
	return out, rows.Err()
}

// PutToken stores the hash of a named token (replacing one of the same name).
func (s *Store) PutToken(ctx context.Context, name, hash, role string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO tokens (name, hash, role, created_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, role = excluded.role, created_at = excluded.created_at, last_used = ''`,
		name, hash, role, s.stamp())
	if err != nil {
		return fmt.Errorf("store token %s: %w", name, classify(err))
	}
	return nil
}

// Setting reads a setting; ErrNotFound if unset.
func (s *Store) Setting(ctx context.Context, key string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return v, err
}

// PutSetting writes a setting.
func (s *Store) PutSetting(ctx context.Context, key, value string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}
