package orchestrator_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/activity"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/sandbox/sandboxtest"
	"github.com/thon-dev/thon/internal/store"
)

const templatesConfig = `sandbox:
  image: thon-test/fake:latest
  limits: {cpu: 0.5, memory: 64Mi, pids: 64}
  env: {TZ: Europe/Paris}
  idle_timeout: 45m
templates:
  node:
    image: thon-test/node:22
    limits: {memory: 128Mi}
    env: {NODE_ENV: development}
    idle_timeout: 10m
    idle_action: pause
groups:
  web: {template: node, users: [alice]}
  ml: {template: node, idle_timeout: 30m, users: [carol]}
  plain: [bob]
`

func templatesOrchestrator(t *testing.T, rt sandbox.Runtime, yml string) (*orchestrator.Orchestrator, *store.Store, *clock, *activity.Tracker) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "thon.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg, err := config.Parse([]byte(yml), "thon.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	act := activity.New(c.Now)
	o := orchestrator.New(orchestrator.Options{Runtime: rt, Store: st, Sandboxes: cfg.SandboxSet(), Activity: act, Now: c.Now})
	if _, err := o.Import(ctx, "test", cfg); err != nil {
		t.Fatal(err)
	}
	return o, st, c, act
}

// A group's participant gets their template's image, limits and env; a
// group without one gets sandbox:.
func TestTemplateMakesAGroupsSandboxes(t *testing.T) {
	ctx := context.Background()
	rt := sandboxtest.NewFake(t, sandboxtest.FakeOptions{})
	o, _, _, _ := templatesOrchestrator(t, rt, templatesConfig)
	if sum, err := o.Bulk(ctx, "admin", orchestrator.ActionStart, orchestrator.Filter{}, orchestrator.BulkOptions{}); err != nil || sum.Failed > 0 {
		t.Fatalf("start: %+v %v", sum, err)
	}
	for _, tc := range []struct {
		user, image, template string
		memory                int64
		nodeEnv               bool
	}{
		{"alice", "thon-test/node:22", "node", 128 << 20, true},
		{"carol", "thon-test/node:22", "node", 128 << 20, true},
		{"bob", "thon-test/fake:latest", "", 64 << 20, false},
	} {
		spec, err := rt.Spec(tc.user)
		if err != nil {
			t.Fatal(err)
		}
		if spec.Image != tc.image || spec.Limits.MemoryBytes != tc.memory || spec.Limits.NanoCPUs != 5e8 {
			t.Errorf("%s's sandbox: image %s, limits %+v; want %s, %d bytes, half a core", tc.user, spec.Image, spec.Limits, tc.image, tc.memory)
		}
		if _, ok := spec.Env["NODE_ENV"]; ok != tc.nodeEnv || spec.Env["TZ"] != "Europe/Paris" {
			t.Errorf("%s's env %v: NODE_ENV present %v, want %v; TZ from sandbox:", tc.user, spec.Env, ok, tc.nodeEnv)
		}
		st, err := o.Get(ctx, tc.user)
		if err != nil {
			t.Fatal(err)
		}
		if st.Template != tc.template || st.Image != tc.image || st.Outdated {
			t.Errorf("%s's status: template %q image %s outdated %v; want %q, %s, current", tc.user, st.Template, st.Image, st.Outdated, tc.template, tc.image)
		}
	}
}

