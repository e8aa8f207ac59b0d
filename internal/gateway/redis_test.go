package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/gateway/upstreamtest"
)

// Two gateways on one Redis enforce one limit.
func TestRedisSharedLimit(t *testing.T) {
	rs := startRedis(t)
	opts := func(o *Options) {
		o.Redis = rs.url()
		o.Limits = Limits{RequestsPerMinute: 5, TokensPerMinute: 1000, BudgetTokens: 10000}
		o.Models = []ModelLimit{{Model: "big", TokensPerMinute: 500, Concurrency: 1}}
	}
	e := newEnv(t, upstreamtest.Options{PromptTokens: 10, CompletionTokens: 20}, opts)
	_, url2 := e.addGateway(opts)
	secret := e.keys.add(Key{ID: "user:a"})
	ok := 0
	for i := range 10 {
		u := e.url
		if i%2 == 1 {
			u = url2
		}
		r := do(t, "POST", u+"/chat/completions", secret, chat("big"))
		switch r.status {
		case 200:
			ok++
		case 429:
			if r.err.Error.Type != "requests" {
				t.Errorf("429 for %q", r.err.Error.Type)
			}
		default:
			t.Fatalf("got %s", r)
		}
	}
	if ok != 5 {
		t.Errorf("%d requests served by two replicas, limit 5", ok)
	}

	// The key layout and expiries the package documentation promises.
	c := rs.client()
	ctx := context.Background()
	w := strconv.FormatInt(windowOf(e.clock.Now()), 10)
	base := "thon:gw:{user:a}:"
	for key, want := range map[string]string{base + "r:" + w: "5", base + "t:" + w: "150", base + "b": "150", base + "m:big:t:" + w: "150"} {
		if got, err := c.Get(ctx, key).Result(); err != nil || got != want {
			t.Errorf("%s = %q (%v), want %s", key, got, err, want)
		}
	}
	for _, key := range []string{base + "r:" + w, base + "t:" + w, base + "m:big:t:" + w} {
		if ttl := c.PTTL(ctx, key).Val(); ttl <= 0 || ttl > windowKeyTTL {
			t.Errorf("%s expires in %v, want (0, %v]", key, ttl, windowKeyTTL)
		}
	}
	if ttl := c.PTTL(ctx, base+"b").Val(); ttl != -1 {
		t.Errorf("budget key expires (%v); it must last the event", ttl)
	}
	if n := c.ZCard(ctx, base+"m:big:c").Val(); n != 0 {
		t.Errorf("%d leases left after every request ended", n)
	}
}

func TestRedisExactness(t *testing.T) {
	rs := startRedis(t)
	testExactness(t, rs.url())
}

// Concurrency slots are shared: a request held on one replica takes the
// slot on the other; a request that waits on one replica gets the slot
// freed by the other.
func TestRedisSharedConcurrency(t *testing.T) {
	rs := startRedis(t)
	opts := func(o *Options) {
		o.Redis = rs.url()
		o.Limits = Limits{Concurrency: 1}
	}
	e := newEnv(t, upstreamtest.Options{}, opts)
	_, url2 := e.addGateway(func(o *Options) { opts(o); o.QueueTimeout = time.Minute })
	secret := e.keys.add(Key{ID: "user:a"})
	e.up.Hold()
	first := make(chan result, 1)
	go func() { first <- e.chat(secret, "m") }()
	if err := e.up.WaitInFlight(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, e.chat(secret, "m"), 429, "rate_limit_exceeded") // replica 1: no queue
	second := make(chan result, 1)
	go func() { second <- do(t, "POST", url2+"/chat/completions", secret, chat("m")) }() // replica 2 waits
	e.up.Release(1)
	wantStatus(t, recv(t, first), 200, "")
	if err := e.up.WaitInFlight(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	e.up.Release(-1)
	wantStatus(t, recv(t, second), 200, "")
	if m := e.up.MaxInFlight(); m != 1 {
		t.Errorf("upstream saw %d at once, limit 1", m)
	}
}

// logCounter counts log records containing a phrase.
type logCounter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	phrase string
}

func (l *logCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logCounter) count(phrase string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), phrase)
}

