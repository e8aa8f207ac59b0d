package orchestrator_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/sandbox/sandboxtest"
	"github.com/thon-dev/thon/internal/store"
)

// started starts users' sandboxes and writes files into each workspace
// through its IDE.
func started(t *testing.T, o *orchestrator.Orchestrator, files map[string]map[string]string) {
	t.Helper()
	ctx := context.Background()
	for user, fs := range files {
		r, err := o.Do(ctx, "test", orchestrator.ActionStart, user, false)
		if err != nil || r.State != "running" {
			t.Fatalf("start %s: %+v %v", user, r, err)
		}
		for name, data := range fs {
			req, _ := http.NewRequest(http.MethodPut, "http://"+r.Endpoint+"/files/"+name, strings.NewReader(data))
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != http.StatusCreated {
				t.Fatalf("put %s in %s's workspace: %v %v", name, user, resp, err)
			}
			resp.Body.Close()
		}
	}
}

// untar reads a .tar.gz into name → content (regular files) and the
// names of its entries in order.
func untar(t *testing.T, b []byte) (map[string]string, []string) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a gzip stream: %v", err)
	}
	tr := tar.NewReader(zr)
	files := map[string]string{}
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, names
		}
		if err != nil {
			t.Fatalf("not a tar: %v", err)
		}
		names = append(names, h.Name)
		if h.Typeflag == tar.TypeReg {
			d, _ := io.ReadAll(tr)
			files[h.Name] = string(d)
		}
	}
}

func exportOf(t *testing.T, o *orchestrator.Orchestrator, user string) ([]byte, orchestrator.ExportResult) {
	t.Helper()
	e, err := o.OpenExport(context.Background(), "admin", user)
	if err != nil {
		t.Fatalf("OpenExport %s: %v", user, err)
	}
	var buf bytes.Buffer
	res, err := e.Write(&buf)
	if err != nil {
		t.Fatalf("export %s: %v", user, err)
	}
	return buf.Bytes(), res
}

