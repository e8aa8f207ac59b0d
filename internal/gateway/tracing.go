package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// OTLPOptions send a trace span per LLM request to an OpenTelemetry
// collector (or Langfuse, which ingests OTLP) over OTLP/HTTP.
type OTLPOptions struct {
	// Endpoint is the collector's base URL (http://127.0.0.1:4318, as
	// OTEL_EXPORTER_OTLP_ENDPOINT: /v1/traces is added) or the full
	// traces URL (ending in /v1/traces); "" sends no traces.
	Endpoint string
	// Headers go with every export: the collector's keys, e.g.
	// Authorization: Basic … for Langfuse. Never logged, never in spans.
	Headers map[string]string
	// QueueSize bounds the spans waiting to be sent (default 2048); past
	// it, spans are dropped and counted, never waited for.
	QueueSize int
	// BatchSize is the most spans one export carries (default 512).
	BatchSize int
	// Interval is the longest a span waits for its batch to fill (default 5 s).
	Interval time.Duration
	// Timeout bounds one export, retries included (default 10 s); a batch
	// not sent by then is dropped and counted.
	Timeout time.Duration
	// ServiceName is the resource's service.name (default "thon-gateway").
	ServiceName string
	// Instance, when set, is the resource's service.instance.id (the
	// event's instance name).
	Instance string
}

// Trace defaults.
const (
	DefaultOTLPQueueSize = 2048
	DefaultOTLPBatchSize = 512
	DefaultOTLPInterval  = 5 * time.Second
	DefaultOTLPTimeout   = 10 * time.Second
)

// TracesURL is the URL spans are posted to for an endpoint: the endpoint
// itself when its path ends in /v1/traces, else the endpoint with
// /v1/traces added (as OTEL_EXPORTER_OTLP_ENDPOINT is read). It says what
// is wrong with an endpoint that is not an http(s) URL.
func TracesURL(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http(s) URL; write the collector's OTLP/HTTP address, e.g. http://127.0.0.1:4318", endpoint)
	}
	if u.User != nil {
		return "", fmt.Errorf("%q holds credentials; give them as headers (e.g. Authorization: Basic …) instead", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q has a query or fragment; OTLP/HTTP takes a plain URL", endpoint)
	}
	if !strings.HasSuffix(u.Path, "/v1/traces") {
		u.Path = strings.TrimRight(u.Path, "/") + "/v1/traces"
	}
	return u.String(), nil
}

// callSpan is what the gateway knows of one LLM request when it ends: all
// a span needs, and no secret (the key's ID, never the key).
type callSpan struct {
	start, firstToken, end time.Time
	waited                 time.Duration // for a slot of the model
	keyID, user, group     string
	model                  string
	ep                     endpoint
	stream                 bool
	status                 int
	outcome                string // "ok", a rejection's reason, "upstream_error", "client_gone"
	u                      tokenUsage
}

// tracer turns finished requests into spans, batches them and exports
// them from one goroutine of its own. A request only hands its callSpan to
// a bounded queue without waiting: when the queue is full (the collector is
// slow or down), the span is dropped and counted.
type tracer struct {
	queue    chan callSpan
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	tp       *sdktrace.TracerProvider
	tr       trace.Tracer
	exporter sdktrace.SpanExporter
	batch    *batchCollector
	size     int
	interval time.Duration
	timeout  time.Duration

	log      *slog.Logger
	exported func(n int)
	dropped  func(reason string, n int)

	warnMu   sync.Mutex
	warnLast time.Time
}

// batchCollector is the tracer provider's span processor: spans end in
// the tracer's goroutine, which gathers them here and exports them itself.
type batchCollector struct{ spans []sdktrace.ReadOnlySpan }

func (b *batchCollector) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (b *batchCollector) OnEnd(s sdktrace.ReadOnlySpan)                   { b.spans = append(b.spans, s) }
func (b *batchCollector) Shutdown(context.Context) error                  { return nil }
func (b *batchCollector) ForceFlush(context.Context) error                { return nil }

