package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Slots shared by replicas. Per model M (P = Options.RedisPrefix):
//
//	P{slots:M}:l  leases: a sorted set, member = lease id, score = deadline (ms);
//	              renewed while the request runs, so a crashed replica's
//	              slots come back after leaseTTL
//	P{slots:M}:g  the leases of requests that are not short (the rest of the
//	              slots is kept for short ones)
//	P{slots:M}:c  candidates: a hash, one field per replica with waiters,
//	              "inflight|use|arrival(ms)|deadline(ms)" of its best waiter
//	P slots:free  a channel: the model whose slot was just released
//
// A replica takes a slot for its best waiter only when fewer live
// candidates of other replicas come before that waiter than there are free
// slots: the merged order of every replica's queue, as far as each
// replica knows its keys' use. A candidate lives one second unless renewed
// (every attempt renews it; a replica with waiters tries at least every
// redisSlotPoll), so a replica that dies blocks nobody for longer.

const (
	redisSlotPoll  = 100 * time.Millisecond
	candidateTTL   = time.Second
	redisSlotsWait = 2 * time.Second // bound of one Redis call here
)

// acquireSlotScript takes a slot for this replica's best waiter when its
// turn has come, and publishes that waiter (or, once served, the next one)
// as this replica's candidate. A request that is not short may only take
// the slots not kept for short requests (slots - reserved).
//
// KEYS: leases, candidates, long leases (those of requests not short)
// ARGV: slots, now(ms), lease deadline(ms), lease id, replica,
// inflight, use, arrival (of the best waiter), candidate deadline(ms),
// next (0/1), its inflight, use, arrival, key ttl(ms), reserved, short (0/1)
// Returns {1, busy} when the slot was taken, else {0, busy, free slots}
// (free slots > 0 when only the reserved ones are free).
var acquireSlotScript = redis.NewScript(`
local now = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local busy = redis.call('ZCARD', KEYS[1])
local slots = tonumber(ARGV[1])
local all = slots - busy
local free = all
if ARGV[16] ~= '1' then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  free = math.min(free, slots - tonumber(ARGV[15]) - redis.call('ZCARD', KEYS[3]))
end
local me = ARGV[5]
local inf, use, arr = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local better = 0
if free > 0 then
  local c = redis.call('HGETALL', KEYS[2])
  for i = 1, #c, 2 do
    local id = c[i]
    if id ~= me then
      local ci, cu, ca, cd = string.match(c[i+1], '^([^|]+)|([^|]+)|([^|]+)|([^|]+)$')
      ci, cu, ca, cd = tonumber(ci), tonumber(cu), tonumber(ca), tonumber(cd)
      if cd == nil or cd < now then
        redis.call('HDEL', KEYS[2], id)
      elseif ci < inf or (ci == inf and (cu < use or (cu == use and (ca < arr or (ca == arr and id < me))))) then
        better = better + 1
      end
    end
  end
end
if free > better then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[14])
  if ARGV[16] ~= '1' then
    redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
    redis.call('PEXPIRE', KEYS[3], ARGV[14])
  end
  if ARGV[10] == '1' then
    redis.call('HSET', KEYS[2], me, ARGV[11] .. '|' .. ARGV[12] .. '|' .. ARGV[13] .. '|' .. ARGV[9])
    redis.call('PEXPIRE', KEYS[2], ARGV[14])
  else
    redis.call('HDEL', KEYS[2], me)
  end
  return {1, busy + 1}
end
redis.call('HSET', KEYS[2], me, ARGV[6] .. '|' .. ARGV[7] .. '|' .. ARGV[8] .. '|' .. ARGV[9])
redis.call('PEXPIRE', KEYS[2], ARGV[14])
return {0, busy, all}
`)

// releaseSlotScript frees a lease and says so to every replica.
// KEYS: leases, long leases; ARGV: lease id, channel, model
var releaseSlotScript = redis.NewScript(`
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`)

