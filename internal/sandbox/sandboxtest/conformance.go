// Package sandboxtest holds what tests need of sandbox engines: Conformance,
// the Runtime contract (see package sandbox) as a test suite every engine
// passes, and Engine, an in-memory engine whose sandboxes answer over real
// HTTP, for tests above the engines (the orchestrator, the front door, the
// API) that are not about containers.
//
// An engine's tests run the suite against a real engine:
//
//	prefix := sandboxtest.PerTest(func(t *testing.T) string { … a fresh instance … })
//	sandboxtest.Conformance(t, func(t *testing.T) sandbox.Runtime {
//		rt, err := docker.New(docker.Options{NamePrefix: prefix(t), Network: prefix(t)})
//		…
//		return rt
//	}, sandboxtest.Image(testenv.SandboxImage(t)))
//
// The fake passes the same suite (fake_test.go), with Docker's capabilities
// and with Kubernetes'.
package sandboxtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/thon-dev/thon/internal/sandbox"
)

// Option adapts the suite to the engine under test.
type Option func(*suite)

// Image is the image the suite's sandboxes are made from; default
// "thon/sandbox:test". Where processes run it must be test/sandboxd's
// (testenv.SandboxImage), or answer like it.
func Image(ref string) Option { return func(s *suite) { s.image = ref } }

// NoProcesses says that no process runs in the engine's sandboxes here
// (Kubernetes on kwok, whose nodes are played): the suite checks states,
// labels, workspaces (with WorkspaceID) and errors, and leaves out what needs
// an IDE to answer — its endpoint, health path, environment, logs and files —
// logging why each time. It is a property of the test environment, never
// of the engine: a behaviour the engine lacks is a Capability.
func NoProcesses(why string) Option { return func(s *suite) { s.noProc = why } }

// WorkspaceID tells the suite how to find a user's kept workspace on the
// engine: a name or ID of it, "" when there is none. With it the suite checks
// that workspaces are kept and purged also where no process runs to write a
// file into one. Where processes run, files prove the rest; where none do, a
// workspace made after a purge must get another ID.
func WorkspaceID(fn func(t *testing.T, rt sandbox.Runtime, user string) string) Option {
	return func(s *suite) { s.wsID = fn }
}

// PerTest returns a function that calls newValue once per test and returns
// the same value for that test afterwards: the instance (name prefix,
// namespace) a Conformance newRuntime opens again for a "restarted daemon".
func PerTest[T any](newValue func(t *testing.T) T) func(t *testing.T) T {
	var mu sync.Mutex
	vals := map[*testing.T]T{}
	return func(t *testing.T) T {
		t.Helper()
		mu.Lock()
		v, ok := vals[t]
		mu.Unlock()
		if ok {
			return v
		}
		v = newValue(t)
		mu.Lock()
		vals[t] = v
		mu.Unlock()
		t.Cleanup(func() {
			mu.Lock()
			delete(vals, t)
			mu.Unlock()
		})
		return v
	}
}

type suite struct {
	newRuntime func(t *testing.T) sandbox.Runtime
	image      string
	noProc     string
	wsID       func(t *testing.T, rt sandbox.Runtime, user string) string
}

// Conformance checks the Runtime contract as parallel subtests of t.
//
// newRuntime is called with each subtest's t, and again with the same t for
// a "restarted daemon": every call with one t must return a new Runtime
// value on the same engine and instance (PerTest keeps one instance per t),
// and calls with different t's must return Runtimes on instances of their
// own, which never see each other's sandboxes. The suite closes every
// Runtime it gets (so closing twice must be fine). Sandboxes it leaves behind
// are the caller's to clean up, per instance.
func Conformance(t *testing.T, newRuntime func(t *testing.T) sandbox.Runtime, opts ...Option) {
	s := &suite{newRuntime: newRuntime, image: "thon/sandbox:test"}
	for _, o := range opts {
		o(s)
	}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"Capabilities", s.testCapabilities},
		{"InvalidSpecs", s.testInvalidSpecs},
		{"Lifecycle", s.testLifecycle},
		{"Pause", s.testPause},
		{"Restart", s.testRestart},
		{"Isolation", s.testIsolation},
		{"VolumeWorkspace", s.testVolumeWorkspace},
		{"OtherWorkspaces", s.testOtherWorkspaces},
		{"Files", s.testFiles},
		{"Crash", s.testCrash},
		{"Health", s.testHealth},
		{"Concurrency", s.testConcurrency},
		{"Archive", s.testArchive},
		{"Usage", s.testUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t)
		})
	}
}

