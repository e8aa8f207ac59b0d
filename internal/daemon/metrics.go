package daemon

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thon-dev/thon/internal/orchestrator"
)

// sandboxCollector reports the sandboxes by state and how long running
// ones have been idle: one histogram for the event, not a series per
// participant.
type sandboxCollector struct {
	orch         *orchestrator.Orchestrator
	states, idle *prometheus.Desc
	idleBuckets  []float64
}

func newSandboxCollector(o *orchestrator.Orchestrator) *sandboxCollector {
	return &sandboxCollector{
		orch:        o,
		states:      prometheus.NewDesc("thon_sandboxes", "Participants' sandboxes by state (asleep: put to sleep when idle).", []string{"state"}, nil),
		idle:        prometheus.NewDesc("thon_sandbox_idle_seconds", "How long running sandboxes' participants have done nothing (typing, clicking, a terminal), when THON has seen them active.", nil, nil),
		idleBuckets: []float64{60, 300, 900, 1800, 2700, 3600, 7200, 14400},
	}
}

func (c *sandboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.states
	ch <- c.idle
}

func (c *sandboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := c.orch.List(ctx, orchestrator.Filter{})
	if err != nil {
		return
	}
	counts := map[string]int{}
	buckets := make(map[float64]uint64, len(c.idleBuckets))
	var n uint64
	var sum float64
	now := time.Now()
	for _, s := range list {
		counts[s.State]++
		if s.State != "running" || s.LastActive.IsZero() {
			continue
		}
		idle := max(now.Sub(s.LastActive).Seconds(), 0)
		n++
		sum += idle
		for _, b := range c.idleBuckets {
			if idle <= b {
				buckets[b]++
			}
		}
	}
	for state, k := range counts {
		ch <- prometheus.MustNewConstMetric(c.states, prometheus.GaugeValue, float64(k), state)
	}
	ch <- prometheus.MustNewConstHistogram(c.idle, n, sum, buckets)
}