// Redis stopped mid-test, then restarted: fail-open keeps serving on local
// counters (logging once), fail-closed answers 503, both recover.
func TestRedisOutage(t *testing.T) {
	for _, failOpen := range []bool{true, false} {
		t.Run("fail_open="+strconv.FormatBool(failOpen), func(t *testing.T) {
			rs := startRedis(t)
			logs := &logCounter{}
			e := newEnv(t, upstreamtest.Options{}, func(o *Options) {
				o.Redis = rs.url()
				o.FailOpen = failOpen
				o.Limits = Limits{RequestsPerMinute: 3, Concurrency: 2}
				o.Logger = slog.New(slog.NewTextHandler(logs, nil))
			})
			secret := e.keys.add(Key{ID: "user:a"})
			wantStatus(t, e.chat(secret, "m"), 200, "")
			c := rs.client()
			w := strconv.FormatInt(windowOf(e.clock.Now()), 10)
			reqKey := "thon:gw:{user:a}:r:" + w
			if c.Get(context.Background(), reqKey).Val() != "1" {
				t.Fatal("request not counted in Redis")
			}

			rs.stop()
			for i := range 5 {
				r := e.chat(secret, "m")
				if failOpen {
					// Local counters start empty: 3 served, then the
					// local limit applies.
					if i < 3 {
						wantStatus(t, r, 200, "")
					} else {
						wantStatus(t, r, 429, "rate_limit_exceeded")
					}
				} else {
					wantStatus(t, r, 503, "rate_limiter_unavailable")
				}
			}
			if n := logs.count("Redis unreachable"); n != 1 {
				t.Errorf("outage logged %d times, want once", n)
			}

			rs.start() // same port, empty (no persistence)
			eventually(t, "the gateway to use Redis again", func() bool { return e.gw.shared.up.Load() })
			if n := logs.count("Redis reachable again"); n != 1 {
				t.Errorf("recovery logged %d times", n)
			}
			e.clock.Add(time.Minute) // a fresh window, for both counters
			w = strconv.FormatInt(windowOf(e.clock.Now()), 10)
			wantStatus(t, e.chat(secret, "m"), 200, "")
			if got := c.Get(context.Background(), "thon:gw:{user:a}:r:"+w).Val(); got != "1" {
				t.Errorf("after recovery the request was not counted in Redis (%q)", got)
			}
			// Stop again: a second outage is logged again.
			rs.stop()
			e.chat(secret, "m")
			if n := logs.count("Redis unreachable"); n != 2 {
				t.Errorf("second outage logged %d times in all, want 2", n)
			}
			rs.start()
			eventually(t, "the second recovery", func() bool { return e.gw.shared.up.Load() })
		})
	}
}

// A Redis that is down when the gateway starts is an outage, not an error.
func TestRedisDownAtStart(t *testing.T) {
	rs := startRedis(t)
	rs.stop()
	e := newEnv(t, upstreamtest.Options{}, func(o *Options) { o.Redis = rs.url(); o.FailOpen = true })
	secret := e.keys.add(Key{ID: "user:a"})
	wantStatus(t, e.chat(secret, "m"), 200, "")
	rs.start()
	eventually(t, "Redis to be used once it answers", func() bool { return e.gw.shared.up.Load() })
}

func TestRedisMissingBinaryMessage(t *testing.T) {
	// The message tests print when redis-server is missing tells what to do.
	ft := &fatalRecorder{TB: t}
	func() {
		defer func() { recover() }()
		findRedisAt(ft, "/nonexistent/redis-server", "no-such-redis-server")
	}()
	if !strings.Contains(ft.msg, "apt-get install -y redis-server") {
		t.Errorf("message %q", ft.msg)
	}
}

type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = strings.TrimSpace(strings.ReplaceAll(format, "%", ""))
	panic("fatal")
}

func (f *fatalRecorder) Helper() {}

// Leases of running requests are renewed; the leases of a replica that
// died expire, so its slots come back. The lease clock is the test's, and
// the test renews when it means to: the renewal loop's first tick is a
// third of the lifetime (20 s) away.
func TestRedisLeases(t *testing.T) {
	rs := startRedis(t)
	const ttl = time.Minute
	clock := newFakeClock()
	alive, err := newRedisCountersTTL(rs.url(), "lease:", ttl, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer alive.close()
	p := plan{keyID: "k", conc: 2}
	var running ticket
	if v, err := alive.admit(context.Background(), &p, clock.Now(), &running); err != nil || !v.ok {
		t.Fatalf("admit: %+v %v", v, err)
	}
	dead, err := newRedisCountersTTL(rs.url(), "lease:", ttl, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := dead.admit(context.Background(), &p, clock.Now(), &ticket{}); err != nil || !v.ok {
		t.Fatalf("admit: %+v %v", v, err)
	}
	dead.close() // the replica dies with a request in flight
	if v, _ := alive.admit(context.Background(), &p, clock.Now(), &ticket{}); v.ok {
		t.Fatal("a third request got a slot while two are held")
	}
	// Half a lifetime on, the running request's lease is renewed (to 1.5
	// lifetimes); then, past the first lifetime, only the dead replica's
	// lease has expired.
	clock.Add(ttl / 2)
	alive.renew()
	clock.Add(ttl * 3 / 4)
	var next ticket
	if v, err := alive.admit(context.Background(), &p, clock.Now(), &next); err != nil || !v.ok {
		t.Fatalf("the dead replica's slot did not come back: %+v %v", v, err)
	}
	if v, _ := alive.admit(context.Background(), &p, clock.Now(), &ticket{}); v.ok {
		t.Fatal("the running request's lease expired although it was renewed")
	}
	alive.finish(context.Background(), &running, clock.Now(), 0, false)
	alive.finish(context.Background(), &next, clock.Now(), 0, false)
	if n := rs.client().ZCard(context.Background(), "lease:{k}:c").Val(); n != 0 {
		t.Errorf("%d leases left", n)
	}
}
