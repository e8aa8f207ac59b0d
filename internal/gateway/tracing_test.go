package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configgrpc"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/thon-dev/thon/internal/gateway/upstreamtest"
)

// collector is the OpenTelemetry Collector's OTLP receiver, run in the
// test on a loopback port (OTLP/HTTP only), handing what it decodes to
// consume.
type collector struct {
	endpoint string // http://127.0.0.1:PORT

	mu      sync.Mutex
	spans   []ptrace.Span
	res     []pcommon.Resource
	raw     [][]byte // each batch, marshalled again as OTLP protobuf
	headers []client.Metadata
}

func startCollector(t testing.TB, block <-chan struct{}, entered *atomic.Int64) *collector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := &collector{endpoint: "http://" + addr}
	f := otlpreceiver.NewFactory()
	cfg := f.CreateDefaultConfig().(*otlpreceiver.Config)
	hc := cfg.Protocols.HTTP.GetOrInsertDefault()
	hc.ServerConfig.NetAddr.Endpoint = addr
	hc.ServerConfig.IncludeMetadata = true // the request's headers reach the consumer
	cfg.Protocols.GRPC = configoptional.None[configgrpc.ServerConfig]()
	next, err := consumer.NewTraces(func(ctx context.Context, td ptrace.Traces) error {
		if entered != nil {
			entered.Add(1)
		}
		if block != nil {
			<-block // a collector that hangs: the exporter's request waits here
		}
		raw, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
		if err != nil {
			t.Errorf("marshal traces: %v", err)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.raw = append(c.raw, raw)
		c.headers = append(c.headers, client.FromContext(ctx).Metadata)
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			rs := td.ResourceSpans().At(i)
			for j := 0; j < rs.ScopeSpans().Len(); j++ {
				ss := rs.ScopeSpans().At(j)
				for k := 0; k < ss.Spans().Len(); k++ {
					c.spans = append(c.spans, ss.Spans().At(k))
					c.res = append(c.res, rs.Resource())
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rcv, err := f.CreateTraces(context.Background(), receivertest.NewNopSettings(f.Type()), cfg, next)
	if err != nil {
		t.Fatal(err)
	}
	if err := rcv.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rcv.Shutdown(context.Background()) })
	return c
}

// wait returns the spans once n have come (failing the test after 20 s).
func (c *collector) wait(t *testing.T, n int) []ptrace.Span {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c.mu.Lock()
		got := append([]ptrace.Span(nil), c.spans...)
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector got %d spans, want %d", len(got), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func attrs(s ptrace.Span) map[string]any {
	return s.Attributes().AsRaw()
}

func findSpan(t *testing.T, spans []ptrace.Span, match func(map[string]any) bool) ptrace.Span {
	t.Helper()
	for _, s := range spans {
		if match(attrs(s)) {
			return s
		}
	}
	t.Fatalf("no such span among %d", len(spans))
	return ptrace.Span{}
}

// Every LLM request through the gateway becomes a span at a real OTLP
// receiver: who, which model, tokens, time to first token, status; the
// collector's keys go as headers, and no secret is in any span.
func TestTracesReachTheCollector(t *testing.T) {
	col := startCollector(t, nil, nil)
	const upstreamKey = "sk-upstream-secret-1234"
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("pk-lf-public:sk-lf-secret"))
	e := newEnv(t, upstreamtest.Options{Key: upstreamKey, ChunkDelay: 20 * time.Millisecond}, func(o *Options) {
		o.UpstreamKey = upstreamKey
		o.AllowedModels = []string{"m"}
		o.OTLP = OTLPOptions{Endpoint: col.endpoint, Headers: map[string]string{"Authorization": basic}, Interval: 20 * time.Millisecond, Instance: "thon-test"}
		o.Limits = Limits{RequestsPerMinute: 2}
	})
	alice := e.keys.add(Key{ID: "user:alice", Owner: "alice", Group: "web", Scale: 1})

	if r := e.chat(alice, "m"); r.status != 200 {
		t.Fatalf("chat: %v", r)
	}
	stream := chat("m")
	stream["stream"] = true
	if r := do(t, "POST", e.url+"/chat/completions", alice, stream); r.status != 200 {
		t.Fatalf("stream: %v", r)
	}
	if r := e.chat(alice, "other"); r.status != 403 {
		t.Fatalf("a model not allowed: %v", r)
	}
	if r := e.chat(alice, "m"); r.status != 429 {
		t.Fatalf("past the rate limit: %v", r)
	}

	spans := col.wait(t, 4)
	if len(spans) != 4 {
		t.Fatalf("got %d spans, want one per request (4)", len(spans))
	}
	for i, s := range spans {
		a := attrs(s)
		for k, want := range map[string]any{"user.id": "alice", "thon.user": "alice", "thon.group": "web", "thon.key": "user:alice",
			"gen_ai.operation.name": "chat", "langfuse.observation.type": "generation"} {
			if a[k] != want {
				t.Errorf("span %d: %s = %v, want %v", i, k, a[k], want)
			}
		}
		if !s.EndTimestamp().AsTime().After(s.StartTimestamp().AsTime()) {
			t.Errorf("span %d ends at %v, not after its start %v", i, s.EndTimestamp(), s.StartTimestamp())
		}
		if s.Kind() != ptrace.SpanKindServer || s.TraceID().IsEmpty() || s.SpanID().IsEmpty() {
			t.Errorf("span %d: kind %v, trace %v, span %v", i, s.Kind(), s.TraceID(), s.SpanID())
		}
	}
	if sn, _ := col.res[0].Attributes().Get("service.name"); sn.Str() != "thon-gateway" {
		t.Errorf("service.name = %q", sn.Str())
	}
	if id, _ := col.res[0].Attributes().Get("service.instance.id"); id.Str() != "thon-test" {
		t.Errorf("service.instance.id = %q", id.Str())
	}

	plain := findSpan(t, spans, func(a map[string]any) bool {
		return a["thon.stream"] == false && a["http.response.status_code"] == int64(200)
	})
	a := attrs(plain)
	if a["gen_ai.request.model"] != "m" || a["gen_ai.usage.input_tokens"] != int64(10) || a["gen_ai.usage.output_tokens"] != int64(20) ||
		a["thon.outcome"] != "ok" || plain.Status().Code() != ptrace.StatusCodeOk || plain.Name() != "chat m" {
		t.Errorf("the plain request's span: %s %v %v", plain.Name(), plain.Status().Code(), a)
	}

	st := findSpan(t, spans, func(a map[string]any) bool { return a["thon.stream"] == true })
	a = attrs(st)
	ttft, _ := a["thon.time_to_first_token_ms"].(float64)
	whole := float64(st.EndTimestamp().AsTime().Sub(st.StartTimestamp().AsTime()).Microseconds()) / 1000
	if a["gen_ai.usage.output_tokens"] != int64(20) || a["http.response.status_code"] != int64(200) || ttft <= 0 || ttft >= whole {
		t.Errorf("the stream's span: time to first token %v ms of %v ms, %v", ttft, whole, a)
	}
	if st.Events().Len() != 1 || st.Events().At(0).Name() != "first_token" ||
		st.Events().At(0).Timestamp().AsTime().Sub(st.StartTimestamp().AsTime()).Microseconds() != int64(ttft*1000) {
		t.Errorf("the stream's first_token event: %d events", st.Events().Len())
	}
	if cst, _ := a["langfuse.observation.completion_start_time"].(string); !strings.HasPrefix(cst, st.Events().At(0).Timestamp().AsTime().UTC().Format("2006-01-02T15:04:05")) {
		t.Errorf("completion_start_time %q", cst)
	}
	t.Logf("stream: time to first token %.1f ms of %.1f ms (chunks every 20 ms)", ttft, whole)

	refused := findSpan(t, spans, func(a map[string]any) bool { return a["http.response.status_code"] == int64(403) })
	if a := attrs(refused); a["gen_ai.request.model"] != "other" || a["thon.outcome"] != "model_not_allowed" ||
		refused.Status().Code() != ptrace.StatusCodeError || a["gen_ai.usage.output_tokens"] != int64(0) {
		t.Errorf("the refused request's span: %v %v", refused.Status().Code(), a)
	}
	limited := findSpan(t, spans, func(a map[string]any) bool { return a["http.response.status_code"] == int64(429) })
	if a := attrs(limited); a["thon.outcome"] != "rate_limited_requests" || limited.Status().Message() != "rate_limited_requests" {
		t.Errorf("the rate-limited request's span: %q %v", limited.Status().Message(), a)
	}

	// The collector's keys came as headers; no secret is in a span.
	col.mu.Lock()
	for i, h := range col.headers {
		if got := h.Get("authorization"); len(got) != 1 || got[0] != basic {
			t.Errorf("export %d: Authorization %q, want the configured header", i, got)
		}
	}
	for i, raw := range col.raw {
		for _, secret := range []string{alice, alice[len(KeyPrefix):], HashKey(alice), upstreamKey, "sk-lf-secret", basic[len("Basic "):]} {
			if bytes.Contains(raw, []byte(secret)) {
				t.Errorf("export %d holds a secret (%.8s…)", i, secret)
			}
		}
	}
	col.mu.Unlock()
	// Counted once the collector answered (after it decoded them).
	for deadline := time.Now().Add(20 * time.Second); testutil.ToFloat64(e.gw.metrics.spansSent) != 4; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("trace_spans_exported_total = %v, want 4", testutil.ToFloat64(e.gw.metrics.spansSent))
		}
	}
}

