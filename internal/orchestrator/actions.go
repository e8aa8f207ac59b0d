package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/store"
)

// Result is the outcome of one action on one participant's sandbox.
type Result struct {
	User     string  `json:"user"`
	Group    string  `json:"group"`
	Outcome  string  `json:"outcome"`
	State    string  `json:"state"`
	Endpoint string  `json:"endpoint,omitempty"`
	Error    string  `json:"error,omitempty"`
	Seconds  float64 `json:"seconds"`
}

// Progress is reported while a bulk action runs: one per finished sandbox,
// and one when a sandbox enters a new phase ("creating", "waiting").
type Progress struct {
	User  string  `json:"user"`
	Phase string  `json:"phase"` // creating | starting | waiting | done
	Done  int     `json:"done"`
	Total int     `json:"total"`
	Res   *Result `json:"result,omitempty"` // set when Phase == "done"
}

// Summary is the outcome of a bulk action.
type Summary struct {
	Action  Action         `json:"action"`
	Total   int            `json:"total"`
	Counts  map[string]int `json:"counts"`
	Failed  int            `json:"failed"`
	Results []Result       `json:"results"`
	Seconds float64        `json:"seconds"`
}

// BulkOptions tunes a bulk action.
type BulkOptions struct {
	// Purge deletes kept workspaces too (remove only).
	Purge bool
	// Progress, if set, is called (from several goroutines, serialised) as work advances.
	Progress func(Progress)
}

// Plan is a bulk action checked and ready to run: its participants exist and
// the engine is ready (running the image it needs). Callers that answer over
// HTTP plan first, so a bad request is refused before anything streams.
type Plan struct {
	o      *Orchestrator
	action Action
	filter Filter
	users  []store.User
}

// PlanBulk selects the participants of f and checks the engine. Engine-wide
// problems (engine down, image missing) and unknown users or groups are
// returned here, before anything changes.
func (o *Orchestrator) PlanBulk(ctx context.Context, action Action, f Filter) (*Plan, error) {
	if _, err := ParseAction(string(action)); err != nil {
		return nil, err
	}
	users, err := o.st.Users(ctx)
	if err != nil {
		return nil, err
	}
	if err := o.checkFilter(ctx, f, users); err != nil {
		return nil, err
	}
	p := &Plan{o: o, action: action, filter: f}
	for _, u := range users {
		if f.match(u) {
			p.users = append(p.users, u)
		}
	}
	if len(p.users) == 0 {
		return p, nil
	}
	if action != ActionStart && action != ActionRecreate {
		return p, o.rt.Ping(ctx)
	}
	// Every image the selection needs (groups' templates may name others).
	prepared := map[string]bool{}
	for _, u := range p.users {
		if image := o.SettingsFor(u.Group).Image; prepared[image] {
			continue
		} else {
			prepared[image] = true
		}
		if err := o.rt.Prepare(ctx, o.Spec(u.Name, u.Group)); err != nil {
			return p, err
		}
	}
	return p, nil
}

// Bulk plans and runs action on every selected participant.
func (o *Orchestrator) Bulk(ctx context.Context, actor string, action Action, f Filter, opts BulkOptions) (Summary, error) {
	p, err := o.PlanBulk(ctx, action, f)
	if err != nil {
		return Summary{}, err
	}
	return p.Run(ctx, actor, opts), nil
}

// Run carries the plan out, at most settings.concurrency sandboxes at a time.
// One failure never stops the others; the summary lists them all.
func (p *Plan) Run(ctx context.Context, actor string, opts BulkOptions) Summary {
	o, sel := p.o, p.users
	start := time.Now()
	sum := Summary{Action: p.action, Total: len(sel), Counts: map[string]int{}, Results: make([]Result, len(sel))}
	if len(sel) == 0 {
		return sum
	}
	o.event(ctx, actor, "bulk."+string(p.action), p.filter.String(), fmt.Sprintf("%d sandboxes", len(sel)))
	var (
		pmu  sync.Mutex
		done int
	)
	report := func(pr Progress) {
		if opts.Progress == nil {
			return
		}
		pmu.Lock()
		defer pmu.Unlock()
		if pr.Phase == "done" {
			done++
		}
		pr.Done, pr.Total = done, len(sel)
		opts.Progress(pr)
	}
	conc := max(o.Settings().Concurrency, 1)
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i, u := range sel {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			phase := func(ph string) { report(Progress{User: u.Name, Phase: ph}) }
			r := o.do(ctx, actor, p.action, u, opts.Purge, phase, note{})
			sum.Results[i] = r
			report(Progress{User: u.Name, Phase: "done", Res: &r})
		}()
	}
	wg.Wait()
	for _, r := range sum.Results {
		sum.Counts[r.Outcome]++
		if r.Outcome == OutcomeFailed {
			sum.Failed++
		}
	}
	sum.Seconds = time.Since(start).Seconds()
	return sum
}

