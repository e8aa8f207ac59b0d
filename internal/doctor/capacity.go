package doctor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/internal/sandbox"
)

// ProbeUser and ProbeGroup name the throwaway sandbox the doctor measures
// when no participant's sandbox runs.
const (
	ProbeUser  = "thon-doctor"
	ProbeGroup = "thon-doctor"
)

// Capacity is how many participants this machine holds.
type Capacity struct {
	// Measured: the figures per participant come from a running sandbox.
	Measured bool `json:"measured"`
	// Source says which sandboxes were measured (or why none was).
	Source string `json:"source"`
	// Idle is how many idle participants fit, and what limits that.
	Idle      int    `json:"idle"`
	IdleLimit string `json:"idle_limit,omitempty"` // memory, cpu, ports
	// AtLimits is how many fit when every sandbox uses its whole
	// sandbox.limits at once, and what limits that: memory or ports (CPU
	// is shared, so it slows sandboxes down rather than limiting them).
	AtLimits      int    `json:"at_limits"`
	AtLimitsLimit string `json:"at_limits_limit,omitempty"`
	// One idle sandbox, as measured.
	SandboxMemory int64   `json:"sandbox_memory_bytes"`
	SandboxCPU    float64 `json:"sandbox_cpu_cores"`
	SandboxPids   int64   `json:"sandbox_pids"`
	// The LLM server THON runs (0 when it runs elsewhere or not at all).
	LLMMemory int64 `json:"llm_memory_bytes"`
	// The machine.
	HostMemory int64 `json:"host_memory_bytes"`
	HostCPUs   int   `json:"host_cpus"`
	// Reserved is the memory kept for the system and THON itself.
	Reserved  int64      `json:"reserved_bytes"`
	Resources []Resource `json:"resources"`
	Notes     []string   `json:"notes,omitempty"`
}

// Resource is one resource's part of the estimate.
type Resource struct {
	Name      string  `json:"name"`      // memory, cpu, ports
	Available float64 `json:"available"` // bytes, cores or ports
	Idle      float64 `json:"idle"`      // one idle participant's share
	Limit     float64 `json:"limit"`     // one participant at sandbox.limits (0: no limit)
	HoldsIdle int     `json:"holds_idle"`
	HoldsAt   int     `json:"holds_at_limits"` // -1: unlimited
}

// reserved is the memory the system and THON keep.
const reserved = 1 << 30

// measured is the sandbox the doctor measured (and reached the gateway from).
type measured struct {
	users   []string // measured sandboxes
	probe   bool     // a throwaway one the doctor started
	usage   sandbox.Usage
	cpu     float64
	err     error // why nothing was measured
	cleanup func()
}

// sandbox finds running sandboxes (or starts a probe) and measures them.
func (d *doc) sandbox(ctx context.Context) *measured {
	m := &measured{}
	if d.meter == nil {
		m.err = fmt.Errorf("the %s engine offers no measurements", d.o.Runtime.Name())
		return m
	}
	list, err := d.o.Runtime.List(ctx)
	if err != nil {
		m.err = err
		return m
	}
	var running []string
	for _, in := range list {
		if in.State == sandbox.StateRunning && in.User != ProbeUser {
			running = append(running, in.User)
		}
	}
	sort.Strings(running)
	if len(running) == 0 {
		if !d.o.Probe {
			m.err = errors.New("no sandbox runs (run thon doctor once participants' sandboxes run, or let it start a probe)")
			return m
		}
		user, cleanup, err := d.startProbe(ctx)
		if err != nil {
			m.err = fmt.Errorf("a probe sandbox did not come up: %w", err)
			return m
		}
		m.cleanup, m.probe, running = cleanup, true, []string{user}
	}
	if len(running) > 3 {
		running = running[:3]
	}
	d.o.Progress(fmt.Sprintf("measuring %s for %s…", strings.Join(running, ", "), d.o.Window))
	type sample struct {
		u   sandbox.Usage
		cpu float64
		err error
	}
	out := make([]sample, len(running))
	done := make(chan struct{})
	for i, user := range running {
		go func() {
			defer func() { done <- struct{}{} }()
			first, err := d.meter.SandboxUsage(ctx, user)
			if err != nil {
				out[i].err = err
				return
			}
			select {
			case <-ctx.Done():
				out[i].err = ctx.Err()
				return
			case <-time.After(d.o.Window):
			}
			second, err := d.meter.SandboxUsage(ctx, user)
			out[i] = sample{u: second, cpu: second.CPUCores(first), err: err}
		}()
	}
	for range running {
		<-done
	}
	var mems []int64
	var cpus []float64
	for i, s := range out {
		if s.err != nil {
			m.err = s.err
			continue
		}
		m.users = append(m.users, running[i])
		mems = append(mems, s.u.MemoryBytes)
		cpus = append(cpus, s.cpu)
		m.usage.Pids = max(m.usage.Pids, s.u.Pids)
	}
	if len(m.users) == 0 {
		return m
	}
	m.err = nil
	slices.Sort(mems)
	slices.Sort(cpus)
	m.usage.MemoryBytes = mems[len(mems)/2] // the median
	m.cpu = cpus[len(cpus)/2]
	return m
}

