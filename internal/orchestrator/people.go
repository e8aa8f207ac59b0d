package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/store"
)

// Import applies a thon.yaml: its sandbox settings, and its groups and users
// (upserted: new ones added, moved ones moved, none deleted).
func (o *Orchestrator) Import(ctx context.Context, actor string, cfg *config.Config) (store.ImportResult, error) {
	if err := cfg.Validate(); err != nil {
		return store.ImportResult{}, err
	}
	if o.onImport != nil {
		if err := o.onImport(ctx, cfg); err != nil {
			return store.ImportResult{}, err
		}
	}
	if err := o.ApplySettings(ctx, actor, cfg.SandboxSet()); err != nil {
		return store.ImportResult{}, err
	}
	return o.ImportPeople(ctx, actor, cfg.Groups)
}

// ImportPeople upserts groups and their participants: new ones are added,
// moved ones moved, none deleted.
func (o *Orchestrator) ImportPeople(ctx context.Context, actor string, gs config.Groups) (store.ImportResult, error) {
	if err := gs.Validate(); err != nil {
		return store.ImportResult{}, err
	}
	groups := make([]store.ImportGroup, 0, len(gs))
	var users []store.ImportUser
	for _, g := range gs {
		groups = append(groups, store.ImportGroup{Name: g.Name, Title: g.Title})
		for _, u := range g.Users {
			users = append(users, store.ImportUser{Name: u, Group: g.Name, Email: g.Emails[u]})
		}
	}
	res, err := o.st.Import(ctx, groups, users)
	if err != nil {
		return res, err
	}
	if len(res.UsersAdded) > 0 {
		o.usersChanged(ctx)
	}
	if len(res.GroupsAdded)+len(res.UsersAdded)+len(res.UsersMoved)+len(res.Updated) > 0 {
		o.changed(Overflow) // who is in the event changed: watchers reload
		detail := fmt.Sprintf("groups added: %s; users added: %s; moved: %d",
			strings.Join(res.GroupsAdded, ","), strings.Join(res.UsersAdded, ","), len(res.UsersMoved))
		if len(res.Updated) > 0 {
			detail += "; titles or e-mails updated: " + strings.Join(res.Updated, ",")
		}
		o.event(ctx, actor, "import", "", detail)
	}
	// Moved users' sandboxes are recreated in their new group by the next start.
	return res, nil
}

// CreateGroup adds an empty group.
func (o *Orchestrator) CreateGroup(ctx context.Context, actor, name string) error {
	if err := config.ValidName("group", name); err != nil {
		return err
	}
	if err := o.st.CreateGroup(ctx, name); err != nil {
		return err
	}
	o.event(ctx, actor, "group.create", name, "")
	o.changed(Overflow)
	return nil
}

// DeleteGroup removes an empty group.
func (o *Orchestrator) DeleteGroup(ctx context.Context, actor, name string) error {
	if err := o.st.DeleteGroup(ctx, name); err != nil {
		return err
	}
	o.event(ctx, actor, "group.delete", name, "")
	o.changed(Overflow)
	return nil
}

// Joined tells the orchestrator that user joined group by themselves (an
// invite code; the access service records it): the front door opens their
// port, watchers reload.
func (o *Orchestrator) Joined(ctx context.Context, actor, user, group string) {
	o.changed(Overflow)
	o.usersChanged(ctx)
}

// RenameGroup gives a group a new name: its participants move to it (their
// sandboxes are recreated under the new path, workspaces follow) and the
// old group goes. Results are the moves, one per participant.
func (o *Orchestrator) RenameGroup(ctx context.Context, actor, from, to string) ([]Result, error) {
	if err := config.ValidName("group", to); err != nil {
		return nil, err
	}
	g, err := o.st.Group(ctx, from)
	if err != nil {
		return nil, err
	}
	if err := o.st.CreateGroup(ctx, to); err != nil {
		return nil, err
	}
	// The group keeps its template and idle policy under its new name.
	if set := o.Sandboxes(); set.Groups[from] != (config.GroupSandbox{}) {
		groups := maps.Clone(set.Groups)
		groups[to] = groups[from]
		delete(groups, from)
		set.Groups = groups
		if err := o.ApplySettings(ctx, actor, set); err != nil {
			return nil, err
		}
	}
	var out []Result
	for _, u := range g.Users {
		res, err := o.MoveUser(ctx, actor, u, to)
		if err != nil {
			res = Result{User: u, Group: to, Outcome: OutcomeFailed, Error: err.Error()}
		}
		out = append(out, res)
	}
	if err := o.st.DeleteGroup(ctx, from); err != nil {
		return out, fmt.Errorf("remove group %s after moving its participants: %w", from, err)
	}
	o.event(ctx, actor, "group.rename", from, "-> "+to)
	o.changed(Overflow)
	return out, nil
}