// Do runs action on one participant's sandbox.
func (o *Orchestrator) Do(ctx context.Context, actor string, action Action, user string, purge bool) (Result, error) {
	u, err := o.st.User(ctx, user)
	if err != nil {
		return Result{}, err
	}
	if action == ActionStart || action == ActionRecreate {
		if err := o.rt.Prepare(ctx, o.Spec(u.Name, u.Group)); err != nil {
			return Result{}, err
		}
	}
	return o.do(ctx, actor, action, u, purge, func(string) {}, note{}), nil
}

func (o *Orchestrator) checkFilter(ctx context.Context, f Filter, users []store.User) error {
	known := map[string]bool{}
	for _, u := range users {
		known[u.Name] = true
	}
	for _, n := range f.Users {
		if !known[n] {
			return fmt.Errorf("user %s: %w", n, store.ErrNotFound)
		}
	}
	for _, g := range f.Groups {
		if _, err := o.st.Group(ctx, g); err != nil {
			return err
		}
	}
	return nil
}

// String describes the selection for the audit log: "groups=alpha users=bob" or "all".
func (f Filter) String() string {
	var parts []string
	if len(f.Groups) > 0 {
		parts = append(parts, "groups="+strings.Join(f.Groups, ","))
	}
	if len(f.Users) > 0 {
		parts = append(parts, "users="+strings.Join(f.Users, ","))
	}
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, " ")
}