// redisSlots is the shared side of the slot pool.
type redisSlots struct {
	pool   *slotPool
	c      *redisCounters
	shared *sharedCounters
	me     string // this replica
	ch     string // the release channel

	mu      sync.Mutex
	pending [][2]string   // model, lease id: releases Redis did not get
	ps      *redis.PubSub // nil while Redis is down (no reconnecting in a loop)
	closed  bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newRedisSlots(pool *slotPool, shared *sharedCounters) *redisSlots {
	b := make([]byte, 6)
	rand.Read(b)
	r := &redisSlots{pool: pool, c: shared.remote, shared: shared, me: hex.EncodeToString(b), ch: shared.remote.prefix + "slots:free",
		stop: make(chan struct{})}
	return r
}

// setUp follows Redis's state: subscribed to the release channel while it
// answers, not subscribed (so not redialling) while it is down.
func (r *redisSlots) setUp(up bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case up && r.ps == nil && !r.closed:
		ps := r.c.rdb.Subscribe(context.Background())
		r.ps = ps
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), redisSlotsWait)
			err := ps.Subscribe(ctx, r.ch)
			cancel()
			if err != nil {
				r.shared.failed(context.Background(), err)
				return
			}
			r.listen(ps)
		}()
	case !up && r.ps != nil:
		r.ps.Close()
		r.ps = nil
	}
}

func (r *redisSlots) keys(model string) (leases, candidates, long string) {
	base := r.c.prefix + "{slots:" + model + "}:"
	return base + "l", base + "c", base + "g"
}

// listen wakes a model's pump when another replica freed one of its slots.
func (r *redisSlots) listen(ps *redis.PubSub) {
	ch := ps.Channel()
	for {
		select {
		case <-r.stop:
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			r.pool.mu.Lock()
			q := r.pool.queues[m.Payload]
			r.pool.mu.Unlock()
			if q != nil {
				q.kickPump()
			}
		}
	}
}

// spawn runs f on a goroutine that close waits for; once closed it does
// not run f and reports false.
func (r *redisSlots) spawn(f func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f()
	}()
	return true
}

// releaseLater frees a shared slot off the caller's path, then calls then.
// After close the lease is left to expire by itself.
func (r *redisSlots) releaseLater(model, lease string, then func()) {
	r.spawn(func() {
		r.release(model, lease)
		then()
	})
}

func (r *redisSlots) close() {
	r.mu.Lock()
	r.closed = true
	if r.ps != nil {
		r.ps.Close()
		r.ps = nil
	}
	r.mu.Unlock()
	close(r.stop)
	r.wg.Wait()
}

