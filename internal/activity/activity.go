// Package activity records when each participant last used their sandbox:
// the front door touches a participant on every request and on every
// WebSocket message their browser sends that a person caused (the IDE's own
// keep-alives do not count), and the orchestrator reads it to show who is
// active and to put idle sandboxes to sleep.
package activity

import (
	"sync"
	"sync/atomic"
	"time"
)

// Tracker is the last activity of every participant, in memory. Touch is a
// map read and an atomic store: cheap enough for every WebSocket message.
type Tracker struct {
	now func() time.Time

	mu   sync.RWMutex
	last map[string]*atomic.Int64 // user → unix nanoseconds
}

// New returns an empty tracker on a clock (time.Now when nil).
func New(now func() time.Time) *Tracker {
	if now == nil {
		now = time.Now
	}
	return &Tracker{now: now, last: map[string]*atomic.Int64{}}
}

// Touch records activity of user now.
func (t *Tracker) Touch(user string) { t.TouchAt(user, t.now()) }

// TouchAt records activity of user at a time (never moving it back).
func (t *Tracker) TouchAt(user string, at time.Time) {
	t.mu.RLock()
	v := t.last[user]
	t.mu.RUnlock()
	if v == nil {
		t.mu.Lock()
		if v = t.last[user]; v == nil {
			v = new(atomic.Int64)
			t.last[user] = v
		}
		t.mu.Unlock()
	}
	n := at.UnixNano()
	for {
		old := v.Load()
		if old >= n || v.CompareAndSwap(old, n) {
			return
		}
	}
}

// Last is user's last activity (zero when none was seen).
func (t *Tracker) Last(user string) time.Time {
	t.mu.RLock()
	v := t.last[user]
	t.mu.RUnlock()
	if v == nil {
		return time.Time{}
	}
	return time.Unix(0, v.Load())
}

// Snapshot is everyone's last activity.
func (t *Tracker) Snapshot() map[string]time.Time {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make(map[string]time.Time, len(t.last))
	for u, v := range t.last {
		out[u] = time.Unix(0, v.Load())
	}
	return out
}

// Forget drops a participant (removed from the event).
func (t *Tracker) Forget(user string) {
	t.mu.Lock()
	delete(t.last, user)
	t.mu.Unlock()
}
