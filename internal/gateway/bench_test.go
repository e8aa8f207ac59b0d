package gateway

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/gateway/upstreamtest"
)

func benchGateway(b *testing.B, redisURL string) (*Gateway, *Key) {
	keys := newTestKeys()
	g, err := New(Options{Upstream: "http://127.0.0.1:1/v1", Keys: keys, Redis: redisURL, RedisPrefix: "bench:" + b.Name() + ":",
		Limits: Limits{RequestsPerMinute: 1 << 40, Concurrency: 1 << 20, TokensPerMinute: 1 << 40, BudgetTokens: 1 << 50},
		Models: []ModelLimit{{Model: "big", Concurrency: 1 << 20, TokensPerMinute: 1 << 40}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Close() })
	return g, &Key{ID: "user:bench", Scale: 1}
}

// BenchmarkAdmit is the admission path: plan, check and reserve, then
// charge and release — what every request costs the limiter.
func BenchmarkAdmit(b *testing.B) {
	run := func(b *testing.B, redisURL, model string) {
		g, k := benchGateway(b, redisURL)
		b.ReportAllocs()
		for b.Loop() {
			p := g.planFor(k, model)
			var t ticket
			v, err := g.admit(b.Context(), &p, &t)
			if err != nil || !v.ok {
				b.Fatalf("refused: %+v %v", v, err)
			}
			g.release(&t, 30, false)
		}
	}
	b.Run("memory", func(b *testing.B) { run(b, "", "small") })
	b.Run("memory-model-limits", func(b *testing.B) { run(b, "", "big") })
	b.Run("memory-parallel", func(b *testing.B) {
		g, _ := benchGateway(b, "")
		b.ReportAllocs()
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			k := &Key{ID: "user:" + strconv.FormatInt(n.Add(1), 10), Scale: 1}
			for pb.Next() {
				p := g.planFor(k, "small")
				var t ticket
				if v, _ := g.admit(b.Context(), &p, &t); v.ok {
					g.release(&t, 30, false)
				}
			}
		})
	})
	b.Run("redis", func(b *testing.B) {
		rs := startRedis(b)
		run(b, rs.url(), "small")
	})
	b.Run("redis-model-limits", func(b *testing.B) {
		rs := startRedis(b)
		run(b, rs.url(), "big")
	})
}

// BenchmarkServeHTTP is a whole non-streaming request through the handler
// (auth, limits, proxy to a loopback upstream, usage), against the same
// request sent to the upstream directly.
func BenchmarkServeHTTP(b *testing.B) {
	up := upstreamtest.New(upstreamtest.Options{})
	b.Cleanup(up.Close)
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hello"}]}`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	post := func(b *testing.B, url, secret string) {
		req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			post(b, up.URL+"/chat/completions", "")
		}
	})
	gw := func(b *testing.B, redisURL string, otlp OTLPOptions) {
		keys := newTestKeys()
		secret := keys.add(Key{ID: "user:bench", Owner: "bench", Group: "g"})
		g, err := New(Options{Upstream: up.URL, Keys: keys, Redis: redisURL, RedisPrefix: "bench:" + b.Name() + ":", Usage: &testSink{},
			Limits: Limits{RequestsPerMinute: 1 << 40, Concurrency: 1 << 20, TokensPerMinute: 1 << 40}, OTLP: otlp})
		if err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer(g)
		b.Cleanup(func() { srv.Close(); g.Close() })
		b.ReportAllocs()
		for b.Loop() {
			post(b, srv.URL+"/v1/chat/completions", secret)
		}
	}
	b.Run("gateway-memory", func(b *testing.B) { gw(b, "", OTLPOptions{}) })
	// Tracing on, to the OpenTelemetry Collector's OTLP receiver in this
	// process (its decoding shares the 2 cores), then to one that hangs
	// (every span past the queue is dropped).
	b.Run("gateway-memory-traced", func(b *testing.B) {
		gw(b, "", OTLPOptions{Endpoint: startCollector(b, nil, nil).endpoint})
	})
	b.Run("gateway-memory-traced-collector-hung", func(b *testing.B) {
		hang := make(chan struct{})
		col := startCollector(b, hang, nil)
		b.Cleanup(func() { close(hang) }) // before the receiver's shutdown, after the gateway's
		gw(b, "", OTLPOptions{Endpoint: col.endpoint, Interval: time.Millisecond, Timeout: 2 * time.Second})
	})
	b.Run("gateway-redis", func(b *testing.B) { gw(b, startRedis(b).url(), OTLPOptions{}) })
}