// do runs one action under the user's lock and records the outcome. The
// system's sleep (n.sleep) marks the sandbox asleep first; any other
// action wakes it from its sleep.
func (o *Orchestrator) do(ctx context.Context, actor string, action Action, u store.User, purge bool, phase func(string), n note) Result {
	unlock := o.lock(u.Name)
	defer unlock()
	defer o.setBusy(u.Name, "")
	o.setSleep(ctx, u.Name, n.sleep)
	event, detail := "sandbox."+string(action), ""
	if n.event != "" {
		event, detail = n.event, n.detail
	}
	start := time.Now()
	res := Result{User: u.Name, Group: u.Group}
	spec := o.Spec(u.Name, u.Group)
	var (
		inst sandbox.Instance
		err  error
	)
	switch action {
	case ActionStart:
		inst, res.Outcome, err = o.ensureRunning(ctx, spec, phase)
	case ActionRecreate:
		if err = o.rt.Remove(ctx, u.Name, false); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
			break
		}
		inst, _, err = o.ensureRunning(ctx, spec, phase)
		res.Outcome = OutcomeRecreated
	case ActionStop:
		inst, res.Outcome, err = o.transition(ctx, u.Name, sandbox.StateStopped, func() error { return o.rt.Stop(ctx, u.Name, 10*time.Second) })
	case ActionPause:
		if o.caps.PauseIsStop { // the engine cannot pause: stop, keeping the workspace
			inst, res.Outcome, err = o.transition(ctx, u.Name, sandbox.StateStopped, func() error { return o.rt.Stop(ctx, u.Name, 10*time.Second) })
			break
		}
		inst, res.Outcome, err = o.transition(ctx, u.Name, sandbox.StatePaused, func() error { return o.rt.Pause(ctx, u.Name) })
	case ActionResume:
		if o.caps.PauseIsStop {
			inst, res.Outcome, err = o.ensureRunning(ctx, spec, phase)
			break
		}
		inst, res.Outcome, err = o.transition(ctx, u.Name, sandbox.StateRunning, func() error { return o.rt.Resume(ctx, u.Name) })
	case ActionRemove:
		res.Outcome = OutcomeRemoved
		err = o.rt.Remove(ctx, u.Name, purge)
		if errors.Is(err, sandbox.ErrNotFound) {
			res.Outcome, err = OutcomeUnchanged, nil
			if purge {
				err = o.rt.PurgeWorkspace(ctx, spec)
			}
		}
		inst = sandbox.Instance{User: u.Name, State: sandbox.StateMissing}
	default:
		err = fmt.Errorf("%w %q", ErrUnknownAction, action)
	}
	res.Seconds = time.Since(start).Seconds()
	if err != nil {
		res.Outcome, res.State, res.Error = OutcomeFailed, string(sandbox.StateFailed), userMessage(err)
		o.log.Warn("sandbox action failed", "action", action, "user", u.Name, "err", err)
		if n.sleep != "" {
			o.setSleep(ctx, u.Name, "")
		}
		o.record(ctx, sandbox.Instance{User: u.Name, State: sandbox.StateFailed, ID: inst.ID, Image: inst.Image, SpecHash: inst.SpecHash, Created: inst.Created}, string(spec.Workspace), res.Error)
		o.event(ctx, actor, event+".failed", u.Name, res.Error)
		return res
	}
	res.State, res.Endpoint = string(inst.State), inst.Endpoint
	if inst.State == sandbox.StateMissing {
		o.setLive(u.Name, Live{State: string(sandbox.StateMissing)}, true)
		if err := o.st.DeleteSandbox(context.WithoutCancel(ctx), u.Name); err != nil {
			o.log.Error("forget sandbox", "user", u.Name, "err", err)
		}
	} else {
		o.record(ctx, inst, string(spec.Workspace), "")
	}
	switch res.Outcome {
	case OutcomeCreated, OutcomeStarted, OutcomeResumed, OutcomeRecreated:
		o.started(ctx, u.Name, u.Group)
	}
	if res.Outcome != OutcomeUnchanged {
		if detail == "" {
			detail = res.Outcome
		}
		o.event(ctx, actor, event, u.Name, detail)
	}
	return res
}

// transition performs a simple state change unless the sandbox is already there.
func (o *Orchestrator) transition(ctx context.Context, user string, want sandbox.State, fn func() error) (sandbox.Instance, string, error) {
	inst, err := o.rt.Inspect(ctx, user)
	if err != nil {
		if errors.Is(err, sandbox.ErrNotFound) {
			return inst, "", fmt.Errorf("%s has no sandbox: start it first (thon instance start %s)", user, user)
		}
		return inst, "", err
	}
	if inst.State == want {
		return inst, OutcomeUnchanged, nil
	}
	if want == sandbox.StatePaused && inst.State != sandbox.StateRunning {
		return inst, "", fmt.Errorf("%s's sandbox is %s: only a running sandbox can be paused", user, inst.State)
	}
	if want == sandbox.StateRunning && inst.State != sandbox.StatePaused {
		return inst, "", fmt.Errorf("%s's sandbox is %s, not paused: use start instead", user, inst.State)
	}
	if err := fn(); err != nil {
		return inst, "", err
	}
	inst, err = o.rt.Inspect(ctx, user)
	outcome := map[sandbox.State]string{sandbox.StateStopped: OutcomeStopped, sandbox.StatePaused: OutcomePaused, sandbox.StateRunning: OutcomeResumed}[want]
	return inst, outcome, err
}