// open is a new Runtime on t's instance, closed when t ends.
func (s *suite) open(t *testing.T) sandbox.Runtime {
	t.Helper()
	rt := s.newRuntime(t)
	t.Cleanup(func() {
		if err := rt.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return rt
}

func (s *suite) spec(user, group string) sandbox.Spec {
	return sandbox.Spec{
		User: user, Group: group, Image: s.image, Port: 8080, HealthPath: "/healthz",
		Env:       map[string]string{"FOO": "bar"},
		Limits:    sandbox.Limits{NanoCPUs: 500_000_000, MemoryBytes: 128 << 20, Pids: 64},
		Workspace: sandbox.WorkspaceVolume,
	}
}

// procs reports whether processes run; when not it logs what goes unchecked.
func (s *suite) procs(t *testing.T, what string) bool {
	t.Helper()
	if s.noProc != "" {
		t.Logf("not checked here (%s): %s", s.noProc, what)
		return false
	}
	return true
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// wait polls Inspect until ok holds (at most two minutes) and returns the
// instance.
func wait(t *testing.T, ctx context.Context, rt sandbox.Runtime, user, what string, ok func(sandbox.Instance) bool) sandbox.Instance {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var inst sandbox.Instance
	var err error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		inst, err = rt.Inspect(ctx, user)
		if err == nil && ok(inst) {
			return inst
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s's sandbox never became %s; last: %+v %v", user, what, inst, err)
	return inst
}

func running(i sandbox.Instance) bool { return i.State == sandbox.StateRunning && i.Endpoint != "" }

func waitRunning(t *testing.T, ctx context.Context, rt sandbox.Runtime, user string) sandbox.Instance {
	t.Helper()
	return wait(t, ctx, rt, user, "running with an endpoint", running)
}

// up creates and starts spec's sandbox and waits until it runs and, where
// processes run, until its IDE answers HTTP (running says nothing of that
// without ReadyIsHealthy).
func (s *suite) up(t *testing.T, ctx context.Context, rt sandbox.Runtime, spec sandbox.Spec) sandbox.Instance {
	t.Helper()
	inst := start(t, ctx, rt, spec)
	if s.noProc == "" {
		waitListening(t, inst.Endpoint)
	}
	return inst
}

func start(t *testing.T, ctx context.Context, rt sandbox.Runtime, spec sandbox.Spec) sandbox.Instance {
	t.Helper()
	if err := rt.Prepare(ctx, spec); err != nil {
		t.Fatalf("Prepare %s: %v", spec.User, err)
	}
	if _, err := rt.Create(ctx, spec); err != nil {
		t.Fatalf("Create %s: %v", spec.User, err)
	}
	if _, err := rt.Start(ctx, spec.User); err != nil {
		t.Fatalf("Start %s: %v", spec.User, err)
	}
	return waitRunning(t, ctx, rt, spec.User)
}

func userError(t *testing.T, what string, err error) *sandbox.UserError {
	t.Helper()
	var ue *sandbox.UserError
	if !errors.As(err, &ue) {
		t.Fatalf("%s: %v (%T), want a *sandbox.UserError", what, err, err)
	}
	return ue
}

func notFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("%s: %v, want ErrNotFound", what, err)
	}
}

var httpc = &http.Client{Timeout: 5 * time.Second}

func get(endpoint, path string, timeout time.Duration) (int, string, error) {
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get("http://" + endpoint + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitListening polls the health path until the IDE answers it at all (at
// most a minute).
func waitListening(t *testing.T, endpoint string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var err error
	for time.Now().Before(deadline) {
		if _, _, err = get(endpoint, "/healthz", 2*time.Second); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the IDE at %s never answered: %v", endpoint, err)
}

// waitHealthy polls the health path until it answers 200 ok (at most a minute).
func waitHealthy(t *testing.T, endpoint string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var last string
	for time.Now().Before(deadline) {
		code, body, err := get(endpoint, "/healthz", 2*time.Second)
		if err == nil && code == http.StatusOK && body == "ok" {
			return
		}
		last = fmt.Sprintf("%d %q %v", code, body, err)
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s/healthz never answered 200 ok; last: %s", endpoint, last)
}

func getJSON(t *testing.T, endpoint, path string, v any) {
	t.Helper()
	code, body, err := get(endpoint, path, 5*time.Second)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET %s%s: %d %s %v", endpoint, path, code, body, err)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s%s: %v in %s", endpoint, path, err, body)
	}
}

func putFile(t *testing.T, endpoint, name, content string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://"+endpoint+"/files/"+name, strings.NewReader(content))
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", name, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT %s: %d %s", name, resp.StatusCode, b)
	}
}

// readLogs reads the logs until every one of want is in them (at most 20s).
func readLogs(t *testing.T, ctx context.Context, rt sandbox.Runtime, user string, opts sandbox.LogOptions, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		rc, err := rt.Logs(ctx, user, opts)
		if err != nil {
			t.Fatalf("Logs of %s: %v", user, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("read the logs of %s: %v", user, err)
		}
		got = string(b)
		if !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(got, w) }) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the logs of %s, %q, lack one of %q", user, got, want)
	return ""
}

// testCapabilities: the engine's capabilities are coherent, and a
// workspace mode it does not support is refused before anything is made.
func (s *suite) testCapabilities(t *testing.T) {
	rt := s.open(t)
	ctx := testCtx(t)
	caps := rt.Capabilities()
	t.Logf("%s: %+v", rt.Name(), caps)
	if !caps.Supports(sandbox.WorkspaceVolume) || !caps.Supports("") {
		t.Errorf("Workspaces %v: every engine keeps workspaces in volumes (the default mode)", caps.Workspaces)
	}
	for _, m := range caps.Workspaces {
		if !slices.Contains(sandbox.WorkspaceModes, m) {
			t.Errorf("Workspaces %v: unknown mode %q", caps.Workspaces, m)
		}
	}
	if rt.Name() == "" {
		t.Error("Name is empty")
	}
	for _, m := range sandbox.WorkspaceModes {
		if caps.Supports(m) {
			continue
		}
		spec := s.spec("alice", "g1")
		spec.Workspace, spec.WorkspaceDir = m, t.TempDir()
		ue := userError(t, "Prepare with workspace mode "+string(m), rt.Prepare(ctx, spec))
		if !strings.Contains(ue.Error(), string(m)) || ue.Hint == "" {
			t.Errorf("Prepare with workspace mode %s: %v", m, ue)
		}
		_, err := rt.Create(ctx, spec)
		userError(t, "Create with workspace mode "+string(m), err)
		if _, err := rt.Inspect(ctx, "alice"); !errors.Is(err, sandbox.ErrNotFound) {
			t.Errorf("a refused Create left a sandbox: %v", err)
		}
	}
}

// testInvalidSpecs: Prepare and Create refuse a bad spec with a UserError
// and make nothing.
func (s *suite) testInvalidSpecs(t *testing.T) {
	rt := s.open(t)
	ctx := testCtx(t)
	for name, mut := range map[string]func(*sandbox.Spec){
		"uppercase user":     func(s *sandbox.Spec) { s.User = "Alice" },
		"user with _":        func(s *sandbox.Spec) { s.User = "al_ice" },
		"user starting -":    func(s *sandbox.Spec) { s.User = "-alice" },
		"user ending -":      func(s *sandbox.Spec) { s.User = "alice-" },
		"user of 64":         func(s *sandbox.Spec) { s.User = strings.Repeat("a", 64) },
		"no user":            func(s *sandbox.Spec) { s.User = "" },
		"user with /":        func(s *sandbox.Spec) { s.User = "a/b" },
		"group with _":       func(s *sandbox.Spec) { s.Group = "g_1" },
		"no group":           func(s *sandbox.Spec) { s.Group = "" },
		"no image":           func(s *sandbox.Spec) { s.Image = "" },
		"port 0":             func(s *sandbox.Spec) { s.Port = 0 },
		"port 65536":         func(s *sandbox.Spec) { s.Port = 65536 },
		"unknown workspace":  func(s *sandbox.Spec) { s.Workspace = "nfs" },
		"bind without a dir": func(s *sandbox.Spec) { s.Workspace, s.WorkspaceDir = sandbox.WorkspaceBind, "" },
		"relative file":      func(s *sandbox.Spec) { s.Files = []sandbox.File{{Path: "home/x", Mode: 0o600}} },
		"unclean file":       func(s *sandbox.Spec) { s.Files = []sandbox.File{{Path: "/a/../b", Mode: 0o600}} },
		"bad env name":       func(s *sandbox.Spec) { s.Env = map[string]string{"A=B": "x"} },
	} {
		spec := s.spec("alice", "g1")
		mut(&spec)
		if err := rt.Prepare(ctx, spec); err == nil {
			t.Errorf("%s: Prepare accepted it", name)
		} else {
			userError(t, name+": Prepare", err)
		}
		if _, err := rt.Create(ctx, spec); err == nil {
			t.Errorf("%s: Create accepted it", name)
		} else {
			userError(t, name+": Create", err)
		}
	}
	if list, err := rt.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("after refused creates, List: %+v %v", list, err)
	}
}

// testLifecycle: create, start, stop, start, remove, and what every
// operation says about a sandbox that does not exist.
func (s *suite) testLifecycle(t *testing.T) {
	rt := s.open(t)
	ctx := testCtx(t)
	caps := rt.Capabilities()
	spec := s.spec("alice", "g1")
	if err := rt.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := rt.Prepare(ctx, spec); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if err := rt.Prepare(ctx, spec); err != nil {
		t.Fatalf("second Prepare: %v", err)
	}
	s.checkMissing(t, ctx, rt, "alice", "before Create")

	created, err := rt.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if created.ID == "" || created.Name == "" || created.User != "alice" || created.Group != "g1" || created.Image != spec.Image ||
		created.SpecHash != spec.Hash() || created.Created.IsZero() {
		t.Fatalf("Create returned %+v", created)
	}
	if caps.CreateStarts {
		if created.State != sandbox.StateStarting && created.State != sandbox.StateRunning {
			t.Errorf("Create (CreateStarts) returned state %s, want starting or running", created.State)
		}
	} else if created.State != sandbox.StateCreated || created.Endpoint != "" {
		t.Errorf("Create returned state %s endpoint %q, want created without an endpoint", created.State, created.Endpoint)
	}
	inst, err := rt.Inspect(ctx, "alice")
	if err != nil || inst.ID != created.ID || inst.SpecHash != spec.Hash() || inst.Group != "g1" {
		t.Fatalf("Inspect right after Create: %+v %v", inst, err)
	}
	if !caps.CreateStarts {
		if err := rt.Stop(ctx, "alice", time.Second); err != nil {
			t.Errorf("Stop of a created sandbox: %v", err)
		}
	}
	for _, group := range []string{"g1", "g2"} {
		again := s.spec("alice", group)
		if _, err := rt.Create(ctx, again); !errors.Is(err, sandbox.ErrExists) {
			t.Errorf("second Create (group %s): %v, want ErrExists", group, err)
		}
	}

	started, err := rt.Start(ctx, "alice")
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if started.ID != created.ID || (started.State != sandbox.StateStarting && started.State != sandbox.StateRunning) {
		t.Errorf("Start returned %+v, want it starting or running", started)
	}
	inst = waitRunning(t, ctx, rt, "alice")
	if inst.ID != created.ID || inst.Name != created.Name || !inst.Created.Equal(created.Created) {
		t.Errorf("running: %+v, created: %+v", inst, created)
	}
	ep := inst.Endpoint
	if again, err := rt.Start(ctx, "alice"); err != nil || again.ID != inst.ID || again.State != sandbox.StateRunning || again.Endpoint != ep {
		t.Errorf("Start on a running sandbox: %+v %v", again, err)
	}
	if s.procs(t, "the IDE's health, environment, WebSocket and logs") {
		s.checkIDE(t, ctx, rt, spec, ep)
	}

	if err := rt.Stop(ctx, "alice", 2*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	inst, err = rt.Inspect(ctx, "alice")
	if err != nil || inst.State != sandbox.StateStopped || inst.Endpoint != "" || inst.ID != created.ID || inst.Group != "g1" ||
		inst.Image != spec.Image || inst.SpecHash != spec.Hash() {
		t.Fatalf("after Stop: %+v %v", inst, err)
	}
	if err := rt.Stop(ctx, "alice", time.Second); err != nil {
		t.Errorf("Stop of a stopped sandbox: %v", err)
	}
	rc, err := rt.Logs(ctx, "alice", sandbox.LogOptions{})
	switch {
	case caps.StoppedLogs && err != nil:
		t.Errorf("Logs of a stopped sandbox (StoppedLogs): %v", err)
	case caps.StoppedLogs:
		b, _ := io.ReadAll(rc)
		rc.Close()
		if s.procs(t, "the output of a stopped sandbox") && !strings.Contains(string(b), "user=alice group=g1") {
			t.Errorf("Logs of a stopped sandbox: %q, want its last run's output", b)
		}
	case err == nil:
		rc.Close()
		t.Error("Logs of a stopped sandbox succeeded, yet the engine says it keeps none (no StoppedLogs)")
	case errors.Is(err, sandbox.ErrNotFound):
		t.Errorf("Logs of a stopped sandbox: %v, want a UserError, not ErrNotFound", err)
	default:
		userError(t, "Logs of a stopped sandbox", err)
	}

	if _, err := rt.Start(ctx, "alice"); err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	inst = waitRunning(t, ctx, rt, "alice")
	if inst.ID != created.ID || inst.SpecHash != spec.Hash() {
		t.Errorf("restarted: %+v, want ID %s", inst, created.ID)
	}
	if s.procs(t, "the IDE answers after a restart") {
		waitHealthy(t, inst.Endpoint)
	}

	if err := rt.Remove(ctx, "alice", false); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	s.checkMissing(t, ctx, rt, "alice", "after Remove")
	if list, err := rt.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("List after Remove: %+v %v", list, err)
	}
	// A new sandbox of the same user is another sandbox.
	again, err := rt.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create after Remove: %v", err)
	}
	if again.ID == created.ID {
		t.Errorf("a new sandbox has the old one's ID %s", again.ID)
	}
	if err := rt.Remove(ctx, "alice", true); err != nil {
		t.Fatalf("Remove: %v", err)
	}
}