// startProbe creates and starts a throwaway sandbox from the event's
// settings, waits for its IDE and lets it settle.
func (d *doc) startProbe(ctx context.Context) (string, func(), error) {
	for _, u := range d.cfg.Users() {
		if u.Name == ProbeUser {
			return "", nil, fmt.Errorf("a participant is called %s, the probe's name", ProbeUser)
		}
	}
	rt := d.o.Runtime
	spec := orchestrator.SpecFrom(d.cfg.Sandbox, ProbeUser, ProbeGroup)
	spec.Workspace, spec.WorkspaceDir = sandbox.WorkspaceEphemeral, ""
	remove := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		rt.Remove(rctx, ProbeUser, true)
	}
	remove() // one left over from an interrupted run
	d.o.Progress("starting a probe sandbox from " + spec.Image + "…")
	if err := rt.Prepare(ctx, spec); err != nil {
		return "", nil, err
	}
	if _, err := rt.Create(ctx, spec); err != nil {
		return "", nil, err
	}
	in, err := rt.Start(ctx, ProbeUser)
	if err != nil {
		remove()
		return "", nil, err
	}
	if err := waitHealthy(ctx, rt, in, spec.HealthPath, d.cfg.Sandbox.StartupTimeout.D()); err != nil {
		remove()
		return "", nil, err
	}
	d.o.Progress(fmt.Sprintf("its IDE answers; letting it settle for %s…", d.o.Settle))
	select {
	case <-ctx.Done():
		remove()
		return "", nil, ctx.Err()
	case <-time.After(d.o.Settle):
	}
	return ProbeUser, remove, nil
}

