package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/orchestrator"
)

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printStatusTable writes the participants' table.
func printStatusTable(w io.Writer, items []client.Status) { printStatus(w, items, nil) }

// printStatus prints the status table; with res (-o wide) also each
// sandbox's CPU, memory, workspace disk and running time, and a last line
// with the total beside the machine's.
func printStatus(w io.Writer, items []client.Status, res *client.Resources) {
	bw := bufio.NewWriter(w) // tabwriter writes cell by cell: one syscall each otherwise
	defer bw.Flush()
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	head := "USER\tGROUP\tSTATE\tWORKSPACE\tURL\tENDPOINT\tAGE\tLAST ACTIVE"
	if res != nil {
		head += "\tCPU\tMEMORY\tDISK\tRUNNING"
	}
	fmt.Fprintln(tw, head)
	now := time.Now()
	for _, s := range items {
		state := s.State
		if s.Outdated {
			state += " (outdated)"
		}
		endpoint := s.Endpoint
		if endpoint == "" {
			endpoint = "-"
		}
		age := "-"
		if !s.Created.IsZero() {
			age = humanAge(now.Sub(s.Created))
		}
		url := s.URL
		if url == "" {
			url = "-"
		}
		active := "-"
		if !s.LastActive.IsZero() {
			active = humanAge(max(now.Sub(s.LastActive), 0)) + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", s.User, s.Group, state, s.Workspace, url, endpoint, age, active)
		if res != nil {
			running := "-"
			if s.RunningSeconds > 0 {
				running = fmt.Sprintf("%.1fh", s.RunningSeconds/3600)
			}
			mem := "-"
			if s.Memory != nil {
				mem = humanBytes(*s.Memory)
				if s.MemoryLimit > 0 {
					mem += " / " + humanBytes(s.MemoryLimit)
				}
			}
			fmt.Fprintf(tw, "\t%s\t%s\t%s\t%s", cores(s.CPU), mem, bytesOrDash(s.Disk), running)
		}
		fmt.Fprintln(tw)
	}
	if res != nil {
		fmt.Fprintf(tw, "TOTAL (%d running)\t\t\t\t\t\t\t\t%.2f of %s\t%s of %s\t%s\t\n", res.Sandboxes, res.CPU, machineCPUs(res.MachineCPUs), humanBytes(res.Memory), machineBytes(res.MachineMemory), humanBytes(res.Disk))
	}
	tw.Flush()
	if res != nil && res.Note != "" {
		fmt.Fprintf(w, "usage: %s\n", res.Note)
	}
	if res != nil && res.Error != "" {
		fmt.Fprintf(w, "usage: the last sample failed: %s\n", res.Error)
	}
}

// cores is a CPU measure in cores ("-": not measured).
func cores(c *float64) string {
	if c == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", *c)
}

func bytesOrDash(b *int64) string {
	if b == nil {
		return "-"
	}
	return humanBytes(*b)
}

func machineCPUs(c float64) string {
	if c < 0 {
		return "unknown"
	}
	return fmt.Sprintf("%g cores", c)
}

func machineBytes(b int64) string {
	if b < 0 {
		return "unknown"
	}
	return humanBytes(b)
}

// humanBytes is a size in binary units, one decimal ("512 B", "1.5 GiB").
func humanBytes(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

func humanAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

// progress shows a bulk action advancing: a redrawn bar on a terminal,
// one plain line per finished sandbox elsewhere (logs, CI, pipes).
type progress struct {
	mu     sync.Mutex
	w      io.Writer
	tty    bool
	title  string
	start  time.Time
	active map[string]string // user → phase
	failed int
	drawn  bool
}

func newProgress(e *env, title string) *progress {
	return &progress{w: e.stderr(), tty: e.io.IsTTY, title: title, start: time.Now(), active: map[string]string{}}
}

func (p *progress) update(ev client.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ev.Phase != "done" {
		p.active[ev.User] = ev.Phase
		if p.tty {
			p.draw(ev.Done, ev.Total)
		}
		return
	}
	delete(p.active, ev.User)
	r := ev.Res
	if r.Outcome == orchestrator.OutcomeFailed {
		p.failed++
	}
	if !p.tty {
		line := fmt.Sprintf("[%*d/%d] %-20s %-10s", len(fmt.Sprint(ev.Total)), ev.Done, ev.Total, r.User, r.Outcome)
		if r.Error != "" {
			line += " " + r.Error
		} else {
			line += fmt.Sprintf(" %s %.1fs", r.State, r.Seconds)
		}
		fmt.Fprintln(p.w, strings.TrimRight(line, " "))
		return
	}
	if r.Outcome == orchestrator.OutcomeFailed {
		p.clear()
		fmt.Fprintf(p.w, "✗ %s: %s\n", r.User, r.Error)
	}
	p.draw(ev.Done, ev.Total)
}

func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[2K")
	}
}

func (p *progress) draw(done, total int) {
	const width = 30
	filled := 0
	if total > 0 {
		filled = done * width / total
	}
	bar := strings.Repeat("█", filled) + strings.Repeat("░", width-filled)
	phases := map[string][]string{}
	for u, ph := range p.active {
		phases[ph] = append(phases[ph], u)
	}
	var busy []string
	for _, ph := range []string{"creating", "starting", "waiting"} {
		if us := phases[ph]; len(us) > 0 {
			sort.Strings(us)
			s := ph + " " + us[0]
			if len(us) > 1 {
				s += fmt.Sprintf(" +%d", len(us)-1)
			}
			busy = append(busy, s)
		}
	}
	status := fmt.Sprintf("%s [%s] %d/%d", p.title, bar, done, total)
	if p.failed > 0 {
		status += fmt.Sprintf(" · %d failed", p.failed)
	}
	status += fmt.Sprintf(" · %.0fs", time.Since(p.start).Seconds())
	if len(busy) > 0 {
		status += " · " + strings.Join(busy, ", ")
	}
	p.clear()
	fmt.Fprint(p.w, status)
	p.drawn = true
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.drawn {
		fmt.Fprintln(p.w)
	}
}

// stepProgress shows a long build's steps (imagebuild.Progress): on a
// terminal the current step on one line, redrawn every second with how long
// it has taken, and each finished step left above it with its time;
// elsewhere (logs, CI, pipes) one plain line per step.
type stepProgress struct {
	mu        sync.Mutex
	w         io.Writer
	tty       bool
	line      string // the current step, "[2/7] install …"
	stepStart time.Time
	drawn     bool
	stop      chan struct{}
	stopped   chan struct{}
}

func newStepProgress(e *env) *stepProgress {
	p := &stepProgress{w: e.stderr(), tty: e.io.IsTTY}
	if p.tty {
		p.stop, p.stopped = make(chan struct{}), make(chan struct{})
		go p.tick()
	}
	return p
}

// step is an imagebuild.Progress.
func (p *stepProgress) step(step string, done, total int) {
	line := fmt.Sprintf("[%d/%d] %s", done, total, step)
	p.mu.Lock()
	defer p.mu.Unlock()
	if line == p.line {
		return
	}
	if !p.tty {
		fmt.Fprintln(p.w, line)
		p.line = line
		return
	}
	p.endStep()
	p.line, p.stepStart = line, time.Now()
	p.draw()
}

// endStep leaves the current step on a line of its own, with its time.
func (p *stepProgress) endStep() {
	if p.line == "" {
		return
	}
	p.clear()
	fmt.Fprintf(p.w, "✓ %s (%s)\n", p.line, time.Since(p.stepStart).Round(time.Second))
	p.line = ""
}

func (p *stepProgress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[2K")
		p.drawn = false
	}
}

func (p *stepProgress) draw() {
	p.clear()
	fmt.Fprintf(p.w, "… %s · %.0fs", p.line, time.Since(p.stepStart).Seconds())
	p.drawn = true
}

func (p *stepProgress) tick() {
	defer close(p.stopped)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			if p.line != "" {
				p.draw()
			}
			p.mu.Unlock()
		}
	}
}

// finish ends the display. ok=false (the build failed) leaves the current
// step on its line without the check mark.
func (p *stepProgress) finish(ok bool) {
	if !p.tty {
		return
	}
	close(p.stop)
	<-p.stopped
	p.mu.Lock()
	defer p.mu.Unlock()
	if ok {
		p.endStep()
		return
	}
	if p.line != "" {
		p.clear()
		fmt.Fprintf(p.w, "✗ %s (%s)\n", p.line, time.Since(p.stepStart).Round(time.Second))
		p.line = ""
	}
}
