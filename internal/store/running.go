package store

import (
	"context"
	"fmt"
	"time"
)

// RunningTime is how long one participant's sandbox has run over the
// event.
type RunningTime struct {
	User string `json:"user"`
	// Total is the closed periods plus the open one up to Seen.
	Total time.Duration `json:"total"`
	// Since is when the period running now began (zero when not running);
	// Seen when it was last seen running.
	Since time.Time `json:"since,omitzero"`
	Seen  time.Time `json:"seen,omitzero"`
}

// TrackRunning records that the sandboxes of running, and only those, were
// seen running at now. A period that was open for a user no longer running
// closes at its last sighting (it stopped some time after it), so time
// the daemon was down counts only for a sandbox found still running after
// it. Users not in the store are ignored.
func (s *Store) TrackRunning(ctx context.Context, now time.Time, running []string) error {
	stamp := now.UTC().Format(time.RFC3339Nano)
	on := make(map[string]bool, len(running))
	for _, u := range running {
		on[u] = true
	}
	return s.tx(ctx, func(tx *txn) error {
		rows, err := tx.QueryContext(ctx, `SELECT user_name, running_since, seen_at FROM sandbox_running WHERE running_since <> ''`)
		if err != nil {
			return fmt.Errorf("read running times: %w", err)
		}
		type open struct{ since, seen time.Time }
		opened := map[string]open{}
		for rows.Next() {
			var u, since, seen string
			if err := rows.Scan(&u, &since, &seen); err != nil {
				rows.Close()
				return err
			}
			opened[u] = open{parseTime(since), parseTime(seen)}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for u, p := range opened {
			if on[u] {
				if _, err := tx.ExecContext(ctx, `UPDATE sandbox_running SET seen_at = ? WHERE user_name = ?`, stamp, u); err != nil {
					return fmt.Errorf("record the running time of %s: %w", u, err)
				}
				continue
			}
			ms := max(p.seen.Sub(p.since).Milliseconds(), 0)
			if _, err := tx.ExecContext(ctx, `UPDATE sandbox_running SET closed_ms = closed_ms + ?, running_since = '', seen_at = '' WHERE user_name = ?`, ms, u); err != nil {
				return fmt.Errorf("record the running time of %s: %w", u, err)
			}
		}
		for _, u := range running {
			if _, ok := opened[u]; ok {
				continue
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO sandbox_running (user_name, closed_ms, running_since, seen_at)
				SELECT name, 0, ?, ? FROM users WHERE name = ?
				ON CONFLICT (user_name) DO UPDATE SET running_since = excluded.running_since, seen_at = excluded.seen_at`, stamp, stamp, u); err != nil {
				return fmt.Errorf("record the running time of %s: %w", u, classify(err))
			}
		}
		return nil
	})
}

// RunningTimes is every participant's running time that has one, keyed by
// user.
func (s *Store) RunningTimes(ctx context.Context) (map[string]RunningTime, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT user_name, closed_ms, running_since, seen_at FROM sandbox_running`)
	if err != nil {
		return nil, fmt.Errorf("read running times: %w", err)
	}
	defer rows.Close()
	out := map[string]RunningTime{}
	for rows.Next() {
		var r RunningTime
		var ms int64
		var since, seen string
		if err := rows.Scan(&r.User, &ms, &since, &seen); err != nil {
			return nil, err
		}
		r.Total = time.Duration(ms) * time.Millisecond
		if since != "" {
			r.Since, r.Seen = parseTime(since), parseTime(seen)
			r.Total += max(r.Seen.Sub(r.Since), 0)
		}
		out[r.User] = r
	}
	return out, rows.Err()
}