// waitHealthy polls the sandbox's health path until it answers 2xx.
func waitHealthy(ctx context.Context, rt sandbox.Runtime, in sandbox.Instance, path string, limit time.Duration) error {
	if limit <= 0 {
		limit = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	last := "no endpoint yet"
	for {
		if in.Endpoint == "" {
			if i, err := rt.Inspect(ctx, in.User); err == nil {
				in = i
			}
		}
		if in.Endpoint != "" {
			resp, err := hc.Get("http://" + in.Endpoint + path)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					return nil
				}
				last = resp.Status
			} else {
				last = err.Error()
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("its IDE did not answer %s within %s (%s)", path, limit, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// gateway checks that a sandbox reaches the AI gateway.
func (d *doc) gateway(ctx context.Context, sb *measured) {
	if !d.cfg.Gateway.Enabled {
		d.add(Check{ID: "gateway", Name: "AI gateway from a sandbox", Status: OK, Detail: "off (gateway.enabled: false)"})
		return
	}
	c := Check{ID: "gateway", Name: "AI gateway from a sandbox"}
	defer func() { d.add(c) }()
	url := d.cfg.GatewayForSandboxes() + "/models"
	switch {
	case !d.o.Daemon:
		c.Status, c.Detail = Warn, "not checked: the THON daemon, which serves the gateway, does not run"
		c.Fix = "start THON (sudo systemctl start thon, or thon run), then run thon doctor again"
		return
	case sb == nil || len(sb.users) == 0:
		c.Status, c.Detail = Warn, "not checked: "+errText(sb)
		c.Fix = "run thon doctor again once a sandbox runs (thon run)"
		return
	}
	user := sb.users[0]
	code, out, err := fetchFrom(ctx, d.meter, user, url)
	who := user + "'s sandbox"
	if sb.probe {
		who = "a probe sandbox"
	}
	if err != nil {
		c.Status, c.Detail = Fail, fmt.Sprintf("%s cannot reach %s: %v", who, url, err)
		c.Fix = fmt.Sprintf("gateway.listen (%s) must listen on more than 127.0.0.1, and a firewall must let the sandboxes' network reach that port on this host (e.g. sudo ufw allow in on the engine's bridge to port %s)", d.cfg.Gateway.Listen, portOf(d.cfg.Gateway.Listen))
		if out != "" {
			c.Detail += ": " + firstLine(out)
		}
		return
	}
	c.Status, c.Detail = OK, fmt.Sprintf("from %s: %s answered %d", who, url, code)
	if code != http.StatusUnauthorized && code != http.StatusOK {
		c.Status = Warn
		c.Fix = "something other than THON's gateway may answer there: check gateway.sandbox_url"
	}
}

// fetchers are ways to make an HTTP request from inside a sandbox, tried
// in turn: the participant image has curl and node; THON's test image its
// own fetch.
var fetchers = [][]string{
	{"curl", "-sS", "-o", "/dev/null", "-m", "5", "-w", "%{http_code}\n", "URL"},
	{"node", "-e", "fetch(process.argv[1]).then(r=>console.log(r.status),e=>{console.error(String(e.cause||e));process.exit(7)})", "URL"},
	{"/sandboxd", "fetch", "URL"},
}

// fetchFrom GETs url from user's sandbox and returns the HTTP status.
func fetchFrom(ctx context.Context, m sandbox.Meter, user, url string) (int, string, error) {
	var lastErr error
	var lastOut string
	for _, f := range fetchers {
		cmd := slices.Clone(f)
		cmd[len(cmd)-1] = url
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		out, code, err := m.Exec(cctx, user, cmd)
		cancel()
		if err != nil || code == 126 || code == 127 {
			if lastErr == nil {
				lastErr = errors.New("it has none of curl, node or sandboxd to try with")
			}
			continue // no such program here
		}
		if n, err := strconv.Atoi(strings.TrimSpace(firstLine(out))); err == nil && n >= 100 && n < 600 {
			return n, out, nil
		}
		lastErr, lastOut = fmt.Errorf("%s exited %d", cmd[0], code), out
	}
	return 0, lastOut, lastErr
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func portOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return addr[i+1:]
	}
	return addr
}

func errText(sb *measured) string {
	if sb == nil {
		return "the engine does not answer"
	}
	if sb.err != nil {
		return sb.err.Error()
	}
	return "no sandbox was measured"
}

// capacity estimates how many participants fit, from the measurements.
func (d *doc) capacity(ctx context.Context, sb *measured) Capacity {
	cp := Capacity{Reserved: reserved}
	c := Check{ID: "capacity", Name: "Capacity"}
	defer func() { d.add(c) }()
	if d.host == nil {
		cp.Source = "not measured: the engine does not describe its machine"
		c.Status, c.Detail = Warn, cp.Source
		return cp
	}
	cp.HostMemory, cp.HostCPUs = d.host.Memory, d.host.CPUs
	if sb == nil || len(sb.users) == 0 {
		cp.Source = "not measured: " + errText(sb)
		c.Status, c.Detail = Warn, cp.Source
		c.Fix = "run thon doctor once a sandbox runs, or with --probe"
		return cp
	}
	cp.Measured = true
	cp.Source = "measured on " + strings.Join(sb.users, ", ") + " (running)"
	if sb.probe {
		cp.Source = "measured on a probe sandbox started from " + d.cfg.Sandbox.Image + " (without the assistants' extensions)"
	}
	cp.SandboxMemory, cp.SandboxCPU, cp.SandboxPids = sb.usage.MemoryBytes, sb.cpu, sb.usage.Pids
	// The LLM server THON runs takes its share first.
	if d.cfg.LLM.Enabled && d.cfg.LLM.IsManaged() {
		if u, err := d.meter.ServiceUsage(ctx, "llm"); err == nil {
			cp.LLMMemory = u.MemoryBytes
		} else {
			cp.Notes = append(cp.Notes, "THON's LLM server does not run: its memory (about the model file's size) is not counted")
		}
	} else if d.cfg.LLM.Enabled {
		cp.Notes = append(cp.Notes, "the LLM server runs outside THON: if it is on this machine, its memory is not counted")
	}
	idleCPU := max(cp.SandboxCPU, 0.001) // below what the engine resolves in the window
	mem := float64(cp.HostMemory - cp.LLMMemory - reserved)
	lim := d.cfg.Sandbox.Limits
	res := []Resource{
		holds("memory", mem, float64(cp.SandboxMemory), float64(lim.Memory)),
		holds("cpu", float64(cp.HostCPUs), idleCPU, lim.CPU),
	}
	if d.cfg.Access.Mode == config.ModePort {
		if first, last, err := d.cfg.Access.Ports(); err == nil {
			res = append(res, holds("ports", float64(last-first+1), 1, 1))
		}
	}
	cp.Resources = res
	cp.Idle, cp.IdleLimit = math.MaxInt, ""
	cp.AtLimits, cp.AtLimitsLimit = math.MaxInt, ""
	for _, r := range res {
		if r.HoldsIdle < cp.Idle {
			cp.Idle, cp.IdleLimit = r.HoldsIdle, r.Name
		}
		// CPU is shared, not used up: busy sandboxes slow each other
		// down, none fails. Memory (and ports) run out.
		if r.Name != "cpu" && r.HoldsAt >= 0 && r.HoldsAt < cp.AtLimits {
			cp.AtLimits, cp.AtLimitsLimit = r.HoldsAt, r.Name
		}
	}
	if cp.AtLimits == math.MaxInt {
		cp.AtLimits, cp.AtLimitsLimit = cp.Idle, cp.IdleLimit
	}
	if cpu := res[1]; cpu.HoldsAt >= 0 && d.o.Participants > cpu.HoldsAt {
		cp.Notes = append(cp.Notes, fmt.Sprintf("%d CPUs for %d participants with cpu: %g each: busy at once, they share them (each gets %.2f of a core) and run slower; none fails",
			cp.HostCPUs, d.o.Participants, lim.CPU, float64(cp.HostCPUs)/float64(d.o.Participants)))
	}
	n := d.o.Participants
	c.Detail = fmt.Sprintf("holds %d idle participants (limited by %s), %d all at their full sandbox.limits at once (limited by %s); %d configured",
		cp.Idle, cp.IdleLimit, cp.AtLimits, cp.AtLimitsLimit, n)
	switch {
	case n > cp.Idle:
		c.Status = Fail
		c.Fix = fmt.Sprintf("%d participants do not fit (%s): use a larger machine, fewer participants here, or sandbox.runtime: kubernetes", n, cp.IdleLimit)
	case n > cp.AtLimits:
		c.Status = Warn
		c.Fix = fmt.Sprintf("fine while most are idle, but %d busy at once would need more %s than there is: lower sandbox.limits or use a larger machine", n, cp.AtLimitsLimit)
	default:
		c.Status = OK
	}
	return cp
}

// holds is one resource's share of the estimate.
func holds(name string, available, idle, limit float64) Resource {
	r := Resource{Name: name, Available: available, Idle: idle, Limit: limit, HoldsAt: -1}
	if available < 0 {
		available = 0
	}
	if idle > 0 {
		r.HoldsIdle = int(available / idle)
	}
	if limit > 0 {
		r.HoldsAt = int(available / limit)
	}
	return r
}
