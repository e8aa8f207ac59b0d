package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/sandbox/sandboxtest"
	"github.com/thon-dev/thon/internal/testenv"
)

// env is one test's engine, image and runtime, on a network of its own.
type env struct {
	cli    *client.Client
	image  string
	prefix string
	rt     *Runtime
}

func newEnv(t *testing.T, opts ...func(*Runtime)) *env {
	t.Helper()
	cli := testenv.Docker(t)
	image := testenv.SandboxImage(t)
	prefix := testenv.Prefix(t)
	t.Cleanup(func() { testenv.Cleanup(t, prefix) })
	rt, err := New(Options{NamePrefix: prefix, Network: prefix + "-net"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	for _, o := range opts {
		o(rt)
	}
	return &env{cli: cli, image: image, prefix: prefix, rt: rt}
}

func (e *env) spec(user, group string) sandbox.Spec {
	return sandbox.Spec{
		User:       user,
		Group:      group,
		Image:      e.image,
		Port:       8080,
		HealthPath: "/healthz",
		Env:        map[string]string{"FOO": "bar"},
		Workspace:  sandbox.WorkspaceVolume,
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// up creates and starts spec's sandbox and waits until its IDE is healthy.
func (e *env) up(t *testing.T, ctx context.Context, spec sandbox.Spec) sandbox.Instance {
	t.Helper()
	if err := e.rt.Prepare(ctx, spec); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if _, err := e.rt.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	inst, err := e.rt.Start(ctx, spec.User)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if inst.State != sandbox.StateRunning || inst.Endpoint == "" {
		t.Fatalf("after Start: state %s endpoint %q, want running with an endpoint", inst.State, inst.Endpoint)
	}
	waitHealthy(t, inst.Endpoint)
	return inst
}

var httpc = &http.Client{Timeout: 2 * time.Second}

func get(url string, timeout time.Duration) (int, string, error) {
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitHealthy polls /healthz until it answers 200, for at most 20s.
func waitHealthy(t *testing.T, endpoint string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		code, body, err := get("http://"+endpoint+"/healthz", time.Second)
		if err == nil && code == http.StatusOK && body == "ok" {
			return
		}
		last = fmt.Sprintf("%d %q %v", code, body, err)
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s/healthz never answered 200 ok; last: %s", endpoint, last)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	code, body, err := get(url, 2*time.Second)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET %s: %d %s %v", url, code, body, err)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, body)
	}
}

func putFile(t *testing.T, endpoint, name, content string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, "http://"+endpoint+"/files/"+name, strings.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
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

// readLogs reads the sandbox's logs until want appears (at most 10s).
func readLogs(t *testing.T, ctx context.Context, rt *Runtime, user string, opts sandbox.LogOptions, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		rc, err := rt.Logs(ctx, user, opts)
		if err != nil {
			t.Fatalf("Logs: %v", err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("read logs: %v", err)
		}
		got = string(b)
		if containsAll(got, want...) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("logs %q do not contain %q", got, want)
	return ""
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func userError(t *testing.T, err error) *sandbox.UserError {
	t.Helper()
	var ue *sandbox.UserError
	if !errors.As(err, &ue) {
		t.Fatalf("error %v (%T) is not a *sandbox.UserError", err, err)
	}
	return ue
}

// TestConformance: the Runtime contract every engine passes (sandboxtest),
// on this Docker engine with the test image.
func TestConformance(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	image := testenv.SandboxImage(t)
	// One network for every instance, as on a real host: a new network's
	// bridge address is a network change that makes Chromium abort page
	// loads in the browser tests running beside these.
	shared := testenv.Prefix(t)
	t.Cleanup(func() { testenv.Cleanup(t, shared) })
	prefix := sandboxtest.PerTest(func(t *testing.T) string {
		p := testenv.Prefix(t)
		t.Cleanup(func() { testenv.Cleanup(t, p) })
		return p
	})
	sandboxtest.Conformance(t, func(t *testing.T) sandbox.Runtime {
		rt, err := New(Options{NamePrefix: prefix(t), Network: shared + "-net"})
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}, sandboxtest.Image(image), sandboxtest.WorkspaceID(func(t *testing.T, rt sandbox.Runtime, user string) string {
		res, err := cli.VolumeInspect(context.Background(), rt.(*Runtime).VolumeName(user), client.VolumeInspectOptions{})
		if cerrdefs.IsNotFound(err) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		// Docker volumes have no ID: the name says the volume is there,
		// files in it (the suite checks them) that it is the same one.
		return res.Volume.Name
	}))
}

// TestLifecycle: what the contract leaves to the engine: the container's
// name, the test image's own log lines, a clean stop's exit code and reason.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testCtx(t)
	spec := e.spec("alice", "g1")
	if err := e.rt.Prepare(ctx, spec); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	t.Logf("routable container addresses: %v", e.rt.Routable())
	inst, err := e.rt.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	want := sandbox.Instance{ID: inst.ID, Name: e.prefix + "-g1-alice", User: "alice", Group: "g1", Image: e.image,
		State: sandbox.StateCreated, SpecHash: spec.Hash(), Created: inst.Created}
	if inst != want {
		t.Fatalf("Create returned\n%+v, want\n%+v", inst, want)
	}
	if inst.ID == "" || time.Since(inst.Created) > time.Minute {
		t.Fatalf("Create: bad ID or Created: %+v", inst)
	}
	inst, err = e.rt.Start(ctx, "alice")
	if err != nil || inst.State != sandbox.StateRunning || inst.Endpoint == "" {
		t.Fatalf("Start: %+v %v, want running with an endpoint", inst, err)
	}
	waitHealthy(t, inst.Endpoint)
	readLogs(t, ctx, e.rt, "alice", sandbox.LogOptions{}, "sandboxd listening on", "user=alice group=g1", "sandboxd stderr ready")

	// Stop: stopped with a clean exit (SIGTERM handled within the grace period).
	if err := e.rt.Stop(ctx, "alice", 5*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	inst, err = e.rt.Inspect(ctx, "alice")
	if err != nil || inst.State != sandbox.StateStopped || inst.Endpoint != "" || inst.ExitCode != 0 || inst.Reason != "exited with code 0" {
		t.Fatalf("Inspect stopped: %+v %v", inst, err)
	}
	readLogs(t, ctx, e.rt, "alice", sandbox.LogOptions{}, "sandboxd stopping")
}

func TestLimitsAndHardening(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testCtx(t)
	spec := e.spec("alice", "g1")
	spec.Limits = sandbox.Limits{NanoCPUs: 500_000_000, MemoryBytes: 96 << 20, Pids: 64}
	inst := e.up(t, ctx, spec)

	res, err := e.cli.ContainerInspect(ctx, inst.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hc := res.Container.HostConfig
	if hc.NanoCPUs != 500_000_000 || hc.Memory != 96<<20 || hc.MemorySwap != 96<<20 || hc.PidsLimit == nil || *hc.PidsLimit != 64 {
		t.Errorf("limits: NanoCPUs %d Memory %d MemorySwap %d PidsLimit %v", hc.NanoCPUs, hc.Memory, hc.MemorySwap, hc.PidsLimit)
	}
	if hc.Privileged {
		t.Error("sandbox is privileged")
	}
	if !slices.Contains(hc.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("SecurityOpt = %v, want no-new-privileges:true", hc.SecurityOpt)
	}
	if !slices.ContainsFunc(hc.CapDrop, func(c string) bool { return strings.TrimPrefix(strings.ToUpper(c), "CAP_") == "NET_RAW" }) {
		t.Errorf("CapDrop = %v, want NET_RAW", hc.CapDrop)
	}
	if hc.RestartPolicy.Name != container.RestartPolicyUnlessStopped {
		t.Errorf("RestartPolicy = %v", hc.RestartPolicy)
	}
	if hc.Init == nil || !*hc.Init {
		t.Errorf("Init = %v", hc.Init)
	}
	if !slices.Contains(hc.ExtraHosts, "host.docker.internal:host-gateway") {
		t.Errorf("ExtraHosts = %v", hc.ExtraHosts)
	}
	if string(hc.NetworkMode) != e.rt.Network() {
		t.Errorf("NetworkMode = %s, want %s", hc.NetworkMode, e.rt.Network())
	}
	cfg := res.Container.Config
	for k, v := range map[string]string{
		sandbox.LabelManaged: "true", LabelInstance: e.prefix, sandbox.LabelUser: "alice",
		sandbox.LabelGroup: "g1", sandbox.LabelSpec: spec.Hash(), LabelPort: "8080",
	} {
		if cfg.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, cfg.Labels[k], v)
		}
	}
	if cfg.WorkingDir != "/workspace/g1/alice" {
		t.Errorf("WorkingDir = %q", cfg.WorkingDir)
	}
	// The kernel enforces them: read the sandbox's cgroup (when the engine
	// runs on this host, as here).
	pid := res.Container.State.Pid
	for _, c := range []struct{ v1ctl, v1file, v2file, want string }{
		{"memory", "memory.limit_in_bytes", "memory.max", strconv.Itoa(96 << 20)},
		{"pids", "pids.max", "pids.max", "64"},
		{"cpu", "cpu.cfs_quota_us", "cpu.max", "50000"},
	} {
		got, ok := cgroupValue(pid, c.v1ctl, c.v1file, c.v2file)
		if !ok {
			t.Logf("cannot read the %s cgroup of pid %d here; relying on inspect", c.v1ctl, pid)
			continue
		}
		if !strings.HasPrefix(got, c.want) {
			t.Errorf("cgroup %s = %q, want %s", c.v1ctl, got, c.want)
		}
	}
	if e.rt.Routable() && len(hc.PortBindings) != 0 {
		t.Errorf("routable engine, yet ports are published: %v", hc.PortBindings)
	}
}

func TestVolumeWorkspaceFollowsTheUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testCtx(t)
	vol := e.rt.VolumeName("alice")

	inst := e.up(t, ctx, e.spec("alice", "g1"))
	putFile(t, inst.Endpoint, "hello.txt", "hi from g1")
	if err := e.rt.Remove(ctx, "alice", false); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := e.cli.VolumeInspect(ctx, vol, client.VolumeInspectOptions{}); err != nil {
		t.Fatalf("volume gone after Remove(purge=false): %v", err)
	}

	// Same user, new group: the same volume at the new path.
	inst = e.up(t, ctx, e.spec("alice", "g2"))
	if inst.Name != e.prefix+"-g2-alice" {
		t.Errorf("Name = %s", inst.Name)
	}
	code, body, err := get("http://"+inst.Endpoint+"/files/hello.txt", 2*time.Second)
	if err != nil || code != 200 || body != "hi from g1" {
		t.Fatalf("file after group move: %d %q %v", code, body, err)
	}
	var who struct{ Workspace string }
	getJSON(t, "http://"+inst.Endpoint+"/whoami", &who)
	if who.Workspace != "/workspace/g2/alice" {
		t.Fatalf("workspace = %s", who.Workspace)
	}

	// PurgeWorkspace refuses while the sandbox exists.
	err = e.rt.PurgeWorkspace(ctx, e.spec("alice", "g2"))
	if !errors.Is(err, sandbox.ErrExists) {
		t.Fatalf("PurgeWorkspace with a sandbox: %v, want ErrExists", err)
	}
	userError(t, err)

	// Remove with purge deletes the volume.
	if err := e.rt.Remove(ctx, "alice", true); err != nil {
		t.Fatalf("Remove(purge): %v", err)
	}
	if _, err := e.cli.VolumeInspect(ctx, vol, client.VolumeInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Fatalf("volume after Remove(purge=true): %v, want not found", err)
	}

	// A new sandbox starts from an empty workspace; PurgeWorkspace removes
	// the volume of a user without a sandbox.
	inst = e.up(t, ctx, e.spec("alice", "g2"))
	if code, _, err := get("http://"+inst.Endpoint+"/files/hello.txt", 2*time.Second); err != nil || code != http.StatusNotFound {
		t.Fatalf("file after purge: %d %v, want 404", code, err)
	}
	if err := e.rt.Remove(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.PurgeWorkspace(ctx, e.spec("alice", "g2")); err != nil {
		t.Fatalf("PurgeWorkspace: %v", err)
	}
	if _, err := e.cli.VolumeInspect(ctx, vol, client.VolumeInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Fatalf("volume after PurgeWorkspace: %v, want not found", err)
	}
	if err := e.rt.PurgeWorkspace(ctx, e.spec("alice", "g2")); err != nil {
		t.Fatalf("PurgeWorkspace without a volume: %v", err)
	}
}

func TestEphemeralWorkspaceIsNotKept(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testCtx(t)
	spec := e.spec("alice", "g1")
	spec.Workspace = sandbox.WorkspaceEphemeral

	inst := e.up(t, ctx, spec)
	putFile(t, inst.Endpoint, "note.txt", "gone soon")
	if code, body, _ := get("http://"+inst.Endpoint+"/files/note.txt", 2*time.Second); code != 200 || body != "gone soon" {
		t.Fatalf("file in ephemeral workspace: %d %q", code, body)
	}
	if _, err := e.cli.VolumeInspect(ctx, e.rt.VolumeName("alice"), client.VolumeInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Fatalf("ephemeral mode made a volume: %v", err)
	}
	res, err := e.cli.ContainerInspect(ctx, inst.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// An anonymous volume, gone with the container.
	ms := res.Container.Mounts
	if len(ms) != 1 || ms[0].Type != "volume" || ms[0].Destination != "/workspace/g1/alice" {
		t.Fatalf("ephemeral sandbox mounts: %+v", ms)
	}
	anon := ms[0].Name
	if err := e.rt.Remove(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cli.VolumeInspect(ctx, anon, client.VolumeInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Fatalf("ephemeral volume after Remove: %v, want not found", err)
	}
	inst = e.up(t, ctx, spec)
	if code, _, err := get("http://"+inst.Endpoint+"/files/note.txt", 2*time.Second); err != nil || code != http.StatusNotFound {
		t.Fatalf("file after recreate: %d %v, want 404", code, err)
	}
}

func TestBindWorkspaceWritesToTheHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testCtx(t)
	dir := filepath.Join(t.TempDir(), "workspaces")
	spec := e.spec("alice", "g1")
	spec.Workspace = sandbox.WorkspaceBind
	spec.WorkspaceDir = dir

	inst := e.up(t, ctx, spec)
	putFile(t, inst.Endpoint, "main.go", "package main\n")
	b, err := os.ReadFile(filepath.Join(dir, "alice", "main.go"))
	if err != nil || string(b) != "package main\n" {
		t.Fatalf("host file: %q %v", b, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("workspace dir mode %v, want 0755", fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 && st.Uid != workspaceUID {
		t.Errorf("workspace dir owned by uid %d, want %d", st.Uid, workspaceUID)
	}
	// Removing with purge never deletes a host directory.
	if err := e.rt.Remove(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "alice", "main.go")); err != nil {
		t.Fatalf("bind workspace deleted: %v", err)
	}
}

// TestIsolation: a sandbox cannot reach another sandbox, but reaches the host.
func TestIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testCtx(t)
	a := e.up(t, ctx, e.spec("alice", "g1"))
	b := e.up(t, ctx, e.spec("bob", "g1"))

	res, err := e.cli.ContainerInspect(ctx, b.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	epB := res.Container.NetworkSettings.Networks[e.rt.Network()]
	if epB == nil || !epB.IPAddress.IsValid() {
		t.Fatalf("bob has no address on %s", e.rt.Network())
	}
	bAddr := net.JoinHostPort(epB.IPAddress.String(), "8080")

	// The dial tool works: alice reaches her own IDE.
	if out, code, err := e.rt.Exec(ctx, "alice", []string{"/sandboxd", "dial", "127.0.0.1:8080"}); err != nil || code != 0 || strings.TrimSpace(out) != "ok" {
		t.Fatalf("dial self: %q %d %v", out, code, err)
	}
	// The test process reaches both (that is how THON proxies to them).
	waitHealthy(t, a.Endpoint)
	waitHealthy(t, b.Endpoint)
	// alice cannot reach bob.
	out, code, err := e.rt.Exec(ctx, "alice", []string{"/sandboxd", "dial", bAddr})
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if code == 0 || strings.TrimSpace(out) == "ok" {
		t.Fatalf("alice reached bob at %s: %q (exit %d)", bAddr, out, code)
	}
	t.Logf("alice -> bob: %s", strings.TrimSpace(out))

	// alice reaches a listener on the host, at the network's gateway and
	// at host.docker.internal.
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	gw, err := e.rt.NetworkGateway(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{gw, "host.docker.internal"} {
		out, code, err := e.rt.Exec(ctx, "alice", []string{"/sandboxd", "dial", net.JoinHostPort(host, port)})
		if err != nil || code != 0 || strings.TrimSpace(out) != "ok" {
			t.Errorf("alice -> host %s:%s: %q (exit %d) %v", host, port, out, code, err)
		}
	}
}

// TestPublishedEndpoint: where container addresses are not routable (Docker
// Desktop, remote engines) the IDE is published on 127.0.0.1.
func TestPublishedEndpoint(t *testing.T) {
	t.Parallel()
	no := false
	e := newEnv(t, func(r *Runtime) { r.forceRoutable = &no })
	ctx := testCtx(t)
	inst := e.up(t, ctx, e.spec("alice", "g1"))
	if e.rt.Routable() {
		t.Fatal("Routable() with forced publishing")
	}
	host, _, err := net.SplitHostPort(inst.Endpoint)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("endpoint %q, want 127.0.0.1:port", inst.Endpoint)
	}
	res, err := e.cli.ContainerInspect(ctx, inst.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bs := res.Container.HostConfig.PortBindings[network.MustParsePort("8080/tcp")]
	if len(bs) != 1 || bs[0].HostIP.String() != "127.0.0.1" {
		t.Fatalf("port bindings %+v, want 8080/tcp on 127.0.0.1", res.Container.HostConfig.PortBindings)
	}
}

func TestMissingImage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testCtx(t)
	spec := e.spec("alice", "g1")
	spec.Image = "thon-test/missing:" + e.prefix
	err := e.rt.Prepare(ctx, spec)
	ue := userError(t, err)
	if !strings.Contains(ue.Msg, spec.Image+" is not on this Docker engine") ||
		!strings.Contains(ue.Hint, "thon setup image --tag "+spec.Image) || !strings.Contains(ue.Hint, "docker build -t "+spec.Image+" deploy/sandbox") {
		t.Fatalf("Prepare error: %v", err)
	}
	_, err = e.rt.Create(ctx, spec)
	ue = userError(t, err)
	if !strings.Contains(ue.Hint, "docker build -t "+spec.Image) {
		t.Fatalf("Create error: %v", err)
	}
}

func TestUnreachableEngine(t *testing.T) {
	t.Parallel()
	rt, err := New(Options{Host: "unix:///nonexistent.sock"})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx := testCtx(t)
	spec := sandbox.Spec{User: "alice", Group: "g1", Image: "x", Port: 8080}
	for name, err := range map[string]error{
		"Ping":    rt.Ping(ctx),
		"Prepare": rt.Prepare(ctx, spec),
		"Stop":    rt.Stop(ctx, "alice", 0),
	} {
		ue := userError(t, err)
		if !strings.Contains(ue.Msg, "Docker is not reachable at unix:///nonexistent.sock") ||
			ue.Hint != "start Docker: sudo systemctl start docker (or: sudo dockerd &)" {
			t.Errorf("%s: %v", name, err)
		}
	}
	_, err = rt.List(ctx)
	userError(t, err)
	_, err = rt.Create(ctx, spec)
	userError(t, err)

	// The permission-denied variant.
	err = rt.unreachable(errors.New("permission denied while trying to connect to the docker API at unix:///var/run/docker.sock"))
	if ue := userError(t, err); !strings.Contains(ue.Hint, "docker group") {
		t.Errorf("permission denied: %v", err)
	}
}

func TestNameConflictWithUnmanagedContainer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testCtx(t)
	name := e.prefix + "-g1-alice"
	if _, err := e.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: &container.Config{Image: e.image}}); err != nil {
		t.Fatal(err)
	}
	spec := e.spec("alice", "g1")
	if err := e.rt.Prepare(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.Inspect(ctx, "alice"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("Inspect found an unmanaged container by name: %v", err)
	}
	_, err := e.rt.Create(ctx, spec)
	ue := userError(t, err)
	if !strings.Contains(ue.Msg, name) || !strings.Contains(ue.Hint, "docker rm -f "+name) {
		t.Fatalf("Create error: %v", err)
	}
	if list, err := e.rt.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("List: %+v %v", list, err)
	}
}

func TestNetworkWithoutIsolationIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testCtx(t)
	if _, err := e.cli.NetworkCreate(ctx, e.rt.Network(), client.NetworkCreateOptions{Driver: "bridge"}); err != nil {
		t.Fatal(err)
	}
	err := e.rt.Prepare(ctx, e.spec("alice", "g1"))
	ue := userError(t, err)
	if !strings.Contains(ue.Msg, "inter-container communication") || !strings.Contains(ue.Hint, "docker network rm "+e.rt.Network()) {
		t.Fatalf("Prepare error: %v", err)
	}
}

func TestInvalidSpec(t *testing.T) {
	rt, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	good := sandbox.Spec{User: "alice", Group: "g1", Image: "x", Port: 8080}
	for name, mut := range map[string]func(*sandbox.Spec){
		"user":      func(s *sandbox.Spec) { s.User = "Alice" },
		"group":     func(s *sandbox.Spec) { s.Group = "g_1" },
		"image":     func(s *sandbox.Spec) { s.Image = "" },
		"port":      func(s *sandbox.Spec) { s.Port = 0 },
		"workspace": func(s *sandbox.Spec) { s.Workspace = "nfs" },
		"bind dir":  func(s *sandbox.Spec) { s.Workspace = sandbox.WorkspaceBind },
	} {
		s := good
		mut(&s)
		_, err := rt.Create(t.Context(), s)
		if ue := (*sandbox.UserError)(nil); !errors.As(err, &ue) {
			t.Errorf("invalid %s: Create returned %v, want a UserError", name, err)
		}
	}
	if _, err := New(Options{NamePrefix: "bad prefix"}); err == nil {
		t.Error("New accepted a prefix with a space")
	}
	// The in-memory engine stands in for this one with the same capabilities.
	if got := rt.Capabilities(); !reflect.DeepEqual(got, sandboxtest.DockerCapabilities) {
		t.Errorf("Capabilities %+v, sandboxtest.DockerCapabilities %+v", got, sandboxtest.DockerCapabilities)
	}
}

func TestStateMapping(t *testing.T) {
	for _, tc := range []struct {
		in     container.State
		state  sandbox.State
		code   int
		reason string
	}{
		{container.State{Status: container.StateCreated}, sandbox.StateCreated, 0, ""},
		{container.State{Status: container.StateRunning}, sandbox.StateRunning, 0, ""},
		{container.State{Status: container.StatePaused}, sandbox.StatePaused, 0, ""},
		{container.State{Status: container.StateRestarting, ExitCode: 1}, sandbox.StateStarting, 1, "restarting after it exited with code 1"},
		{container.State{Status: container.StateRestarting, ExitCode: 137, OOMKilled: true}, sandbox.StateStarting, 137, "restarting after it was OOM-killed"},
		{container.State{Status: container.StateExited, ExitCode: 1}, sandbox.StateStopped, 1, "exited with code 1"},
		{container.State{Status: container.StateExited, ExitCode: 137, OOMKilled: true}, sandbox.StateStopped, 137, "OOM-killed"},
		{container.State{Status: container.StateExited, ExitCode: 127, Error: "exec: not found"}, sandbox.StateStopped, 127, "exec: not found"},
		{container.State{Status: container.StateDead}, sandbox.StateStopped, 0, "dead (the engine failed to remove it)"},
		{container.State{Status: container.StateRemoving}, sandbox.StateStopped, 0, "being removed"},
	} {
		st, code, reason := stateOf(&tc.in)
		if st != tc.state || code != tc.code || reason != tc.reason {
			t.Errorf("%s: got %s %d %q, want %s %d %q", tc.in.Status, st, code, reason, tc.state, tc.code, tc.reason)
		}
	}
}

// cgroupValue reads a cgroup setting of a host process (cgroup v1 or v2).
func cgroupValue(pid int, v1ctl, v1file, v2file string) (string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", false
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var p string
		switch {
		case parts[0] == "0" && parts[1] == "":
			p = filepath.Join("/sys/fs/cgroup", parts[2], v2file)
		case slices.Contains(strings.Split(parts[1], ","), v1ctl):
			p = filepath.Join("/sys/fs/cgroup", v1ctl, parts[2], v1file)
		default:
			continue
		}
		if v, err := os.ReadFile(p); err == nil {
			return strings.TrimSpace(string(v)), true
		}
	}
	return "", false
}

// TestNonRootIDECanWriteItsWorkspace: like code-server, the IDE runs as uid
// 1000, and the engine makes mount points owned by root; every workspace
// mode must still be writable.
func TestNonRootIDECanWriteItsWorkspace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.image = testenv.SandboxImageNonRoot(t)
	ctx := testCtx(t)
	modes := []sandbox.WorkspaceMode{sandbox.WorkspaceVolume, sandbox.WorkspaceEphemeral}
	if os.Geteuid() == 0 {
		modes = append(modes, sandbox.WorkspaceBind) // THON hands the directory to uid 1000 only as root
	}
	dir := t.TempDir()
	for _, mode := range modes {
		user := "u-" + string(mode)
		spec := e.spec(user, "g1")
		spec.Workspace = mode
		spec.WorkspaceDir = dir
		inst := e.up(t, ctx, spec)
		var who struct{ UID int }
		getJSON(t, "http://"+inst.Endpoint+"/whoami", &who)
		if who.UID != 1000 {
			t.Fatalf("%s: IDE runs as uid %d, want 1000", mode, who.UID)
		}
		putFile(t, inst.Endpoint, "a.txt", "written by uid 1000")
		if mode != sandbox.WorkspaceVolume {
			continue
		}
		// After a group move the volume is mounted at a new path.
		if err := e.rt.Remove(ctx, user, false); err != nil {
			t.Fatal(err)
		}
		spec.Group = "g2"
		inst = e.up(t, ctx, spec)
		putFile(t, inst.Endpoint, "b.txt", "still writable")
		if code, body, _ := get("http://"+inst.Endpoint+"/files/a.txt", 2*time.Second); code != 200 || body != "written by uid 1000" {
			t.Fatalf("file after group move: %d %q", code, body)
		}
	}
}

// TestStopGracePeriod: an IDE that ignores SIGTERM is killed when the grace
// period runs out.
func TestStopGracePeriod(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testCtx(t)
	spec := e.spec("alice", "g1")
	spec.Env["IGNORE_SIGTERM"] = "1"
	e.up(t, ctx, spec)
	start := time.Now()
	if err := e.rt.Stop(ctx, "alice", time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("Stop returned after %v, before the 1s grace period", took)
	}
	inst, err := e.rt.Inspect(ctx, "alice")
	if err != nil || inst.State != sandbox.StateStopped || inst.ExitCode != 137 || inst.Reason != "exited with code 137" {
		t.Fatalf("after Stop: %+v %v, want stopped with code 137 (killed)", inst, err)
	}
}

// TestFilesAreWrittenBeforeTheFirstStart: files in the spec are in place,
// with their owner and mode, when the IDE starts; the participant can write
// next to the ones in their home; a recreate writes the new version.
func TestFilesAreWrittenBeforeTheFirstStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.image = testenv.SandboxImageNonRoot(t)
	ctx := testCtx(t)
	spec := e.spec("filer", "g1")
	spec.Files = []sandbox.File{
		{Path: "/home/coder/.config/kilo/config.json", Mode: 0o600, UID: 1000, GID: 1000, Data: []byte(`{"v":1}`)},
		{Path: "/home/coder/.continue/config.yaml", Mode: 0o600, UID: 1000, GID: 1000, Data: []byte("v: 1\n")},
		{Path: "/etc/thon/extensions.txt", Mode: 0o644, Data: []byte("kilocode.kilo-code\n")},
	}
	inst := e.up(t, ctx, spec)
	type stat struct {
		UID, GID int
		Mode     string
		Dir      bool
		Data     string
	}
	check := func(p string, want stat) {
		t.Helper()
		var got stat
		getJSON(t, "http://"+inst.Endpoint+"/stat?path="+p, &got)
		if got != want {
			t.Errorf("%s: %+v, want %+v", p, got, want)
		}
	}
	check("/home/coder/.config/kilo/config.json", stat{1000, 1000, "0600", false, `{"v":1}`})
	check("/home/coder/.config/kilo", stat{1000, 1000, "0755", true, ""})
	check("/home/coder", stat{1000, 1000, "0755", true, ""})
	check("/home/coder/.continue/config.yaml", stat{1000, 1000, "0600", false, "v: 1\n"})
	check("/etc/thon/extensions.txt", stat{0, 0, "0644", false, "kilocode.kilo-code\n"})
	check("/etc/thon", stat{0, 0, "0755", true, ""})

	// The participant (uid 1000) may write beside their configs, not in /etc/thon.
	put := func(p string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+inst.Endpoint+"/write?path="+p, strings.NewReader("x"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := put("/home/coder/.config/kilo/state.json"); code != http.StatusNoContent {
		t.Errorf("participant cannot write in ~/.config/kilo: %d", code)
	}
	if code := put("/etc/thon/mine"); code != http.StatusForbidden {
		t.Errorf("participant wrote into /etc/thon: %d", code)
	}

	// Recreate with new contents: the new version is there.
	if err := e.rt.Remove(ctx, spec.User, false); err != nil {
		t.Fatal(err)
	}
	spec.Files[0].Data = []byte(`{"v":2}`)
	inst = e.up(t, ctx, spec)
	check("/home/coder/.config/kilo/config.json", stat{1000, 1000, "0600", false, `{"v":2}`})

	// A path that is not absolute is refused before anything is made.
	bad := e.spec("badfile", "g1")
	bad.Files = []sandbox.File{{Path: "home/x", Mode: 0o600}}
	if _, err := e.rt.Create(ctx, bad); err == nil || !strings.Contains(err.Error(), "must be absolute") {
		t.Fatalf("relative file path: %v", err)
	}
}

// TestUsageIsMeasured: on Docker every measure is taken: memory within
// the limit, CPU time, and each workspace mode's disk use (a volume's from
// the engine, a bind directory's from this host, an ephemeral one's
// anonymous volume).
func TestUsageIsMeasured(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testCtx(t)
	const size = 2 << 20
	modes := map[string]func(*sandbox.Spec){
		"vol": func(*sandbox.Spec) {},
		"bnd": func(s *sandbox.Spec) { s.Workspace, s.WorkspaceDir = sandbox.WorkspaceBind, t.TempDir() },
		"eph": func(s *sandbox.Spec) { s.Workspace = sandbox.WorkspaceEphemeral },
	}
	for user, mut := range modes {
		spec := e.spec(user, "g1")
		spec.Limits.MemoryBytes = 256 << 20
		mut(&spec)
		inst := e.up(t, ctx, spec)
		putFile(t, inst.Endpoint, "data.bin", strings.Repeat("y", size))
	}
	rep, err := e.rt.Usage(ctx, sandbox.UsageOptions{Disk: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Sandboxes) != 3 || rep.Machine.CPUs < 1 || rep.Machine.Memory < 1<<20 || rep.Note != "" {
		t.Fatalf("Usage: %+v", rep)
	}
	for _, u := range rep.Sandboxes {
		t.Logf("%+v", u)
		if u.Memory <= 0 || u.Memory > u.MemoryLimit || u.MemoryLimit != 256<<20 || u.CPUTime <= 0 || u.CPU != sandbox.Unknown {
			t.Errorf("%s: %+v: want memory and CPU time measured, the limit 256Mi, no rate", u.User, u)
		}
		if u.Disk < size || u.Disk > 2*size {
			t.Errorf("%s: disk %d, want about the %d bytes written", u.User, u.Disk, size)
		}
	}
}
