package orchestrator

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/thon-dev/thon/internal/sandbox"
)

// Usage sampling: how often, and how often the (slower) disk measure.
const (
	DefaultUsageInterval = 15 * time.Second
	// diskEvery: the workspaces' sizes are measured every diskEvery-th
	// sample (a minute by default); the last size is shown meanwhile.
	diskEvery = 4
)

// Resources is what one participant's running sandbox used at the last
// sample; a measure is sandbox.Unknown (-1) when the engine cannot take it.
type Resources struct {
	// CPU is the cores in use: averaged between the last two samples
	// (from the engine's CPU time), or the engine's own rate.
	CPU         float64   `json:"cpu"`
	Memory      int64     `json:"memory"`
	MemoryLimit int64     `json:"memory_limit"`
	Disk        int64     `json:"disk"` // the workspace's bytes
	At          time.Time `json:"at"`
}

// UsageSample is the last sample of every running sandbox.
type UsageSample struct {
	At        time.Time            `json:"at,omitzero"`
	Sandboxes map[string]Resources `json:"sandboxes"`
	Machine   sandbox.Machine      `json:"machine"`
	// Note says why measures are unknown, Error why the last sample failed.
	Note  string `json:"note,omitempty"`
	Error string `json:"error,omitempty"`
}

// usage holds the sampler's state.
type usage struct {
	mu    sync.Mutex
	last  UsageSample
	cpu   map[string]cpuReading // user → the previous CPU time reading
	disk  map[string]int64      // user → the last disk measure
	count int
	// needDisk: a sandbox was sampled without a disk measure yet; the
	// next sample measures disks, not waiting for its turn.
	needDisk bool
}

type cpuReading struct {
	id  string
	cpu time.Duration
	at  time.Time
}

// Usage returns the last sample (empty before the first).
func (o *Orchestrator) Usage() UsageSample {
	o.use.mu.Lock()
	defer o.use.mu.Unlock()
	s := o.use.last
	if s.Sandboxes == nil {
		s.Machine = sandbox.Machine{CPUs: sandbox.Unknown, Memory: sandbox.Unknown}
	}
	return s
}

// SampleUsage takes one sample of every running sandbox from the engine
// (its disk too, every diskEvery-th time and after a sandbox is first seen) and advances the participants'
// running time by it. Run calls it every UsageInterval; reads
// (Status, Usage) never wait for the engine.
func (o *Orchestrator) SampleUsage(ctx context.Context) error {
	o.use.mu.Lock()
	disk := (o.use.count%diskEvery == 0 || o.use.needDisk) && o.caps.DiskUsage
	o.use.count++
	o.use.needDisk = false
	o.use.mu.Unlock()
	rep, err := o.rt.Usage(ctx, sandbox.UsageOptions{Disk: disk})
	now := o.clock()
	if err != nil {
		o.use.mu.Lock()
		o.use.last.Error = userMessage(err)
		o.use.mu.Unlock()
		return err
	}
	o.use.mu.Lock()
	if o.use.cpu == nil {
		o.use.cpu, o.use.disk = map[string]cpuReading{}, map[string]int64{}
	}
	s := UsageSample{At: now, Sandboxes: make(map[string]Resources, len(rep.Sandboxes)), Machine: rep.Machine, Note: rep.Note}
	seen := map[string]bool{}
	for _, u := range rep.Sandboxes {
		seen[u.User] = true
		r := Resources{CPU: u.CPU, Memory: u.Memory, MemoryLimit: u.MemoryLimit, Disk: sandbox.Unknown, At: now}
		if u.CPUTime != sandbox.Unknown {
			r.CPU = sandbox.Unknown
			if prev, ok := o.use.cpu[u.User]; ok && prev.id == u.ID && u.CPUTime >= prev.cpu && now.After(prev.at) {
				r.CPU = float64(u.CPUTime-prev.cpu) / float64(now.Sub(prev.at))
			}
			o.use.cpu[u.User] = cpuReading{id: u.ID, cpu: u.CPUTime, at: now}
		}
		if disk && u.Disk != sandbox.Unknown {
			o.use.disk[u.User] = u.Disk
		}
		if d, ok := o.use.disk[u.User]; ok {
			r.Disk = d
		} else if !disk {
			o.use.needDisk = true // a sandbox new since: measure it next time
		}
		s.Sandboxes[u.User] = r
	}
	for user := range o.use.cpu {
		if !seen[user] {
			delete(o.use.cpu, user)
			delete(o.use.disk, user)
		}
	}
	o.use.last = s
	o.use.mu.Unlock()

	// Running time: sandboxes the engine measured that THON has as
	// running (a paused one holds memory but does not run).
	boxes, err := o.st.Sandboxes(ctx)
	if err != nil {
		return err
	}
	var running []string
	for user := range seen {
		if b, ok := boxes[user]; ok && b.State == string(sandbox.StateRunning) {
			running = append(running, user)
		}
	}
	sort.Strings(running)
	return o.st.TrackRunning(ctx, now, running)
}

func (o *Orchestrator) clock() time.Time {
	if o.now != nil {
		return o.now()
	}
	return time.Now()
}

// runUsage samples every interval until ctx ends.
func (o *Orchestrator) runUsage(ctx context.Context) {
	t := time.NewTicker(o.usageEvery)
	defer t.Stop()
	for {
		if err := o.SampleUsage(ctx); err != nil && ctx.Err() == nil {
			o.log.Debug("usage sample failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RunningTimes is how long each participant's sandbox has run over the
// event (kept across restarts), keyed by user.
func (o *Orchestrator) RunningTimes(ctx context.Context) (map[string]time.Duration, error) {
	rts, err := o.st.RunningTimes(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]time.Duration, len(rts))
	for u, r := range rts {
		out[u] = r.Total
	}
	return out, nil
}
