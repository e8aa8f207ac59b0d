package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/thon-dev/thon/internal/gateway/upstreamtest"
)

// ask is a chat request that names its sender in its message (the
// upstream sees it) and asks for n tokens.
func ask(who string, n int) map[string]any {
	return map[string]any{"model": "m", "max_tokens": n, "messages": []map[string]string{{"role": "user", "content": who}}}
}

// senders lists who sent the upstream's requests, in the order it got them.
func senders(up *upstreamtest.Server) []string {
	var out []string
	for _, r := range up.Requests() {
		var b struct {
			Messages []struct{ Content string }
		}
		json.Unmarshal(r.Body, &b)
		if len(b.Messages) > 0 {
			out = append(out, b.Messages[0].Content)
		}
	}
	return out
}

// waiting is how many requests wait for model's slots on g.
func waiting(g *Gateway, model string) int {
	for _, s := range g.QueueStats() {
		if s.Model == model {
			return s.Waiting
		}
	}
	return 0
}

// The upstream never gets more requests at once than the model's slots,
// however many clients push, and every request is served.
func TestSlotsBoundUnderLoad(t *testing.T) {
	e := newEnv(t, upstreamtest.Options{Delay: time.Millisecond}, func(o *Options) { o.UpstreamSlots = 3 })
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 10 {
		secret := e.keys.add(Key{ID: "user:u" + string(rune('a'+i)), Group: "g"})
		for range 3 {
			wg.Go(func() {
				for range 15 {
					if r := e.chat(secret, "m"); r.status != 200 {
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
	if m := e.up.MaxInFlight(); m != 3 {
		t.Errorf("the upstream saw %d requests at once; the model has 3 slots", m)
	}
	st := e.gw.QueueStats()
	if len(st) != 1 || st[0].Slots != 3 || st[0].Busy != 0 || st[0].Waiting != 0 || st[0].Recent != 450 {
		t.Errorf("queue stats after the load: %+v", st)
	}
	// A model with no slot limit is not queued.
	e.gw.SetSlots(map[string]int{"m": 0, "big": 2})
	if e.gw.Slots("m") != 3 || e.gw.Slots("big") != 2 || e.gw.Slots("other") != 3 {
		t.Errorf("slots: m %d, big %d, other %d", e.gw.Slots("m"), e.gw.Slots("big"), e.gw.Slots("other"))
	}
}

// The next free slot goes to the key that used the model least: never
// used before it first (in arrival order), then by tokens used recently;
// not to whoever asked first.
func TestSlotsFairOrder(t *testing.T) {
	e := newEnv(t, upstreamtest.Options{PromptTokens: 10, CompletionTokens: 100000}, func(o *Options) {
		o.UpstreamSlots = 1
	})
	secrets := map[string]string{}
	for _, who := range []string{"heavy", "light", "new1", "new2", "x"} {
		secrets[who] = e.keys.add(Key{ID: "user:" + who, Group: "g"})
	}
	send := func(who string, n int) result {
		return do(t, "POST", e.url+"/chat/completions", secrets[who], ask(who, n))
	}
	wantStatus(t, send("heavy", 1000), 200, "")
	wantStatus(t, send("light", 10), 200, "")

	e.up.Hold()
	results := make(chan result, 8)
	go func() { results <- send("x", 500) }()
	if err := e.up.WaitInFlight(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	// They arrive in this order while x holds the only slot.
	for i, who := range []string{"heavy", "light", "new1", "x", "new2"} {
		go func() { results <- send(who, 5) }()
		eventually(t, who+" to wait", func() bool { return waiting(e.gw, "m") == i+1 })
	}
	for range 6 {
		e.up.Release(1)
		wantStatus(t, recv(t, results), 200, "")
	}
	// x's second request comes after light's: by then x has used 500.
	want := []string{"heavy", "light", "x", "new1", "new2", "light", "x", "heavy"}
	got := senders(e.up)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("upstream order %v, want %v", got, want)
	}
}

// A key with a request holding a slot waits behind keys with none, even
// ones that used the model more.
func TestSlotsFewestInFlightFirst(t *testing.T) {
	e := newEnv(t, upstreamtest.Options{PromptTokens: 10, CompletionTokens: 100000}, func(o *Options) {
		o.UpstreamSlots = 2
	})
	y := e.keys.add(Key{ID: "user:y", Group: "g"})
	z := e.keys.add(Key{ID: "user:z", Group: "g"})
	w := e.keys.add(Key{ID: "user:w", Group: "g"})
	wantStatus(t, do(t, "POST", e.url+"/chat/completions", z, ask("z0", 1000)), 200, "") // z used a lot

	e.up.PauseStreams() // y's stream holds a slot until Resume
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := ask("y1", 5)
	resp := streamRaw(t, ctx, e.url, y, body)
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	e.up.Hold()
	results := make(chan result, 4)
	go func() { results <- do(t, "POST", e.url+"/chat/completions", w, ask("w1", 5)) }()
	if err := e.up.WaitInFlight(waitCtx(t), 2); err != nil {
		t.Fatal(err)
	}
	go func() { results <- do(t, "POST", e.url+"/chat/completions", y, ask("y2", 5)) }()
	eventually(t, "y2 to wait", func() bool { return waiting(e.gw, "m") == 1 })
	go func() { results <- do(t, "POST", e.url+"/chat/completions", z, ask("z1", 5)) }()
	eventually(t, "z1 to wait", func() bool { return waiting(e.gw, "m") == 2 })
	e.up.Release(1) // w1 ends: its slot goes to z1, whose key holds none
	wantStatus(t, recv(t, results), 200, "")
	if err := e.up.WaitInFlight(waitCtx(t), 2); err != nil {
		t.Fatal(err)
	}
	if got := senders(e.up); got[len(got)-1] != "z1" {
		t.Fatalf("upstream order %v: z1 must come before y2 (y holds a slot)", got)
	}
	e.up.Release(-1)
	e.up.Resume()
	wantStatus(t, recv(t, results), 200, "")
	wantStatus(t, recv(t, results), 200, "")
}

// A request that waits longer than the queue timeout gets a 503 that says
// it waited for the model, not for a quota, with Retry-After; nothing is
// charged and streaming clients get no byte before that.
func TestSlotsQueueTimeout(t *testing.T) {
	e := newEnv(t, upstreamtest.Options{}, func(o *Options) {
		o.UpstreamSlots = 1
		o.ModelQueueTimeout = 50 * time.Millisecond
		o.Limits = Limits{RequestsPerMinute: 10}
	})
	a := e.keys.add(Key{ID: "user:a", Group: "g"})
	b := e.keys.add(Key{ID: "user:b", Group: "g"})
	e.up.Hold()
	defer e.up.Release(-1)
	go e.chat(a, "m")
	if err := e.up.WaitInFlight(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	for _, stream := range []bool{false, true} {
		body := chat("m")
		body["stream"] = stream
		r := do(t, "POST", e.url+"/chat/completions", b, body)
		wantStatus(t, r, 503, "model_queue_timeout")
		if r.err.Error.Type != "server_error" || r.header.Get("Retry-After") == "" || r.header.Get("Content-Type") != "application/json" ||
			!strings.Contains(r.err.Error.Message, "queue for model m") || !strings.Contains(r.err.Error.Message, "not your quota") {
			t.Errorf("timeout answer: %s %v", r, r.header)
		}
	}
	if v := e.gw.used(t, "user:b", ""); v.requests != 0 || v.tokens != 0 {
		t.Errorf("the timed-out requests were counted: %+v", v)
	}
	if n := len(e.up.Requests()); n != 1 {
		t.Errorf("the upstream saw %d requests", n)
	}
	st := e.gw.QueueStats()[0]
	if st.Waiting != 0 || st.TimedOut != 2 || len(st.Groups) != 1 || st.Groups[0].TimedOut != 2 {
		t.Errorf("queue stats: %+v", st)
	}
}

// A client that disconnects while queued leaves the queue at once and is
// charged nothing; the queue's length is back to 0.
func TestSlotsClientLeavesQueue(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, upstreamtest.Options{}, func(o *Options) {
		o.UpstreamSlots = 1
		o.Limits = Limits{RequestsPerMinute: 10, Concurrency: 1}
		o.Registerer = reg
	})
	a := e.keys.add(Key{ID: "user:a", Group: "alpha"})
	b := e.keys.add(Key{ID: "user:b", Group: "beta"})
	e.up.Hold()
	first := make(chan result, 1)
	go func() { first <- e.chat(a, "m") }()
	if err := e.up.WaitInFlight(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	left := make(chan error, 1)
	go func() {
		body := chat("m")
		body["stream"] = true
		j, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, "POST", e.url+"/chat/completions", strings.NewReader(string(j)))
		req.Header.Set("Authorization", "Bearer "+b)
		resp, err := httpClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		left <- err
	}()
	eventually(t, "b to wait", func() bool { return waiting(e.gw, "m") == 1 })
	if v := gauge(t, reg, "thon_gateway_model_queue_length", "beta"); v != 1 {
		t.Errorf("queue length of beta = %v, want 1", v)
	}
	cancel()
	if err := <-left; err == nil {
		t.Fatal("the client got an answer before leaving")
	}
	eventually(t, "b to leave the queue", func() bool { return waiting(e.gw, "m") == 0 })
	if v := gauge(t, reg, "thon_gateway_model_queue_length", "beta"); v != 0 {
		t.Errorf("queue length of beta = %v after b left, want 0", v)
	}
	// b's key is free again and charged nothing: a new request of b's is
	// admitted (concurrency 1) once the slot frees.
	e.up.Release(-1)
	wantStatus(t, recv(t, first), 200, "")
	wantStatus(t, e.chat(b, "m"), 200, "")
	if v := e.gw.used(t, "user:b", ""); v.requests != 1 {
		t.Errorf("b's requests counted: %d, want 1 (the one served)", v.requests)
	}
	e.gw.Close()
	if u := e.sink.sum("user:b"); u.Requests != 1 || u.PromptTokens != 10 || u.Rejections != 0 {
		t.Errorf("b's usage: %+v", u)
	}
	if n := histCount(t, reg, "thon_gateway_model_queue_wait_seconds", "beta"); n != 2 {
		t.Errorf("beta's waits observed: %d, want 2", n)
	}
	if len(e.up.Requests()) != 2 {
		t.Errorf("the upstream saw %d requests, want 2", len(e.up.Requests()))
	}
}

func metricFamily(t *testing.T, reg *prometheus.Registry, name string) *dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	return nil
}

// gauge reads a queue gauge of model m for a group.
func gauge(t *testing.T, reg *prometheus.Registry, name, group string) float64 {
	t.Helper()
	if mf := metricFamily(t, reg, name); mf != nil {
		for _, m := range mf.Metric {
			if hasLabel(m, "group", group) && hasLabel(m, "model", "m") {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func histCount(t *testing.T, reg *prometheus.Registry, name, group string) uint64 {
	t.Helper()
	if mf := metricFamily(t, reg, name); mf != nil {
		for _, m := range mf.Metric {
			if hasLabel(m, "group", group) && hasLabel(m, "model", "m") {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

// Slots from the plan: a model's slots may change while requests wait.
func TestSetSlotsWhileWaiting(t *testing.T) {
	e := newEnv(t, upstreamtest.Options{})
	e.gw.SetSlots(map[string]int{"m": 1})
	a := e.keys.add(Key{ID: "user:a", Group: "g"})
	e.up.Hold()
	results := make(chan result, 3)
	for range 3 {
		go func() { results <- e.chat(a, "m") }()
	}
	eventually(t, "two to wait", func() bool { return waiting(e.gw, "m") == 2 })
	// The one admitted may still be on its way to the upstream.
	if err := e.up.WaitInFlight(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	if n := e.up.InFlight(); n != 1 {
		t.Fatalf("%d at the upstream with one slot", n)
	}
	e.gw.SetSlots(map[string]int{"m": 3})
	if err := e.up.WaitInFlight(waitCtx(t), 3); err != nil {
		t.Fatal(err)
	}
	e.up.Release(-1)
	for range 3 {
		wantStatus(t, recv(t, results), 200, "")
	}
	// No slots: no limit at all.
	e.gw.SetSlots(nil)
	if e.gw.Slots("m") != 0 {
		t.Fatalf("slots %d", e.gw.Slots("m"))
	}
	e.up.Hold()
	defer e.up.Release(-1)
	for range 3 {
		go e.chat(a, "m")
	}
	if err := e.up.WaitInFlight(waitCtx(t), 3); err != nil {
		t.Fatal(err)
	}
}

// A share of the slots is kept for short requests (few tokens, or
// embeddings): long ones never take the last of them, so a quick question
// does not wait for the agents.
func TestSlotsKeptForShortRequests(t *testing.T) {
	for _, withRedis := range []bool{false, true} {
		t.Run("redis="+strconv.FormatBool(withRedis), func(t *testing.T) {
			url := ""
			if withRedis {
				url = startRedis(t).url()
			}
			opts := func(o *Options) {
				o.UpstreamSlots = 4
				o.ShortMaxTokens = 64
				o.ShortShare = 0.25 // 1 of 4
				o.Redis = url
			}
			e := newEnv(t, upstreamtest.Options{}, opts)
			gws := []*Gateway{e.gw}
			urls := []string{e.url}
			if withRedis {
				g2, u2 := e.addGateway(opts)
				gws, urls = append(gws, g2), append(urls, u2)
			}
			agent := e.keys.add(Key{ID: "user:agent", Group: "g"})
			person := e.keys.add(Key{ID: "user:person", Group: "g"})
			e.up.Hold()
			defer e.up.Release(-1)
			results := make(chan result, 8)
			for i := range 4 {
				go func() { results <- do(t, "POST", urls[i%len(urls)]+"/chat/completions", agent, ask("long", 1000)) }()
			}
			if err := e.up.WaitInFlight(waitCtx(t), 3); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the fourth long request to wait", func() bool {
				n := 0
				for _, g := range gws {
					n += waiting(g, "m")
				}
				return n == 1
			})
			if n := e.up.InFlight(); n != 3 {
				t.Fatalf("%d long requests at the upstream; 1 of 4 slots is kept for short ones", n)
			}
			// A short request (on the other replica, with Redis) takes the
			// kept slot at once, however much its key asked for before.
			go func() { results <- do(t, "POST", urls[len(urls)-1]+"/chat/completions", person, ask("short", 64)) }()
			if err := e.up.WaitInFlight(waitCtx(t), 4); err != nil {
				t.Fatal(err)
			}
			// Embeddings are short too, but every slot is busy now.
			go func() {
				results <- do(t, "POST", urls[0]+"/embeddings", person, map[string]any{"model": "m", "input": "x"})
			}()
			eventually(t, "the embeddings request to wait", func() bool {
				n := 0
				for _, g := range gws {
					n += waiting(g, "m")
				}
				return n == 2
			})
			e.up.Release(-1)
			for range 6 {
				wantStatus(t, recv(t, results), 200, "")
			}
			if m := e.up.MaxInFlight(); m != 4 {
				t.Errorf("at most %d at once, 4 slots", m)
			}
		})
	}
	if reservedSlots(4, 0.125) != 1 || reservedSlots(2, 0.125) != 0 || reservedSlots(64, 0.125) != 8 || reservedSlots(1, 0.5) != 0 || reservedSlots(8, 0) != 0 {
		t.Errorf("reserved: 4→%d 2→%d 64→%d 1→%d", reservedSlots(4, 0.125), reservedSlots(2, 0.125), reservedSlots(64, 0.125), reservedSlots(1, 0.5))
	}
}
