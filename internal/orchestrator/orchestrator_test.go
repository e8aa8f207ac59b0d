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
	"github.com/thon-dev/thon/internal/sandbox/docker"
	"github.com/thon-dev/thon/internal/store"
	"github.com/thon-dev/thon/internal/testenv"
)

// slowList is the real Docker runtime whose List takes a while after it has
// read the engine, as it does on a busy engine with hundreds of sandboxes:
// plenty of time for an operation to change a sandbox in between.
type slowList struct {
	*docker.Runtime
	delay  time.Duration
	listed atomic.Int32
}

func (s *slowList) List(ctx context.Context) ([]sandbox.Instance, error) {
	insts, err := s.Runtime.List(ctx)
	s.listed.Add(1)
	time.Sleep(s.delay)
	return insts, err
}

func newOrchestrator(t *testing.T, users ...string) (*orchestrator.Orchestrator, *slowList) {
	t.Helper()
	testenv.Docker(t)
	prefix := testenv.Prefix(t)
	t.Cleanup(func() { testenv.Cleanup(t, prefix) })
	rt, err := docker.New(docker.Options{NamePrefix: prefix, Network: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "thon.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := config.Default()
	cfg.Sandbox.Image = testenv.SandboxImage(t)
	cfg.Sandbox.Limits = config.Limits{CPU: 0.5, Memory: 64 << 20, Pids: 64}
	cfg.Groups = config.Groups{{Name: "alpha", Users: users}}
	slow := &slowList{Runtime: rt, delay: 300 * time.Millisecond}
	o := orchestrator.New(orchestrator.Options{Runtime: slow, Store: st, Settings: cfg.Sandbox})
	if _, err := o.Import(context.Background(), "test", cfg); err != nil {
		t.Fatal(err)
	}
	return o, slow
}

// A resync that read the engine before an operation changed a sandbox must
// not write its stale view over what the operation recorded.
func TestResyncNeverOverwritesANewerOperation(t *testing.T) {
	ctx := context.Background()
	o, slow := newOrchestrator(t, "alice")
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