// With a group key, the span names the participant whose sandbox sent the
// request.
func TestTracesNameTheSandboxUser(t *testing.T) {
	col := startCollector(t, nil, nil)
	e := newEnv(t, upstreamtest.Options{}, func(o *Options) {
		o.OTLP = OTLPOptions{Endpoint: col.endpoint + "/v1/traces", Interval: 20 * time.Millisecond}
		o.Caller = func(_ context.Context, ip netip.Addr) (string, string, bool) { return "bob", "ops", ip.IsLoopback() }
	})
	ops := e.keys.add(Key{ID: "group:ops", Owner: "ops", Group: "ops", Scale: 3})
	if r := do(t, "POST", e.url+"/embeddings", ops, map[string]any{"model": "emb", "input": "hello"}); r.status != 200 {
		t.Fatalf("embeddings: %v", r)
	}
	a := attrs(col.wait(t, 1)[0])
	if a["user.id"] != "bob" || a["thon.group"] != "ops" || a["thon.key"] != "group:ops" || a["gen_ai.operation.name"] != "embeddings" ||
		a["gen_ai.request.model"] != "emb" || a["gen_ai.usage.input_tokens"] != int64(10) {
		t.Errorf("span: %v", a)
	}
}

// A collector that hangs does not hold up a single answer: every request
// below is answered while the collector holds the gateway's export
// request open; the spans that do not fit the queue are dropped and
// counted.
func TestTracesHungCollectorDoesNotDelayAnswers(t *testing.T) {
	release := make(chan struct{})
	var entered atomic.Int64
	col := startCollector(t, release, &entered)
	e := newEnv(t, upstreamtest.Options{}, func(o *Options) {
		o.OTLP = OTLPOptions{Endpoint: col.endpoint, Interval: 5 * time.Millisecond, BatchSize: 1, QueueSize: 4, Timeout: time.Minute}
	})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	alice := e.keys.add(Key{ID: "user:alice", Owner: "alice", Group: "web", Scale: 1})

	timed := func(n int) time.Duration {
		start := time.Now()
		for range n {
			if r := e.chat(alice, "m"); r.status != 200 {
				t.Fatalf("chat: %v", r)
			}
		}
		return time.Since(start) / time.Duration(n)
	}
	before := timed(1)
	// The first span's export is now held inside the collector.
	for deadline := time.Now().Add(20 * time.Second); entered.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the gateway never exported to the collector")
		}
	}
	const n = 50
	during := timed(n)
	if got := entered.Load(); got != 1 {
		t.Fatalf("%d exports reached the collector; want the one it holds", got)
	}
	select {
	case <-release:
		t.Fatal("the collector was released before the answers came")
	default:
	}
	// All n answers came while the collector held the export: n requests
	// (beyond the queue's 4 and the one batch being built) dropped their spans.
	dropped := testutil.ToFloat64(e.gw.metrics.spansDropped.WithLabelValues("queue_full"))
	if dropped < n-5 {
		t.Errorf("trace_spans_dropped_total{reason=queue_full} = %v, want at least %d", dropped, n-5)
	}
	t.Logf("per request: %v before the collector hung, %v while it hung (%d requests, %v spans dropped)", before, during, n, dropped)
	close(release)
	col.wait(t, 1)
}

