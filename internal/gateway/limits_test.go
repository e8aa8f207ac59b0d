package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/gateway/upstreamtest"
)

func wantStatus(t *testing.T, r result, status int, code string) {
	t.Helper()
	if r.status != status || (code != "" && r.err.Error.Code != code) {
		t.Fatalf("got %s; want %d %s", r, status, code)
	}
}

func TestRequestsPerMinute(t *testing.T) {
	e := newEnv(t, upstreamtest.Options{}, func(o *Options) { o.Limits = Limits{RequestsPerMinute: 3} })
	secret := e.keys.add(Key{ID: "user:a"})
	for i := range 3 {
		r := e.chat(secret, "m")
		wantStatus(t, r, 200, "")
		if got := r.header.Get("X-Ratelimit-Remaining-Requests"); got != strconv.Itoa(2-i) {
			t.Errorf("request %d: remaining = %q", i, got)
		}
		if r.header.Get("X-Ratelimit-Limit-Requests") != "3" || r.header.Get("X-Ratelimit-Reset-Requests") != "30s" {
			t.Errorf("headers: %v", r.header)
		}
	}
	r := e.chat(secret, "m")
	wantStatus(t, r, 429, "rate_limit_exceeded")
	if r.err.Error.Type != "requests" || r.header.Get("Retry-After") != "30" || r.header.Get("X-Ratelimit-Remaining-Requests") != "0" {
		t.Errorf("429: type %q, Retry-After %q, headers %v", r.err.Error.Type, r.header.Get("Retry-After"), r.header)
	}
	if n := len(e.up.Requests()); n != 3 {
		t.Errorf("upstream saw %d requests, want 3", n)
	}
	e.clock.Add(30 * time.Second) // next window
	wantStatus(t, e.chat(secret, "m"), 200, "")

	// Another key has its own counters.
	other := e.keys.add(Key{ID: "user:b"})
	wantStatus(t, e.chat(other, "m"), 200, "")
	e.gw.Close()
	if u := e.sink.sum("user:a"); u.Requests != 4 || u.Rejections != 1 {
		t.Errorf("usage = %+v, want 4 requests, 1 rejection", u)
	}
}

// Tokens per window for each token kind: admission looks at what was
// charged before, so the request that crosses the limit is served.
func TestTokensPerMinuteKinds(t *testing.T) {
	for _, tc := range []struct {
		kind string
		ok   int // requests served before the first 429 (10 prompt + 20 completion each, limit 50)
	}{{TokensTotal, 2}, {TokensPrompt, 5}, {TokensCompletion, 3}, {"", 2}} {
		t.Run("kind="+tc.kind, func(t *testing.T) {
			e := newEnv(t, upstreamtest.Options{PromptTokens: 10, CompletionTokens: 20}, func(o *Options) {
				o.Limits = Limits{TokensPerMinute: 50, TokenKind: tc.kind}
			})
			secret := e.keys.add(Key{ID: "user:a"})
			for range tc.ok {
				wantStatus(t, e.chat(secret, "m"), 200, "")
			}
			r := e.chat(secret, "m")
			wantStatus(t, r, 429, "rate_limit_exceeded")
			if r.err.Error.Type != "tokens" || r.header.Get("X-Ratelimit-Remaining-Tokens") != "0" || r.header.Get("X-Ratelimit-Limit-Tokens") != "50" {
				t.Errorf("429 %s, headers %v", r, r.header)
			}
			e.clock.Add(time.Minute)
			wantStatus(t, e.chat(secret, "m"), 200, "")
		})
	}
}

func TestConcurrencyLimit(t *testing.T) {
	e := newEnv(t, upstreamtest.Options{}, func(o *Options) { o.Limits = Limits{Concurrency: 2} })
	secret := e.keys.add(Key{ID: "user:a"})
	e.up.Hold()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { wantStatus(t, e.chat(secret, "m"), 200, "") })
	}
	if err := e.up.WaitInFlight(waitCtx(t), 2); err != nil {
		t.Fatal(err)
	}
	r := e.chat(secret, "m")
	wantStatus(t, r, 429, "rate_limit_exceeded")
	if r.err.Error.Type != "concurrent_requests" || r.header.Get("Retry-After") != "1" {
		t.Errorf("429: %s %v", r, r.header)
	}
	e.up.Release(-1)
	wg.Wait()
	wantStatus(t, e.chat(secret, "m"), 200, "")
	if m := e.up.MaxInFlight(); m != 2 {
		t.Errorf("upstream saw %d at once", m)
	}
}

