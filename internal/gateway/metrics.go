package gateway

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	maxModelLabels = 64
	maxGroupLabels = 256
)

type metrics struct {
	requests     *prometheus.CounterVec
	tokens       *prometheus.CounterVec
	rejections   *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	inFlight     prometheus.Gauge
	redisUp      prometheus.Gauge
	usageDropped prometheus.Counter
	spansSent    prometheus.Counter
	spansDropped *prometheus.CounterVec
	queueLen     *prometheus.GaugeVec
	queueWait    *prometheus.HistogramVec
	slots        *prometheus.GaugeVec
	slotsBusy    *prometheus.GaugeVec

	// Resolved children, so the hot path does no label hashing.
	mu         sync.RWMutex
	models     map[string][2]prometheus.Counter // model → prompt, completion
	codes      map[[2]string]prometheus.Counter
	reasons    [len(reasonNames)]prometheus.Counter
	latencyBy  [numEndpoints]prometheus.Observer
	rejectedBy map[string]prometheus.Counter
	labels     map[string]string // model or "group\x00"+group → its label ("other" past the limits)
	nModels    int
	nGroups    int
	queues     map[[2]string]queueMetrics
}

type queueMetrics struct {
	length prometheus.Gauge
	wait   prometheus.Observer
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "thon", Subsystem: "gateway",
			Name: "requests_total", Help: "Requests answered, by endpoint and HTTP status."}, []string{"endpoint", "code"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "thon", Subsystem: "gateway",
			Name: "tokens_total", Help: "Tokens reported by the upstream, by model and kind (prompt, completion)."}, []string{"model", "kind"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "thon", Subsystem: "gateway",
			Name: "rejections_total", Help: "Requests refused by the gateway, by reason."}, []string{"reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "thon", Subsystem: "gateway",
			Name: "upstream_latency_seconds", Help: "Time from sending a request upstream to its response headers.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}}, []string{"endpoint"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "thon", Subsystem: "gateway",
			Name: "in_flight", Help: "Requests being proxied now."}),
		redisUp: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "thon", Subsystem: "gateway",
			Name: "redis_up", Help: "1 while the shared Redis counters answer, 0 during an outage."}),
		usageDropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "thon", Subsystem: "gateway",
			Name: "usage_dropped_total", Help: "Usage records dropped because the usage buffer was full."}),
		spansSent: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "thon", Subsystem: "gateway",
			Name: "trace_spans_exported_total", Help: "Trace spans of LLM requests the OTLP collector accepted."}),
		spansDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "thon", Subsystem: "gateway",
			Name: "trace_spans_dropped_total", Help: "Trace spans of LLM requests dropped: queue_full (the collector is slower than the requests), export_failed (it refused them, or did not answer in time)."}, []string{"reason"}),
		queueLen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "thon", Subsystem: "gateway",
			Name: "model_queue_length", Help: "Requests waiting for a slot of the model, by model and the key's group."}, []string{"model", "group"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "thon", Subsystem: "gateway",
			Name: "model_queue_wait_seconds", Help: "Time requests waited for a slot of the model (served, timed out or left), by model and the key's group.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}}, []string{"model", "group"}),
		slots: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "thon", Subsystem: "gateway",
			Name: "model_slots", Help: "Slots the upstream has for the model (requests it is given at once at most)."}, []string{"model"}),
		slotsBusy: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "thon", Subsystem: "gateway",
			Name: "model_slots_busy", Help: "Slots of the model held by this gateway's requests now."}, []string{"model"}),
		labels:     make(map[string]string),
		queues:     make(map[[2]string]queueMetrics),
		models:     make(map[string][2]prometheus.Counter),
		codes:      make(map[[2]string]prometheus.Counter),
		rejectedBy: make(map[string]prometheus.Counter),
	}
	for i, n := range reasonNames {
		if n != "" {
			m.reasons[i] = m.rejections.WithLabelValues(n)
		}
	}
	for i, n := range endpointNames {
		m.latencyBy[i] = m.latency.WithLabelValues(n)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.tokens, m.rejections, m.latency, m.inFlight, m.redisUp, m.usageDropped,
		m.spansSent, m.spansDropped, m.queueLen, m.queueWait, m.slots, m.slotsBusy} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("register gateway metrics: %w (use one registry per gateway)", err)
			}
			return nil, fmt.Errorf("register gateway metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) request(ep endpoint, code int) {
	k := [2]string{endpointNames[ep], strconv.Itoa(code)}
	m.mu.RLock()
	c, ok := m.codes[k]
	m.mu.RUnlock()
	if !ok {
		c = m.requests.WithLabelValues(k[0], k[1])
		m.mu.Lock()
		m.codes[k] = c
		m.mu.Unlock()
	}
	c.Inc()
}

