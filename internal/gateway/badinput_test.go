package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/thon-dev/thon/internal/gateway/upstreamtest"
)

// serveDirect calls the handler in this goroutine, so a panic fails the
// test instead of being recovered by net/http.
func serveDirect(t *testing.T, g *Gateway, req *http.Request) result {
	t.Helper()
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, req)
	r := result{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	if r.status >= 400 {
		if err := json.Unmarshal(r.body, &r.err); err != nil || r.err.Error.Message == "" || r.err.Error.Type == "" {
			t.Errorf("%s %s: error body is not OpenAI-shaped: %s", req.Method, req.URL.Path, r.body)
		}
	}
	return r
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, upstreamtest.Options{}, func(o *Options) { o.MaxBodyBytes = 1024; o.Limits = Limits{RequestsPerMinute: 100} })
	secret := e.keys.add(Key{ID: "user:a"})
	revoked := e.keys.add(Key{ID: "user:r", Revoked: true})
	req := func(method, path, body string, hdr ...string) *http.Request {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		return r
	}
	auth := "Bearer " + secret
	huge := `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("x", 2000) + `"}]}`
	for _, tc := range []struct {
		name   string
		req    *http.Request
		status int
		code   string
		says   string
	}{
		{"malformed JSON", req("POST", "/v1/chat/completions", `{"model":`, "Authorization", auth), 400, "invalid_json", "JSON"},
		{"not an object", req("POST", "/v1/chat/completions", `[1,2]`, "Authorization", auth), 400, "invalid_json", "object"},
		{"empty body", req("POST", "/v1/chat/completions", ``, "Authorization", auth), 400, "invalid_json", ""},
		{"no model", req("POST", "/v1/chat/completions", `{"messages":[]}`, "Authorization", auth), 400, "missing_model", "model"},
		{"model not a string", req("POST", "/v1/embeddings", `{"model":5,"input":"x"}`, "Authorization", auth), 400, "missing_model", ""},
		{"body over the limit", req("POST", "/v1/chat/completions", huge, "Authorization", auth), 413, "request_too_large", "1024 bytes"},
		{"unknown route", req("POST", "/v1/images/generations", `{}`, "Authorization", auth), 404, "unknown_url", "/v1/images/generations"},
		{"root", req("GET", "/", ``), 404, "unknown_url", ""},
		{"wrong method", req("GET", "/v1/chat/completions", ``, "Authorization", auth), 405, "method_not_allowed", "use POST"},
		{"wrong method models", req("POST", "/v1/models", `{}`, "Authorization", auth), 405, "method_not_allowed", "use GET"},
		{"no key", req("POST", "/v1/chat/completions", `{"model":"m"}`), 401, "missing_api_key", "Authorization: Bearer"},
		{"key in api-key", req("POST", "/v1/chat/completions", `{"model":"m"}`, "api-key", secret), 401, "wrong_auth_header", `"api-key" header`},
		{"key in x-api-key", req("POST", "/v1/chat/completions", `{"model":"m"}`, "X-Api-Key", secret), 401, "wrong_auth_header", `"x-api-key" header`},
		{"basic auth", req("POST", "/v1/chat/completions", `{"model":"m"}`, "Authorization", "Basic eDp5"), 401, "invalid_authorization_header", "Bearer"},
		{"bare bearer", req("POST", "/v1/chat/completions", `{"model":"m"}`, "Authorization", "Bearer "), 401, "invalid_authorization_header", ""},
		{"unknown key", req("POST", "/v1/chat/completions", `{"model":"m"}`, "Authorization", "Bearer thon_0000"), 401, "invalid_api_key", ""},
		{"foreign key", req("POST", "/v1/chat/completions", `{"model":"m"}`, "Authorization", "Bearer sk-abc"), 401, "invalid_api_key", ""},
		{"revoked key", req("POST", "/v1/chat/completions", `{"model":"m"}`, "Authorization", "Bearer "+revoked), 401, "revoked_api_key", "revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := serveDirect(t, e.gw, tc.req)
			if r.status != tc.status || r.err.Error.Code != tc.code || !strings.Contains(r.err.Error.Message, tc.says) {
				t.Errorf("got %s; want %d %s saying %q", r, tc.status, tc.code, tc.says)
			}
		})
	}
	if tc := req("GET", "/v1/chat/completions", ``, "Authorization", auth); true {
		if r := serveDirect(t, e.gw, tc); r.header.Get("Allow") != "POST" {
			t.Errorf("405 without Allow: %v", r.header)
		}
	}
	// A huge body with no Content-Length (chunked) is refused too.
	r := req("POST", "/v1/chat/completions", "", "Authorization", auth)
	r.Body, r.ContentLength = io.NopCloser(strings.NewReader(huge)), -1
	if res := serveDirect(t, e.gw, r); res.status != 413 {
		t.Errorf("chunked huge body: %s", res)
	}
	if n := len(e.up.Requests()); n != 0 {
		t.Errorf("bad requests reached the upstream: %d", n)
	}
	if v := e.gw.used(t, "user:a", ""); v.requests != 0 {
		t.Errorf("bad requests were counted: %d", v.requests)
	}
	// Over real HTTP as well.
	res := do(t, "POST", e.url+"/chat/completions", secret, huge)
	wantStatus(t, res, 413, "request_too_large")
	res = do(t, "DELETE", e.url+"/models", secret, nil)
	wantStatus(t, res, 405, "method_not_allowed")
}