// check says what is wrong with the options, nil when nothing is.
func (o *OTLPOptions) check() error {
	if o.Endpoint == "" {
		return nil
	}
	var errs []error
	if _, err := TracesURL(o.Endpoint); err != nil {
		errs = append(errs, fmt.Errorf("otlp endpoint: %w", err))
	}
	for k, v := range o.Headers {
		if !validHeaderName(k) {
			errs = append(errs, fmt.Errorf("otlp headers: %q is not a header name (letters, digits and -)", k))
		}
		if strings.ContainsAny(v, "\r\n") {
			errs = append(errs, fmt.Errorf("otlp headers: the value of %s holds a line break", k))
		}
	}
	if o.QueueSize < 0 || o.BatchSize < 0 || o.Interval < 0 || o.Timeout < 0 {
		errs = append(errs, errors.New("otlp: queue size, batch size, interval and timeout must not be negative (0: the default)"))
	}
	return errors.Join(errs...)
}

// validHeaderName reports whether k is an HTTP header name (a token).
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// newTracer starts a tracer exporting to o.Endpoint; nil when o.Endpoint
// is "".
func newTracer(o OTLPOptions, log *slog.Logger, transport http.RoundTripper, exported func(int), dropped func(string, int)) (*tracer, error) {
	if o.Endpoint == "" {
		return nil, nil
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	full, _ := TracesURL(o.Endpoint)
	t := &tracer{queue: make(chan callSpan, cmpOr(o.QueueSize, DefaultOTLPQueueSize)), stop: make(chan struct{}), done: make(chan struct{}),
		size: cmpOr(o.BatchSize, DefaultOTLPBatchSize), interval: cmpOr(o.Interval, DefaultOTLPInterval), timeout: cmpOr(o.Timeout, DefaultOTLPTimeout),
		log: log, exported: exported, dropped: dropped}
	headers := make(map[string]string, len(o.Headers))
	for k, v := range o.Headers {
		headers[k] = v
	}
	opts := []otlptracehttp.Option{
		otlptracehttp.WithEndpointURL(full),
		otlptracehttp.WithHeaders(headers),
		otlptracehttp.WithTimeout(t.timeout),
		otlptracehttp.WithCompression(otlptracehttp.GzipCompression),
		// Retries stay within the export's time: a collector that is down
		// costs one batch, dropped and counted, never a growing backlog.
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: true, InitialInterval: 500 * time.Millisecond,
			MaxInterval: 2 * time.Second, MaxElapsedTime: t.timeout}),
	}
	if transport != nil {
		opts = append(opts, otlptracehttp.WithHTTPClient(&http.Client{Transport: transport}))
	}
	exp, err := otlptracehttp.New(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	t.exporter = exp
	attrs := []attribute.KeyValue{attribute.String("service.name", cmpOr(o.ServiceName, "thon-gateway"))}
	if o.Instance != "" {
		attrs = append(attrs, attribute.String("service.instance.id", o.Instance))
	}
	t.batch = &batchCollector{spans: make([]sdktrace.ReadOnlySpan, 0, t.size)}
	t.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(t.batch),
		sdktrace.WithResource(resource.NewSchemaless(attrs...)))
	t.tr = t.tp.Tracer("github.com/thon-dev/thon/internal/gateway")
	go t.run()
	return t, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// record hands a finished request to the tracer; it never waits.
func (t *tracer) record(c callSpan) {
	select {
	case t.queue <- c:
	default:
		t.dropped("queue_full", 1)
		t.warn("gateway: the trace queue is full; dropping spans (the OTLP collector is slow or down)")
	}
}

func (t *tracer) warn(msg string, args ...any) {
	t.warnMu.Lock()
	now := time.Now()
	if now.Sub(t.warnLast) < time.Minute {
		t.warnMu.Unlock()
		return
	}
	t.warnLast = now
	t.warnMu.Unlock()
	t.log.Warn(msg, args...)
}

func (t *tracer) run() {
	defer close(t.done)
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		select {
		case c := <-t.queue:
			t.span(c)
			if len(t.batch.spans) >= t.size {
				t.flush()
			}
		case <-tick.C:
			t.flush()
		case <-t.stop:
			// Send what is queued, but give up (counting the rest as
			// dropped) at the first batch the collector does not take:
			// closing waits for one export timeout at most.
			for {
				select {
				case c := <-t.queue:
					t.span(c)
					if len(t.batch.spans) >= t.size && !t.flush() {
						t.dropped("export_failed", len(t.queue))
						return
					}
				default:
					t.flush()
					return
				}
			}
		}
	}
}

// flush exports the gathered spans; a batch the collector did not take in
// time is dropped and counted. It reports whether the collector took it.
func (t *tracer) flush() bool {
	spans := t.batch.spans
	if len(spans) == 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
	err := t.exporter.ExportSpans(ctx, spans)
	cancel()
	if err != nil {
		t.dropped("export_failed", len(spans))
		t.warn("gateway: could not send traces to the OTLP collector; dropping them", "spans", len(spans), "err", err)
	} else {
		t.exported(len(spans))
	}
	clear(spans)
	t.batch.spans = spans[:0]
	return err == nil
}

