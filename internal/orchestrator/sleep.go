package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/store"
)

// Sleep and wake: a sandbox whose participant has done nothing for
// sandbox.idle_timeout is stopped (or paused) by the system and shown as
// asleep; the participant's next visit wakes it, at most
// sandbox.concurrency at a time, the others waiting in line. A sandbox
// that reaches sandbox.max_lifetime is stopped and shown as expired until
// an organizer renews it.

// SystemActor is who the audit log says put a sandbox to sleep.
const SystemActor = "system"

// The states a sleeping sandbox is shown in (Status.State, Live.State).
const (
	StateAsleep  = "asleep"  // idle: the participant's next visit wakes it
	StateExpired = "expired" // its lifetime ran out: an organizer renews it
)

// note changes what do records: its audit entry, and the sleep it puts a
// sandbox into.
type note struct {
	event, detail string
	sleep         string // store.SleepIdle or store.SleepLifetime: the action puts it to sleep
}

// shownState is the state shown for an engine state and a sleep reason.
func shownState(state, sleep string) string {
	if state != string(sandbox.StateStopped) && state != string(sandbox.StatePaused) {
		return state
	}
	switch sleep {
	case store.SleepIdle:
		return StateAsleep
	case store.SleepLifetime:
		return StateExpired
	}
	return state
}

// setSleep records why a sandbox sleeps ("" awake) in memory and the store.
func (o *Orchestrator) setSleep(ctx context.Context, user, reason string) {
	o.mu.Lock()
	old := o.sleeping[user]
	if reason == "" {
		delete(o.sleeping, user)
	} else {
		o.sleeping[user] = reason
		if old == "" {
			o.wakes.since[user] = o.now()
		}
	}
	o.mu.Unlock()
	if old == reason {
		return
	}
	if err := o.st.SetSandboxTimes(context.WithoutCancel(ctx), user, store.SandboxTimes{Sleep: &reason}); err != nil {
		o.log.Error("record sleep", "user", user, "err", err)
	}
	o.changed(user)
}

// started records that a sandbox was brought up now: the start of its
// idle time and, with sandbox.max_lifetime, of a new lifetime unless one
// still runs.
func (o *Orchestrator) started(ctx context.Context, user, group string) {
	now := o.now()
	t := store.SandboxTimes{StartedAt: &now}
	if life := o.SettingsFor(group).MaxLifetime.D(); life > 0 {
		if b, err := o.st.Sandbox(ctx, user); err == nil && (b.Expires.IsZero() || !now.Before(b.Expires)) {
			exp := now.Add(life)
			t.Expires = &exp
		}
	}
	if err := o.st.SetSandboxTimes(context.WithoutCancel(ctx), user, t); err != nil {
		o.log.Error("record start", "user", user, "err", err)
	}
}

// idleSince is when a participant's idle time began: their last activity,
// or the sandbox's last start when that is later.
func (o *Orchestrator) idleSince(user string, b store.Sandbox) time.Time {
	last := b.LastActive
	if o.activity != nil {
		if t := o.activity.Last(user); t.After(last) {
			last = t
		}
	}
	if b.StartedAt.After(last) {
		last = b.StartedAt
	}
	return last
}

// sleepLoop puts idle and expired sandboxes to sleep, and records
// activity, every interval until ctx ends.
func (o *Orchestrator) sleepLoop(ctx context.Context) {
	t := time.NewTicker(o.sleepEvery)
	defer t.Stop()
	flushed := map[string]time.Time{}
	for {
		select {
		case <-ctx.Done():
			o.flushActivity(context.WithoutCancel(ctx), flushed)
			return
		case <-t.C:
		}
		o.flushActivity(ctx, flushed)
		if err := o.SleepIdle(ctx); err != nil && ctx.Err() == nil {
			o.log.Warn("putting idle sandboxes to sleep failed", "err", err)
		}
	}
}

// flushActivity writes what changed in the activity tracker to the store,
// so it survives a restart and other replicas see it.
func (o *Orchestrator) flushActivity(ctx context.Context, flushed map[string]time.Time) {
	if o.activity == nil {
		return
	}
	changed := map[string]time.Time{}
	for user, at := range o.activity.Snapshot() {
		if at.After(flushed[user]) {
			changed[user] = at
		}
	}
	if err := o.st.RecordActivity(ctx, changed); err != nil {
		o.log.Warn("record activity", "err", err)
		return
	}
	for user, at := range changed {
		flushed[user] = at
	}
}