// CreateUser adds a participant to a group (no sandbox yet: start creates it).
func (o *Orchestrator) CreateUser(ctx context.Context, actor, name, group string) error {
	if err := config.ValidName("user", name); err != nil {
		return err
	}
	if err := o.st.CreateUser(ctx, name, group); err != nil {
		return err
	}
	o.event(ctx, actor, "user.create", name, "group="+group)
	o.changed(Overflow)
	o.usersChanged(ctx)
	return nil
}

// MoveUser puts a participant in another group. A running sandbox is
// recreated in the new group at once; the workspace follows the user.
func (o *Orchestrator) MoveUser(ctx context.Context, actor, name, group string) (Result, error) {
	unlock := o.lock(name)
	u, err := o.st.User(ctx, name)
	if err != nil {
		unlock()
		return Result{}, err
	}
	if u.Group == group {
		unlock()
		return Result{User: name, Group: group, Outcome: OutcomeUnchanged}, nil
	}
	if err := o.st.MoveUser(ctx, name, group); err != nil {
		unlock()
		return Result{}, err
	}
	o.event(ctx, actor, "user.move", name, u.Group+" -> "+group)
	o.changed(name)
	inst, err := o.rt.Inspect(ctx, name)
	unlock()
	switch {
	case errors.Is(err, sandbox.ErrNotFound):
		return Result{User: name, Group: group, Outcome: OutcomeUnchanged, State: string(sandbox.StateMissing)}, nil
	case err != nil:
		return Result{}, err
	case inst.State == sandbox.StateRunning || inst.State == sandbox.StatePaused:
		return o.Do(ctx, actor, ActionRecreate, name, false)
	default:
		// Not running: drop the old container; the next start creates it in the new group.
		return o.Do(ctx, actor, ActionRemove, name, false)
	}
}

// DeleteUser removes a participant and their sandbox; purge deletes their
// kept workspace as well.
func (o *Orchestrator) DeleteUser(ctx context.Context, actor, name string, purge bool) error {
	res, err := o.Do(ctx, actor, ActionRemove, name, purge)
	if err != nil {
		return err
	}
	if res.Outcome == OutcomeFailed {
		return fmt.Errorf("remove %s's sandbox: %s", name, res.Error)
	}
	unlock := o.lock(name)
	defer unlock()
	if err := o.st.DeleteUser(ctx, name); err != nil {
		return err
	}
	o.event(ctx, actor, "user.delete", name, fmt.Sprintf("purge=%t", purge))
	o.changed(Overflow)
	o.usersChanged(ctx)
	return nil
}

// RemoveOrphans deletes managed sandboxes whose user is not in the store.
func (o *Orchestrator) RemoveOrphans(ctx context.Context, actor string, purge bool) ([]Result, error) {
	if _, err := o.Reconcile(ctx); err != nil {
		return nil, err
	}
	var out []Result
	for _, inst := range o.Orphans() {
		r := Result{User: inst.User, Group: inst.Group, Outcome: OutcomeRemoved, State: string(sandbox.StateMissing)}
		if err := o.rt.Remove(ctx, inst.User, purge); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
			r.Outcome, r.Error = OutcomeFailed, userMessage(err)
		} else {
			o.event(ctx, actor, "sandbox.remove-orphan", inst.User, inst.Name)
		}
		out = append(out, r)
	}
	_, err := o.Reconcile(ctx)
	return out, err
}