// ensureRunning brings one sandbox to running and healthy, creating it if needed.
// A sandbox created for another group (the user moved) is recreated; its
// workspace follows the user.
func (o *Orchestrator) ensureRunning(ctx context.Context, spec sandbox.Spec, phase func(string)) (sandbox.Instance, string, error) {
	inst, err := o.rt.Inspect(ctx, spec.User)
	outcome := ""
	switch {
	case errors.Is(err, sandbox.ErrNotFound):
		outcome = OutcomeCreated
	case err != nil:
		return inst, "", err
	case inst.Group != spec.Group:
		if err := o.rt.Remove(ctx, spec.User, false); err != nil {
			return inst, "", err
		}
		outcome = OutcomeRecreated
	case inst.State == sandbox.StateRunning:
		// Running already: healthy means nothing to do. An engine whose
		// running means healthy is not probed (its endpoint may not even be
		// reachable from here).
		if o.caps.ReadyIsHealthy || o.healthy(ctx, inst, spec) {
			return inst, OutcomeUnchanged, nil
		}
		outcome = OutcomeStarted
	case inst.State == sandbox.StatePaused:
		outcome = OutcomeResumed
	default:
		outcome = OutcomeStarted
	}
	if outcome == OutcomeCreated || outcome == OutcomeRecreated {
		o.setBusy(spec.User, string(sandbox.StateStarting))
		phase("creating")
		if _, err := o.rt.Create(ctx, spec); err != nil {
			return inst, "", err
		}
	}
	if outcome != OutcomeStarted || inst.State != sandbox.StateRunning {
		o.setBusy(spec.User, string(sandbox.StateStarting))
		phase("starting")
		if inst, err = o.rt.Start(ctx, spec.User); err != nil {
			return inst, "", err
		}
	}
	phase("waiting")
	inst, err = o.waitHealthy(ctx, spec)
	return inst, outcome, err
}

func (o *Orchestrator) healthy(ctx context.Context, inst sandbox.Instance, spec sandbox.Spec) bool {
	if inst.Endpoint == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+inst.Endpoint+spec.HealthPath, nil)
	if err != nil {
		return false
	}
	resp, err := o.health.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}

// waitHealthy polls the health path until it answers 2xx, the sandbox stops,
// or the startup timeout passes.
func (o *Orchestrator) waitHealthy(ctx context.Context, spec sandbox.Spec) (sandbox.Instance, error) {
	timeout := o.Settings().StartupTimeout.D()
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	delay := 100 * time.Millisecond
	for {
		inst, err := o.rt.Inspect(ctx, spec.User)
		if err != nil {
			if ctx.Err() != nil {
				return inst, fmt.Errorf("%s did not answer %s within %s", spec.User, spec.HealthPath, timeout)
			}
			return inst, err
		}
		switch inst.State {
		case sandbox.StateRunning:
			if o.caps.ReadyIsHealthy || o.healthy(ctx, inst, spec) {
				return inst, nil
			}
		case sandbox.StateStopped, sandbox.StateStarting:
			// Stopped, or restarting after a crash (the engine sets a reason):
			// stop it rather than let it crash-loop, and say why.
			if inst.State == sandbox.StateStopped || inst.Reason != "" {
				err := o.exitError(spec.User, inst)
				if inst.State != sandbox.StateStopped {
					o.rt.Stop(context.WithoutCancel(ctx), spec.User, time.Second)
				}
				return inst, err
			}
		}
		select {
		case <-ctx.Done():
			return inst, fmt.Errorf("%s's IDE did not answer %s on port %d within %s: check `thon instance logs %s`, or raise sandbox.startup_timeout", spec.User, spec.HealthPath, spec.Port, timeout, spec.User)
		case <-time.After(delay):
		}
		if delay < time.Second {
			delay = delay * 3 / 2
		}
	}
}

// exitError explains a sandbox that stopped while starting, with its last log lines.
func (o *Orchestrator) exitError(user string, inst sandbox.Instance) error {
	reason := inst.Reason
	if reason == "" {
		reason = fmt.Sprintf("exited with code %d", inst.ExitCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msg := fmt.Sprintf("%s's sandbox stopped while starting (%s)", user, reason)
	if rc, err := o.rt.Logs(ctx, user, sandbox.LogOptions{Tail: 5}); err == nil {
		b, _ := io.ReadAll(io.LimitReader(rc, 2048))
		rc.Close()
		if s := strings.TrimSpace(string(b)); s != "" {
			msg += "; last output: " + strings.ReplaceAll(s, "\n", " | ")
		}
	}
	return errors.New(msg)
}

// userMessage is the error text shown to organizers.
func userMessage(err error) string {
	var ue *sandbox.UserError
	if errors.As(err, &ue) {
		return ue.Error()
	}
	return err.Error()
}