// SleepIdle puts to sleep every running sandbox that has been idle for
// its idle_timeout, and stops those whose max_lifetime ran out (sandbox:'s,
// or its group's template's or group's own). The daemon calls it every
// half minute.
func (o *Orchestrator) SleepIdle(ctx context.Context) error {
	set := o.Sandboxes()
	if !set.AnyIdlePolicy() {
		return nil
	}
	users, err := o.st.Users(ctx)
	if err != nil {
		return err
	}
	boxes, err := o.st.Sandboxes(ctx)
	if err != nil {
		return err
	}
	now := o.now()
	for _, u := range users {
		b, ok := boxes[u.Name]
		if !ok || b.State != string(sandbox.StateRunning) || o.isBusy(u.Name) {
			continue
		}
		s := set.For(u.Group)
		idle, life := s.IdleTimeout.D(), s.MaxLifetime.D()
		switch since := o.idleSince(u.Name, b); {
		case life > 0 && !b.Expires.IsZero() && !now.Before(b.Expires):
			o.sleep(ctx, u, store.SleepLifetime, fmt.Sprintf("its lifetime ran out (%s %s)", s.Where("max_lifetime"), s.MaxLifetime))
		case idle > 0 && since.IsZero():
			// Running since before THON recorded starts: its idle time starts now.
			if o.activity != nil {
				o.activity.TouchAt(u.Name, now)
			}
		case idle > 0 && now.Sub(since) >= idle:
			o.sleep(ctx, u, store.SleepIdle, fmt.Sprintf("idle for %s (%s %s)", now.Sub(since).Round(time.Minute), s.Where("idle_timeout"), s.IdleTimeout))
		}
	}
	return nil
}

// sleep stops (or, idle with idle_action pause, pauses) one sandbox as the system.
func (o *Orchestrator) sleep(ctx context.Context, u store.User, reason, why string) {
	action, how := ActionStop, "stopped"
	if reason == store.SleepIdle && o.SettingsFor(u.Group).IdleAction == config.IdlePause && !o.caps.PauseIsStop {
		action, how = ActionPause, "paused"
	}
	res := o.do(ctx, SystemActor, action, u, false, func(string) {}, note{event: "sandbox.sleep", detail: why + ": " + how, sleep: reason})
	if res.Outcome == OutcomeFailed {
		o.log.Warn("could not put a sandbox to sleep", "user", u.Name, "err", res.Error)
	}
}

// isBusy says whether an operation runs on a participant's sandbox.
func (o *Orchestrator) isBusy(user string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, busy := o.busy[user]
	return busy || o.wakes.active[user]
}

// wakeQueue is the sandboxes being woken (at most sandbox.concurrency) and
// those waiting, in the order their participants came back.
type wakeQueue struct {
	active  map[string]bool
	waiting []string
	since   map[string]time.Time // when each sleeping sandbox went to sleep (as this daemon saw it)
}

// Wake wakes a sleeping (idle) sandbox for its participant, who is the
// actor: at most sandbox.concurrency wake at once, the others wait in
// line. It says how many are ahead (0: it is being woken now). A sandbox
// that is not asleep is left alone (-1).
func (o *Orchestrator) Wake(ctx context.Context, user string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.wakes.active[user] {
		return 0
	}
	for i, w := range o.wakes.waiting {
		if w == user {
			return i + 1
		}
	}
	if o.sleeping[user] != store.SleepIdle {
		return -1
	}
	o.wakes.waiting = append(o.wakes.waiting, user)
	o.dispatchWakes()
	return o.queuePosition(user)
}

// queuePosition is how many wakes are ahead of user's (0 when it runs, -1
// when it is not queued). o.mu is held.
func (o *Orchestrator) queuePosition(user string) int {
	if o.wakes.active[user] {
		return 0
	}
	for i, w := range o.wakes.waiting {
		if w == user {
			return i + 1
		}
	}
	return -1
}

// dispatchWakes starts waiting wakes while there is room. o.mu is held.
func (o *Orchestrator) dispatchWakes() {
	limit := max(o.settings.Base.Concurrency, 1)
	for len(o.wakes.active) < limit && len(o.wakes.waiting) > 0 {
		user := o.wakes.waiting[0]
		o.wakes.waiting = o.wakes.waiting[1:]
		o.wakes.active[user] = true
		go o.wake(user)
	}
}