// A collector that is down: answers as usual, failed exports counted.
func TestTracesCollectorDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there
	e := newEnv(t, upstreamtest.Options{}, func(o *Options) {
		o.OTLP = OTLPOptions{Endpoint: "http://" + addr, Interval: 5 * time.Millisecond, Timeout: 200 * time.Millisecond}
	})
	alice := e.keys.add(Key{ID: "user:alice", Owner: "alice", Scale: 1})
	for range 3 {
		if r := e.chat(alice, "m"); r.status != 200 {
			t.Fatalf("chat: %v", r)
		}
	}
	failed := e.gw.metrics.spansDropped.WithLabelValues("export_failed")
	for deadline := time.Now().Add(20 * time.Second); testutil.ToFloat64(failed) < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("trace_spans_dropped_total{reason=export_failed} = %v, want 3", testutil.ToFloat64(failed))
		}
	}
	if n := testutil.ToFloat64(e.gw.metrics.spansSent); n != 0 {
		t.Errorf("trace_spans_exported_total = %v with no collector", n)
	}
}

func TestTracesURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:4318":                          "http://127.0.0.1:4318/v1/traces",
		"http://127.0.0.1:4318/":                         "http://127.0.0.1:4318/v1/traces",
		"https://cloud.langfuse.com/api/public/otel":     "https://cloud.langfuse.com/api/public/otel/v1/traces",
		"https://x.example/api/public/otel/v1/traces":    "https://x.example/api/public/otel/v1/traces",
		"http://collector.monitoring.svc:4318/v1/traces": "http://collector.monitoring.svc:4318/v1/traces",
	} {
		if got, err := TracesURL(in); err != nil || got != want {
			t.Errorf("TracesURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"127.0.0.1:4318", "grpc://x:4317", "http://", "http://u:p@x:4318", "http://x:4318?a=b"} {
		if _, err := TracesURL(bad); err == nil {
			t.Errorf("TracesURL(%q) is not an error", bad)
		}
	}
	if _, err := New(Options{Upstream: "http://127.0.0.1:1/v1", Keys: newTestKeys(),
		OTLP: OTLPOptions{Endpoint: "http://x:4318", Headers: map[string]string{"Bad Name": "v"}}}); err == nil || !strings.Contains(err.Error(), "header name") {
		t.Errorf("a bad header name: %v", err)
	}
}
