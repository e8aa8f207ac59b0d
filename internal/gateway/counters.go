package gateway

import (
	"context"
	"sync"
	"time"
)

// counterStore keeps the counters behind the limits. admit checks and
// reserves atomically; finish charges tokens, frees the reservation and,
// when asked, refunds the request.
type counterStore interface {
	admit(ctx context.Context, p *plan, now time.Time, t *ticket) (verdict, error)
	finish(ctx context.Context, t *ticket, now time.Time, tokens int64, refund bool) error
	peek(ctx context.Context, p *plan, now time.Time) (verdict, error)
	seedBudget(ctx context.Context, keyID string, used int64) error
	close() error
}

// memCounters keeps counters in this process.
type memCounters struct {
	keys sync.Map // Key.ID → *memKey
}

type memKey struct {
	mu       sync.Mutex
	win      int64
	requests int64
	tokens   int64
	inflight int64
	spent    int64
	models   map[string]*memModel
}

type memModel struct {
	win      int64
	tokens   int64
	inflight int64
}

func newMemCounters() *memCounters { return &memCounters{} }

func (m *memCounters) key(id string) *memKey {
	if v, ok := m.keys.Load(id); ok {
		return v.(*memKey)
	}
	v, _ := m.keys.LoadOrStore(id, &memKey{})
	return v.(*memKey)
}

// roll starts a new window when win moved on; callers hold k.mu.
func (k *memKey) roll(win int64) {
	if k.win != win {
		k.win, k.requests, k.tokens = win, 0, 0
	}
}

func (k *memKey) model(name string, win int64) *memModel {
	mm := k.models[name]
	if mm == nil {
		if k.models == nil {
			k.models = make(map[string]*memModel)
		}
		mm = &memModel{win: win}
		k.models[name] = mm
	}
	if mm.win != win {
		mm.win, mm.tokens = win, 0
	}
	return mm
}

func (m *memCounters) admit(_ context.Context, p *plan, now time.Time, t *ticket) (verdict, error) {
	win := windowOf(now)
	k := m.key(p.keyID)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.roll(win)
	var mm *memModel
	if p.model != "" {
		mm = k.model(p.model, win)
	}
	v := verdict{requests: k.requests, tokens: k.tokens, spent: k.spent}
	if mm != nil {
		v.mtokens = mm.tokens
	}
	switch {
	case p.budget > 0 && k.spent >= p.budget:
		v.reason = reasonBudget
	case p.rpm > 0 && k.requests >= p.rpm:
		v.reason = reasonRequests
	case p.tpm > 0 && k.tokens >= p.tpm:
		v.reason = reasonTokens
	case p.mtpm > 0 && mm.tokens >= p.mtpm:
		v.reason = reasonModelTokens
	case p.conc > 0 && k.inflight >= p.conc:
		v.reason = reasonConcurrency
	case p.mconc > 0 && mm.inflight >= p.mconc:
		v.reason = reasonModelConcurrency
	default:
		v.ok = true
		k.requests++
		v.requests++
		k.inflight++
		if mm != nil {
			mm.inflight++
		}
		*t = ticket{store: m, keyID: p.keyID, model: p.model, win: win, conc: true, mconc: mm != nil, mtpm: mm != nil}
	}
	return v, nil
}

func (m *memCounters) finish(_ context.Context, t *ticket, now time.Time, tokens int64, refund bool) error {
	win := windowOf(now)
	k := m.key(t.keyID)
	k.mu.Lock()
	defer k.mu.Unlock()
	if refund && k.win == t.win && k.requests > 0 {
		k.requests--
	}
	k.roll(win)
	k.tokens += tokens
	k.spent += tokens
	if t.conc {
		k.inflight--
	}
	if t.model != "" {
		mm := k.model(t.model, win)
		mm.tokens += tokens
		if t.mconc {
			mm.inflight--
		}
	}
	return nil
}

func (m *memCounters) peek(_ context.Context, p *plan, now time.Time) (verdict, error) {
	win := windowOf(now)
	k := m.key(p.keyID)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.roll(win)
	v := verdict{ok: true, requests: k.requests, tokens: k.tokens, spent: k.spent}
	if p.model != "" {
		v.mtokens = k.model(p.model, win).tokens
	}
	return v, nil
}

func (m *memCounters) seedBudget(_ context.Context, keyID string, used int64) error {
	k := m.key(keyID)
	k.mu.Lock()
	k.spent = max(k.spent, used)
	k.mu.Unlock()
	return nil
}

func (m *memCounters) close() error { return nil }
