package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// AdminSession is an organizer's dashboard session.
type AdminSession struct {
	Actor   string
	CSRF    string
	Role    string // admin (default) or participant
	User    string // a participant's participant
	Expires time.Time
}

// PutAdminSession stores a new dashboard session by the hash of its secret.
func (s *Store) PutAdminSession(ctx context.Context, hash string, a AdminSession) error {
	role := a.Role
	if role == "" {
		role = "admin"
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO admin_sessions (hash, actor, csrf, created_at, expires_at, role, user_name) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		hash, a.Actor, a.CSRF, s.stamp(), a.Expires.UTC().Format(time.RFC3339Nano), role, a.User)
	if err != nil {
		return fmt.Errorf("store admin session: %w", classify(err))
	}
	return nil
}

// AdminSession finds a session; ErrNotFound if unknown, ErrExpired if past
// its lifetime (and then deleted).
func (s *Store) AdminSession(ctx context.Context, hash string) (AdminSession, error) {
	var a AdminSession
	var expires string
	err := s.db.QueryRowContext(ctx, `SELECT actor, csrf, expires_at, role, user_name FROM admin_sessions WHERE hash = ?`, hash).Scan(&a.Actor, &a.CSRF, &expires, &a.Role, &a.User)
	if errors.Is(err, sql.ErrNoRows) {
		return a, ErrNotFound
	}
	if err != nil {
		return a, err
	}
	a.Expires = parseTime(expires)
	if !s.now().Before(a.Expires) {
		s.db.ExecContext(ctx, `DELETE FROM admin_sessions WHERE hash = ?`, hash)
		return a, ErrExpired
	}
	return a, nil
}

// DeleteAdminSession ends a session (sign-out).
func (s *Store) DeleteAdminSession(ctx context.Context, hash string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM admin_sessions WHERE hash = ?`, hash)
	return err
}

// DeleteAdminSessions ends every dashboard session (a new admin password).
func (s *Store) DeleteAdminSessions(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM admin_sessions`)
	return err
}

// ConfigFile is a configuration file kept in the database.
type ConfigFile struct {
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	Content   string    `json:"content"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

// ConfigFiles lists the stored files (without their content), by name.
func (s *Store) ConfigFiles(ctx context.Context) ([]ConfigFile, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, kind, updated_at, updated_by FROM config_files ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ConfigFile
	for rows.Next() {
		var f ConfigFile
		var at string
		if err := rows.Scan(&f.Name, &f.Kind, &at, &f.UpdatedBy); err != nil {
			return nil, err
		}
		f.UpdatedAt = parseTime(at)
		out = append(out, f)
	}
	return out, rows.Err()
}

// ConfigFile reads one stored file.
func (s *Store) ConfigFile(ctx context.Context, name string) (ConfigFile, error) {
	f := ConfigFile{Name: name}
	var at string
	err := s.db.QueryRowContext(ctx, `SELECT kind, content, updated_at, updated_by FROM config_files WHERE name = ?`, name).Scan(&f.Kind, &f.Content, &at, &f.UpdatedBy)
	if errors.Is(err, sql.ErrNoRows) {
		return f, fmt.Errorf("config file %s: %w", name, ErrNotFound)
	}
	f.UpdatedAt = parseTime(at)
	return f, err
}

// PutConfigFile creates or replaces a stored file.
func (s *Store) PutConfigFile(ctx context.Context, f ConfigFile) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO config_files (name, kind, content, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, content = excluded.content, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
		f.Name, f.Kind, f.Content, s.stamp(), f.UpdatedBy)
	if err != nil {
		return fmt.Errorf("store config file %s: %w", f.Name, classify(err))
	}
	return nil
}

// DeleteConfigFile removes a stored file.
func (s *Store) DeleteConfigFile(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM config_files WHERE name = ?`, name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("config file %s: %w", name, ErrNotFound)
	}
	return nil
}
