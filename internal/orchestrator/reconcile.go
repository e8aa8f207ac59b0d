package orchestrator

import (
	"context"
	"fmt"
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
func (o *Orchestrator) Reconcile(ctx context.Context) (ReconcileReport, error) {
	snap := o.opsSnapshot() // taken before reading the engine: later operations win
	rep := ReconcileReport{Adopted: []string{}, Missing: []string{}, Changed: []string{}, Orphans: []sandbox.Instance{}}
	insts, err := o.rt.List(ctx)
	if err != nil {
		return rep, fmt.Errorf("list sandboxes on %s: %w", o.rt.Name(), err)
	}
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
	t := time.NewTicker(o.resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
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