// Each sandbox sleeps by its group's idle policy: the template's, the
// group's own over it, or sandbox:'s.
func TestTemplateIdlePolicy(t *testing.T) {
	ctx := context.Background()
	rt := sandboxtest.NewFake(t, sandboxtest.FakeOptions{})
	o, st, c, _ := templatesOrchestrator(t, rt, templatesConfig)
	if sum, err := o.Bulk(ctx, "admin", orchestrator.ActionStart, orchestrator.Filter{}, orchestrator.BulkOptions{}); err != nil || sum.Failed > 0 {
		t.Fatalf("start: %+v %v", sum, err)
	}
	state := func(user string) string {
		s, err := o.Get(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		return s.State
	}
	step := func(d time.Duration, want map[string]string) {
		t.Helper()
		c.add(d)
		if err := o.SleepIdle(ctx); err != nil {
			t.Fatal(err)
		}
		for u, w := range want {
			if got := state(u); got != w {
				t.Errorf("after %s more: %s is %s, want %s", d, u, got, w)
			}
		}
	}
	// 11 minutes: node's 10m puts alice to sleep; carol's group says 30m, bob's sandbox: 45m.
	step(11*time.Minute, map[string]string{"alice": orchestrator.StateAsleep, "carol": "running", "bob": "running"})
	if inst, err := rt.Inspect(ctx, "alice"); err != nil || inst.State != sandbox.StatePaused {
		t.Errorf("alice on the engine: %s %v, want paused (node's idle_action)", inst.State, err)
	}
	step(20*time.Minute, map[string]string{"carol": orchestrator.StateAsleep, "bob": "running"})
	if inst, err := rt.Inspect(ctx, "carol"); err != nil || inst.State != sandbox.StatePaused {
		t.Errorf("carol on the engine: %s %v, want paused (node's idle_action under the group's timeout)", inst.State, err)
	}
	step(15*time.Minute, map[string]string{"bob": orchestrator.StateAsleep})
	if inst, err := rt.Inspect(ctx, "bob"); err != nil || inst.State != sandbox.StateStopped {
		t.Errorf("bob on the engine: %s %v, want stopped (sandbox:'s idle_action)", inst.State, err)
	}
	evs, err := st.Events(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	why := map[string]string{}
	for _, e := range evs {
		if e.Action == "sandbox.sleep" {
			why[e.Target] = e.Detail
		}
	}
	for u, w := range map[string]string{"alice": "templates.node.idle_timeout 10m0s", "carol": "groups.ml.idle_timeout 30m0s", "bob": "sandbox.idle_timeout 45m0s"} {
		if !strings.Contains(why[u], w) {
			t.Errorf("%s's sleep in the audit log: %q, want it to name %s", u, why[u], w)
		}
	}
}

// Changing a template marks its groups' sandboxes outdated, and only
// theirs; recreate applies it.
func TestTemplateChangeMarksOutdated(t *testing.T) {
	ctx := context.Background()
	rt := sandboxtest.NewFake(t, sandboxtest.FakeOptions{})
	o, _, _, _ := templatesOrchestrator(t, rt, templatesConfig)
	if sum, err := o.Bulk(ctx, "admin", orchestrator.ActionStart, orchestrator.Filter{}, orchestrator.BulkOptions{}); err != nil || sum.Failed > 0 {
		t.Fatalf("start: %+v %v", sum, err)
	}
	outdated := func() map[string]bool {
		list, err := o.List(ctx, orchestrator.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, s := range list {
			out[s.User] = s.Outdated
		}
		return out
	}
	if got := outdated(); got["alice"] || got["bob"] || got["carol"] {
		t.Fatalf("outdated right after start: %v", got)
	}
	// Only the idle policy changes: sandboxes need no recreate.
	idleOnly := strings.Replace(templatesConfig, "idle_timeout: 10m", "idle_timeout: 20m", 1)
	if _, err := o.Import(ctx, "admin", mustParse(t, idleOnly)); err != nil {
		t.Fatal(err)
	}
	if got := outdated(); got["alice"] || got["carol"] || got["bob"] {
		t.Fatalf("an idle policy change marked sandboxes outdated: %v", got)
	}
	newer := strings.Replace(idleOnly, "thon-test/node:22", "thon-test/node:24", 1)
	if _, err := o.Import(ctx, "admin", mustParse(t, newer)); err != nil {
		t.Fatal(err)
	}
	if got := outdated(); !got["alice"] || !got["carol"] || got["bob"] {
		t.Fatalf("after node's image changed: outdated %v, want alice and carol (node), not bob", got)
	}
	if r, err := o.Do(ctx, "admin", orchestrator.ActionRecreate, "alice", false); err != nil || r.Outcome != orchestrator.OutcomeRecreated {
		t.Fatalf("recreate alice: %+v %v", r, err)
	}
	if spec, err := rt.Spec("alice"); err != nil || spec.Image != "thon-test/node:24" {
		t.Fatalf("alice recreated from %s %v, want node's new image", spec.Image, err)
	}
	if got := outdated(); got["alice"] || !got["carol"] {
		t.Fatalf("after recreating alice: outdated %v, want carol only", got)
	}
	// A group that moves to another template is outdated too.
	moved := strings.Replace(newer, "plain: [bob]", "plain: {template: node, users: [bob]}", 1)
	if _, err := o.Import(ctx, "admin", mustParse(t, moved)); err != nil {
		t.Fatal(err)
	}
	if got := outdated(); !got["bob"] {
		t.Fatalf("bob's group now uses node: outdated %v", got)
	}
}

func mustParse(t *testing.T, yml string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(yml), "thon.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A renamed group keeps its template.
func TestRenamedGroupKeepsItsTemplate(t *testing.T) {
	ctx := context.Background()
	rt := sandboxtest.NewFake(t, sandboxtest.FakeOptions{})
	o, _, _, _ := templatesOrchestrator(t, rt, templatesConfig)
	if r, err := o.Do(ctx, "admin", orchestrator.ActionStart, "alice", false); err != nil || r.Outcome == orchestrator.OutcomeFailed {
		t.Fatalf("start: %+v %v", r, err)
	}
	if _, err := o.RenameGroup(ctx, "admin", "web", "frontend"); err != nil {
		t.Fatal(err)
	}
	st, err := o.Get(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := rt.Spec("alice")
	if err != nil {
		t.Fatal(err)
	}
	if st.Group != "frontend" || st.Template != "node" || spec.Image != "thon-test/node:22" || spec.Group != "frontend" || st.Outdated {
		t.Fatalf("after the rename: status %+v, image %s group %s; want frontend on node, current", st, spec.Image, spec.Group)
	}
}
