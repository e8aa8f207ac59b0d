package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	leaseTTL     = 60 * time.Second // a reservation outlives a crashed replica by at most this; renewed every third
	windowKeyTTL = 2 * window       // window keys expire once their window is over
)

// admitScript checks every limit and, when all pass, counts the request and
// reserves the concurrency leases, atomically.
//
// KEYS: requests(W), tokens(W), leases, budget, model tokens(W), model leases
// ARGV: rpm, conc, tpm, budget, mconc, mtpm, now(ms), lease deadline(ms),
// lease id, window key ttl(ms), lease key ttl(ms)
// Returns {reason, requests, tokens, model tokens, spent}; reason 0 = admitted.
var admitScript = redis.NewScript(`
local rpm, conc, tpm, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local mconc, mtpm = tonumber(ARGV[5]), tonumber(ARGV[6])
local spent = tonumber(redis.call('GET', KEYS[4]) or '0')
local r = tonumber(redis.call('GET', KEYS[1]) or '0')
local t = tonumber(redis.call('GET', KEYS[2]) or '0')
local mt = 0
if mtpm > 0 then mt = tonumber(redis.call('GET', KEYS[5]) or '0') end
if budget > 0 and spent >= budget then return {1, r, t, mt, spent} end
if rpm > 0 and r >= rpm then return {2, r, t, mt, spent} end
if tpm > 0 and t >= tpm then return {3, r, t, mt, spent} end
if mtpm > 0 and mt >= mtpm then return {4, r, t, mt, spent} end
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[7])
  if redis.call('ZCARD', KEYS[3]) >= conc then return {5, r, t, mt, spent} end
end
if mconc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', ARGV[7])
  if redis.call('ZCARD', KEYS[6]) >= mconc then return {6, r, t, mt, spent} end
end
r = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[10])
if conc > 0 then
  redis.call('ZADD', KEYS[3], ARGV[8], ARGV[9])
  redis.call('PEXPIRE', KEYS[3], ARGV[11])
end
if mconc > 0 then
  redis.call('ZADD', KEYS[6], ARGV[8], ARGV[9])
  redis.call('PEXPIRE', KEYS[6], ARGV[11])
end
return {0, r, t, mt, spent}
`)

// finishScript charges tokens, frees leases and refunds the request.
//
// KEYS: tokens(now), budget, leases, model tokens(now), model leases,
// requests(admission window)
// ARGV: tokens, count model tokens (0/1), lease id, window key ttl(ms),
// refund (0/1), free lease (0/1), free model lease (0/1)
var finishScript = redis.NewScript(`
local n = tonumber(ARGV[1])
if n > 0 then
  redis.call('INCRBY', KEYS[1], n)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('INCRBY', KEYS[2], n)
  if ARGV[2] == '1' then
    redis.call('INCRBY', KEYS[4], n)
    redis.call('PEXPIRE', KEYS[4], ARGV[4])
  end
end
if ARGV[6] == '1' then redis.call('ZREM', KEYS[3], ARGV[3]) end
if ARGV[7] == '1' then redis.call('ZREM', KEYS[5], ARGV[3]) end
if ARGV[5] == '1' and tonumber(redis.call('GET', KEYS[6]) or '0') > 0 then
  redis.call('DECR', KEYS[6])
end
return 1
`)

// seedScript raises the budget counter to ARGV[1] when lower.
var seedScript = redis.NewScript(`
if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
`)

// redisCounters keeps counters in Redis, shared by every gateway using it.
type redisCounters struct {
	rdb    *redis.Client
	prefix string
	idBase string
	seq    atomic.Uint64
	now    func() time.Time // lease clock: real time, shared with other replicas
	ttl    time.Duration    // lease lifetime (leaseTTL; shorter in tests)

	mu     sync.Mutex
	leases map[string][2]string // lease id → lease keys ("" when not reserved)
	stop   chan struct{}
	done   chan struct{}
}

func newRedisCounters(url, prefix string) (*redisCounters, error) {
	return newRedisCountersTTL(url, prefix, leaseTTL, time.Now)
}

// newRedisCountersTTL is newRedisCounters with another lease lifetime and
// lease clock (tests).
func newRedisCountersTTL(url, prefix string, ttl time.Duration, now func() time.Time) (*redisCounters, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("gateway redis %q: %w", url, err)
	}
	// Fail fast: a Redis that does not answer must not stall requests; the
	// caller falls back (fail-open) or refuses (fail-closed).
	o.DialTimeout = time.Second
	o.ReadTimeout = time.Second
	o.WriteTimeout = time.Second
	o.MaxRetries = 0
	o.DialerRetries = 1
	o.ContextTimeoutEnabled = true
	b := make([]byte, 6)
	rand.Read(b)
	c := &redisCounters{rdb: redis.NewClient(o), prefix: prefix, idBase: hex.EncodeToString(b) + ":",
		now: now, ttl: ttl, leases: make(map[string][2]string), stop: make(chan struct{}), done: make(chan struct{})}
	go c.renewLoop(ttl / 3)
	return c, nil
}