// checkMissing: every operation on a user without a sandbox says ErrNotFound.
func (s *suite) checkMissing(t *testing.T, ctx context.Context, rt sandbox.Runtime, user, when string) {
	t.Helper()
	_, err := rt.Inspect(ctx, user)
	notFound(t, "Inspect "+when, err)
	_, err = rt.Start(ctx, user)
	notFound(t, "Start "+when, err)
	notFound(t, "Stop "+when, rt.Stop(ctx, user, time.Second))
	notFound(t, "Pause "+when, rt.Pause(ctx, user))
	notFound(t, "Resume "+when, rt.Resume(ctx, user))
	notFound(t, "Remove "+when, rt.Remove(ctx, user, false))
	_, err = rt.Logs(ctx, user, sandbox.LogOptions{})
	notFound(t, "Logs "+when, err)
	if rc, err := rt.Archive(ctx, user); err == nil {
		rc.Close()
		t.Errorf("Archive %s: no error, want ErrNotFound", when)
	} else {
		notFound(t, "Archive "+when, err)
	}
}

// checkIDE: the running IDE answers at its endpoint with the sandbox's
// environment, echoes WebSocket messages and writes logs.
func (s *suite) checkIDE(t *testing.T, ctx context.Context, rt sandbox.Runtime, spec sandbox.Spec, ep string) {
	t.Helper()
	waitHealthy(t, ep)
	var env map[string]string
	getJSON(t, ep, "/env", &env)
	for _, v := range spec.Environ() {
		if env[v.Name] != v.Value {
			t.Errorf("env %s = %q, want %q", v.Name, env[v.Name], v.Value)
		}
	}
	for k, v := range map[string]string{"FOO": "bar", "THON_USER": spec.User, "THON_GROUP": spec.Group, "THON_WORKSPACE": spec.WorkspacePath(), "PORT": "8080"} {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}
	var who struct{ User, Group, Workspace, Hostname string }
	getJSON(t, ep, "/whoami", &who)
	if who.User != spec.User || who.Group != spec.Group || who.Workspace != spec.WorkspacePath() || who.Hostname != spec.User {
		t.Errorf("whoami: %+v", who)
	}
	if code, body, err := get(ep, "/", 5*time.Second); err != nil || code != 200 || !strings.Contains(body, spec.User) {
		t.Errorf("GET /: %d %v %q", code, err, body)
	}
	wsc, _, err := websocket.Dial(ctx, "ws://"+ep+"/ws", nil)
	if err != nil {
		t.Fatalf("WebSocket dial: %v", err)
	}
	if err := wsc.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := wsc.Read(ctx); err != nil || string(msg) != "hello" {
		t.Errorf("WebSocket echo: %q %v", msg, err)
	}
	wsc.Close(websocket.StatusNormalClosure, "")

	// Logs: both streams merged; the last lines; following.
	mark := "user=" + spec.User + " group=" + spec.Group
	readLogs(t, ctx, rt, spec.User, sandbox.LogOptions{}, mark, "stderr ready")
	tail := readLogs(t, ctx, rt, spec.User, sandbox.LogOptions{Tail: 1}, "sandboxd")
	if n := strings.Count(strings.TrimSpace(tail), "\n"); n != 0 {
		t.Errorf("Logs Tail 1 returned %d lines: %q", n+1, tail)
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rc, err := rt.Logs(fctx, spec.User, sandbox.LogOptions{Follow: true})
	if err != nil {
		t.Fatalf("Logs Follow: %v", err)
	}
	line, err := bufio.NewReader(rc).ReadString('\n')
	if err != nil || !strings.Contains(line, "sandboxd") {
		t.Errorf("Logs Follow, first line: %q %v", line, err)
	}
	closed := make(chan error, 1)
	go func() { closed <- rc.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Error("closing a followed log stream blocked")
	}
}

// testPause: pause and resume, or stop and start on an engine that cannot
// pause (PauseIsStop); both idempotent.
func (s *suite) testPause(t *testing.T) {
	rt := s.open(t)
	ctx := testCtx(t)
	caps := rt.Capabilities()
	spec := s.spec("bob", "g1")
	inst := s.up(t, ctx, rt, spec)
	if s.procs(t, "a paused IDE does not answer") {
		waitHealthy(t, inst.Endpoint)
	}
	if err := rt.Pause(ctx, "bob"); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if err := rt.Pause(ctx, "bob"); err != nil {
		t.Fatalf("second Pause: %v", err)
	}
	paused, err := rt.Inspect(ctx, "bob")
	want := sandbox.StatePaused
	if caps.PauseIsStop {
		want = sandbox.StateStopped
	}
	if err != nil || paused.State != want || paused.Endpoint != "" || paused.ID != inst.ID {
		t.Fatalf("after Pause: %+v %v, want %s without an endpoint", paused, err, want)
	}
	if !caps.PauseIsStop && s.procs(t, "a paused IDE does not answer") {
		if code, _, err := get(inst.Endpoint, "/healthz", 500*time.Millisecond); err == nil {
			t.Errorf("a paused sandbox answered %d", code)
		}
	}
	if err := rt.Resume(ctx, "bob"); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if err := rt.Resume(ctx, "bob"); err != nil {
		t.Fatalf("second Resume: %v", err)
	}
	inst = waitRunning(t, ctx, rt, "bob")
	if s.procs(t, "a resumed IDE answers") {
		waitHealthy(t, inst.Endpoint)
	}

	// Stop of a paused sandbox stops it.
	if err := rt.Pause(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := rt.Stop(ctx, "bob", 2*time.Second); err != nil {
		t.Fatalf("Stop of a paused sandbox: %v", err)
	}
	if inst, err := rt.Inspect(ctx, "bob"); err != nil || inst.State != sandbox.StateStopped {
		t.Fatalf("after Stop of a paused sandbox: %+v %v", inst, err)
	}
	// Only a running sandbox pauses, only a paused one resumes; where pause
	// is stop, they are stop and start.
	if caps.PauseIsStop {
		if err := rt.Pause(ctx, "bob"); err != nil {
			t.Errorf("Pause (stop) of a stopped sandbox: %v", err)
		}
		if err := rt.Resume(ctx, "bob"); err != nil {
			t.Errorf("Resume (start) of a stopped sandbox: %v", err)
		}
		waitRunning(t, ctx, rt, "bob")
	} else {
		if err := rt.Pause(ctx, "bob"); err == nil || errors.Is(err, sandbox.ErrNotFound) {
			t.Errorf("Pause of a stopped sandbox: %v, want an error", err)
		}
		if err := rt.Resume(ctx, "bob"); err == nil || errors.Is(err, sandbox.ErrNotFound) {
			t.Errorf("Resume of a stopped sandbox: %v, want an error", err)
		}
		// Start on a paused sandbox resumes it.
		if _, err := rt.Start(ctx, "bob"); err != nil {
			t.Fatal(err)
		}
		waitRunning(t, ctx, rt, "bob")
		if err := rt.Pause(ctx, "bob"); err != nil {
			t.Fatal(err)
		}
		if _, err := rt.Start(ctx, "bob"); err != nil {
			t.Fatalf("Start of a paused sandbox: %v", err)
		}
		waitRunning(t, ctx, rt, "bob")
	}
}

// testRestart: a new Runtime on the same engine and instance (a restarted
// daemon) finds every sandbox with its labels, spec hash and state, and
// drives them; closing a Runtime leaves the sandboxes running.
func (s *suite) testRestart(t *testing.T) {
	rt := s.open(t)
	ctx := testCtx(t)
	users := []string{"u1", "u2", "u3"}
	specs := map[string]sandbox.Spec{}
	for i, u := range users {
		spec := s.spec(u, []string{"alpha", "beta", "alpha"}[i])
		spec.Env["N"] = u // another hash for each
		specs[u] = spec
		s.up(t, ctx, rt, spec)
	}
	if err := rt.Stop(ctx, "u2", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	first, err := rt.List(ctx)
	if err != nil || len(first) != 3 {
		t.Fatalf("List: %+v %v", first, err)
	}

	rt2 := s.open(t)
	list, err := rt2.List(ctx)
	if err != nil {
		t.Fatalf("List on a new Runtime: %v", err)
	}
	if len(list) != 3 {
		t.Fatalf("a new Runtime found %d sandboxes: %+v", len(list), list)
	}
	for i, inst := range list {
		spec := specs[inst.User]
		want := map[string]sandbox.State{"u1": sandbox.StateRunning, "u2": sandbox.StateStopped, "u3": sandbox.StateRunning}[inst.User]
		f := first[i]
		if inst.User != users[i] || inst.Group != spec.Group || inst.SpecHash != spec.Hash() || inst.Image != spec.Image || inst.State != want ||
			inst.ID != f.ID || inst.Name != f.Name || inst.Endpoint != f.Endpoint || !inst.Created.Equal(f.Created) {
			t.Errorf("found again %+v, want state %s like %+v", inst, want, f)
		}
	}
	if inst, err := rt2.Inspect(ctx, "u1"); err != nil || !running(inst) || inst.SpecHash != specs["u1"].Hash() {
		t.Errorf("Inspect on a new Runtime: %+v %v", inst, err)
	}
	if _, err := rt2.Create(ctx, specs["u1"]); !errors.Is(err, sandbox.ErrExists) {
		t.Errorf("Create of a sandbox found again: %v, want ErrExists", err)
	}
	// The new Runtime drives them; the old one sees it.
	if _, err := rt2.Start(ctx, "u2"); err != nil {
		t.Fatalf("Start on a new Runtime: %v", err)
	}
	waitRunning(t, ctx, rt2, "u2")
	waitRunning(t, ctx, rt, "u2")
	// Closing a Runtime stops nothing.
	if err := rt.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, u := range users {
		inst, err := rt2.Inspect(ctx, u)
		if err != nil || !running(inst) {
			t.Errorf("%s after the first Runtime closed: %+v %v", u, inst, err)
		} else if s.procs(t, "the IDE answers after the Runtime that started it closed") {
			waitHealthy(t, inst.Endpoint)
		}
	}
}

// testIsolation: Runtimes of two instances on one engine never see or touch
// each other's sandboxes, even of the same user.
func (s *suite) testIsolation(t *testing.T) {
	rt := s.open(t)
	ctx := testCtx(t)
	mine, err := rt.Create(ctx, s.spec("alice", "g1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("another instance", func(t *testing.T) {
		other := s.open(t)
		if list, err := other.List(ctx); err != nil || len(list) != 0 {
			t.Errorf("another instance's List: %+v %v", list, err)
		}
		_, err := other.Inspect(ctx, "alice")
		notFound(t, "Inspect of another instance's sandbox", err)
		notFound(t, "Stop of another instance's sandbox", other.Stop(ctx, "alice", time.Second))
		notFound(t, "Remove of another instance's sandbox", other.Remove(ctx, "alice", true))
		theirs, err := other.Create(ctx, s.spec("alice", "g1"))
		if err != nil {
			t.Fatalf("Create of the same user in another instance: %v", err)
		}
		if theirs.ID == mine.ID {
			t.Errorf("two instances' sandboxes share ID %s", mine.ID)
		}
		if err := other.Remove(ctx, "alice", true); err != nil {
			t.Fatal(err)
		}
	})
	list, err := rt.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != mine.ID {
		t.Fatalf("after another instance's work: %+v %v", list, err)
	}
}

// testVolumeWorkspace: a volume workspace survives Remove and a new Create,
// in another group too; purge and PurgeWorkspace delete it.
func (s *suite) testVolumeWorkspace(t *testing.T) {
	rt := s.open(t)
	ctx := testCtx(t)
	procs := s.procs(t, "files in the workspace")
	if !procs && s.wsID == nil {
		t.Skip("no process writes files and no WorkspaceID finds workspaces: nothing to check")
	}
	id := func() string {
		if s.wsID == nil {
			return ""
		}
		return s.wsID(t, rt, "carol")
	}
	inst := s.up(t, ctx, rt, s.spec("carol", "g1"))
	first := id()
	if s.wsID != nil && first == "" {
		t.Fatal("a volume sandbox has no workspace (WorkspaceID)")
	}
	if procs {
		putFile(t, inst.Endpoint, "hello.txt", "hi from g1")
	}
	if err := rt.Remove(ctx, "carol", false); err != nil {
		t.Fatal(err)
	}
	if got := id(); got != first {
		t.Fatalf("workspace after Remove without purge: %q, want %q", got, first)
	}

	// Same user, new group: the same workspace at the new path.
	moved := s.spec("carol", "g2")
	inst = s.up(t, ctx, rt, moved)
	if inst.Group != "g2" || inst.SpecHash != moved.Hash() {
		t.Errorf("moved: %+v", inst)
	}
	if got := id(); got != first {
		t.Errorf("workspace after a move: %q, want %q", got, first)
	}
	if procs {
		if code, body, err := get(inst.Endpoint, "/files/hello.txt", 5*time.Second); err != nil || code != 200 || body != "hi from g1" {
			t.Fatalf("file after the move: %d %q %v", code, body, err)
		}
		var who struct{ Workspace string }
		getJSON(t, inst.Endpoint, "/whoami", &who)
		if who.Workspace != "/workspace/g2/carol" {
			t.Errorf("workspace path after the move: %s", who.Workspace)
		}
	}

	// PurgeWorkspace refuses while the sandbox exists.
	err := rt.PurgeWorkspace(ctx, moved)
	if !errors.Is(err, sandbox.ErrExists) {
		t.Errorf("PurgeWorkspace with a sandbox: %v, want ErrExists", err)
	}
	userError(t, "PurgeWorkspace with a sandbox", err)

	// Remove with purge deletes it: a new sandbox starts empty.
	if err := rt.Remove(ctx, "carol", true); err != nil {
		t.Fatalf("Remove with purge: %v", err)
	}
	if got := id(); got != "" {
		t.Fatalf("workspace after Remove with purge: %q", got)
	}
	inst = s.up(t, ctx, rt, moved)
	second := id()
	if s.wsID != nil && (second == "" || !procs && second == first) {
		t.Errorf("workspace after a purge and a new Create: %q (before: %q)", second, first)
	}
	if procs {
		if code, _, err := get(inst.Endpoint, "/files/hello.txt", 5*time.Second); err != nil || code != http.StatusNotFound {
			t.Fatalf("file after the purge: %d %v, want 404", code, err)
		}
		putFile(t, inst.Endpoint, "again.txt", "x")
	}

	// PurgeWorkspace deletes the workspace of a user without a sandbox;
	// with none left it does nothing.
	if err := rt.Remove(ctx, "carol", false); err != nil {
		t.Fatal(err)
	}
	if err := rt.PurgeWorkspace(ctx, moved); err != nil {
		t.Fatalf("PurgeWorkspace: %v", err)
	}
	if got := id(); got != "" {
		t.Errorf("workspace after PurgeWorkspace: %q", got)
	}
	if err := rt.PurgeWorkspace(ctx, moved); err != nil {
		t.Errorf("PurgeWorkspace without a workspace: %v", err)
	}

	// Remove with purge of a user without a sandbox deletes the workspace
	// and says ErrNotFound.
	s.up(t, ctx, rt, moved)
	if err := rt.Remove(ctx, "carol", false); err != nil {
		t.Fatal(err)
	}
	notFound(t, "Remove with purge without a sandbox", rt.Remove(ctx, "carol", true))
	if got := id(); got != "" {
		t.Errorf("workspace after Remove with purge without a sandbox: %q", got)
	}
	if procs {
		inst = s.up(t, ctx, rt, moved)
		if code, _, err := get(inst.Endpoint, "/files/again.txt", 5*time.Second); err != nil || code != http.StatusNotFound {
			t.Errorf("file after Remove with purge without a sandbox: %d %v, want 404", code, err)
		}
	}
}

// testOtherWorkspaces: ephemeral workspaces go with their sandbox; bind
// workspaces are host directories no purge deletes.
func (s *suite) testOtherWorkspaces(t *testing.T) {
	rt := s.open(t)
	ctx := testCtx(t)
	caps := rt.Capabilities()
	procs := s.procs(t, "files in ephemeral and bind workspaces")
	if caps.Supports(sandbox.WorkspaceEphemeral) {
		spec := s.spec("dave", "g1")
		spec.Workspace = sandbox.WorkspaceEphemeral
		inst := s.up(t, ctx, rt, spec)
		if s.wsID != nil && s.wsID(t, rt, "dave") != "" {
			t.Errorf("an ephemeral workspace is kept: %q", s.wsID(t, rt, "dave"))
		}
		if procs {
			putFile(t, inst.Endpoint, "note.txt", "gone soon")
		}
		if err := rt.Remove(ctx, "dave", false); err != nil {
			t.Fatal(err)
		}
		inst = s.up(t, ctx, rt, spec)
		if procs {
			if code, _, err := get(inst.Endpoint, "/files/note.txt", 5*time.Second); err != nil || code != http.StatusNotFound {
				t.Errorf("ephemeral file after a new Create: %d %v, want 404", code, err)
			}
		}
	}
	if caps.Supports(sandbox.WorkspaceBind) {
		dir := filepath.Join(t.TempDir(), "workspaces")
		spec := s.spec("erin", "g1")
		spec.Workspace, spec.WorkspaceDir = sandbox.WorkspaceBind, dir
		inst := s.up(t, ctx, rt, spec)
		if fi, err := os.Stat(filepath.Join(dir, "erin")); err != nil || !fi.IsDir() {
			t.Fatalf("bind workspace directory: %v", err)
		}
		if procs {
			putFile(t, inst.Endpoint, "main.go", "package main\n")
			if b, err := os.ReadFile(filepath.Join(dir, "erin", "main.go")); err != nil || string(b) != "package main\n" {
				t.Fatalf("the file on the host: %q %v", b, err)
			}
		} else if err := os.WriteFile(filepath.Join(dir, "erin", "main.go"), []byte("package main\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := rt.Remove(ctx, "erin", true); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, "erin", "main.go")); err != nil {
			t.Fatalf("Remove with purge deleted a bind workspace: %v", err)
		}
	}
}

// testFiles: Spec.Files are in place with their modes when the IDE starts,
// and a new Create writes the new version.
func (s *suite) testFiles(t *testing.T) {
	if !s.procs(t, "files written into the sandbox") {
		t.Skip("no process can read the files here; the engine's own tests check how it writes them")
	}
	rt := s.open(t)
	ctx := testCtx(t)
	spec := s.spec("fay", "g1")
	spec.Files = []sandbox.File{
		{Path: "/home/coder/.config/kilo/config.json", Mode: 0o600, UID: 1000, GID: 1000, Data: []byte(`{"v":1}`)},
		{Path: "/etc/thon/extensions.txt", Mode: 0o644, Data: []byte("kilocode.kilo-code\n")},
	}
	type stat struct {
		UID, GID int
		Mode     string
		Dir      bool
		Data     string
	}
	check := func(ep, p string, want stat, owner bool) {
		t.Helper()
		var got stat
		getJSON(t, ep, "/stat?path="+p, &got)
		if !owner {
			got.UID, got.GID = want.UID, want.GID
		}
		if got != want {
			t.Errorf("%s: %+v, want %+v", p, got, want)
		}
	}
	inst := s.up(t, ctx, rt, spec)
	check(inst.Endpoint, "/home/coder/.config/kilo/config.json", stat{1000, 1000, "0600", false, `{"v":1}`}, true)
	check(inst.Endpoint, "/home/coder/.config/kilo", stat{1000, 1000, "0755", true, ""}, true)
	check(inst.Endpoint, "/etc/thon/extensions.txt", stat{0, 0, "0644", false, "kilocode.kilo-code\n"}, false)

	if err := rt.Remove(ctx, "fay", false); err != nil {
		t.Fatal(err)
	}
	spec.Files[0].Data = []byte(`{"v":2}`)
	inst = s.up(t, ctx, rt, spec)
	check(inst.Endpoint, "/home/coder/.config/kilo/config.json", stat{1000, 1000, "0600", false, `{"v":2}`}, true)
}

// testCrash: an IDE that exits at start is reported stopped (or starting
// again, with a reason) with its exit code, never running.
func (s *suite) testCrash(t *testing.T) {
	if !s.procs(t, "an IDE that exits") {
		t.Skip("no process runs, so none exits")
	}
	rt := s.open(t)
	ctx := testCtx(t)
	caps := rt.Capabilities()
	spec := s.spec("gus", "g1")
	spec.Env["FAIL_USERS"] = "gus"
	if _, err := rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Start(ctx, "gus"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	inst := wait(t, ctx, rt, "gus", "stopped, or restarting with a reason", func(i sandbox.Instance) bool {
		return i.State == sandbox.StateStopped || i.State == sandbox.StateStarting && i.Reason != ""
	})
	if inst.ExitCode != 3 || inst.Reason == "" || inst.Endpoint != "" {
		t.Errorf("crashed: %+v, want exit code 3 and a reason", inst)
	}
	if err := rt.Stop(ctx, "gus", time.Second); err != nil {
		t.Fatalf("Stop of a crashed sandbox: %v", err)
	}
	if inst, err := rt.Inspect(ctx, "gus"); err != nil || inst.State != sandbox.StateStopped {
		t.Fatalf("after Stop: %+v %v", inst, err)
	}
	if caps.StoppedLogs {
		readLogs(t, ctx, rt, "gus", sandbox.LogOptions{}, "failing on purpose")
	}
}

// testHealth: with ReadyIsHealthy a sandbox is running only once its health
// path answers; without, running says nothing of health (THON probes).
func (s *suite) testHealth(t *testing.T) {
	if !s.procs(t, "the health path") {
		t.Skip("no IDE answers a health path here")
	}
	rt := s.open(t)
	ctx := testCtx(t)
	if rt.Capabilities().ReadyIsHealthy {
		spec := s.spec("hal", "g1")
		spec.Env["HEALTH_DELAY"] = "2s"
		inst := start(t, ctx, rt, spec) // running: no more waiting
		if code, body, err := get(inst.Endpoint, "/healthz", 5*time.Second); err != nil || code != 200 {
			t.Errorf("running (ReadyIsHealthy), yet the health path says %d %q %v", code, body, err)
		}
		return
	}
	spec := s.spec("hal", "g1")
	spec.Env["HEALTH_FAIL"] = "1"
	inst := s.up(t, ctx, rt, spec)
	if code, _, err := get(inst.Endpoint, "/healthz", 5*time.Second); err != nil || code != http.StatusServiceUnavailable {
		t.Errorf("an unhealthy IDE: %d %v, want 503 (and still running: the engine does not probe)", code, err)
	}
}

// testConcurrency: sandboxes made at once all come up; concurrent Creates
// of one user make one sandbox; concurrent Removes remove it once.
func (s *suite) testConcurrency(t *testing.T) {
	rt := s.open(t)
	ctx := testCtx(t)
	const n = 6
	if err := rt.Prepare(ctx, s.spec("p0", "g1")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*n)
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() { // readers all along
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := rt.List(ctx); err != nil {
				errs <- fmt.Errorf("List: %w", err)
			}
			if _, err := rt.Inspect(ctx, "p1"); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
				errs <- fmt.Errorf("Inspect: %w", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := fmt.Sprintf("p%d", i)
			if _, err := rt.Create(ctx, s.spec(u, "g1")); err != nil {
				errs <- fmt.Errorf("Create %s: %w", u, err)
				return
			}
			if _, err := rt.Start(ctx, u); err != nil {
				errs <- fmt.Errorf("Start %s: %w", u, err)
			}
		}()
	}
	// Four Creates of one user at once: one wins.
	var won sync.Map
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := rt.Create(ctx, s.spec("same", "g1"))
			switch {
			case err == nil:
				won.Store(i, true)
			case !errors.Is(err, sandbox.ErrExists):
				errs <- fmt.Errorf("concurrent Create of one user: %w", err)
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	wins := 0
	won.Range(func(any, any) bool { wins++; return true })
	if wins != 1 {
		t.Errorf("%d of 4 concurrent Creates of one user succeeded, want 1", wins)
	}
	for i := range n {
		waitRunning(t, ctx, rt, fmt.Sprintf("p%d", i))
	}
	list, err := rt.List(ctx)
	if err != nil || len(list) != n+1 {
		t.Fatalf("List: %d sandboxes %v, want %d", len(list), err, n+1)
	}
	users := make([]string, len(list))
	for i, inst := range list {
		users[i] = inst.User
	}
	if !slices.IsSorted(users) {
		t.Errorf("List is not sorted by user: %v", users)
	}
	// The one sandbox of "same" is whole: it starts.
	if _, err := rt.Start(ctx, "same"); err != nil {
		t.Fatalf("Start of the sandbox concurrent Creates made: %v", err)
	}
	waitRunning(t, ctx, rt, "same")

	// Three Removes at once: one removes it, the others find nothing.
	results := make(chan error, 3)
	for range 3 {
		go func() { results <- rt.Remove(ctx, "same", false) }()
	}
	removed := 0
	for range 3 {
		err := <-results
		switch {
		case err == nil:
			removed++
		case !errors.Is(err, sandbox.ErrNotFound):
			t.Errorf("concurrent Remove: %v", err)
		}
	}
	if removed == 0 {
		t.Error("no concurrent Remove removed the sandbox")
	}
	if _, err := rt.Inspect(ctx, "same"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("after concurrent Removes: %v", err)
	}
}
