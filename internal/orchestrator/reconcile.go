package orchestrator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/store"
)

// ReconcileReport says what a reconcile found.
type ReconcileReport struct {
	Adopted []string           `json:"adopted"` // sandboxes found on the engine and taken over as they are
	Missing []string           `json:"missing"` // recorded in the store, gone from the engine
	Changed []string           `json:"changed"` // state on the engine differs from the record
	Orphans []sandbox.Instance `json:"orphans"` // managed sandboxes whose user is not in the store
}

// Reconcile folds the engine's view into the store: sandboxes that survived a
// daemon restart are adopted (never recreated), vanished ones are marked
// missing, and sandboxes of unknown users are reported as orphans.
// Users with an operation in flight, or one that ended while the engine was
// being read, are left alone: what the operation recorded is newer.
func (o *Orchestrator) Reconcile(ctx context.Context) (rep ReconcileReport, err error) {
	snap := o.opsSnapshot() // taken before reading the engine: later operations win
	o.mu.Lock()
	unsureGen := o.unsureGen
	o.mu.Unlock()
	defer func() {
		// Read the engine and folded it in: what was unsure before is known.
		if err == nil {
			o.mu.Lock()
			if o.unsureGen == unsureGen {
				o.reread = nil
			}
			o.mu.Unlock()
		}
	}()
	rep = ReconcileReport{Adopted: []string{}, Missing: []string{}, Changed: []string{}, Orphans: []sandbox.Instance{}}
	insts, err := o.rt.List(ctx)
	if err != nil {
		err = fmt.Errorf("list sandboxes on %s: %w", o.rt.Name(), err)
		if ctx.Err() == nil {
			o.engine.failed(o.now(), err)
		}
		return rep, err
	}
	o.engine.answered()
	users, err := o.st.Users(ctx)
	if err != nil {
		return rep, err
	}
	boxes, err := o.st.Sandboxes(ctx)
	if err != nil {
		return rep, err
	}
	known := map[string]store.User{}
	for _, u := range users {
		known[u.Name] = u
	}
	// Why sandboxes sleep, and what their participants did, as the store
	// has it (another replica's front door may have seen them).
	o.mu.Lock()
	for user, b := range boxes {
		if o.locks[user] != nil || o.ops[user] != snap[user] { // not quiet (o.mu is held)
			continue
		}
		if b.Sleep != "" {
			o.sleeping[user] = b.Sleep
		} else {
			delete(o.sleeping, user)
		}
	}
	o.mu.Unlock()
	if o.activity != nil {
		for user, b := range boxes {
			if !b.LastActive.IsZero() {
				o.activity.TouchAt(user, b.LastActive)
			}
		}
	}

	seen := map[string]bool{}
	for _, inst := range insts {
		if _, ok := known[inst.User]; !ok {
			rep.Orphans = append(rep.Orphans, inst)
			continue
		}
		seen[inst.User] = true
		b, had := boxes[inst.User]
		var list *[]string
		switch {
		case had && b.State == string(sandbox.StateFailed) && inst.State != sandbox.StateRunning:
			// Keep the failure and its reason until the sandbox runs again.
		case !had || b.InstanceID != inst.ID:
			list = &rep.Adopted
		case b.State != string(inst.State) || b.Endpoint != endpointIfRunning(inst):
			list = &rep.Changed
		}
		if list == nil || !o.quiet(inst.User, snap) {
			continue
		}
		*list = append(*list, inst.User)
		ws := b.Workspace
		if ws == "" {
			ws = o.SettingsFor(inst.Group).Workspace
		}
		o.record(ctx, inst, ws, "")
		if list == &rep.Adopted {
			// The store did not know this sandbox: the daemon stopped (a
			// crash, kill -9) between creating it and writing it down, or
			// it was made elsewhere. The audit log says so, or it would
			// hold a running sandbox that nobody made.
			detail := "found on the engine, not in the store"
			if had {
				detail = "found on the engine as another instance than the store had"
			}
			o.event(ctx, SystemActor, "sandbox.adopted", inst.User, detail)
		}
	}
	for user, b := range boxes {
		if seen[user] || !o.quiet(user, snap) || b.State == string(sandbox.StateMissing) || b.State == string(sandbox.StateFailed) && b.InstanceID == "" {
			continue
		}
		rep.Missing = append(rep.Missing, user)
		o.recordMissing(ctx, user, "")
	}
	o.mu.Lock()
	o.orphans = rep.Orphans
	o.mu.Unlock()
	return rep, nil
}

func endpointIfRunning(inst sandbox.Instance) string {
	if inst.State == sandbox.StateRunning {
		return inst.Endpoint
	}
	return ""
}

// Run keeps the store in step with the engine until ctx ends: sandboxes
// stopped, removed or restarted behind THON's back show up within one interval.
func (o *Orchestrator) Run(ctx context.Context) {
	if o.usageEvery > 0 {
		go o.runUsage(ctx)
	}
	go o.sleepLoop(ctx)
	if w, ok := o.rt.(sandbox.Watcher); ok {
		go o.watchEngine(ctx, w)
	}
	t := time.NewTicker(o.resync)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-o.kick:
			// At most one asked-for reconcile a second.
			if wait := time.Second - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		last = time.Now()
		rep, err := o.Reconcile(ctx)
		if err != nil {
			if ctx.Err() == nil {
				o.log.Warn("resync with engine failed", "err", err)
			}
			continue
		}
		for _, u := range rep.Changed {
			o.log.Info("sandbox changed outside THON", "user", u)
		}
		for _, u := range rep.Missing {
			o.event(ctx, "engine", "sandbox.vanished", u, "removed outside THON")
		}
	}
}

// watchEngine follows what the engine changes behind THON's back: a
// sandbox it started, stopped or removed is read again at once (a
// reconcile is asked for), and when the engine's stream broke (it stopped
// or restarted, so its containers may come back at one another's
// addresses) no sandbox is routed to until they are read again: a
// participant waits a moment rather than reach someone else's IDE.
func (o *Orchestrator) watchEngine(ctx context.Context, w sandbox.Watcher) {
	for user := range w.Watch(ctx) {
		if user == sandbox.WatchLost {
			o.mu.Lock()
			o.unsureGen++
			o.reread = map[string]bool{}
			o.mu.Unlock()
		}
		o.Resync()
	}
}

// Resync asks Run for a reconcile soon (at most one a second), for when a
// caller saw the engine's view change: a sandbox that no longer answers at
// its address, as after the engine restarted it at another one.
func (o *Orchestrator) Resync() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// engineState is whether the engine answered the last reconcile.
type engineState struct {
	mu    sync.Mutex
	err   error
	since time.Time // when it stopped answering
}

func (e *engineState) failed(now time.Time, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err == nil {
		e.since = now
	}
	e.err = err
}

func (e *engineState) answered() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.err, e.since = nil, time.Time{}
}

// EngineDown reports since when the engine has not answered THON's
// reconcile, and why (a zero time: it answered the last one). While it is
// down the states THON shows are the last ones it saw.
func (o *Orchestrator) EngineDown() (time.Time, error) {
	o.engine.mu.Lock()
	defer o.engine.mu.Unlock()
	return o.engine.since, o.engine.err
}
