package orchestrator_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/activity"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/sandbox/sandboxtest"
	"github.com/thon-dev/thon/internal/store"
)

// clock is a test's time: it moves when the test says.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type sleepy struct {
	o     *orchestrator.Orchestrator
	st    *store.Store
	act   *activity.Tracker
	clock *clock
}

func newSleepy(t *testing.T, rt sandbox.Runtime, s func(*config.Sandbox), users ...string) *sleepy {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "thon.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := config.Default()
	cfg.Sandbox.Image = "thon-test/fake:latest"
	cfg.Sandbox.Limits = config.Limits{CPU: 0.5, Memory: 64 << 20, Pids: 64}
	s(&cfg.Sandbox)
	cfg.Groups = config.Groups{{Name: "alpha", Users: users}}
	c := &clock{now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	act := activity.New(c.Now)
	o := orchestrator.New(orchestrator.Options{Runtime: rt, Store: st, Sandboxes: cfg.SandboxSet(), Activity: act, Now: c.Now})
	if _, err := o.Import(ctx, "test", cfg); err != nil {
		t.Fatal(err)
	}
	return &sleepy{o: o, st: st, act: act, clock: c}
}

func (s *sleepy) state(t *testing.T, user string) orchestrator.Status {
	t.Helper()
	st, err := s.o.Get(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (s *sleepy) events(t *testing.T, action string) []store.Event {
	t.Helper()
	evs, err := s.st.Events(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.Event
	for _, e := range evs {
		if e.Action == action {
			out = append(out, e)
		}
	}
	return out
}

// An idle sandbox goes to sleep after sandbox.idle_timeout, as the system;
// one whose participant was active does not; a visit wakes it.
func TestIdleSandboxesSleepAndWake(t *testing.T) {
	ctx := context.Background()
	for _, action := range []string{config.IdleStop, config.IdlePause} {
		t.Run(action, func(t *testing.T) {
			rt := sandboxtest.NewFake(t, sandboxtest.FakeOptions{})
			s := newSleepy(t, rt, func(c *config.Sandbox) {
				c.IdleTimeout, c.IdleAction = config.Duration(45*time.Minute), action
			}, "alice", "bob")
			for _, u := range []string{"alice", "bob"} {
				if r, err := s.o.Do(ctx, "admin", orchestrator.ActionStart, u, false); err != nil || r.State != "running" {
					t.Fatalf("start %s: %+v %v", u, r, err)
				}
			}
			s.clock.add(30 * time.Minute)
			s.act.TouchAt("bob", s.clock.Now()) // bob types
			s.clock.add(20 * time.Minute)       // alice: 50 min since her start; bob: 20 min since he typed
			if err := s.o.SleepIdle(ctx); err != nil {
				t.Fatal(err)
			}
			if st := s.state(t, "alice"); st.State != orchestrator.StateAsleep {
				t.Fatalf("alice after 50 idle minutes: %s, want asleep", st.State)
			}
			if st := s.state(t, "bob"); st.State != "running" || !st.LastActive.Equal(s.clock.Now().Add(-20*time.Minute)) {
				t.Fatalf("bob, active 20 minutes ago: %s, last active %s", st.State, st.LastActive)
			}
			want := sandbox.StateStopped
			if action == config.IdlePause {
				want = sandbox.StatePaused
			}
			if inst, err := rt.Inspect(ctx, "alice"); err != nil || inst.State != want {
				t.Fatalf("alice on the engine: %s %v, want %s", inst.State, err, want)
			}
			sl := s.events(t, "sandbox.sleep")
			if len(sl) != 1 || sl[0].Actor != orchestrator.SystemActor || sl[0].Target != "alice" || !strings.Contains(sl[0].Detail, "idle for 50m") {
				t.Fatalf("the audit log's sleep entries: %+v", sl)
			}
			if live, _ := s.o.Live(ctx, "alice"); live.State != orchestrator.StateAsleep {
				t.Fatalf("the front door sees alice as %q", live.State)
			}

			// Her visit wakes it, as her.
			if pos := s.o.Wake(ctx, "alice"); pos != 0 {
				t.Fatalf("Wake: %d ahead, want 0", pos)
			}
			waitFor(t, "alice awake", func() bool { return s.state(t, "alice").State == "running" })
			if w := s.events(t, "sandbox.wake"); len(w) != 1 || w[0].Actor != "alice" {
				t.Fatalf("wake entries: %+v", w)
			}
			// Awake again, her idle time starts over from the wake.
			s.clock.add(10 * time.Minute)
			s.o.SleepIdle(ctx)
			if st := s.state(t, "alice"); st.State != "running" {
				t.Fatalf("alice 10 minutes after waking: %s", st.State)
			}
			// Bob is not asleep: a wake leaves him alone.
			if pos := s.o.Wake(ctx, "bob"); pos != -1 {
				t.Fatalf("Wake of a running sandbox: %d, want -1", pos)
			}
		})
	}
}

// An organizer's stop is not a sleep: the next visit does not wake it.
func TestStoppedByAnOrganizerStaysStopped(t *testing.T) {
	ctx := context.Background()
	s := newSleepy(t, sandboxtest.NewFake(t, sandboxtest.FakeOptions{}), func(c *config.Sandbox) { c.IdleTimeout = config.Duration(time.Hour) }, "alice")
	s.o.Do(ctx, "admin", orchestrator.ActionStart, "alice", false)
	s.clock.add(2 * time.Hour)
	s.o.SleepIdle(ctx)
	if st := s.state(t, "alice"); st.State != orchestrator.StateAsleep {
		t.Fatalf("alice: %s", st.State)
	}
	s.o.Do(ctx, "admin", orchestrator.ActionStop, "alice", false)
	if st := s.state(t, "alice"); st.State != "stopped" {
		t.Fatalf("alice stopped by an organizer while asleep: %s, want stopped", st.State)
	}
	if pos := s.o.Wake(ctx, "alice"); pos != -1 {
		t.Fatalf("a visit woke a sandbox an organizer stopped (%d)", pos)
	}
}

// A room back from lunch: wakes run sandbox.concurrency at a time, the
// rest wait in line and know their place.
func TestWakesAreQueued(t *testing.T) {
	ctx := context.Background()
	gate := make(chan struct{})
	var starting atomic.Int32
	rt := &gatedStart{Runtime: sandboxtest.NewFake(t, sandboxtest.FakeOptions{}), gate: gate, starting: &starting}
	users := []string{"u1", "u2", "u3", "u4", "u5"}
	s := newSleepy(t, rt, func(c *config.Sandbox) { c.IdleTimeout, c.Concurrency = config.Duration(time.Hour), 2 }, users...)
	rt.open.Store(true)
	for _, u := range users {
		s.o.Do(ctx, "admin", orchestrator.ActionStart, u, false)
	}
	s.clock.add(2 * time.Hour)
	s.o.SleepIdle(ctx)
	rt.open.Store(false)
	var pos []int
	for _, u := range users {
		pos = append(pos, s.o.Wake(ctx, u))
	}
	if want := []int{0, 0, 1, 2, 3}; !equal(pos, want) {
		t.Fatalf("places in line: %v, want %v", pos, want)
	}
	waitFor(t, "two wakes running", func() bool { return starting.Load() == 2 })
	if l, _ := s.o.Live(ctx, "u5"); l.Queue != 3 || l.State != "starting" {
		t.Fatalf("u5 waits: %+v", l)
	}
	for range 2 {
		gate <- struct{}{}
	}
	waitFor(t, "the next two wakes", func() bool { return starting.Load() == 4 })
	if l, _ := s.o.Live(ctx, "u5"); l.Queue != 1 {
		t.Fatalf("u5 after two wakes: %+v, want 1 ahead", l)
	}
	if n := starting.Load(); n > 4 {
		t.Fatalf("%d wakes at once with sandbox.concurrency 2", n)
	}
	close(gate)
	waitFor(t, "everyone awake", func() bool {
		for _, u := range users {
			if s.state(t, u).State != "running" {
				return false
			}
		}
		return true
	})
}

// gatedStart holds each Start until the test lets it go (once closed, all pass).
type gatedStart struct {
	sandbox.Runtime
	gate     chan struct{}
	open     atomic.Bool
	starting *atomic.Int32
}

func (g *gatedStart) Start(ctx context.Context, user string) (sandbox.Instance, error) {
	if !g.open.Load() {
		g.starting.Add(1)
		<-g.gate
	}
	return g.Runtime.Start(ctx, user)
}

// A sandbox stops at the end of sandbox.max_lifetime and stays stopped
// through visits; a renewal starts it again with a new end.
func TestLifetimeAndRenewal(t *testing.T) {
	ctx := context.Background()
	s := newSleepy(t, sandboxtest.NewFake(t, sandboxtest.FakeOptions{}), func(c *config.Sandbox) { c.MaxLifetime = config.Duration(12 * time.Hour) }, "alice")
	s.o.Do(ctx, "admin", orchestrator.ActionStart, "alice", false)
	start := s.clock.Now()
	if st := s.state(t, "alice"); !st.Expires.Equal(start.Add(12 * time.Hour)) {
		t.Fatalf("expires %s, want 12h after the start", st.Expires)
	}
	s.clock.add(11 * time.Hour)
	s.act.TouchAt("alice", s.clock.Now()) // busy: activity does not extend a lifetime
	s.clock.add(time.Hour)
	s.o.SleepIdle(ctx)
	if st := s.state(t, "alice"); st.State != orchestrator.StateExpired {
		t.Fatalf("alice after 12h: %s, want expired", st.State)
	}
	if pos := s.o.Wake(ctx, "alice"); pos != -1 {
		t.Fatal("a visit woke an expired sandbox")
	}
	exp, err := s.o.Renew(ctx, "admin", "alice", 2*time.Hour)
	if err != nil || !exp.Equal(s.clock.Now().Add(2*time.Hour)) {
		t.Fatalf("Renew: %s %v", exp, err)
	}
	if st := s.state(t, "alice"); st.State != "running" || !st.Expires.Equal(exp) {
		t.Fatalf("after renewal: %s until %s", st.State, st.Expires)
	}
	if r := s.events(t, "sandbox.renew"); len(r) != 1 || r[0].Actor != "admin" {
		t.Fatalf("renew entries: %+v", r)
	}
	var p config.Problem
	if _, err := s.o.Renew(ctx, "admin", "alice", 10*time.Second); !errors.As(err, &p) {
		t.Fatalf("renewing for 10s: %v, want a problem", err)
	}
	// Without a lifetime there is nothing to renew.
	off := newSleepy(t, sandboxtest.NewFake(t, sandboxtest.FakeOptions{}), func(*config.Sandbox) {}, "bob")
	if _, err := off.o.Renew(ctx, "admin", "bob", time.Hour); !errors.As(err, &p) || !strings.Contains(p.Msg, "max_lifetime is off") {
		t.Fatalf("renew without max_lifetime: %v", err)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
