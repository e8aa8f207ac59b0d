package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Gateway. Only Upstream and Keys are required.
type Options struct {
	// Upstream is the model server's base URL, e.g.
	// http://127.0.0.1:13305/api/v1 or http://host:8000/v1; "" when it is
	// not known yet (SetUpstream gives it; until then requests get 503).
	Upstream string
	// UpstreamKey is sent upstream as a bearer token; participants never
	// see it.
	UpstreamKey string
	Limits      Limits
	Models      []ModelLimit
	// AllowedModels restricts the models participants may use; empty
	// allows all.
	AllowedModels []string
	// Redis is "" for in-memory counters or a redis:// URL
	// (redis://host:port/db) shared by every replica.
	Redis string
	// RedisPrefix starts every Redis key (default "thon:gw:").
	RedisPrefix string
	// FailOpen keeps serving on local counters while Redis is unreachable;
	// false answers 503 instead.
	FailOpen bool
	Keys     KeyStore
	// Usage receives usage sums; nil keeps none.
	Usage  UsageSink
	Logger *slog.Logger
	// Registerer receives the gateway's metrics; nil registers none.
	Registerer prometheus.Registerer
	// MaxBodyBytes bounds request bodies (default 4 MiB); larger ones get 413.
	MaxBodyBytes int64
	// Now is the clock of the rate-limit windows (default time.Now).
	Now func() time.Time
	// KeyCacheTTL is how long key lookups are remembered (default 5 s;
	// negative: not at all).
	KeyCacheTTL time.Duration
	// QueueTimeout is how long a request waits for a concurrency slot
	// (default 5 s); QueueLength bounds the waiters per key (default 16).
	// A negative value of either disables waiting.
	QueueTimeout time.Duration
	QueueLength  int
	// UpstreamTimeout bounds one upstream request, streaming included
	// (default 10 min).
	UpstreamTimeout time.Duration
	// UpstreamSlots is how many requests the upstream serves at once per
	// model (its parallel slots), for models SetSlots does not name; 0:
	// no limit. Requests beyond a model's slots wait in its fair queue.
	UpstreamSlots int
	// ModelQueueTimeout bounds the wait for a slot of the model (default
	// DefaultModelQueueTimeout); a request that waited longer gets 503
	// model_queue_timeout.
	ModelQueueTimeout time.Duration
	// ShortMaxTokens: a request asking for at most this many tokens
	// (max_tokens or max_completion_tokens), or for embeddings, is short;
	// ShortShare of each model's slots (rounded, never all of them) are
	// kept for short requests, so a quick question or an autocompletion
	// does not wait for the agents' long generations. 0: no reservation.
	ShortMaxTokens int
	ShortShare     float64
	// LlamaCppTimings: the upstream is llama.cpp's llama-server, which is
	// asked for "timings_per_token" on streams so that a stream cut short
	// is charged exactly what was generated.
	LlamaCppTimings bool
	// Transport carries upstream requests (default: a tuned clone of
	// http.DefaultTransport).
	Transport http.RoundTripper
	// Caller says whose sandbox a request comes from (by its address);
	// ok false when it is not from a sandbox. A request from a sandbox must
	// carry that participant's key (or their group's): a key that leaked
	// from another sandbox does not work there. nil: no such check.
	Caller func(ctx context.Context, ip netip.Addr) (user, group string, ok bool)
	// OTLP sends a trace span per LLM request to an OpenTelemetry
	// collector; its Endpoint "" sends none.
	OTLP OTLPOptions
}

// Gateway is an http.Handler serving the OpenAI-compatible API.
type Gateway struct {
	opts     Options
	log      *slog.Logger
	now      func() time.Time
	target   atomic.Pointer[target]
	drain    drainGate
	client   *http.Client
	models   map[string]ModelLimit
	allowed  map[string]bool // nil: all models
	counters counterStore
	shared   *sharedCounters // nil: in memory
	keys     *keyCache
	gates    sync.Map // Key.ID → *gate
	usage    *usageRecorder
	metrics  *metrics
	slots    *slotPool
	traces   *tracer // nil: no tracing

	queueTimeout time.Duration
	queueLen     int
	maxBody      int64
	upTimeout    time.Duration

	ctx      context.Context // ends at Close: upstream requests are detached from clients
	cancel   context.CancelFunc
	closed   atomic.Bool
	warnOnce sync.Map // message → struct{}: upstream quirks logged once

	dropMu   sync.Mutex
	dropLast time.Time
	drops    int64
}

type endpoint uint8

const (
	epChat endpoint = iota
	epCompletions
	epEmbeddings
	epModels
	epOther
	numEndpoints
)

var endpointNames = [numEndpoints]string{"chat", "completions", "embeddings", "models", "other"}