// Revoking a key takes effect at once after ForgetKeys, and within the
// cache TTL otherwise; lookups are cached.
func TestKeyCacheAndRevoke(t *testing.T) {
	e := newEnv(t, upstreamtest.Options{})
	secret := e.keys.add(Key{ID: "user:a"})
	for range 3 {
		wantStatus(t, e.chat(secret, "m"), 200, "")
	}
	if e.keys.calls != 1 {
		t.Errorf("store asked %d times, want 1 (cached)", e.keys.calls)
	}
	e.keys.revoke("user:a")
	wantStatus(t, e.chat(secret, "m"), 200, "") // cached
	e.clock.Add(6 * time.Second)                // past the default TTL
	wantStatus(t, e.chat(secret, "m"), 401, "revoked_api_key")

	fresh := e.keys.add(Key{ID: "user:b"})
	e.keys.revoke("user:b")
	wantStatus(t, e.chat(fresh, "m"), 401, "revoked_api_key")
	e.keys.mu.Lock()
	for h, k := range e.keys.m {
		if k.ID == "user:b" {
			k.Revoked = false
			e.keys.m[h] = k
		}
	}
	e.keys.mu.Unlock()
	e.gw.ForgetKeys()
	wantStatus(t, e.chat(fresh, "m"), 200, "")
}

// Random bodies and headers never panic and always get an OpenAI-shaped
// answer.
func FuzzServeHTTP(f *testing.F) {
	for _, s := range []string{`{"model":"m","messages":[]}`, `{"model":"m","stream":true}`, `{`, `null`, `"x"`, `{"model":"m","stream":true,"stream_options":5}`,
		`{"model":"m","stream":true,"stream_options":{"include_usage":"yes"}}`, "\x00\xff", `{"model":"` + strings.Repeat("é", 100) + `"}`} {
		f.Add("/v1/chat/completions", s, true)
		f.Add("/v1/embeddings", s, false)
	}
	up := upstreamtest.New(upstreamtest.Options{})
	defer up.Close()
	keys := newTestKeys()
	secret := keys.add(Key{ID: "user:f"})
	g, err := New(Options{Upstream: up.URL, Keys: keys, MaxBodyBytes: 4096, Limits: Limits{Concurrency: 1, RequestsPerMinute: 1 << 30}})
	if err != nil {
		f.Fatal(err)
	}
	defer g.Close()
	f.Fuzz(func(t *testing.T, path, body string, withKey bool) {
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		r.URL.Path = path
		if withKey {
			r.Header.Set("Authorization", "Bearer "+secret)
		}
		res := serveDirect(t, g, r)
		if res.status == 0 {
			t.Fatal("no answer")
		}
	})
}

