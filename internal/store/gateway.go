package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// GatewayKey is an AI gateway key's record (never the key itself).
type GatewayKey struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind"`
	Owner      string    `json:"owner"`
	Generation int       `json:"generation"`
	Hash       string    `json:"-"`
	Revoked    bool      `json:"revoked"`
	CreatedAt  time.Time `json:"created_at"`
	RotatedAt  time.Time `json:"rotated_at"`
}

// GatewayKeys lists every key record.
func (s *Store) GatewayKeys(ctx context.Context) ([]GatewayKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, kind, owner, generation, hash, revoked, created_at, rotated_at FROM gateway_keys ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list gateway keys: %w", err)
	}
	defer rows.Close()
	var out []GatewayKey
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

type scanner interface{ Scan(...any) error }

func scanKey(r scanner) (GatewayKey, error) {
	var k GatewayKey
	var revoked int // 0 or 1: an integer column reads the same on SQLite and PostgreSQL
	var created, rotated string
	if err := r.Scan(&k.ID, &k.Kind, &k.Owner, &k.Generation, &k.Hash, &revoked, &created, &rotated); err != nil {
		return k, err
	}
	k.Revoked = revoked != 0
	k.CreatedAt, k.RotatedAt = parseTime(created), parseTime(rotated)
	return k, nil
}

// GatewayKey returns one key record by id; ErrNotFound when absent.
func (s *Store) GatewayKey(ctx context.Context, id string) (GatewayKey, error) {
	k, err := scanKey(s.db.QueryRowContext(ctx, `SELECT id, kind, owner, generation, hash, revoked, created_at, rotated_at FROM gateway_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return k, fmt.Errorf("gateway key %s: %w", id, ErrNotFound)
	}
	return k, err
}

// GatewayKeyByHash finds a key record by the hash of the key.
func (s *Store) GatewayKeyByHash(ctx context.Context, hash string) (GatewayKey, error) {
	k, err := scanKey(s.db.QueryRowContext(ctx, `SELECT id, kind, owner, generation, hash, revoked, created_at, rotated_at FROM gateway_keys WHERE hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return k, ErrNotFound
	}
	return k, err
}

// PutGatewayKey inserts or replaces a key record (a rotation writes the new
// generation and hash; a revocation sets revoked).
func (s *Store) PutGatewayKey(ctx context.Context, k GatewayKey) error {
	now := s.stamp()
	revoked := 0
	if k.Revoked {
		revoked = 1
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO gateway_keys (id, kind, owner, generation, hash, revoked, created_at, rotated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET generation = excluded.generation, hash = excluded.hash, revoked = excluded.revoked, rotated_at = excluded.rotated_at`,
		k.ID, k.Kind, k.Owner, k.Generation, k.Hash, revoked, now, now)
	if err != nil {
		return fmt.Errorf("store gateway key %s: %w", k.ID, classify(err))
	}
	return nil
}

// DeleteGatewayKey forgets a key record (its user or group is gone).
func (s *Store) DeleteGatewayKey(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM gateway_keys WHERE id = ?`, id)
	return err
}

// UsageRow is one key's usage of one model in one minute.
type UsageRow struct {
	KeyID            string    `json:"key_id"`
	Model            string    `json:"model"`
	Minute           time.Time `json:"minute"`
	Requests         int64     `json:"requests"`
	PromptTokens     int64     `json:"prompt_tokens"`
	CompletionTokens int64     `json:"completion_tokens"`
	Rejections       int64     `json:"rejections"`
}

// AddUsage adds rows to the per-minute counters in one transaction.
func (s *Store) AddUsage(ctx context.Context, rows []UsageRow) error {
	return s.tx(ctx, func(tx *txn) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO gateway_usage (key_id, model, minute, requests, prompt_tokens, completion_tokens, rejections)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (key_id, model, minute) DO UPDATE SET requests = gateway_usage.requests + excluded.requests,
				prompt_tokens = gateway_usage.prompt_tokens + excluded.prompt_tokens,
				completion_tokens = gateway_usage.completion_tokens + excluded.completion_tokens,
				rejections = gateway_usage.rejections + excluded.rejections`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, r := range rows {
			m := r.Minute.UTC().Truncate(time.Minute).Format(time.RFC3339)
			if _, err := stmt.ExecContext(ctx, r.KeyID, r.Model, m, r.Requests, r.PromptTokens, r.CompletionTokens, r.Rejections); err != nil {
				return fmt.Errorf("add usage of %s: %w", r.KeyID, err)
			}
		}
		return nil
	})
}

// UsageFilter selects usage rows.
type UsageFilter struct {
	KeyIDs []string  // empty: every key
	Since  time.Time // zero: from the start
}

// Usage returns usage rows, oldest first.
func (s *Store) Usage(ctx context.Context, f UsageFilter) ([]UsageRow, error) {
	q := `SELECT key_id, model, minute, requests, prompt_tokens, completion_tokens, rejections FROM gateway_usage WHERE minute >= ?`
	args := []any{f.Since.UTC().Format(time.RFC3339)}
	if len(f.KeyIDs) > 0 {
		q += ` AND key_id IN (?` + strings.Repeat(",?", len(f.KeyIDs)-1) + `)`
		for _, id := range f.KeyIDs {
			args = append(args, id)
		}
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY minute, key_id, model`, args...)
	if err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	defer rows.Close()
	var out []UsageRow
	for rows.Next() {
		var r UsageRow
		var m string
		if err := rows.Scan(&r.KeyID, &r.Model, &m, &r.Requests, &r.PromptTokens, &r.CompletionTokens, &r.Rejections); err != nil {
			return nil, err
		}
		r.Minute = parseTime(m)
		out = append(out, r)
	}
	return out, rows.Err()
}

// UsedTokens is the total of tokens a key used over the whole event (for budgets).
func (s *Store) UsedTokens(ctx context.Context, keyID string) (prompt, completion int64, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT), CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) FROM gateway_usage WHERE key_id = ?`, keyID).Scan(&prompt, &completion)
	return prompt, completion, err
}