func (o *Orchestrator) wake(user string) {
	defer func() {
		o.mu.Lock()
		delete(o.wakes.active, user)
		o.dispatchWakes()
		o.mu.Unlock()
		o.changed(user)
	}()
	ctx := context.Background()
	u, err := o.st.User(ctx, user)
	if err != nil {
		return
	}
	if err := o.rt.Prepare(ctx, o.Spec(u.Name, u.Group)); err != nil {
		o.log.Warn("could not wake a sandbox", "user", user, "err", err)
		return
	}
	slept := ""
	o.mu.Lock()
	if t, ok := o.wakes.since[user]; ok {
		slept = " after sleeping " + o.now().Sub(t).Round(time.Minute).String()
		delete(o.wakes.since, user)
	}
	o.mu.Unlock()
	o.do(ctx, user, ActionStart, u, false, func(string) {}, note{event: "sandbox.wake", detail: "woken by a visit" + slept})
}

// Renew gives a sandbox more time: it runs until for from now (the
// configured sandbox.max_lifetime when for is 0), and an expired one is
// started again.
func (o *Orchestrator) Renew(ctx context.Context, actor, user string, d time.Duration) (time.Time, error) {
	u, err := o.st.User(ctx, user)
	if err != nil {
		return time.Time{}, err
	}
	s := o.SettingsFor(u.Group)
	life := s.MaxLifetime.D()
	if life <= 0 {
		return time.Time{}, config.Problem{Msg: s.Where("max_lifetime") + " is off: " + user + "'s sandbox has no end to renew", Hint: "set it in thon.yaml (e.g. 12h) and run thon run"}
	}
	if d == 0 {
		d = life
	}
	if d < time.Minute || d > 30*24*time.Hour {
		return time.Time{}, config.Problem{Msg: fmt.Sprintf("renew for %s: give a duration from 1m to 720h, e.g. 2h", d)}
	}
	b, err := o.st.Sandbox(ctx, user)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s has no sandbox to renew: start it (thon instance start %s): %w", user, user, err)
	}
	exp := o.now().Add(d)
	if err := o.st.SetSandboxTimes(ctx, user, store.SandboxTimes{Expires: &exp}); err != nil {
		return time.Time{}, err
	}
	o.event(ctx, actor, "sandbox.renew", user, "until "+exp.UTC().Format(time.RFC3339))
	o.changed(user)
	if b.Sleep == store.SleepLifetime {
		if res, err := o.Do(ctx, actor, ActionStart, u.Name, false); err != nil {
			return exp, err
		} else if res.Outcome == OutcomeFailed {
			return exp, fmt.Errorf("renewed until %s, but the sandbox did not start: %s", exp.Format(time.DateTime), res.Error)
		}
	}
	return exp, nil
}

// Idle is what a participant's IDE is told about its sandbox's sleep (the
// front door's banner): how long it has been idle, when it goes to sleep
// and, with sandbox.max_lifetime, when its life ends.
type Idle struct {
	State   string        // as Live.State
	Timeout time.Duration // its idle_timeout (0: it never sleeps when idle)
	Action  string        // its idle_action
	IdleFor time.Duration // since the participant's last activity (or the sandbox's start)
	SleepIn time.Duration // until it goes to sleep, when Timeout is set (0: due now)
	Expires time.Time     // the end of its lifetime (zero: none)
	EndsIn  time.Duration // until Expires, on the orchestrator's clock (0: due now)
}

// Watched says whether anything puts sandboxes to sleep: an idle timeout
// or a lifetime, in sandbox:, a template or a group.
func (o *Orchestrator) Watched() bool {
	return o.Sandboxes().AnyIdlePolicy()
}

// IdleOf reports user's sandbox's idle time and when it sleeps or ends.
func (o *Orchestrator) IdleOf(ctx context.Context, user string) (Idle, error) {
	live, err := o.Live(ctx, user)
	if err != nil {
		return Idle{}, err
	}
	b, err := o.st.Sandbox(ctx, user)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return Idle{}, err
	}
	u, err := o.st.User(ctx, user)
	if err != nil {
		return Idle{}, err
	}
	s := o.SettingsFor(u.Group) // the group's idle policy
	in := Idle{State: live.State, Timeout: s.IdleTimeout.D(), Action: s.IdleAction}
	if s.MaxLifetime.D() > 0 && !b.Expires.IsZero() {
		in.Expires = b.Expires
		in.EndsIn = max(b.Expires.Sub(o.now()), 0)
	}
	if since := o.idleSince(user, b); !since.IsZero() {
		in.IdleFor = max(o.now().Sub(since), 0)
	}
	if in.Timeout > 0 {
		in.SleepIn = max(in.Timeout-in.IdleFor, 0)
	}
	return in, nil
}