var endpointPaths = [numEndpoints]string{"/chat/completions", "/completions", "/embeddings", "/models", ""}

func route(path string) endpoint {
	switch path {
	case "/v1/chat/completions":
		return epChat
	case "/v1/completions":
		return epCompletions
	case "/v1/embeddings":
		return epEmbeddings
	case "/v1/models":
		return epModels
	}
	return epOther
}

// New checks the options and starts a gateway. A Redis that does not answer
// is not an error: the gateway starts in its outage mode (see FailOpen).
func New(o Options) (*Gateway, error) {
	var errs []error
	t, err := newTarget(o.Upstream, o.UpstreamKey)
	if err != nil {
		errs = append(errs, err)
	}
	if o.Keys == nil {
		errs = append(errs, errors.New("keys: a key store is required"))
	}
	l := o.Limits
	if l.RequestsPerMinute < 0 || l.Concurrency < 0 || l.TokensPerMinute < 0 || l.BudgetTokens < 0 {
		errs = append(errs, errors.New("limits: must not be negative (0 means no limit)"))
	}
	switch l.TokenKind {
	case "":
		o.Limits.TokenKind = TokensTotal
	case TokensTotal, TokensPrompt, TokensCompletion:
	default:
		errs = append(errs, fmt.Errorf("limits.token_kind %q: want total, prompt or completion", l.TokenKind))
	}
	models := make(map[string]ModelLimit, len(o.Models))
	for i, m := range o.Models {
		switch {
		case m.Model == "":
			errs = append(errs, fmt.Errorf("models[%d]: model name required", i))
		case m.Concurrency < 0 || m.TokensPerMinute < 0:
			errs = append(errs, fmt.Errorf("models[%d] (%s): limits must not be negative", i, m.Model))
		}
		if _, dup := models[m.Model]; dup {
			errs = append(errs, fmt.Errorf("models[%d]: %s listed twice", i, m.Model))
		}
		models[m.Model] = m
	}
	if o.UpstreamSlots < 0 {
		errs = append(errs, errors.New("upstream slots: must not be negative (0 means no limit)"))
	}
	if o.ShortMaxTokens < 0 || o.ShortShare < 0 || o.ShortShare > 0.5 {
		errs = append(errs, errors.New("short requests: max tokens must not be negative, the share of slots kept for them is between 0 and 0.5"))
	}
	if err := o.OTLP.check(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("gateway options: %w", errors.Join(errs...))
	}

	g := &Gateway{opts: o, log: o.Logger, now: o.Now, models: models, keys: newKeyCache(o.KeyCacheTTL),
		queueTimeout: o.QueueTimeout, queueLen: o.QueueLength, maxBody: o.MaxBodyBytes, upTimeout: o.UpstreamTimeout}
	if g.log == nil {
		g.log = slog.Default()
	}
	if g.now == nil {
		g.now = time.Now
	}
	if o.KeyCacheTTL == 0 {
		g.keys.ttl = 5 * time.Second
	}
	if g.queueTimeout == 0 {
		g.queueTimeout = 5 * time.Second
	}
	if g.queueLen == 0 {
		g.queueLen = 16
	}
	if g.queueTimeout < 0 || g.queueLen < 0 {
		g.queueLen = 0
	}
	if g.maxBody <= 0 {
		g.maxBody = 4 << 20
	}
	if g.upTimeout <= 0 {
		g.upTimeout = 10 * time.Minute
	}
	if len(o.AllowedModels) > 0 {
		g.allowed = make(map[string]bool, len(o.AllowedModels))
		for _, m := range o.AllowedModels {
			g.allowed[m] = true
		}
	}
	g.target.Store(t)
	rt := o.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = 1024
		t.MaxIdleConnsPerHost = 1024
		t.DisableCompression = true
		t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		// Close idle connections before the server does: llama-server
		// (cpp-httplib) drops them after 5 s, and a request written on a
		// connection the server is closing fails.
		t.IdleConnTimeout = 4 * time.Second
		rt = t
	}
	g.client = &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	if g.metrics, err = newMetrics(o.Registerer); err != nil {
		return nil, err
	}
	if o.Redis == "" {
		g.counters = newMemCounters()
	} else {
		prefix := o.RedisPrefix
		if prefix == "" {
			prefix = "thon:gw:"
		}
		rc, err := newRedisCounters(o.Redis, prefix)
		if err != nil {
			return nil, err
		}
		g.shared = newSharedCounters(rc, o.FailOpen, g.log, func(up bool) {
			if up {
				g.metrics.redisUp.Set(1)
			} else {
				g.metrics.redisUp.Set(0)
			}
			if g.slots != nil && g.slots.remote != nil {
				g.slots.remote.setUp(up)
			}
		})
		g.counters = g.shared
	}
	if o.Usage != nil {
		g.usage = newUsageRecorder(o.Usage, g.log, g.usageDropped)
	}
	mqt := o.ModelQueueTimeout
	if mqt <= 0 {
		mqt = DefaultModelQueueTimeout
	}
	g.slots = newSlotPool(g, o.UpstreamSlots, mqt)
	if o.ShortMaxTokens > 0 && o.ShortShare > 0 {
		g.slots.reserved = func(slots int) int { return reservedSlots(slots, o.ShortShare) }
	}
	if g.shared != nil {
		g.slots.remote = newRedisSlots(g.slots, g.shared)
		g.slots.remote.setUp(g.shared.up.Load())
		g.shared.start() // after the slots, which follow Redis's state
	}
	if g.traces, err = newTracer(o.OTLP, g.log, nil, func(n int) { g.metrics.spansSent.Add(float64(n)) },
		func(why string, n int) { g.metrics.spansDropped.WithLabelValues(why).Add(float64(n)) }); err != nil {
		g.slots.close()
		g.counters.close()
		return nil, fmt.Errorf("gateway options: %w", err)
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	return g, nil
}