// Span attributes. The gen_ai.* ones follow OpenTelemetry's semantic
// conventions for generative AI; user.id and langfuse.* are what Langfuse
// reads for its users and generations.
var opNames = [numEndpoints]string{epChat: "chat", epCompletions: "text_completion", epEmbeddings: "embeddings"}

func (t *tracer) span(c callSpan) {
	op := opNames[c.ep]
	name := op
	if c.model != "" {
		name += " " + c.model
	}
	attrs := make([]attribute.KeyValue, 0, 20)
	attrs = append(attrs,
		attribute.String("gen_ai.operation.name", op),
		attribute.String("gen_ai.request.model", c.model),
		attribute.Int64("gen_ai.usage.input_tokens", c.u.prompt),
		attribute.Int64("gen_ai.usage.output_tokens", c.u.completion),
		attribute.Int("http.response.status_code", c.status),
		attribute.String("thon.key", c.keyID),
		attribute.String("thon.group", c.group),
		attribute.String("thon.outcome", c.outcome),
		attribute.Bool("thon.stream", c.stream),
		attribute.Float64("thon.queue_wait_ms", float64(c.waited.Microseconds())/1000),
		attribute.String("langfuse.observation.type", "generation"),
	)
	if c.user != "" {
		attrs = append(attrs, attribute.String("user.id", c.user), attribute.String("thon.user", c.user))
	}
	if c.group != "" {
		attrs = append(attrs, attribute.StringSlice("langfuse.trace.tags", []string{"group:" + c.group}))
	}
	if !c.firstToken.IsZero() {
		attrs = append(attrs,
			attribute.Float64("thon.time_to_first_token_ms", float64(c.firstToken.Sub(c.start).Microseconds())/1000),
			attribute.String("langfuse.observation.completion_start_time", c.firstToken.UTC().Format(time.RFC3339Nano)))
	}
	_, s := t.tr.Start(context.Background(), name, trace.WithTimestamp(c.start), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attrs...))
	if !c.firstToken.IsZero() {
		s.AddEvent("first_token", trace.WithTimestamp(c.firstToken))
	}
	if c.status >= 400 || c.outcome != "ok" {
		s.SetStatus(codes.Error, c.outcome)
	} else {
		s.SetStatus(codes.Ok, "")
	}
	s.End(trace.WithTimestamp(c.end))
}

// close sends what is queued (for at most the export timeout) and stops.
func (t *tracer) close() {
	if t == nil {
		return
	}
	t.stopOnce.Do(func() {
		close(t.stop)
		<-t.done
		ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
		defer cancel()
		t.exporter.Shutdown(ctx)
		t.tp.Shutdown(ctx)
	})
}

// statusWriter remembers the status sent to the client, for the span.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// startSpan begins the record of an LLM request: who sends it. A user key
// names its user; a group key names the user when the request comes from
// their sandbox (Options.Caller).
func (g *Gateway) startSpan(key *Key, ep endpoint, callerUser, callerGroup string) *callSpan {
	cs := &callSpan{start: time.Now(), ep: ep, keyID: key.ID, group: key.Group}
	if kind, owner, ok := ParseKeyID(key.ID); ok {
		if kind == KindUser {
			cs.user = owner
		} else {
			cs.user = callerUser
			if cs.group == "" {
				cs.group = owner
			}
		}
	}
	if cs.group == "" {
		cs.group = callerGroup
	}
	return cs
}

// endSpan hands the finished request to the tracer: status is what the
// client was sent (0: nothing), gone whether the client left.
func (g *Gateway) endSpan(cs *callSpan, status int, gone bool) {
	cs.end = time.Now()
	cs.status = status
	switch {
	case status == 0:
		cs.status = 499 // nothing sent: the client left first (nginx's code)
		cs.outcome = "client_gone"
	case gone && cs.outcome == "":
		cs.outcome = "client_gone"
	case cs.outcome == "" && status < 400:
		cs.outcome = "ok"
	case cs.outcome == "":
		cs.outcome = "error"
	}
	g.traces.record(*cs)
}

// note sets the outcome of a traced request (cs nil: not traced).
func (cs *callSpan) note(outcome string) {
	if cs != nil && cs.outcome == "" {
		cs.outcome = outcome
	}
}
