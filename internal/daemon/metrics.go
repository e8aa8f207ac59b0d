package daemon

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thon-dev/thon/internal/orchestrator"
)

// sandboxCollector reports the sandboxes by state, how long running ones
// have been idle (one histogram for the event), and what each group's
// sandboxes use beside the machine's total: no series per participant,
// whose numbers are in the API and `thon status -o wide`.
type sandboxCollector struct {
	orch                       *orchestrator.Orchestrator
	states, idle               *prometheus.Desc
	cpu, memory, disk, running *prometheus.Desc
	machineCPU, machineMem     *prometheus.Desc
	idleBuckets                []float64
}

func newSandboxCollector(o *orchestrator.Orchestrator) *sandboxCollector {
	return &sandboxCollector{
		orch:        o,
		states:      prometheus.NewDesc("thon_sandboxes", "Participants' sandboxes by state (asleep: put to sleep when idle).", []string{"state"}, nil),
		idle:        prometheus.NewDesc("thon_sandbox_idle_seconds", "How long running sandboxes' participants have done nothing (typing, clicking, a terminal), when THON has seen them active.", nil, nil),
		idleBuckets: []float64{60, 300, 900, 1800, 2700, 3600, 7200, 14400},
		cpu:         prometheus.NewDesc("thon_group_cpu_cores", "CPU the group's running sandboxes used at the last sample, in cores (summed; no series per participant).", []string{"group"}, nil),
		memory:      prometheus.NewDesc("thon_group_memory_bytes", "Memory the group's running sandboxes used at the last sample (summed).", []string{"group"}, nil),
		disk:        prometheus.NewDesc("thon_group_workspace_bytes", "Disk the workspaces of the group's running sandboxes take (summed).", []string{"group"}, nil),
		running:     prometheus.NewDesc("thon_group_running_seconds", "How long the group's sandboxes have run over the event (summed over its participants).", []string{"group"}, nil),
		machineCPU:  prometheus.NewDesc("thon_machine_cpus", "CPUs of the machine the sandboxes run on (the engine's host, or the cluster's allocatable).", nil, nil),
		machineMem:  prometheus.NewDesc("thon_machine_memory_bytes", "Memory of the machine the sandboxes run on.", nil, nil),
	}
}

func (c *sandboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.states
	ch <- c.idle
	ch <- c.cpu
	ch <- c.memory
	ch <- c.disk
	ch <- c.running
	ch <- c.machineCPU
	ch <- c.machineMem
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
	type sums struct {
		cpu, running          float64
		memory, disk          int64
		hasCPU, hasMem, hasDk bool
	}
	groups := map[string]*sums{}
	for _, s := range list {
		counts[s.State]++
		g := groups[s.Group]
		if g == nil {
			g = &sums{}
			groups[s.Group] = g
		}
		g.running += s.RunningSeconds
		if s.CPU != nil {
			g.cpu, g.hasCPU = g.cpu+*s.CPU, true
		}
		if s.Memory != nil {
			g.memory, g.hasMem = g.memory+*s.Memory, true
		}
		if s.Disk != nil {
			g.disk, g.hasDk = g.disk+*s.Disk, true
		}
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
	for name, g := range groups {
		ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, g.running, name)
		if g.hasCPU {
			ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.GaugeValue, g.cpu, name)
		}
		if g.hasMem {
			ch <- prometheus.MustNewConstMetric(c.memory, prometheus.GaugeValue, float64(g.memory), name)
		}
		if g.hasDk {
			ch <- prometheus.MustNewConstMetric(c.disk, prometheus.GaugeValue, float64(g.disk), name)
		}
	}
	m := c.orch.Usage().Machine
	if m.CPUs >= 0 {
		ch <- prometheus.MustNewConstMetric(c.machineCPU, prometheus.GaugeValue, m.CPUs)
	}
	if m.Memory >= 0 {
		ch <- prometheus.MustNewConstMetric(c.machineMem, prometheus.GaugeValue, float64(m.Memory))
	}
}