func TestBudget(t *testing.T) {
	e := newEnv(t, upstreamtest.Options{PromptTokens: 10, CompletionTokens: 20}, func(o *Options) {
		o.Limits = Limits{BudgetTokens: 100}
	})
	secret := e.keys.add(Key{ID: "user:a"})
	for range 4 { // 0, 30, 60, 90 < 100
		r := e.chat(secret, "m")
		wantStatus(t, r, 200, "")
	}
	r := e.chat(secret, "m")
	wantStatus(t, r, 429, "budget_exhausted")
	if r.err.Error.Type != "insufficient_quota" || r.header.Get("X-Should-Retry") != "false" || r.header.Get(hBudget) != "0" {
		t.Errorf("budget 429: %s %v", r, r.header)
	}
	e.clock.Add(time.Hour) // a budget does not renew
	wantStatus(t, e.chat(secret, "m"), 429, "budget_exhausted")

	// A budget already spent according to the store is honoured after a
	// restart (a new gateway with empty counters).
	spent := e.keys.add(Key{ID: "user:b", BudgetUsed: 100})
	wantStatus(t, e.chat(spent, "m"), 429, "budget_exhausted")
	half := e.keys.add(Key{ID: "user:c", BudgetUsed: 50})
	r = e.chat(half, "m")
	wantStatus(t, r, 200, "")
	if r.header.Get(hBudget) != "50" {
		t.Errorf("budget remaining = %q, want 50", r.header.Get(hBudget))
	}
}

// Per-group keys: every limit scales with the group's size.
func TestGroupScale(t *testing.T) {
	e := newEnv(t, upstreamtest.Options{}, func(o *Options) { o.Limits = Limits{RequestsPerMinute: 2} })
	secret := e.keys.add(Key{ID: "group:alpha", Group: "alpha", Scale: 3})
	for range 6 {
		wantStatus(t, e.chat(secret, "m"), 200, "")
	}
	r := e.chat(secret, "m")
	wantStatus(t, r, 429, "rate_limit_exceeded")
	if r.header.Get("X-Ratelimit-Limit-Requests") != "6" {
		t.Errorf("limit header %q, want 6", r.header.Get("X-Ratelimit-Limit-Requests"))
	}
}

