package gateway

import (
	"context"
	"sync"
	"time"
)

// gate is one key's waiting line for concurrency slots. Every admission of
// the key on this replica passes through it, so a freed slot goes to the
// waiter with the highest priority and newcomers cannot jump the line.
type gate struct {
	mu      sync.Mutex
	seq     uint64
	waiters []*waiter // by priority (high first), then arrival
}

type waiter struct {
	ctx  context.Context
	p    *plan
	seq  uint64
	last verdict
	res  chan admission // buffered: sent under gate.mu, at most once
}

type admission struct {
	v   verdict
	t   ticket
	err error
}

// redisPoll is how often waiters look for slots freed by other replicas.
const redisPoll = 50 * time.Millisecond

func (g *Gateway) gateFor(keyID string) *gate {
	if v, ok := g.gates.Load(keyID); ok {
		return v.(*gate)
	}
	v, _ := g.gates.LoadOrStore(keyID, &gate{})
	return v.(*gate)
}

// admit asks the counters to admit a request and, when only a concurrency
// limit is in the way, waits in the key's line for up to QueueTimeout.
func (g *Gateway) admit(ctx context.Context, p *plan, t *ticket) (verdict, error) {
	gt := g.gateFor(p.keyID)
	gt.mu.Lock()
	if len(gt.waiters) == 0 {
		v, err := g.counters.admit(ctx, p, g.now(), t)
		if err != nil || v.ok || !v.reason.concurrency() || g.queueLen <= 0 {
			gt.mu.Unlock()
			return v, err
		}
		w := gt.enqueue(ctx, p, v)
		gt.mu.Unlock()
		return g.wait(ctx, gt, w, t)
	}
	if len(gt.waiters) >= g.queueLen {
		gt.mu.Unlock()
		v, err := g.counters.peek(ctx, p, g.now())
		v.ok, v.reason = false, reasonConcurrency
		return v, err
	}
	w := gt.enqueue(ctx, p, verdict{reason: reasonConcurrency})
	g.dispatch(gt)
	gt.mu.Unlock()
	return g.wait(ctx, gt, w, t)
}

// enqueue adds a waiter in priority order; callers hold gt.mu.
func (gt *gate) enqueue(ctx context.Context, p *plan, last verdict) *waiter {
	gt.seq++
	w := &waiter{ctx: ctx, p: p, seq: gt.seq, last: last, res: make(chan admission, 1)}
	i := len(gt.waiters)
	for i > 0 && gt.waiters[i-1].p.prio < p.prio {
		i--
	}
	gt.waiters = append(gt.waiters, nil)
	copy(gt.waiters[i+1:], gt.waiters[i:])
	gt.waiters[i] = w
	return w
}

func (gt *gate) remove(w *waiter) bool {
	for i, x := range gt.waiters {
		if x == w {
			gt.waiters = append(gt.waiters[:i], gt.waiters[i+1:]...)
			return true
		}
	}
	return false
}

// dispatch offers the counters' free slots to the waiters in order;
// callers hold gt.mu.
func (g *Gateway) dispatch(gt *gate) {
	for i := 0; i < len(gt.waiters); {
		w := gt.waiters[i]
		var a admission
		a.v, a.err = g.counters.admit(w.ctx, w.p, g.now(), &a.t)
		if a.err == nil && !a.v.ok && a.v.reason.concurrency() {
			w.last = a.v
			if a.v.reason == reasonConcurrency {
				return // the key is full: nobody behind can pass either
			}
			i++ // only this model is full; someone behind may fit
			continue
		}
		gt.waiters = append(gt.waiters[:i], gt.waiters[i+1:]...)
		w.res <- a
	}
}

func (g *Gateway) wait(ctx context.Context, gt *gate, w *waiter, t *ticket) (verdict, error) {
	timer := time.NewTimer(g.queueTimeout)
	defer timer.Stop()
	var poll <-chan time.Time
	if g.shared != nil {
		tk := time.NewTicker(redisPoll)
		defer tk.Stop()
		poll = tk.C
	}
	take := func(a admission) (verdict, error) {
		*t = a.t
		return a.v, a.err
	}
	for {
		select {
		case a := <-w.res:
			return take(a)
		case <-poll: // only the head polls; a pass serves everyone behind it
			gt.mu.Lock()
			if len(gt.waiters) > 0 && gt.waiters[0] == w {
				g.dispatch(gt)
			}
			gt.mu.Unlock()
			continue
		case <-timer.C:
		case <-ctx.Done():
		}
		gt.mu.Lock()
		removed := gt.remove(w)
		gt.mu.Unlock()
		if !removed { // admitted (or refused) just now
			v, err := take(<-w.res)
			if err == nil && v.ok && ctx.Err() != nil {
				g.release(t, 0, true)
				return v, ctx.Err()
			}
			return v, err
		}
		if err := ctx.Err(); err != nil {
			return w.last, err
		}
		return w.last, nil
	}
}

// release ends an admitted request: charges its tokens, frees its slots
// and offers them to the key's waiters.
func (g *Gateway) release(t *ticket, tokens int64, refund bool) {
	ctx := context.Background()
	if g.shared != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	if err := g.counters.finish(ctx, t, g.now(), tokens, refund); err != nil {
		g.log.Warn("gateway: charge usage", "key", t.keyID, "tokens", tokens, "err", err)
	}
	if v, ok := g.gates.Load(t.keyID); ok {
		gt := v.(*gate)
		gt.mu.Lock()
		if len(gt.waiters) > 0 {
			g.dispatch(gt)
		}
		gt.mu.Unlock()
	}
}
