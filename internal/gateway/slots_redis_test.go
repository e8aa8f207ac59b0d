package gateway

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/gateway/upstreamtest"
)

// Two replicas on one Redis share the model's slots: together they never
// send more than its slots, and every request is served.
func TestRedisSlotsBoundAcrossReplicas(t *testing.T) {
	rs := startRedis(t)
	opts := func(o *Options) {
		o.Redis = rs.url()
		o.UpstreamSlots = 3
	}
	e := newEnv(t, upstreamtest.Options{Delay: time.Millisecond}, opts)
	g2, url2 := e.addGateway(opts)
	urls := []string{e.url, url2}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 8 {
		secret := e.keys.add(Key{ID: "user:u" + strconv.Itoa(i), Group: "g"})
		for j := range 2 {
			wg.Go(func() {
				for range 10 {
					if r := do(t, "POST", urls[(i+j)%2]+"/chat/completions", secret, chat("m")); r.status != 200 {
						failed.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d requests failed", failed.Load())
	}
	if m := e.up.MaxInFlight(); m > 3 {
		t.Errorf("the upstream saw %d requests at once from two replicas; the model has 3 slots", m)
	}
	t.Logf("at most %d at once at the upstream", e.up.MaxInFlight())
	c := rs.client()
	ctx := context.Background()
	if n := c.ZCard(ctx, "thon:gw:{slots:m}:l").Val(); n != 0 {
		t.Errorf("%d slot leases left in Redis", n)
	}
	eventually(t, "the replicas to withdraw their candidates", func() bool { return c.HLen(ctx, "thon:gw:{slots:m}:c").Val() == 0 })
	for _, g := range []*Gateway{e.gw, g2} {
		if st := g.QueueStats(); len(st) != 1 || st[0].Busy != 0 || st[0].Waiting != 0 {
			t.Errorf("queue stats: %+v", st)
		}
	}
}

// A slot freed on one replica goes to the other replica's waiter when that
// one's key used the model less.
func TestRedisSlotsFairAcrossReplicas(t *testing.T) {
	rs := startRedis(t)
	opts := func(o *Options) {
		o.Redis = rs.url()
		o.UpstreamSlots = 1
	}
	e := newEnv(t, upstreamtest.Options{PromptTokens: 10, CompletionTokens: 100000}, opts)
	g2, url2 := e.addGateway(opts)
	heavy := e.keys.add(Key{ID: "user:heavy", Group: "g"})
	light := e.keys.add(Key{ID: "user:light", Group: "g"})
	x := e.keys.add(Key{ID: "user:x", Group: "g"})
	wantStatus(t, do(t, "POST", e.url+"/chat/completions", heavy, ask("heavy", 1000)), 200, "")

	e.up.Hold()
	results := make(chan result, 3)
	go func() { results <- do(t, "POST", e.url+"/chat/completions", x, ask("x", 5)) }()
	if err := e.up.WaitInFlight(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	go func() { results <- do(t, "POST", e.url+"/chat/completions", heavy, ask("heavy", 5)) }()
	eventually(t, "heavy to wait on replica 1", func() bool { return waiting(e.gw, "m") == 1 })
	go func() { results <- do(t, "POST", url2+"/chat/completions", light, ask("light", 5)) }()
	eventually(t, "light to wait on replica 2", func() bool { return waiting(g2, "m") == 1 })
	// Replica 1 frees the slot; replica 2's waiter comes first.
	for range 3 {
		e.up.Release(1)
		wantStatus(t, recv(t, results), 200, "")
	}
	got := senders(e.up)
	if len(got) != 4 || got[2] != "light" || got[3] != "heavy" {
		t.Fatalf("upstream order %v, want light before heavy", got)
	}
	if m := e.up.MaxInFlight(); m != 1 {
		t.Errorf("%d at once, 1 slot", m)
	}
}

// Redis stops while requests queue. Failing open, each replica serves its
// queue from its own count of the slots (so the model may get up to
// replicas × slots until Redis returns); failing closed, the waiting
// requests get 503 at once and are charged nothing. Both share the slots
// again once Redis is back.
func TestRedisDownWhileRequestsQueue(t *testing.T) {
	for _, failOpen := range []bool{true, false} {
		t.Run("fail_open="+strconv.FormatBool(failOpen), func(t *testing.T) {
			rs := startRedis(t)
			opts := func(o *Options) {
				o.Redis = rs.url()
				o.FailOpen = failOpen
				o.UpstreamSlots = 1
			}
			e := newEnv(t, upstreamtest.Options{}, opts)
			g2, url2 := e.addGateway(opts)
			a := e.keys.add(Key{ID: "user:a", Group: "g"})
			b := e.keys.add(Key{ID: "user:b", Group: "g"})
			c := e.keys.add(Key{ID: "user:c", Group: "g"})
			e.up.Hold()
			results := make(chan result, 3)
			go func() { results <- do(t, "POST", e.url+"/chat/completions", a, ask("a", 5)) }()
			if err := e.up.WaitInFlight(waitCtx(t), 1); err != nil {
				t.Fatal(err)
			}
			go func() { results <- do(t, "POST", url2+"/chat/completions", b, ask("b", 5)) }()
			eventually(t, "b to wait on replica 2", func() bool { return waiting(g2, "m") == 1 })
			go func() { results <- do(t, "POST", e.url+"/chat/completions", c, ask("c", 5)) }()
			eventually(t, "c to wait on replica 1", func() bool { return waiting(e.gw, "m") == 1 })

			rs.stop()
			if failOpen {
				// Replica 2 holds nothing: it serves b; replica 1 still
				// holds a's slot, so c waits for it.
				if err := e.up.WaitInFlight(waitCtx(t), 2); err != nil {
					t.Fatal(err)
				}
				if waiting(e.gw, "m") != 1 {
					t.Errorf("c does not wait on replica 1")
				}
				e.up.Release(-1)
				for range 3 {
					wantStatus(t, recv(t, results), 200, "")
				}
				if m := e.up.MaxInFlight(); m > 2 {
					t.Errorf("%d at once during the outage: at most replicas × slots = 2", m)
				}
			} else {
				for range 2 {
					wantStatus(t, recv(t, results), 503, "rate_limiter_unavailable")
				}
				if waiting(e.gw, "m")+waiting(g2, "m") != 0 {
					t.Errorf("requests still wait")
				}
				e.up.Release(-1)
				wantStatus(t, recv(t, results), 200, "")
				e.up.Hold()
			}
			rs.start()
			eventually(t, "Redis to be used again", func() bool { return e.gw.shared.up.Load() && g2.shared.up.Load() })
			// Shared again: one slot for both replicas.
			e.up.Hold()
			go func() { results <- do(t, "POST", e.url+"/chat/completions", a, ask("a2", 5)) }()
			if err := e.up.WaitInFlight(waitCtx(t), 1); err != nil {
				t.Fatal(err)
			}
			go func() { results <- do(t, "POST", url2+"/chat/completions", b, ask("b2", 5)) }()
			eventually(t, "b2 to wait on replica 2", func() bool { return waiting(g2, "m") == 1 })
			time.Sleep(3 * redisSlotPoll) // b2 keeps waiting: the slot is a's
			if n := e.up.InFlight(); n != 1 {
				t.Fatalf("%d at the upstream after Redis came back, 1 slot", n)
			}
			e.up.Release(-1)
			wantStatus(t, recv(t, results), 200, "")
			wantStatus(t, recv(t, results), 200, "")
			e.gw.Close()
			g2.Close()
			if !failOpen {
				if u := e.sink.sum("user:c"); u.Requests != 0 || u.PromptTokens != 0 || u.CompletionTokens != 0 {
					t.Errorf("c was charged for a request refused while Redis was down: %+v", u)
				}
			}
		})
	}
}