// Upstream down: 502 and nothing charged (the request is refunded).
// Upstream too slow: 504. Upstream errors pass through.
func TestUpstreamFailures(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + l.Addr().String() + "/v1"
	l.Close()
	e := newEnv(t, upstreamtest.Options{}, func(o *Options) {
		o.Upstream = deadURL
		o.Limits = Limits{RequestsPerMinute: 1, Concurrency: 1}
	})
	secret := e.keys.add(Key{ID: "user:a"})
	for range 3 { // all refunded: the 1-per-minute limit is never reached
		r := e.chat(secret, "m")
		wantStatus(t, r, 502, "upstream_unreachable")
		if !strings.Contains(r.err.Error.Message, "Nothing was charged") {
			t.Errorf("message: %s", r.err.Error.Message)
		}
	}
	if v := e.gw.used(t, "user:a", ""); v.requests != 0 || v.tokens != 0 {
		t.Errorf("charged for a dead upstream: %+v", v)
	}
	wantStatus(t, do(t, "GET", e.url+"/models", secret, nil), 502, "upstream_unreachable")

	slow := newEnv(t, upstreamtest.Options{Delay: 10 * time.Second}, func(o *Options) { o.UpstreamTimeout = 50 * time.Millisecond })
	s2 := slow.keys.add(Key{ID: "user:a"})
	wantStatus(t, slow.chat(s2, "m"), 504, "upstream_timeout")

	failing := newEnv(t, upstreamtest.Options{Status: 500}, func(o *Options) { o.Limits = Limits{RequestsPerMinute: 1} })
	s3 := failing.keys.add(Key{ID: "user:a"})
	for range 2 {
		r := failing.chat(s3, "m")
		if r.status != 500 || r.err.Error.Type != "server_error" {
			t.Errorf("upstream 500 not passed through: %s", r)
		}
	}

	wrongKey := newEnv(t, upstreamtest.Options{Key: "right"}, func(o *Options) { o.UpstreamKey = "wrong" })
	s4 := wrongKey.keys.add(Key{ID: "user:a"})
	r := wrongKey.chat(s4, "m")
	wantStatus(t, r, 502, "upstream_auth_failed")

	// Upstream's own 4xx (its model does not exist) passes through.
	picky := newEnv(t, upstreamtest.Options{Models: []string{"x"}})
	s5 := picky.keys.add(Key{ID: "user:a"})
	wantStatus(t, picky.chat(s5, "nope"), 404, "model_not_found")
}