// kickPump makes the model's pump look at its waiters again, starting it
// when it does not run.
func (q *modelQueue) kickPump() {
	r := q.pool.remote
	if r == nil {
		return
	}
	q.mu.Lock()
	if !q.pumping {
		if len(q.waiters) == 0 {
			q.mu.Unlock()
			return
		}
		q.pumping = true
		q.mu.Unlock()
		if !r.spawn(func() { r.pump(q) }) { // the gateway is closed
			q.mu.Lock()
			q.pumping = false
			for len(q.waiters) > 0 {
				q.fail(0, errPoolClosed)
			}
			q.mu.Unlock()
		}
		return
	}
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

type candidate struct {
	inflight int
	use      float64
	arrival  int64
}

// candidateOf is what the other replicas see of w; callers hold q.mu.
func (q *modelQueue) candidateOf(w *slotWaiter) candidate {
	c := candidate{arrival: w.since.UnixMilli()}
	if u := q.keys[w.key]; u != nil {
		c.inflight, c.use = u.inflight, u.use
	}
	return c
}

// pump serves a model's waiters from the shared slots while there are any
// (while Redis is down: from this replica's own count when failing open,
// or refusing them when not).
func (r *redisSlots) pump(q *modelQueue) {
	tick := time.NewTicker(redisSlotPoll)
	defer tick.Stop()
	published := false
	shortOnly := false // the free slots are kept for short requests
	isShort := func(w *slotWaiter) bool { return w.short }
	wait := func() bool {
		shortOnly = false
		select {
		case <-q.kick:
		case <-tick.C:
		case <-r.stop:
			return false
		}
		return true
	}
	for {
		q.mu.Lock()
		if len(q.waiters) == 0 {
			if published {
				q.mu.Unlock()
				r.withdraw(q.name)
				published = false
				continue // someone may have come meanwhile
			}
			q.pumping = false
			q.mu.Unlock()
			return
		}
		if !r.shared.up.Load() || q.cap <= 0 {
			if r.shared.failOpen || q.cap <= 0 {
				q.dispatchLocal()
			} else {
				for len(q.waiters) > 0 {
					q.fail(0, errLimiterDown)
				}
			}
			q.mu.Unlock()
			published = false
			if !wait() {
				return
			}
			continue
		}
		cap := q.cap
		reserved := q.pool.reserved(cap)
		var fits func(*slotWaiter) bool
		if shortOnly {
			fits = isShort
		}
		_, head := q.best(fits)
		if head == nil {
			q.mu.Unlock()
			if !wait() {
				return
			}
			continue
		}
		hc := q.candidateOf(head)
		var next *candidate
		if _, n := q.best(func(w *slotWaiter) bool { return w != head }); n != nil {
			nc := q.candidateOf(n)
			nc.inflight += boolInt(n.key == head.key) // it will hold one more by then
			next = &nc
		}
		q.mu.Unlock()

		r.flushPending()
		lease := r.me + ":" + strconv.FormatUint(r.c.seq.Add(1), 10)
		got, free, err := r.acquire(q.name, cap, reserved, head.short, lease, hc, next)
		if err != nil {
			r.shared.failed(context.Background(), err)
			published = false
			continue
		}
		published = true
		if !got {
			if !head.short && free > 0 && !shortOnly {
				shortOnly = true // offer the reserved slots to a short waiter
				continue
			}
			if !wait() {
				return
			}
			continue
		}
		shortOnly = false
		leases, _, long := r.keys(q.name)
		q.mu.Lock()
		fits = nil
		if !head.short {
			fits = func(w *slotWaiter) bool { return !w.short } // took a slot for a long request
		} else {
			fits = isShort
		}
		if i, w := q.best(fits); w != nil {
			q.grant(i, w, lease)
			q.mu.Unlock()
			lk := [2]string{leases, ""}
			if !w.short {
				lk[1] = long
			}
			r.c.mu.Lock()
			r.c.leases[lease] = lk
			r.c.mu.Unlock()
			continue
		}
		q.mu.Unlock()
		r.release(q.name, lease) // the waiter left meanwhile
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func fmtUse(u float64) string { return strconv.FormatFloat(u, 'f', 6, 64) }

func (r *redisSlots) acquire(model string, slots, reserved int, short bool, lease string, head candidate, next *candidate) (got bool, free int64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), redisSlotsWait)
	defer cancel()
	leases, cands, long := r.keys(model)
	now := r.c.now()
	n := []any{"0", "0", "0", "0"}
	if next != nil {
		n = []any{"1", next.inflight, fmtUse(next.use), next.arrival}
	}
	args := []any{slots, now.UnixMilli(), now.Add(r.c.ttl).UnixMilli(), lease, r.me,
		head.inflight, fmtUse(head.use), head.arrival, now.Add(candidateTTL).UnixMilli()}
	args = append(args, n...)
	args = append(args, (2 * r.c.ttl).Milliseconds(), reserved, boolInt(short))
	res, err := acquireSlotScript.Run(ctx, r.c.rdb, []string{leases, cands, long}, args...).Int64Slice()
	if err != nil {
		return false, 0, err
	}
	if len(res) == 3 {
		free = res[2]
	}
	return len(res) >= 2 && res[0] == 1, free, nil
}

// withdraw removes this replica's candidate: it has nobody waiting.
func (r *redisSlots) withdraw(model string) {
	ctx, cancel := context.WithTimeout(context.Background(), redisSlotsWait)
	defer cancel()
	_, cands, _ := r.keys(model)
	if err := r.c.rdb.HDel(ctx, cands, r.me).Err(); err != nil {
		r.shared.failed(context.Background(), err) // it expires by itself within candidateTTL
	}
}

// release frees a shared slot; when Redis does not answer it is tried
// again later (meanwhile the lease, no longer renewed, expires by itself).
func (r *redisSlots) release(model, lease string) {
	r.c.mu.Lock()
	delete(r.c.leases, lease)
	r.c.mu.Unlock()
	if err := r.releaseNow(model, lease); err != nil {
		r.mu.Lock()
		if len(r.pending) < 4096 {
			r.pending = append(r.pending, [2]string{model, lease})
		}
		r.mu.Unlock()
	}
}

func (r *redisSlots) releaseNow(model, lease string) error {
	ctx, cancel := context.WithTimeout(context.Background(), redisSlotsWait)
	defer cancel()
	leases, _, long := r.keys(model)
	err := releaseSlotScript.Run(ctx, r.c.rdb, []string{leases, long}, lease, r.ch, model).Err()
	if err != nil {
		r.shared.failed(context.Background(), err)
	}
	return err
}

// flushPending retries the releases Redis missed.
func (r *redisSlots) flushPending() {
	r.mu.Lock()
	p := r.pending
	r.pending = nil
	r.mu.Unlock()
	for i, x := range p {
		if err := r.releaseNow(x[0], x[1]); err != nil {
			r.mu.Lock()
			r.pending = append(r.pending, p[i:]...)
			r.mu.Unlock()
			return
		}
	}
}