// reject counts a refusal; other is used for reasons outside the limits
// (auth, model_not_allowed, body_too_large, …).
func (m *metrics) reject(r reason, other string) {
	if other == "" {
		m.reasons[r].Inc()
		return
	}
	m.mu.RLock()
	c, ok := m.rejectedBy[other]
	m.mu.RUnlock()
	if !ok {
		c = m.rejections.WithLabelValues(other)
		m.mu.Lock()
		m.rejectedBy[other] = c
		m.mu.Unlock()
	}
	c.Inc()
}

func (m *metrics) addTokens(model string, u tokenUsage) {
	if u.prompt == 0 && u.completion == 0 {
		return
	}
	m.mu.RLock()
	c, ok := m.models[model]
	n := len(m.models)
	m.mu.RUnlock()
	if !ok {
		label := model
		if n >= maxModelLabels {
			label = "other"
		}
		c = [2]prometheus.Counter{m.tokens.WithLabelValues(label, "prompt"), m.tokens.WithLabelValues(label, "completion")}
		if n < maxModelLabels {
			m.mu.Lock()
			m.models[model] = c
			m.mu.Unlock()
		}
	}
	c[0].Add(float64(u.prompt))
	c[1].Add(float64(u.completion))
}

// label is the metric label of a model or group: itself for the first
// ones seen, "other" past the limit (no unbounded series).
func (m *metrics) label(kind, name string) string {
	k := kind + "\x00" + name
	m.mu.RLock()
	l, ok := m.labels[k]
	m.mu.RUnlock()
	if ok {
		return l
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.labels[k]; ok {
		return l
	}
	n, limit := &m.nModels, maxModelLabels
	if kind == "group" {
		n, limit = &m.nGroups, maxGroupLabels
	}
	l = name
	if *n >= limit {
		l = "other"
	} else {
		*n++
	}
	if len(m.labels) < 4*(maxModelLabels+maxGroupLabels) {
		m.labels[k] = l
	}
	return l
}

func (m *metrics) queue(model, group string) queueMetrics {
	k := [2]string{m.label("model", model), m.label("group", group)}
	m.mu.RLock()
	q, ok := m.queues[k]
	m.mu.RUnlock()
	if !ok {
		q = queueMetrics{length: m.queueLen.WithLabelValues(k[0], k[1]), wait: m.queueWait.WithLabelValues(k[0], k[1])}
		m.mu.Lock()
		m.queues[k] = q
		m.mu.Unlock()
	}
	return q
}

// queued counts a request joining (+1) or leaving (-1) a model's queue.
func (m *metrics) queued(model, group string, d float64) { m.queue(model, group).length.Add(d) }

func (m *metrics) waited(model, group string, d time.Duration) {
	m.queue(model, group).wait.Observe(d.Seconds())
}

func (m *metrics) slotCap(model string, n int) {
	m.slots.WithLabelValues(m.label("model", model)).Set(float64(n))
}

func (m *metrics) slotBusy(model string, n int) {
	m.slotsBusy.WithLabelValues(m.label("model", model)).Set(float64(n))
}
