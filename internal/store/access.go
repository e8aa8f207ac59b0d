package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrExpired: the token or session exists but is past its lifetime.
var ErrExpired = errors.New("expired")

// PutAccessToken stores the hash of a one-time access token for user.
func (s *Store) PutAccessToken(ctx context.Context, hash, user string, expires time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO access_tokens (hash, user_name, created_at, expires_at) VALUES (?, ?, ?, ?)`,
		hash, user, s.stamp(), expires.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("store access token for %s: %w", user, classify(err))
	}
	return nil
}

// UseAccessToken consumes a one-time token of user, deleting it in the same
// transaction. ErrNotFound if unknown, used or another user's (which is left
// untouched); ErrExpired if past its lifetime (deleted all the same).
func (s *Store) UseAccessToken(ctx context.Context, hash, user string) error {
	err := s.tx(ctx, func(tx *txn) error {
		var expires string
		err := tx.QueryRowContext(ctx, `SELECT expires_at FROM access_tokens WHERE hash = ? AND user_name = ?`, hash, user).Scan(&expires)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM access_tokens WHERE hash = ?`, hash); err != nil {
			return err
		}
		if !s.now().Before(parseTime(expires)) {
			return ErrExpired
		}
		return nil
	})
	if errors.Is(err, ErrExpired) {
		// The deletion must stick although the answer is an error.
		s.db.ExecContext(ctx, `DELETE FROM access_tokens WHERE hash = ?`, hash)
	}
	return err
}

// PutSession stores the hash of a new browser session for user.
func (s *Store) PutSession(ctx context.Context, hash, user string, expires time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO sessions (hash, user_name, created_at, expires_at) VALUES (?, ?, ?, ?)`,
		hash, user, s.stamp(), expires.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("store session for %s: %w", user, classify(err))
	}
	return nil
}

// Session returns the user of a live session: ErrNotFound or ErrExpired otherwise.
func (s *Store) Session(ctx context.Context, hash string) (user string, expires time.Time, err error) {
	var exp string
	err = s.db.QueryRowContext(ctx, `SELECT user_name, expires_at FROM sessions WHERE hash = ?`, hash).Scan(&user, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}, ErrNotFound
	}
	if err != nil {
		return "", time.Time{}, err
	}
	expires = parseTime(exp)
	if !s.now().Before(expires) {
		return "", expires, ErrExpired
	}
	return user, expires, nil
}

// DeleteSession ends one session (logout).
func (s *Store) DeleteSession(ctx context.Context, hash string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE hash = ?`, hash)
	return err
}

// RevokeAccess deletes every access token and session of user: links stop
// working and browsers are signed out. It returns how many were deleted.
func (s *Store) RevokeAccess(ctx context.Context, user string) (tokens, sessions int64, err error) {
	err = s.tx(ctx, func(tx *txn) error {
		r, err := tx.ExecContext(ctx, `DELETE FROM access_tokens WHERE user_name = ?`, user)
		if err != nil {
			return err
		}
		tokens, _ = r.RowsAffected()
		r, err = tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_name = ?`, user)
		if err != nil {
			return err
		}
		sessions, _ = r.RowsAffected()
		return nil
	})
	return tokens, sessions, err
}

// DeleteExpired removes expired access tokens and sessions.
func (s *Store) DeleteExpired(ctx context.Context) error {
	now := s.stamp()
	if _, err := s.db.ExecContext(ctx, `DELETE FROM access_tokens WHERE expires_at <= ?`, now); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ?`, now)
	return err
}

// SetPassword stores a participant's password hash ("" deletes it).
func (s *Store) SetPassword(ctx context.Context, user, hash string) error {
	if hash == "" {
		_, err := s.db.ExecContext(ctx, `DELETE FROM passwords WHERE user_name = ?`, user)
		return err
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO passwords (user_name, hash, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (user_name) DO UPDATE SET hash = excluded.hash, updated_at = excluded.updated_at`, user, hash, s.stamp())
	if err != nil {
		return fmt.Errorf("store password of %s: %w", user, classify(err))
	}
	return nil
}

// PasswordHash returns a participant's password hash; ErrNotFound when none is set.
func (s *Store) PasswordHash(ctx context.Context, user string) (string, error) {
	var h string
	err := s.db.QueryRowContext(ctx, `SELECT hash FROM passwords WHERE user_name = ?`, user).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return h, err
}

// Ports returns every participant's port (port mode).
func (s *Store) Ports(ctx context.Context) (map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT user_name, port FROM ports`)
	if err != nil {
		return nil, fmt.Errorf("list ports: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var u string
		var p int
		if err := rows.Scan(&u, &p); err != nil {
			return nil, err
		}
		out[u] = p
	}
	return out, rows.Err()
}

// AssignPorts gives every participant without a port the lowest free one in
// [first, last], skipping the ports in avoid; users past the end of the
// range are returned in full.
func (s *Store) AssignPorts(ctx context.Context, first, last int, avoid map[int]bool) (full []string, err error) {
	err = s.tx(ctx, func(tx *txn) error {
		used := map[int]bool{}
		rows, err := tx.QueryContext(ctx, `SELECT port FROM ports`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var p int
			if err := rows.Scan(&p); err != nil {
				rows.Close()
				return err
			}
			used[p] = true
		}
		rows.Close()
		rows, err = tx.QueryContext(ctx, `SELECT name FROM users WHERE name NOT IN (SELECT user_name FROM ports) ORDER BY created_at, name`)
		if err != nil {
			return err
		}
		var todo []string
		for rows.Next() {
			var u string
			if err := rows.Scan(&u); err != nil {
				rows.Close()
				return err
			}
			todo = append(todo, u)
		}
		rows.Close()
		next := first
		for _, u := range todo {
			for next <= last && (used[next] || avoid[next]) {
				next++
			}
			if next > last {
				full = append(full, u)
				continue
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO ports (user_name, port) VALUES (?, ?)`, u, next); err != nil {
				return fmt.Errorf("assign port %d to %s: %w", next, u, classify(err))
			}
			used[next] = true
		}
		return nil
	})
	return full, err
}

// MovePort gives user another port (their old one is taken by another program).
func (s *Store) MovePort(ctx context.Context, user string, port int) error {
	_, err := s.db.ExecContext(ctx, `UPDATE ports SET port = ? WHERE user_name = ?`, port, user)
	if err != nil {
		return fmt.Errorf("move %s to port %d: %w", user, port, classify(err))
	}
	return nil
}