func (g *Gateway) usageDropped() {
	g.metrics.usageDropped.Inc()
	g.dropMu.Lock()
	defer g.dropMu.Unlock()
	g.drops++
	if now := time.Now(); now.Sub(g.dropLast) >= time.Minute {
		g.log.Warn("gateway: usage buffer full; dropping usage records (the usage store is too slow)", "dropped", g.drops)
		g.dropLast, g.drops = now, 0
	}
}

// Close stops background work, flushes usage to the sink and closes the
// Redis client. Stop the HTTP server first: requests still in flight lose
// their upstream.
func (g *Gateway) Close() error {
	if !g.closed.CompareAndSwap(false, true) {
		return nil
	}
	g.cancel()
	g.slots.close()
	g.usage.close()
	g.traces.close()
	g.client.CloseIdleConnections()
	if err := g.counters.close(); err != nil {
		return fmt.Errorf("close gateway: %w", err)
	}
	return nil
}

// warnOnce logs msg the first time only.
func (g *Gateway) warnFirst(msg string, args ...any) {
	if _, seen := g.warnOnce.LoadOrStore(msg, struct{}{}); !seen {
		g.log.Warn(msg, args...)
	}
}

var (
	errBodyTooLarge = apiError{http.StatusRequestEntityTooLarge, typeInvalidRequest, "request_too_large", ""}
	errLimiter      = apiError{http.StatusServiceUnavailable, typeServer, "rate_limiter_unavailable",
		"The gateway's rate limiter (Redis) is unreachable and the gateway is configured to refuse requests until it returns. Try again shortly; if it persists, tell the organizer."}
)

// ServeHTTP answers the OpenAI-compatible routes.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ep := route(r.URL.Path)
	if ep == epOther {
		g.fail(w, ep, apiError{http.StatusNotFound, typeInvalidRequest, "unknown_url",
			fmt.Sprintf("Unknown request URL: %s %s. This gateway serves /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models.", r.Method, r.URL.Path)}, "unknown_url")
		return
	}
	want := http.MethodPost
	if ep == epModels {
		want = http.MethodGet
	}
	if r.Method != want {
		w.Header()["Allow"] = []string{want}
		g.fail(w, ep, apiError{http.StatusMethodNotAllowed, typeInvalidRequest, "method_not_allowed",
			fmt.Sprintf("%s %s is not supported; use %s.", r.Method, r.URL.Path, want)}, "method_not_allowed")
		return
	}
	key, aerr := g.authenticate(r)
	if aerr != nil {
		g.fail(w, ep, *aerr, "auth")
		return
	}
	var user, group string // of the sandbox the request comes from, when known
	if g.opts.Caller != nil {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			var ok bool
			if user, group, ok = g.opts.Caller(r.Context(), ap.Addr().Unmap()); ok && !key.BelongsTo(user, group) {
				g.fail(w, ep, errOthersKey, "auth")
				return
			}
		}
	}
	if ep == epModels {
		g.serveModels(w, r, key)
		return
	}
	if g.traces == nil {
		g.serveInference(w, r, ep, key, nil)
		return
	}
	cs := g.startSpan(key, ep, user, group)
	sw := &statusWriter{ResponseWriter: w}
	g.serveInference(sw, r, ep, key, cs)
	g.endSpan(cs, sw.status, r.Context().Err() != nil)
}

func (g *Gateway) fail(w http.ResponseWriter, ep endpoint, e apiError, why string) {
	if why != "" {
		g.metrics.reject(reasonNone, why)
	}
	g.metrics.request(ep, e.status)
	writeError(w, e)
}