func TestOptionsValidation(t *testing.T) {
	keys := newTestKeys()
	for _, o := range []Options{
		{Upstream: "127.0.0.1:8000", Keys: keys},
		{Upstream: "http://x/v1"},
		{Upstream: "http://x/v1", Keys: keys, Limits: Limits{TokenKind: "output"}},
		{Upstream: "http://x/v1", Keys: keys, Limits: Limits{Concurrency: -1}},
		{Upstream: "http://x/v1", Keys: keys, Models: []ModelLimit{{Model: "a"}, {Model: "a"}}},
		{Upstream: "http://x/v1", Keys: keys, Redis: "mysql://x"},
	} {
		if g, err := New(o); err == nil {
			g.Close()
			t.Errorf("New(%+v) accepted", o)
		}
	}
	reg := prometheus.NewRegistry()
	g, err := New(Options{Upstream: "http://x/v1", Keys: keys, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := New(Options{Upstream: "http://x/v1", Keys: keys, Registerer: reg}); err == nil || !strings.Contains(err.Error(), "register") {
		t.Errorf("second gateway on one registry: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, upstreamtest.Options{PromptTokens: 4, CompletionTokens: 6}, func(o *Options) {
		o.Registerer = reg
		o.Limits = Limits{RequestsPerMinute: 2}
	})
	secret := e.keys.add(Key{ID: "user:a"})
	e.chat(secret, "m")
	e.chat(secret, "m")
	e.chat(secret, "m")
	e.chat("thon_x", "m")
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string, labels ...string) float64 {
		for _, f := range fams {
			if f.GetName() != name {
				continue
			}
		next:
			for _, m := range f.GetMetric() {
				for i := 0; i+1 < len(labels); i += 2 {
					if !hasLabel(m, labels[i], labels[i+1]) {
						continue next
					}
				}
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue()
				case m.Histogram != nil:
					return float64(m.Histogram.GetSampleCount())
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				}
			}
		}
		return -1
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"thon_gateway_requests_total", []string{"endpoint", "chat", "code", "200"}, 2},
		{"thon_gateway_requests_total", []string{"endpoint", "chat", "code", "429"}, 1},
		{"thon_gateway_requests_total", []string{"endpoint", "chat", "code", "401"}, 1},
		{"thon_gateway_tokens_total", []string{"model", "m", "kind", "prompt"}, 8},
		{"thon_gateway_tokens_total", []string{"model", "m", "kind", "completion"}, 12},
		{"thon_gateway_rejections_total", []string{"reason", "requests"}, 1},
		{"thon_gateway_rejections_total", []string{"reason", "auth"}, 1},
		{"thon_gateway_upstream_latency_seconds", []string{"endpoint", "chat"}, 2},
		{"thon_gateway_in_flight", nil, 0},
	} {
		if got := get(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// A usage store that cannot keep up loses records; requests never wait.
func TestUsageOverflowDrops(t *testing.T) {
	dropped := 0
	u := &usageRecorder{ch: make(chan Usage, 2), dropped: func() { dropped++ }}
	for range 5 {
		u.record(Usage{KeyID: "k", Requests: 1})
	}
	if dropped != 3 {
		t.Errorf("dropped %d, want 3", dropped)
	}
	// And the real recorder sums per key, model and minute.
	sink := &testSink{}
	rec := newUsageRecorder(sink, testLogger(t), func() {})
	m := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for range 3 {
		rec.record(Usage{KeyID: "k", Model: "a", Minute: m, Requests: 1, PromptTokens: 2})
	}
	rec.record(Usage{KeyID: "k", Model: "b", Minute: m, Rejections: 1})
	rec.close()
	if len(sink.got) != 2 {
		t.Fatalf("sink got %+v", sink.got)
	}
	if s := sink.sum("k"); s.Requests != 3 || s.PromptTokens != 6 || s.Rejections != 1 {
		t.Errorf("sum %+v", s)
	}
}

// The in-memory counters' windows roll over with the clock.
func TestWindowRollover(t *testing.T) {
	m := newMemCounters()
	p := plan{keyID: "k", rpm: 1, tpm: 10}
	now := time.Date(2030, 1, 1, 0, 0, 59, 0, time.UTC)
	var tk ticket
	if v, _ := m.admit(context.Background(), &p, now, &tk); !v.ok {
		t.Fatal("first request refused")
	}
	if v, _ := m.admit(context.Background(), &p, now, &ticket{}); v.ok || v.reason != reasonRequests {
		t.Fatalf("second request: %+v", v)
	}
	// Charged in the next window: the tokens count there.
	later := now.Add(2 * time.Second)
	m.finish(context.Background(), &tk, later, 10, false)
	if v, _ := m.admit(context.Background(), &p, later, &ticket{}); v.ok || v.reason != reasonTokens {
		t.Fatalf("after the charge: %+v", v)
	}
	if v, _ := m.admit(context.Background(), &p, later.Add(time.Minute), &ticket{}); !v.ok {
		t.Fatalf("next window: %+v", v)
	}
}