func events(t *testing.T, st *store.Store, action string) []store.Event {
	t.Helper()
	evs, err := st.Events(context.Background(), 0, 1000)
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

// An export is the workspace as .tar.gz, entries under {user}/, with its
// size, file count and digest, recorded as done by its actor; it works on a
// stopped sandbox on an engine that reads one (Docker), leaving it stopped.
func TestExportWritesTheWorkspace(t *testing.T) {
	ctx := context.Background()
	rt := sandboxtest.NewFake(t, sandboxtest.FakeOptions{})
	o, st := newOrchestratorStore(t, rt, "alice", "bob")
	started(t, o, map[string]map[string]string{"alice": {"main.go": "package main\n", "notes.md": "# notes\n"}})

	b, res := exportOf(t, o, "alice")
	files, names := untar(t, b)
	if names[0] != "alice/" || files["alice/main.go"] != "package main\n" || files["alice/notes.md"] != "# notes\n" {
		t.Errorf("the archive holds %q: %q", names, files)
	}
	sum := sha256.Sum256(b)
	if res.User != "alice" || res.Group != "alpha" || res.Files != 2 || res.ContentBytes != 21 || res.Bytes != int64(len(b)) ||
		res.SHA256 != hex.EncodeToString(sum[:]) || res.Time.IsZero() || res.Started {
		t.Errorf("result %+v (archive of %d bytes)", res, len(b))
	}
	if evs := events(t, st, "sandbox.export"); len(evs) != 1 || evs[0].Actor != "admin" || evs[0].Target != "alice" || !strings.Contains(evs[0].Detail, res.SHA256) {
		t.Errorf("audit entries: %+v", evs)
	}

	if _, err := o.Do(ctx, "test", orchestrator.ActionStop, "alice", false); err != nil {
		t.Fatal(err)
	}
	b, res = exportOf(t, o, "alice")
	if files, _ := untar(t, b); files["alice/main.go"] != "package main\n" || res.Started {
		t.Errorf("export of a stopped sandbox: %q %+v", files, res)
	}
	if s, _ := o.Get(ctx, "alice"); s.State != "stopped" {
		t.Errorf("alice is %s after exporting her stopped sandbox", s.State)
	}

	// No sandbox: not found, saying what to do; no such user: not found.
	_, err := o.OpenExport(ctx, "admin", "bob")
	if !errors.Is(err, sandbox.ErrNotFound) || !strings.Contains(err.Error(), "thon instance start bob") {
		t.Errorf("export without a sandbox: %v", err)
	}
	if _, err := o.OpenExport(ctx, "admin", "zoe"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("export of an unknown user: %v", err)
	}
}

// On an engine that reads only a running sandbox's files (Kubernetes), a
// stopped sandbox is started for the export and stopped again, both in
// the audit log.
func TestExportStartsAStoppedSandboxWhereTheEngineNeedsIt(t *testing.T) {
	ctx := context.Background()
	caps := sandboxtest.KubernetesCapabilities
	rt := sandboxtest.NewFake(t, sandboxtest.FakeOptions{Capabilities: &caps})
	o, st := newOrchestratorStore(t, rt, "alice")
	started(t, o, map[string]map[string]string{"alice": {"a.txt": "kept"}})
	if _, err := o.Do(ctx, "test", orchestrator.ActionStop, "alice", false); err != nil {
		t.Fatal(err)
	}
	b, res := exportOf(t, o, "alice")
	if files, _ := untar(t, b); files["alice/a.txt"] != "kept" || !res.Started {
		t.Errorf("export: %q %+v", files, res)
	}
	if inst, err := rt.Inspect(ctx, "alice"); err != nil || inst.State != sandbox.StateStopped {
		t.Errorf("after the export: %+v %v, want it stopped again", inst, err)
	}
	if s, _ := o.Get(ctx, "alice"); s.State != "stopped" {
		t.Errorf("alice is recorded %s", s.State)
	}
	if len(events(t, st, "sandbox.start")) != 2 || len(events(t, st, "sandbox.stop")) != 2 {
		t.Errorf("audit log: want the start and stop for the export recorded")
	}
	// A running one is read as it is.
	started(t, o, map[string]map[string]string{"alice": {}})
	if _, res := exportOf(t, o, "alice"); res.Started {
		t.Errorf("a running sandbox was started for the export: %+v", res)
	}
}

// At most sandbox.concurrency exports run at once; the next one waits for
// a slot.
func TestExportsAreBounded(t *testing.T) {
	ctx := context.Background()
	rt := sandboxtest.NewFake(t, sandboxtest.FakeOptions{})
	o, _ := newOrchestratorStore(t, rt, "alice", "bob", "carol")
	started(t, o, map[string]map[string]string{"alice": {}, "bob": {}, "carol": {}})
	s := o.Sandboxes()
	s.Base.Concurrency = 2
	if err := o.ApplySettings(ctx, "test", s); err != nil {
		t.Fatal(err)
	}
	a, err := o.OpenExport(ctx, "admin", "alice")
	if err != nil {
		t.Fatal(err)
	}
	b, err := o.OpenExport(ctx, "admin", "bob")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := o.OpenExport(short, "admin", "carol"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a third export with two running: %v, want it to wait", err)
	}
	got := make(chan error, 1)
	go func() {
		e, err := o.OpenExport(ctx, "admin", "carol")
		if err == nil {
			_, err = e.Write(io.Discard)
		}
		got <- err
	}()
	a.Close()
	if err := <-got; err != nil {
		t.Fatalf("the third export once a slot is free: %v", err)
	}
	b.Close()
}

// A group's export holds every member's workspace under {group}/{user}/
// and a manifest that lists who has none.
func TestGroupExport(t *testing.T) {
	ctx := context.Background()
	rt := sandboxtest.NewFake(t, sandboxtest.FakeOptions{})
	o, st := newOrchestratorStore(t, rt, "alice", "bob", "carol")
	started(t, o, map[string]map[string]string{"alice": {"a.go": "package a\n"}, "carol": {"c.go": "package c\n", "d.go": "package d\n"}})
	g, err := o.OpenGroupExport(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	results, err := g.Write(ctx, "admin", &buf)
	if err != nil {
		t.Fatal(err)
	}
	files, names := untar(t, buf.Bytes())
	if files["alpha/alice/a.go"] != "package a\n" || files["alpha/carol/d.go"] != "package d\n" || names[len(names)-1] != "alpha/manifest.json" {
		t.Fatalf("the group's archive holds %q", names)
	}
	var m orchestrator.Manifest
	if err := json.Unmarshal([]byte(files["alpha/manifest.json"]), &m); err != nil || len(m.Items) != 3 {
		t.Fatalf("manifest: %s %v", files["alpha/manifest.json"], err)
	}
	for i, want := range []struct {
		user  string
		files int
		err   bool
	}{{"alice", 1, false}, {"bob", 0, true}, {"carol", 2, false}} {
		it := m.Items[i]
		if it.User != want.user || it.Files != want.files || (it.Error != "") != want.err || results[i].User != want.user {
			t.Errorf("manifest item %d: %+v, want %+v", i, it, want)
		}
	}
	if len(events(t, st, "sandbox.export")) != 2 {
		t.Errorf("want an audit entry per exported member")
	}
	if _, err := o.OpenGroupExport(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown group: %v", err)
	}
}

// Usage: each sample gives running sandboxes' CPU (from the engine's CPU
// time between two samples, or its own rate), memory and disk, in the
// participants' status; their running time adds up from the samples.
func TestUsageSamples(t *testing.T) {
	for _, rate := range []bool{false, true} {
		ctx := context.Background()
		rt := sandboxtest.NewFake(t, sandboxtest.FakeOptions{CPURate: rate})
		o, _ := newOrchestratorStore(t, rt, "alice", "bob")
		now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
		orchestrator.SetClock(o, func() time.Time { return now })
		started(t, o, map[string]map[string]string{"alice": {"big.bin": strings.Repeat("x", 1000)}})
		if s, _ := o.Get(ctx, "alice"); s.Memory != nil || s.CPU != nil {
			t.Errorf("usage before any sample: %+v", s)
		}
		if err := o.SampleUsage(ctx); err != nil {
			t.Fatal(err)
		}
		s, _ := o.Get(ctx, "alice")
		if s.Memory == nil || *s.Memory != sandboxtest.FakeIdleMemory+1000 || s.Disk == nil || *s.Disk != 1000 || s.MemoryLimit != 64<<20 {
			t.Errorf("after one sample: %+v", s)
		}
		if rate && (s.CPU == nil || *s.CPU != sandboxtest.FakeCPU) || !rate && s.CPU != nil {
			t.Errorf("CPU after one sample (rate %v): %v", rate, s.CPU)
		}
		// Ten requests in a second: 10 ms of the fake's CPU time.
		st, _ := o.Get(ctx, "alice")
		for range 10 {
			resp, err := http.Get("http://" + st.Endpoint + "/whoami")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		now = now.Add(time.Second)
		if err := o.SampleUsage(ctx); err != nil {
			t.Fatal(err)
		}
		s, _ = o.Get(ctx, "alice")
		want := 10 * float64(sandboxtest.FakeRequestCPU) / float64(time.Second)
		if rate {
			want = sandboxtest.FakeCPU
		}
		if s.CPU == nil || *s.CPU < want*0.999 || *s.CPU > want*1.001 {
			t.Errorf("CPU after two samples (rate %v): %v, want %v", rate, s.CPU, want)
		}
		if s.RunningSeconds != 1 {
			t.Errorf("running seconds %v, want 1 (two samples a second apart)", s.RunningSeconds)
		}
		if b, _ := o.Get(ctx, "bob"); b.Memory != nil || b.RunningSeconds != 0 {
			t.Errorf("bob has no sandbox: %+v", b)
		}
		u := o.Usage()
		if u.Machine.CPUs != sandboxtest.FakeMachineCPUs || len(u.Sandboxes) != 1 || !u.At.Equal(now) {
			t.Errorf("sample: %+v", u)
		}
		// Stopped: no usage shown, running time kept.
		if _, err := o.Do(ctx, "test", orchestrator.ActionStop, "alice", false); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Hour)
		if err := o.SampleUsage(ctx); err != nil {
			t.Fatal(err)
		}
		if s, _ := o.Get(ctx, "alice"); s.Memory != nil || s.CPU != nil || s.RunningSeconds != 1 {
			t.Errorf("stopped: %+v", s)
		}
	}
}

// newOrchestratorStore is newOrchestrator that also returns its store.
func newOrchestratorStore(t *testing.T, rt sandbox.Runtime, users ...string) (*orchestrator.Orchestrator, *store.Store) {
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
	return o, st
}