func (c *redisCounters) keyBase(id string) string { return c.prefix + "{" + id + "}:" }

func (c *redisCounters) admit(ctx context.Context, p *plan, now time.Time, t *ticket) (verdict, error) {
	win := windowOf(now)
	w := strconv.FormatInt(win, 10)
	base := c.keyBase(p.keyID)
	mbase := base + "m:" + p.model + ":"
	lease := c.idBase + strconv.FormatUint(c.seq.Add(1), 10)
	wall := c.now()
	keys := []string{base + "r:" + w, base + "t:" + w, base + "c", base + "b", mbase + "t:" + w, mbase + "c"}
	res, err := admitScript.Run(ctx, c.rdb, keys,
		p.rpm, p.conc, p.tpm, p.budget, p.mconc, p.mtpm,
		wall.UnixMilli(), wall.Add(c.ttl).UnixMilli(), lease,
		windowKeyTTL.Milliseconds(), (2 * c.ttl).Milliseconds()).Int64Slice()
	if err != nil {
		return verdict{}, fmt.Errorf("redis admit: %w", err)
	}
	if len(res) != 5 {
		return verdict{}, fmt.Errorf("redis admit: unexpected reply %v", res)
	}
	v := verdict{reason: reason(res[0]), requests: res[1], tokens: res[2], mtokens: res[3], spent: res[4]}
	if v.reason != reasonNone {
		return v, nil
	}
	v.ok = true
	*t = ticket{store: c, keyID: p.keyID, model: p.model, win: win, lease: lease,
		conc: p.conc > 0, mconc: p.mconc > 0, mtpm: p.mtpm > 0}
	if t.conc || t.mconc {
		var lk [2]string
		if t.conc {
			lk[0] = keys[2]
		}
		if t.mconc {
			lk[1] = keys[5]
		}
		c.mu.Lock()
		c.leases[lease] = lk
		c.mu.Unlock()
	}
	return v, nil
}

func (c *redisCounters) finish(ctx context.Context, t *ticket, now time.Time, tokens int64, refund bool) error {
	if t.conc || t.mconc {
		c.mu.Lock()
		delete(c.leases, t.lease)
		c.mu.Unlock()
	}
	w := strconv.FormatInt(windowOf(now), 10)
	base := c.keyBase(t.keyID)
	mbase := base + "m:" + t.model + ":"
	keys := []string{base + "t:" + w, base + "b", base + "c", mbase + "t:" + w, mbase + "c", base + "r:" + strconv.FormatInt(t.win, 10)}
	err := finishScript.Run(ctx, c.rdb, keys, tokens, bit(t.mtpm), t.lease, windowKeyTTL.Milliseconds(),
		bit(refund), bit(t.conc), bit(t.mconc)).Err()
	if err != nil {
		return fmt.Errorf("redis charge %s: %w", t.keyID, err)
	}
	return nil
}

func bit(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (c *redisCounters) peek(ctx context.Context, p *plan, now time.Time) (verdict, error) {
	w := strconv.FormatInt(windowOf(now), 10)
	base := c.keyBase(p.keyID)
	vals, err := c.rdb.MGet(ctx, base+"r:"+w, base+"t:"+w, base+"b", base+"m:"+p.model+":t:"+w).Result()
	if err != nil {
		return verdict{}, fmt.Errorf("redis read counters: %w", err)
	}
	n := func(i int) int64 {
		s, _ := vals[i].(string)
		v, _ := strconv.ParseInt(s, 10, 64)
		return v
	}
	return verdict{ok: true, requests: n(0), tokens: n(1), spent: n(2), mtokens: n(3)}, nil
}

func (c *redisCounters) seedBudget(ctx context.Context, keyID string, used int64) error {
	if err := seedScript.Run(ctx, c.rdb, []string{c.keyBase(keyID) + "b"}, used).Err(); err != nil {
		return fmt.Errorf("redis seed budget: %w", err)
	}
	return nil
}

func (c *redisCounters) ping(ctx context.Context) error { return c.rdb.Ping(ctx).Err() }

// renewLoop extends the leases of requests still running, so only the
// leases of a replica that died expire.
func (c *redisCounters) renewLoop(every time.Duration) {
	defer close(c.done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		c.renew()
	}
}

// renew moves the deadlines of this replica's leases a lifetime past now.
func (c *redisCounters) renew() {
	c.mu.Lock()
	if len(c.leases) == 0 {
		c.mu.Unlock()
		return
	}
	deadline := float64(c.now().Add(c.ttl).UnixMilli())
	pipe := c.rdb.Pipeline()
	for id, keys := range c.leases {
		for _, k := range keys {
			if k != "" {
				pipe.ZAddXX(context.Background(), k, redis.Z{Score: deadline, Member: id})
				pipe.PExpire(context.Background(), k, 2*c.ttl)
			}
		}
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	pipe.Exec(ctx) // a failure is an outage, noticed by the request path
	cancel()
}

func (c *redisCounters) close() error {
	close(c.stop)
	<-c.done
	if err := c.rdb.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("close redis client: %w", err)
	}
	return nil
}
