package gateway

import (
	"context"
	"errors"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The upstream's slots: a model served with N parallel slots never gets
// more than N requests at once from the gateway. Requests beyond that wait
// here, in one fair queue per model, and the next free slot goes to the
// waiter whose key used the model least recently:
//
//  1. fewest of the key's requests holding one of the model's slots now;
//  2. least use of the model over a decaying window: the key's cost
//     (completion tokens + prompt tokens ÷ 10), each request's cost
//     decaying with time constant fairTau (a request a minute ago counts
//     1/e of one now);
//  3. arrival.
//
// With Redis, the slots are a semaphore shared by every replica (see
// slots_redis.go) and each replica's queue competes through its best
// waiter.

const (
	// DefaultModelQueueTimeout is how long a request waits for a slot of
	// its model by default (gateway.queue_timeout).
	DefaultModelQueueTimeout = 2 * time.Minute
	// fairTau is the time constant of the decaying use that orders keys.
	fairTau = time.Minute
	// promptWeight: a prompt token costs a slot about a tenth of a
	// generated one (servers read prompts in batches).
	promptWeight = 0.1
	// waitLogSize bounds the recent waits kept for QueueStats.
	waitLogSize = 8192
)

var (
	errModelQueueTimeout = errors.New("timed out waiting for a slot of the model")
	errPoolClosed        = errors.New("the gateway is closing")
)

// slotPool is every model's slots and queue.
type slotPool struct {
	g        *Gateway
	def      int // Options.UpstreamSlots: every model without a plan entry
	timeout  time.Duration
	tau      float64 // seconds
	reserved func(slots int) int

	mu     sync.Mutex
	caps   map[string]int // SetSlots: the plan's slots per model
	queues map[string]*modelQueue
	closed bool

	remote *redisSlots // nil: this replica's slots alone

	logMu sync.Mutex
	log   []waitRecord // ring of recent waits, for QueueStats
	logN  int
}

// modelQueue is one model's slots on this replica and its waiting line.
type modelQueue struct {
	pool *slotPool
	name string

	mu      sync.Mutex
	cap     int
	busy    int // leases held by this replica's requests
	short   int // of which leases of short requests
	waiters []*slotWaiter
	keys    map[string]*keyUse
	seq     uint64
	pumping bool
	pruned  bool // forgotten by the pool: acquire asks for the model's queue again
	kick    chan struct{}
	idle    time.Time // when the queue last emptied, for pruning
}

// keyUse is what one key does with one model.
type keyUse struct {
	inflight int
	// use is the log of the key's forward-decayed cost,
	// log Σ cost·e^(t/τ) with t in seconds since the Unix epoch, so keys
	// compare alike at any time and on every replica; 0: none yet.
	use float64
}

type slotWaiter struct {
	key, group string
	short      bool
	seq        uint64
	since      time.Time
	done       chan struct{} // closed once lease or err is set
	lease      *slotLease
	err        error
}

// slotLease is a granted slot; release gives it back once.
type slotLease struct {
	q      *modelQueue
	key    string
	short  bool
	remote string // Redis lease id, "" for a slot of this replica's own
	once   sync.Once
}

type waitRecord struct {
	at           time.Time
	model, group string
	wait         time.Duration
	timedOut     bool
}

func newSlotPool(g *Gateway, def int, timeout time.Duration) *slotPool {
	return &slotPool{g: g, def: def, timeout: timeout, tau: fairTau.Seconds(),
		caps: map[string]int{}, queues: map[string]*modelQueue{}, reserved: func(int) int { return 0 }}
}

// SetSlots tells the gateway how many parallel slots each model has at the
// upstream (THON's LLM plan); a model not named gets Options.UpstreamSlots
// (0: no limit). Requests waiting for a model whose slots grew are served
// at once; when they shrink, new requests wait until the busy ones end.
func (g *Gateway) SetSlots(slots map[string]int) {
	p := g.slots
	p.mu.Lock()
	p.caps = make(map[string]int, len(slots))
	for m, n := range slots {
		if n > 0 {
			p.caps[m] = n
		}
	}
	qs := make([]*modelQueue, 0, len(p.queues))
	for _, q := range p.queues {
		qs = append(qs, q)
	}
	p.mu.Unlock()
	for _, q := range qs {
		q.setCap(p.capOf(q.name))
	}
	g.log.Debug("gateway: upstream slots", "slots", slots)
}

// SetUpstreamSlots changes Options.UpstreamSlots: the slots of every model
// SetSlots does not name (0: no limit).
func (g *Gateway) SetUpstreamSlots(n int) {
	p := g.slots
	p.mu.Lock()
	p.def = max(n, 0)
	qs := make([]*modelQueue, 0, len(p.queues))
	for _, q := range p.queues {
		qs = append(qs, q)
	}
	p.mu.Unlock()
	for _, q := range qs {
		q.setCap(p.capOf(q.name))
	}
}

// Slots is how many slots the gateway gives model (0: no limit).
func (g *Gateway) Slots(model string) int { return g.slots.capOf(model) }

func (p *slotPool) capOf(model string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n, ok := p.caps[model]; ok {
		return n
	}
	return p.def
}

// queue is model's queue, nil when the model has no slot limit.
func (p *slotPool) queue(model string) *modelQueue {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.caps[model]
	if !ok {
		n = p.def
	}
	if q := p.queues[model]; q != nil {
		return q
	}
	if n <= 0 || p.closed {
		return nil
	}
	if len(p.queues) >= 1024 {
		p.pruneLocked()
	}
	q := &modelQueue{pool: p, name: model, cap: n, keys: map[string]*keyUse{}, kick: make(chan struct{}, 1), idle: time.Now()}
	p.queues[model] = q
	p.g.metrics.slotCap(model, n)
	return q
}

// pruneLocked forgets idle queues (nothing busy or waiting for a minute);
// callers hold p.mu.
func (p *slotPool) pruneLocked() {
	for name, q := range p.queues {
		q.mu.Lock()
		idle := q.busy == 0 && len(q.waiters) == 0 && !q.pumping && time.Since(q.idle) > time.Minute
		if idle {
			q.pruned = true
			delete(p.queues, name)
		}
		q.mu.Unlock()
	}
}

func (q *modelQueue) setCap(n int) {
	q.mu.Lock()
	q.cap = n
	q.mu.Unlock()
	q.pool.g.metrics.slotCap(q.name, n)
	q.wake()
}

// wake offers free slots to the waiters: at once on this replica's own
// slots, through the pump with Redis.
func (q *modelQueue) wake() {
	if q.pool.remote != nil {
		q.kickPump()
		return
	}
	q.mu.Lock()
	q.dispatchLocal()
	q.mu.Unlock()
}

// acquire waits for a slot of model for key. It returns a nil lease when
// the model has no limit; errModelQueueTimeout after the queue timeout,
// ctx's error when the client left (nothing is held then), errLimiterDown
// when Redis is down and the gateway fails closed.
func (p *slotPool) acquire(ctx context.Context, model string, k *Key, short bool) (*slotLease, time.Duration, error) {
	start := time.Now()
	w := &slotWaiter{key: k.ID, group: k.Group, short: short, since: start, done: make(chan struct{})}
	var q *modelQueue
	for {
		if q = p.queue(model); q == nil {
			return nil, 0, nil
		}
		q.mu.Lock()
		if !q.pruned {
			break
		}
		q.mu.Unlock()
	}
	if q.cap <= 0 { // the limit was lifted
		q.mu.Unlock()
		return nil, 0, nil
	}
	q.seq++
	w.seq = q.seq
	q.waiters = append(q.waiters, w)
	p.g.metrics.queued(model, w.group, 1)
	if p.remote == nil {
		q.dispatchLocal()
	}
	q.mu.Unlock()
	if p.remote != nil {
		q.kickPump()
	}

	var err error
	select {
	case <-w.done:
	default:
		timer := time.NewTimer(p.timeout)
		select {
		case <-w.done:
		case <-timer.C:
			err = errModelQueueTimeout
		case <-ctx.Done():
			err = ctx.Err()
		}
		timer.Stop()
	}
	if err != nil {
		q.mu.Lock()
		removed := q.remove(w)
		q.mu.Unlock()
		if removed {
			p.g.metrics.queued(model, w.group, -1)
			q.kickPump() // the best waiter changed: say so to the other replicas
			wait := time.Since(start)
			p.record(model, w.group, wait, err == errModelQueueTimeout)
			return nil, wait, err
		}
		<-w.done // granted (or failed) just now
		if w.lease != nil && ctx.Err() != nil {
			w.lease.release(0)
			wait := time.Since(start)
			p.record(model, w.group, wait, false)
			return nil, wait, ctx.Err()
		}
	}
	wait := time.Since(start)
	p.record(model, w.group, wait, false)
	return w.lease, wait, w.err
}

// remove takes w out of the line; false when it was granted already.
// Callers hold q.mu.
func (q *modelQueue) remove(w *slotWaiter) bool {
	i := slices.Index(q.waiters, w)
	if i < 0 {
		return false
	}
	q.waiters = slices.Delete(q.waiters, i, i+1)
	if len(q.waiters) == 0 {
		q.idle = time.Now()
	}
	return true
}

func (q *modelQueue) use(key string) *keyUse {
	u := q.keys[key]
	if u == nil {
		u = &keyUse{}
		q.keys[key] = u
	}
	return u
}

// before reports whether a goes before b; callers hold q.mu.
func (q *modelQueue) before(a, b *slotWaiter) bool {
	var ia, ib int
	var la, lb float64
	if u := q.keys[a.key]; u != nil {
		ia, la = u.inflight, u.use
	}
	if u := q.keys[b.key]; u != nil {
		ib, lb = u.inflight, u.use
	}
	switch {
	case ia != ib:
		return ia < ib
	case la != lb:
		return la < lb
	}
	return a.seq < b.seq
}

// room is how many more slots a waiter may take on this replica's own
// count: short requests may use every slot, others all but the reserved
// ones. Callers hold q.mu.
func (q *modelQueue) room(short bool) int {
	if short {
		return q.cap - q.busy
	}
	long := q.busy - q.short
	return min(q.cap-q.busy, q.cap-q.pool.reserved(q.cap)-long)
}

// best is the waiter to serve next among those that fit (fits nil: any);
// callers hold q.mu.
func (q *modelQueue) best(fits func(*slotWaiter) bool) (int, *slotWaiter) {
	bi := -1
	for i, w := range q.waiters {
		if fits != nil && !fits(w) {
			continue
		}
		if bi < 0 || q.before(w, q.waiters[bi]) {
			bi = i
		}
	}
	if bi < 0 {
		return -1, nil
	}
	return bi, q.waiters[bi]
}

// dispatchLocal grants this replica's free slots; callers hold q.mu.
func (q *modelQueue) dispatchLocal() {
	if q.cap <= 0 { // the limit was lifted
		for len(q.waiters) > 0 {
			q.grant(0, q.waiters[0], "")
		}
		return
	}
	for len(q.waiters) > 0 {
		i, w := q.best(func(w *slotWaiter) bool { return q.room(w.short) > 0 })
		if w == nil {
			return
		}
		q.grant(i, w, "")
	}
}

// grant gives waiter i a slot; callers hold q.mu.
func (q *modelQueue) grant(i int, w *slotWaiter, remote string) {
	q.waiters = slices.Delete(q.waiters, i, i+1)
	if len(q.waiters) == 0 {
		q.idle = time.Now()
	}
	q.busy++
	if w.short {
		q.short++
	}
	q.use(w.key).inflight++
	w.lease = &slotLease{q: q, key: w.key, short: w.short, remote: remote}
	q.pool.g.metrics.queued(q.name, w.group, -1)
	q.pool.g.metrics.slotBusy(q.name, q.busy)
	close(w.done)
}

// fail ends waiter i with err; callers hold q.mu.
func (q *modelQueue) fail(i int, err error) {
	w := q.waiters[i]
	q.waiters = slices.Delete(q.waiters, i, i+1)
	w.err = err
	q.pool.g.metrics.queued(q.name, w.group, -1)
	close(w.done)
}

// release frees the slot and charges cost (completion tokens plus a tenth
// of the prompt's) to the key's recent use.
func (l *slotLease) release(cost float64) {
	if l == nil {
		return
	}
	l.once.Do(func() {
		q := l.q
		q.mu.Lock()
		q.busy--
		if l.short {
			q.short--
		}
		u := q.use(l.key)
		u.inflight--
		if cost > 0 {
			u.use = addLog(u.use, math.Log(cost)+float64(time.Now().UnixNano())/1e9/q.pool.tau)
		}
		if u.inflight == 0 && len(q.keys) > 4096 {
			q.forgetOld()
		}
		busy := q.busy
		if q.pool.remote == nil {
			q.dispatchLocal()
			busy = q.busy
		}
		q.mu.Unlock()
		q.pool.g.metrics.slotBusy(q.name, busy)
		if r := q.pool.remote; r != nil {
			if l.remote != "" {
				r.releaseLater(q.name, l.remote, q.kickPump)
			} else {
				q.kickPump()
			}
		}
	})
}

// forgetOld drops keys whose decayed use is below one token and that hold
// nothing; callers hold q.mu.
func (q *modelQueue) forgetOld() {
	now := float64(time.Now().UnixNano()) / 1e9 / q.pool.tau
	for k, u := range q.keys {
		if u.inflight == 0 && u.use < now {
			delete(q.keys, k)
		}
	}
}

// reservedSlots is how many of a model's slots are kept for short
// requests: share of them, rounded, and never all.
func reservedSlots(slots int, share float64) int {
	return max(0, min(slots-1, int(math.Round(float64(slots)*share))))
}

// addLog is log(e^l + e^x), with l == 0 standing for no use at all.
func addLog(l, x float64) float64 {
	if l == 0 {
		return x
	}
	if x > l {
		l, x = x, l
	}
	return l + math.Log1p(math.Exp(x-l))
}

// cost is what a request's usage adds to its key's recent use.
func cost(u tokenUsage) float64 {
	return float64(u.completion) + promptWeight*float64(u.prompt)
}

func (p *slotPool) record(model, group string, wait time.Duration, timedOut bool) {
	p.g.metrics.waited(model, group, wait)
	p.logMu.Lock()
	if p.log == nil {
		p.log = make([]waitRecord, waitLogSize)
	}
	p.log[p.logN%waitLogSize] = waitRecord{at: time.Now(), model: model, group: group, wait: wait, timedOut: timedOut}
	p.logN++
	p.logMu.Unlock()
}

func (p *slotPool) close() {
	p.mu.Lock()
	p.closed = true
	qs := make([]*modelQueue, 0, len(p.queues))
	for _, q := range p.queues {
		qs = append(qs, q)
	}
	p.mu.Unlock()
	for _, q := range qs {
		q.mu.Lock()
		for len(q.waiters) > 0 {
			q.fail(0, errPoolClosed)
		}
		q.mu.Unlock()
	}
	if p.remote != nil {
		p.remote.close()
	}
}

// errQueueTimeout is the answer to a request that waited for its model's
// queue longer than the queue timeout.
func errQueueTimeout(model string, slots int, waited time.Duration, h http.Header) apiError {
	h[hRetryAfter] = []string{"5"}
	return apiError{http.StatusServiceUnavailable, typeServer, "model_queue_timeout",
		"Waited " + waited.Round(time.Second).String() + " in the queue for model " + model + ": all its " + strconv.Itoa(slots) +
			" slots are busy with other participants' requests. This is not your quota; nothing was charged. Try again in a moment."}
}

// QueueStat is one model's slots and waiting line as this gateway sees
// them (with Redis: its own requests; the slots are shared).
type QueueStat struct {
	Model string `json:"model"`
	Slots int    `json:"slots"`
	// Reserved of the slots are kept for short requests.
	Reserved int `json:"reserved"`
	Busy     int `json:"busy"`
	Waiting  int `json:"waiting"`
	// WaitingShort of the waiting requests are short.
	WaitingShort int `json:"waiting_short"`
	// Recent is the waits that ended in the last minute (served, timed
	// out or left), their median and 95th percentile in seconds, and how
	// many timed out.
	Recent   int     `json:"recent"`
	WaitP50  float64 `json:"wait_p50_seconds"`
	WaitP95  float64 `json:"wait_p95_seconds"`
	TimedOut int     `json:"timed_out"`
	// Groups is the same per group of participants (a key's group), those
	// waiting now or in the last minute.
	Groups []GroupQueueStat `json:"groups"`
}

// GroupQueueStat is one group's share of a model's queue.
type GroupQueueStat struct {
	Group    string  `json:"group"`
	Waiting  int     `json:"waiting"`
	Recent   int     `json:"recent"`
	WaitP50  float64 `json:"wait_p50_seconds"`
	WaitP95  float64 `json:"wait_p95_seconds"`
	TimedOut int     `json:"timed_out"`
}

// QueueStats is every slot-limited model's slots and queue, by name.
func (g *Gateway) QueueStats() []QueueStat {
	p := g.slots
	p.mu.Lock()
	qs := make([]*modelQueue, 0, len(p.queues))
	for _, q := range p.queues {
		qs = append(qs, q)
	}
	p.mu.Unlock()
	type waits struct {
		d        []time.Duration
		timedOut int
	}
	recent := map[[2]string]*waits{}
	since := time.Now().Add(-time.Minute)
	p.logMu.Lock()
	for i := range min(p.logN, waitLogSize) {
		r := p.log[i]
		if r.at.Before(since) {
			continue
		}
		for _, k := range [][2]string{{r.model, "\x00all"}, {r.model, r.group}} {
			w := recent[k]
			if w == nil {
				w = &waits{}
				recent[k] = w
			}
			w.d = append(w.d, r.wait)
			if r.timedOut {
				w.timedOut++
			}
		}
	}
	p.logMu.Unlock()
	fill := func(w *waits) (n int, p50, p95 float64, timedOut int) {
		if w == nil || len(w.d) == 0 {
			return 0, 0, 0, 0
		}
		slices.Sort(w.d)
		at := func(pc int) float64 { return w.d[(len(w.d)-1)*pc/100].Seconds() }
		return len(w.d), at(50), at(95), w.timedOut
	}
	var out []QueueStat
	for _, q := range qs {
		q.mu.Lock()
		if q.cap <= 0 && q.busy == 0 && len(q.waiters) == 0 {
			q.mu.Unlock()
			continue // no limit (any more)
		}
		st := QueueStat{Model: q.name, Slots: q.cap, Reserved: p.reserved(q.cap), Busy: q.busy, Waiting: len(q.waiters)}
		waiting := map[string]int{}
		for _, w := range q.waiters {
			waiting[w.group]++
			if w.short {
				st.WaitingShort++
			}
		}
		q.mu.Unlock()
		st.Recent, st.WaitP50, st.WaitP95, st.TimedOut = fill(recent[[2]string{q.name, "\x00all"}])
		groups := map[string]bool{}
		for gname := range waiting {
			groups[gname] = true
		}
		for k := range recent {
			if k[0] == q.name && k[1] != "\x00all" {
				groups[k[1]] = true
			}
		}
		for gname := range groups {
			gs := GroupQueueStat{Group: gname, Waiting: waiting[gname]}
			gs.Recent, gs.WaitP50, gs.WaitP95, gs.TimedOut = fill(recent[[2]string{q.name, gname}])
			st.Groups = append(st.Groups, gs)
		}
		slices.SortFunc(st.Groups, func(a, b GroupQueueStat) int { return strings.Compare(a.Group, b.Group) })
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b QueueStat) int { return strings.Compare(a.Model, b.Model) })
	return out
}
