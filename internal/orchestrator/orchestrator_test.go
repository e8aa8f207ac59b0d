package orchestrator_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/sandbox/sandboxtest"
	"github.com/thon-dev/thon/internal/store"
)

// slowList is a runtime whose List takes a while after it has read the
// engine, as it does on a busy engine with hundreds of sandboxes: plenty of
// time for an operation to change a sandbox in between.
type slowList struct {
	sandbox.Runtime
	delay  time.Duration
	listed atomic.Int32
}

func (s *slowList) List(ctx context.Context) ([]sandbox.Instance, error) {
	insts, err := s.Runtime.List(ctx)
	s.listed.Add(1)
	time.Sleep(s.delay)
	return insts, err
}

// newOrchestrator runs on the fake engine (the orchestrator's logic is
// what these tests are about), with the store in a SQLite file.
func newOrchestrator(t *testing.T, rt sandbox.Runtime, users ...string) *orchestrator.Orchestrator {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "thon.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := config.Default()
	cfg.Sandbox.Image = "thon-test/fake:latest"
	cfg.Sandbox.Limits = config.Limits{CPU: 0.5, Memory: 64 << 20, Pids: 64}
	cfg.Groups = config.Groups{{Name: "alpha", Users: users}}
	o := orchestrator.New(orchestrator.Options{Runtime: rt, Store: st, Sandboxes: cfg.SandboxSet()})
	if _, err := o.Import(context.Background(), "test", cfg); err != nil {
		t.Fatal(err)
	}
	return o
}

// A resync that read the engine before an operation changed a sandbox must
// not write its stale view over what the operation recorded.
func TestResyncNeverOverwritesANewerOperation(t *testing.T) {
	ctx := context.Background()
	slow := &slowList{Runtime: sandboxtest.NewFake(t, sandboxtest.FakeOptions{}), delay: 300 * time.Millisecond}
	o := newOrchestrator(t, slow, "alice")
	if r, err := o.Do(ctx, "test", orchestrator.ActionStart, "alice", false); err != nil || r.State != "running" {
		t.Fatalf("start: %+v %v", r, err)
	}
	// The resync reads the engine (running), then dawdles; meanwhile the
	// sandbox is paused and the pause recorded.
	done := make(chan error)
	go func() {
		_, err := o.Reconcile(ctx)
		done <- err
	}()
	for slow.listed.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if r, err := o.Do(ctx, "test", orchestrator.ActionPause, "alice", false); err != nil || r.State != "paused" {
		t.Fatalf("pause: %+v %v", r, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s, _ := o.Get(ctx, "alice"); s.State != "paused" {
		t.Fatalf("alice is %s after the resync: a stale read overwrote the pause", s.State)
	}
	// A resync with nothing in between does fold engine changes in.
	if err := slow.Runtime.Resume(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	rep, err := o.Reconcile(ctx)
	if err != nil || len(rep.Changed) != 1 {
		t.Fatalf("reconcile after a change behind THON's back: %+v %v", rep, err)
	}
	if s, _ := o.Get(ctx, "alice"); s.State != "running" {
		t.Fatalf("alice is %s after resuming behind THON's back", s.State)
	}
}

func TestWatchersHearChangesAndOverflow(t *testing.T) {
	o := &orchestrator.Orchestrator{}
	ch, stop := o.Watch()
	orchestrator.Notify(o, "alice")
	if got := <-ch; got != "alice" {
		t.Fatalf("got %q", got)
	}
	for range 1000 { // a slow watcher: never blocks the sender
		orchestrator.Notify(o, "bob")
	}
	n, overflow := 0, false
	for len(ch) > 0 {
		if <-ch == orchestrator.Overflow {
			overflow = true
		}
		n++
	}
	if !overflow || n > 256 {
		t.Fatalf("after 1000 changes: %d queued, overflow %v", n, overflow)
	}
	stop()
	stop() // twice is fine
	if _, ok := <-ch; ok {
		t.Fatal("channel not closed")
	}
	orchestrator.Notify(o, "carol") // no watchers: nothing happens
}

// farAway is an engine whose endpoints this process cannot reach, like
// Kubernetes' ClusterIPs seen from outside the cluster.
type farAway struct{ sandbox.Runtime }

func (f farAway) Inspect(ctx context.Context, user string) (sandbox.Instance, error) {
	inst, err := f.Runtime.Inspect(ctx, user)
	if inst.Endpoint != "" {
		inst.Endpoint = "192.0.2.1:8080" // TEST-NET-1: never answers
	}
	return inst, err
}

// On an engine with Kubernetes' capabilities the orchestrator stops for a
// pause and starts for a resume, and trusts "running" to mean healthy: it
// never probes an endpoint it may not reach.
func TestCapabilitiesAreHonoured(t *testing.T) {
	ctx := context.Background()
	caps := sandboxtest.KubernetesCapabilities
	o := newOrchestrator(t, farAway{sandboxtest.NewFake(t, sandboxtest.FakeOptions{Capabilities: &caps})}, "alice")
	for _, step := range []struct {
		action         orchestrator.Action
		outcome, state string
	}{
		{orchestrator.ActionStart, orchestrator.OutcomeCreated, "running"},
		{orchestrator.ActionStart, orchestrator.OutcomeUnchanged, "running"}, // ReadyIsHealthy: not probed
		{orchestrator.ActionPause, orchestrator.OutcomeStopped, "stopped"},   // PauseIsStop
		{orchestrator.ActionPause, orchestrator.OutcomeUnchanged, "stopped"},
		{orchestrator.ActionResume, orchestrator.OutcomeStarted, "running"},
		{orchestrator.ActionRecreate, orchestrator.OutcomeRecreated, "running"}, // CreateStarts
	} {
		r, err := o.Do(ctx, "test", step.action, "alice", false)
		if err != nil || r.Outcome != step.outcome || r.State != step.state {
			t.Fatalf("%s: %+v %v, want %s and %s", step.action, r, err, step.outcome, step.state)
		}
	}
}