func TestModelLimits(t *testing.T) {
	e := newEnv(t, upstreamtest.Options{PromptTokens: 10, CompletionTokens: 20}, func(o *Options) {
		o.Limits = Limits{Concurrency: 5, TokensPerMinute: 1000}
		o.Models = []ModelLimit{{Model: "big", Concurrency: 1, TokensPerMinute: 40}}
	})
	secret := e.keys.add(Key{ID: "user:a"})

	// Model concurrency: one "big" at a time; "small" still passes.
	e.up.Hold()
	done := make(chan result)
	go func() { done <- e.chat(secret, "big") }()
	if err := e.up.WaitInFlight(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	r := e.chat(secret, "big")
	wantStatus(t, r, 429, "rate_limit_exceeded")
	if r.err.Error.Type != "concurrent_requests" {
		t.Errorf("got %s", r)
	}
	go func() { done <- e.chat(secret, "small") }()
	if err := e.up.WaitInFlight(waitCtx(t), 2); err != nil {
		t.Fatal(err)
	}
	e.up.Release(-1)
	wantStatus(t, recv(t, done), 200, "")
	wantStatus(t, recv(t, done), 200, "")

	// Model tokens: 30 charged to big; 30 < 40 admits one more, then 60 ≥ 40.
	r = e.chat(secret, "big")
	wantStatus(t, r, 200, "")
	if r.header.Get("X-Ratelimit-Limit-Tokens") != "40" || r.header.Get("X-Ratelimit-Remaining-Tokens") != "10" {
		t.Errorf("tokens headers show the tighter model limit: %v", r.header)
	}
	r = e.chat(secret, "big")
	wantStatus(t, r, 429, "rate_limit_exceeded")
	if r.err.Error.Type != "tokens" {
		t.Errorf("got %s", r)
	}
	wantStatus(t, e.chat(secret, "small"), 200, "")
	// The key-wide counter includes every model: 4 served × 30.
	if v := e.gw.used(t, "user:a", "big"); v.tokens != 120 || v.mtokens != 60 {
		t.Errorf("key tokens %d, model tokens %d; want 120, 60", v.tokens, v.mtokens)
	}
}

// When the key's slot is taken, waiting requests are admitted by their
// model's priority, not by arrival; the same when the models' upstream
// slots are limited too (the key's line comes first).
func TestPriorityQueue(t *testing.T) {
	for _, slots := range []int{0, 1} {
		t.Run("upstream_slots="+strconv.Itoa(slots), func(t *testing.T) { testPriorityQueue(t, slots) })
	}
}

func testPriorityQueue(t *testing.T, slots int) {
	e := newEnv(t, upstreamtest.Options{}, func(o *Options) {
		o.Limits = Limits{Concurrency: 1}
		o.Models = []ModelLimit{{Model: "chat", Priority: 5}, {Model: "autocomplete", Priority: 1}}
		o.QueueTimeout = time.Minute
		o.UpstreamSlots = slots
	})
	secret := e.keys.add(Key{ID: "user:a"})
	e.up.Hold()
	results := make(chan result, 4)
	go func() { results <- e.chat(secret, "first") }()
	if err := e.up.WaitInFlight(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	gt := e.gw.gateFor("user:a")
	waiting := func(n int) func() bool {
		return func() bool { gt.mu.Lock(); defer gt.mu.Unlock(); return len(gt.waiters) == n }
	}
	// Arrival order: autocomplete, other (priority 0), chat.
	go func() { results <- e.chat(secret, "autocomplete") }()
	eventually(t, "autocomplete to wait", waiting(1))
	go func() { results <- e.chat(secret, "other") }()
	eventually(t, "other to wait", waiting(2))
	go func() { results <- e.chat(secret, "chat") }()
	eventually(t, "chat to wait", waiting(3))

	for i := range 4 {
		e.up.Release(1)
		wantStatus(t, recv(t, results), 200, "")
		if i < 3 {
			if err := e.up.WaitInFlight(waitCtx(t), 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	var order []string
	for _, r := range e.up.Requests() {
		order = append(order, r.Model)
	}
	want := []string{"first", "chat", "autocomplete", "other"}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("upstream order %v, want %v", order, want)
		}
	}
}

// A waiter gives up after QueueTimeout with a 429, and a full line refuses
// at once.
func TestQueueTimeoutAndLength(t *testing.T) {
	e := newEnv(t, upstreamtest.Options{}, func(o *Options) {
		o.Limits = Limits{Concurrency: 1}
		o.QueueTimeout = 50 * time.Millisecond
		o.QueueLength = 1
	})
	secret := e.keys.add(Key{ID: "user:a"})
	e.up.Hold()
	defer e.up.Release(-1)
	go e.chat(secret, "m")
	if err := e.up.WaitInFlight(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, e.chat(secret, "m"), 429, "rate_limit_exceeded") // waited, timed out
	gt := e.gw.gateFor("user:a")
	go e.chat(secret, "m")
	eventually(t, "a waiter", func() bool { gt.mu.Lock(); defer gt.mu.Unlock(); return len(gt.waiters) == 1 })
	r := e.chat(secret, "m") // the line is full
	wantStatus(t, r, 429, "rate_limit_exceeded")
	if r.err.Error.Type != "concurrent_requests" {
		t.Errorf("got %s", r)
	}
}

func TestAllowedModels(t *testing.T) {
	e := newEnv(t, upstreamtest.Options{Models: []string{"a", "b", "c"}}, func(o *Options) { o.AllowedModels = []string{"a", "c"} })
	secret := e.keys.add(Key{ID: "user:a"})
	wantStatus(t, e.chat(secret, "a"), 200, "")
	r := e.chat(secret, "b")
	wantStatus(t, r, 403, "model_not_allowed")
	r = do(t, "GET", e.url+"/models", secret, nil)
	wantStatus(t, r, 200, "")
	var list struct {
		Object string
		Data   []struct{ ID string }
	}
	if err := json.Unmarshal(r.body, &list); err != nil || list.Object != "list" || len(list.Data) != 2 || list.Data[0].ID != "a" || list.Data[1].ID != "c" {
		t.Errorf("models: %s", r.body)
	}
	if n := len(e.up.Requests()); n != 1 {
		t.Errorf("upstream saw %d inference requests", n)
	}
}

// Exactness: with N tokens per window and many concurrent clients, what is
// admitted never exceeds N plus one request per concurrency slot.
func TestExactnessMemory(t *testing.T) {
	testExactness(t, "")
}

const (
	exactN       = 2000
	exactConc    = 4
	exactMaxCost = 100
)

func testExactness(t *testing.T, redisURL string) {
	var served atomic.Int64
	// A little latency upstream, so requests overlap and every slot is used.
	uo := upstreamtest.Options{Delay: 2 * time.Millisecond, Tokens: func(r upstreamtest.Request) (int, int) {
		// Costs vary per request, up to exactMaxCost.
		c := 1 + rand.IntN(exactMaxCost)
		served.Add(int64(c))
		return c / 2, c - c/2
	}}
	opts := func(o *Options) {
		o.Limits = Limits{TokensPerMinute: exactN, Concurrency: exactConc}
		o.Redis = redisURL
		o.RedisPrefix = "exact:" + t.Name() + ":"
		o.QueueTimeout = time.Minute
	}
	e := newEnv(t, uo, opts)
	urls := []string{e.url}
	if redisURL != "" { // a second replica on the same Redis
		_, u2 := e.addGateway(opts)
		urls = append(urls, u2)
	}
	secret := e.keys.add(Key{ID: "group:x", Scale: 1})
	var wg sync.WaitGroup
	var other atomic.Int64
	for i := range 32 {
		wg.Go(func() {
			for {
				r := do(t, "POST", urls[i%len(urls)]+"/chat/completions", secret, chat("m"))
				switch {
				case r.status == 200:
				case r.status == 429 && r.err.Error.Type == "tokens":
					return
				case r.status == 429 && r.err.Error.Type == "concurrent_requests":
				default:
					other.Add(1)
					return
				}
			}
		})
	}
	wg.Wait()
	if other.Load() > 0 {
		t.Fatalf("%d unexpected answers", other.Load())
	}
	got := served.Load()
	t.Logf("limit %d, concurrency %d, max cost %d: served %d tokens in %d requests (max %d in flight upstream)",
		exactN, exactConc, exactMaxCost, got, len(e.up.Requests()), e.up.MaxInFlight())
	if got < exactN || got > exactN+exactConc*exactMaxCost {
		t.Errorf("served %d tokens; want between %d and %d", got, exactN, exactN+exactConc*exactMaxCost)
	}
	if m := e.up.MaxInFlight(); m > exactConc {
		t.Errorf("upstream saw %d requests at once, limit %d", m, exactConc)
	}
}

// A client that sends its next request the moment it has the answer finds
// its only slot free: the gateway frees it before the last byte goes out.
// With Redis the charge takes a round trip, so a late release would show.
func TestSequentialRequestsNeverSeeTheirOwnSlot(t *testing.T) {
	for _, withRedis := range []bool{false, true} {
		t.Run("redis="+strconv.FormatBool(withRedis), func(t *testing.T) {
			url := ""
			if withRedis {
				url = startRedis(t).url()
			}
			e := newEnv(t, upstreamtest.Options{}, func(o *Options) { o.Limits = Limits{Concurrency: 1}; o.Redis = url })
			secret := e.keys.add(Key{ID: "user:a"})
			for i := range 100 {
				if i%2 == 0 {
					wantStatus(t, e.chat(secret, "m"), 200, "")
					continue
				}
				// Like SDKs, stop at [DONE] without waiting for the end of
				// the body.
				resp := streamRaw(t, context.Background(), e.url, secret, chat("m"))
				if resp.StatusCode != 200 {
					b, _ := io.ReadAll(resp.Body)
					t.Fatalf("stream %d: %d %s", i, resp.StatusCode, b)
				}
				br := bufio.NewReader(resp.Body)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						t.Fatalf("stream ended without [DONE]: %v", err)
					}
					if line == "data: [DONE]\n" {
						break
					}
				}
				defer resp.Body.Close()
			}
		})
	}
}
