// Package e2e drives the real thon binary against the real Docker engine, the
// way an organizer does: init, validate, run, status, instance actions, down,
// a daemon restart that adopts running sandboxes, and cleanup.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/gateway/upstreamtest"
	"github.com/thon-dev/thon/internal/testenv"
	"github.com/thon-dev/thon/internal/thontest"
)

var thonBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() { // the fast tier: every test here needs Docker and skips
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "thon-e2e-bin")
	if err != nil {
		panic(err)
	}
	thonBin = filepath.Join(dir, "thon")
	build := exec.Command("go", "build", "-o", thonBin, "../../cmd/thon")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build thon:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// event is one organizer's working directory with a thon.yaml and a daemon
// of its own (own data dir, API port and engine prefix).
type event struct {
	t        *testing.T
	dir      string
	instance string // THON_INSTANCE: names this event's containers, volumes and network
	env      []string
	docker   *client.Client
}

func newEvent(t *testing.T) *event {
	t.Helper()
	ev := &event{t: t, dir: t.TempDir(), docker: testenv.Docker(t)}
	ev.instance = "thone2e" + strings.ToLower(randomSuffix(t))
	ev.env = append(os.Environ(), "THON_INSTANCE="+ev.instance, "HOME="+ev.dir)
	t.Cleanup(func() {
		ev.thon("down") // stop the daemon even when the test failed half-way
		testenv.Cleanup(t, ev.instance)
	})
	return ev
}

func randomSuffix(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port) + fmt.Sprint(time.Now().UnixNano()%1000)
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// writeConfig writes thon.yaml for this event: the test image, a private data
// dir and API port, then groups as given (YAML text).
func (ev *event) writeConfig(image, extraSandbox, groups string) {
	ev.t.Helper()
	a := thontest.Access(ev.t)
	cfg := fmt.Sprintf(`server:
  data_dir: %s
  listen: 127.0.0.1:%d
access:
  external_ip: 127.0.0.1
  https_port: %d
  http_port: 0
  port_range: %s
gateway:
  listen: 0.0.0.0:%d
sandbox:
  image: %s
  startup_timeout: 60s
  concurrency: 3
  limits: {cpu: 0.5, memory: 128Mi, pids: 64}
%sgroups:
%s`, filepath.Join(ev.dir, "data"), freePort(ev.t), a.HTTPSPort, a.PortRange, freePort(ev.t), image, extraSandbox, groups)
	if err := os.WriteFile(filepath.Join(ev.dir, "thon.yaml"), []byte(cfg), 0o644); err != nil {
		ev.t.Fatal(err)
	}
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

func (ev *event) thon(args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, thonBin, args...)
	cmd.Dir = ev.dir
	cmd.Env = ev.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		ev.t.Fatalf("thon %s: %v", strings.Join(args, " "), err)
	}
	return result{out.String(), errb.String(), code}
}

// ok runs thon and fails the test unless it exits 0.
func (ev *event) ok(args ...string) result {
	ev.t.Helper()
	r := ev.thon(args...)
	if r.code != 0 {
		ev.t.Fatalf("thon %s: %s", strings.Join(args, " "), r)
	}
	return r
}

type status struct {
	User, Group, State, Workspace, Endpoint, Error string
	Outdated                                       bool
}

func (ev *event) status() map[string]status {
	ev.t.Helper()
	r := ev.ok("status", "-o", "json")
	var list struct{ Items []status }
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		ev.t.Fatalf("status -o json: %v\n%s", err, r)
	}
	out := map[string]status{}
	for _, s := range list.Items {
		out[s.User] = s
	}
	return out
}

// containerID returns the engine's ID of a user's sandbox ("" if none).
func (ev *event) containerID(user string) string {
	ev.t.Helper()
	res, err := ev.docker.ContainerList(context.Background(), client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", "io.thon.user="+user).Add("label", "io.thon.instance="+ev.instance),
	})
	if err != nil {
		ev.t.Fatal(err)
	}
	if len(res.Items) == 0 {
		return ""
	}
	return res.Items[0].ID
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func put(t *testing.T, url, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("PUT %s: %s", url, resp.Status)
	}
}

const demoGroups = `  alpha: [alice, bob]
  beta: {users: [carol]}
`

func TestEventLifecycle(t *testing.T) {
	ev := newEvent(t)
	image := testenv.SandboxImage(t)

	// init writes a starter that validates as it is, and refuses to overwrite.
	ev.ok("init", "--non-interactive")
	if r := ev.ok("config", "validate"); !strings.Contains(r.stdout, "is valid") {
		t.Fatalf("validate of the starter: %s", r)
	}
	if r := ev.thon("init", "--non-interactive"); r.code == 0 || !strings.Contains(r.stderr, "--force") {
		t.Fatalf("second init should refuse without --force: %s", r)
	}

	ev.writeConfig(image, "", demoGroups)
	r := ev.ok("run")
	for _, want := range []string{"Started the THON daemon", "alice", "bob", "carol", "3 created"} {
		if !strings.Contains(r.stdout+r.stderr, want) {
			t.Errorf("thon run output lacks %q:\n%s", want, r)
		}
	}
	st := ev.status()
	for _, u := range []string{"alice", "bob", "carol"} {
		if st[u].State != "running" || st[u].Endpoint == "" || st[u].Workspace != "volume" {
			t.Fatalf("%s after run: %+v", u, st[u])
		}
	}
	// Each sandbox is the participant's own, with the workspace at /workspace/{group}/{user}.
	_, body := get(t, "http://"+st["carol"].Endpoint+"/whoami")
	var who struct{ User, Group, Workspace string }
	json.Unmarshal([]byte(body), &who)
	if who.User != "carol" || who.Group != "beta" || who.Workspace != "/workspace/beta/carol" {
		t.Fatalf("carol's sandbox says %s", body)
	}

	// A second run changes nothing and says so.
	ids := map[string]string{}
	for _, u := range []string{"alice", "bob", "carol"} {
		ids[u] = ev.containerID(u)
	}
	if r := ev.ok("run"); !strings.Contains(r.stderr, "Nothing to do") {
		t.Fatalf("second run: %s", r)
	}

	// Work survives a recreate.
	put(t, "http://"+st["alice"].Endpoint+"/files/notes.txt", "hello from alice")
	ev.ok("instance", "recreate", "alice")
	if ev.containerID("alice") == ids["alice"] {
		t.Fatal("recreate kept the old container")
	}
	st = ev.status()
	if _, body := get(t, "http://"+st["alice"].Endpoint+"/files/notes.txt"); body != "hello from alice" {
		t.Fatalf("alice's file after recreate: %q", body)
	}
	ids["alice"] = ev.containerID("alice")

	// stop / start, pause / resume.
	ev.ok("instance", "stop", "bob")
	if s := ev.status()["bob"]; s.State != "stopped" || s.Endpoint != "" {
		t.Fatalf("bob after stop: %+v", s)
	}
	ev.ok("instance", "start", "bob")
	ev.ok("instance", "pause", "carol")
	if s := ev.status()["carol"]; s.State != "paused" {
		t.Fatalf("carol after pause: %+v", s)
	}
	if r := ev.thon("instance", "pause", "nobody"); r.code == 0 || !strings.Contains(r.stderr, "nobody") {
		t.Fatalf("pause of an unknown user: %s", r)
	}
	ev.ok("instance", "resume", "carol")
	if r := ev.ok("instance", "logs", "carol", "--tail", "5"); !strings.Contains(r.stdout, "listening") {
		t.Fatalf("carol's logs: %s", r)
	}

	// down stops the daemon, not the sandboxes; the next run adopts them.
	ev.ok("down")
	if r := ev.thon("status"); r.code == 0 || !strings.Contains(r.stderr, "thon run") {
		t.Fatalf("status without a daemon should say how to start one: %s", r)
	}
	for u := range ids {
		if ev.containerID(u) == "" {
			t.Fatalf("%s's sandbox vanished with the daemon", u)
		}
	}
	r = ev.ok("run")
	if !strings.Contains(r.stderr, "Nothing to do") {
		t.Fatalf("run after a daemon restart should adopt, not recreate: %s", r)
	}
	for u, id := range ids {
		if u != "bob" && ev.containerID(u) != id {
			t.Fatalf("%s's sandbox was recreated after a daemon restart", u)
		}
	}

	// Moving a participant to another group: the workspace follows.
	ev.ok("user", "move", "alice", "beta")
	st = ev.status()
	if st["alice"].Group != "beta" || st["alice"].State != "running" {
		t.Fatalf("alice after move: %+v", st["alice"])
	}
	if _, body := get(t, "http://"+st["alice"].Endpoint+"/files/notes.txt"); body != "hello from alice" {
		t.Fatalf("alice's file after moving group: %q", body)
	}
	if _, body := get(t, "http://"+st["alice"].Endpoint+"/whoami"); !strings.Contains(body, "/workspace/beta/alice") {
		t.Fatalf("alice's workspace after move: %s", body)
	}

	// Every change is in the audit log.
	r = ev.ok("events", "-o", "json")
	for _, want := range []string{"sandbox.recreate", "sandbox.stop", "sandbox.pause", "user.move"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("audit log lacks %s", want)
		}
	}

	// cleanup --volumes removes sandboxes and files; users stay for the next run.
	if r := ev.thon("cleanup", "--volumes"); r.code == 0 || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("cleanup without a terminal must ask for --yes: %s", r)
	}
	ev.ok("cleanup", "--volumes", "--yes")
	for _, u := range []string{"alice", "bob", "carol"} {
		if id := ev.containerID(u); id != "" {
			t.Fatalf("%s's sandbox survived cleanup", u)
		}
		if _, err := ev.docker.VolumeInspect(context.Background(), ev.instance+"-ws-"+u, client.VolumeInspectOptions{}); err == nil {
			t.Fatalf("%s's volume survived cleanup --volumes", u)
		}
	}
	if s := ev.status()["carol"]; s.State != "missing" {
		t.Fatalf("carol after cleanup: %+v", s)
	}
}

func TestRunOneGroup(t *testing.T) {
	ev := newEvent(t)
	ev.writeConfig(testenv.SandboxImage(t), "", demoGroups)
	ev.ok("run", "--group", "beta")
	st := ev.status()
	if st["carol"].State != "running" || st["alice"].State != "missing" || st["bob"].State != "missing" {
		t.Fatalf("run --group beta: %+v", st)
	}
	if r := ev.thon("run", "--group", "gamma"); r.code != 1 || !strings.Contains(r.stderr, "gamma") {
		t.Fatalf("run --group of an unknown group: %s", r)
	}
}

func TestOneFailureDoesNotStopTheOthers(t *testing.T) {
	ev := newEvent(t)
	// The test IDE exits at start for users listed in FAIL_USERS.
	ev.writeConfig(testenv.SandboxImage(t), "  env: {FAIL_USERS: bob}\n", demoGroups)
	r := ev.thon("run")
	if r.code != 1 {
		t.Fatalf("run with a failing sandbox must exit 1: %s", r)
	}
	if !strings.Contains(r.stderr, "1 failed") || !strings.Contains(r.stderr, "bob (alpha)") || !strings.Contains(r.stderr, "stopped while starting") {
		t.Fatalf("summary should list bob with the reason: %s", r)
	}
	st := ev.status()
	if st["alice"].State != "running" || st["carol"].State != "running" || st["bob"].State != "failed" || st["bob"].Error == "" {
		t.Fatalf("states: %+v", st)
	}
}

func TestClearErrors(t *testing.T) {
	ev := newEvent(t)

	// Every config problem at once, with file:line:col; nothing is started.
	bad := `server:
  listen: 127.0.0.1:8100
sandbox:
  imgae: foo
  port: 99999
  limits: {memory: lots}
groups:
  alpha: [Alice, bob]
  beta: [bob]
`
	os.WriteFile(filepath.Join(ev.dir, "thon.yaml"), []byte(bad), 0o644)
	r := ev.thon("config", "validate")
	if r.code != 1 {
		t.Fatalf("validate of a bad file must exit 1: %s", r)
	}
	for _, want := range []string{"thon.yaml:4:3", "image", "thon.yaml:5:9", "thon.yaml:6:20", "Alice", "bob"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("validate output lacks %q:\n%s", want, r)
		}
	}
	if r := ev.thon("run"); r.code != 1 || !strings.Contains(r.stderr, "thon.yaml:4:3") {
		t.Fatalf("run of a bad file must refuse with the problems: %s", r)
	}

	// A missing image: the hint says how to build it, and nothing is created.
	ev.writeConfig("thon-test/does-not-exist:1", "", demoGroups)
	r = ev.thon("run")
	if r.code != 1 || !strings.Contains(r.stderr, "docker build") {
		t.Fatalf("run with a missing image: %s", r)
	}
	if id := ev.containerID("alice"); id != "" {
		t.Fatal("a sandbox was created although the image is missing")
	}
	ev.ok("down")

	// Docker not running: the daemon says how to start it.
	ev.writeConfig(testenv.SandboxImage(t), "", demoGroups)
	ev.env = append(ev.env, "DOCKER_HOST=unix:///nonexistent/docker.sock")
	r = ev.thon("run")
	if r.code != 1 || !strings.Contains(r.stderr, "start Docker") {
		t.Fatalf("run without Docker: %s", r)
	}
}

func TestChangedSettingsAreAppliedOnlyWhenAsked(t *testing.T) {
	ev := newEvent(t)
	image := testenv.SandboxImage(t)
	ev.writeConfig(image, "", "  alpha: [alice]\n")
	ev.ok("run")
	st := ev.status()
	put(t, "http://"+st["alice"].Endpoint+"/files/keep.txt", "kept")
	id := ev.containerID("alice")

	// New sandbox settings: the running sandbox is marked, not touched.
	cfg, _ := os.ReadFile(filepath.Join(ev.dir, "thon.yaml"))
	os.WriteFile(filepath.Join(ev.dir, "thon.yaml"), bytes.Replace(cfg, []byte("memory: 128Mi"), []byte("memory: 256Mi"), 1), 0o644)
	r := ev.ok("run")
	if !strings.Contains(r.stderr, "--recreate") || ev.containerID("alice") != id {
		t.Fatalf("run with changed settings should only hint: %s", r)
	}
	if s := ev.status()["alice"]; !s.Outdated {
		t.Fatalf("alice should be outdated: %+v", s)
	}
	r = ev.ok("run", "--recreate")
	if ev.containerID("alice") == id {
		t.Fatalf("run --recreate kept the old sandbox: %s", r)
	}
	st = ev.status()
	if st["alice"].Outdated || st["alice"].State != "running" {
		t.Fatalf("alice after --recreate: %+v", st["alice"])
	}
	if _, body := get(t, "http://"+st["alice"].Endpoint+"/files/keep.txt"); body != "kept" {
		t.Fatalf("workspace after --recreate: %q", body)
	}
	inspect, err := ev.docker.ContainerInspect(context.Background(), ev.containerID("alice"), client.ContainerInspectOptions{})
	if err != nil || inspect.Container.HostConfig.Memory != 256<<20 {
		t.Fatalf("memory limit after --recreate: %v", err)
	}

	// Flags override thon.yaml: a daemon on another port answers there.
	ev.ok("down")
	port := fmt.Sprint(freePort(t))
	ev.ok("run", "--listen", "127.0.0.1:"+port)
	if r := ev.ok("status", "--listen", "127.0.0.1:"+port); !strings.Contains(r.stdout, "alice") {
		t.Fatalf("status through --listen: %s", r)
	}
	ev.ok("down", "--listen", "127.0.0.1:"+port)
}

func TestAccessLinksFromTheCLI(t *testing.T) {
	ev := newEvent(t)
	ev.writeConfig(testenv.SandboxImage(t), "", demoGroups)
	r := ev.ok("run")
	if !strings.Contains(r.stdout, "https://127.0.0.1:") || !strings.Contains(r.stderr, "thon access USER") {
		t.Fatalf("run should end with the participants' URLs and say how to get links: %s", r)
	}
	link := strings.TrimSpace(ev.ok("access", "alice").stdout)
	if strings.Count(link, "\n") != 0 || !strings.HasPrefix(link, "https://127.0.0.1:") || !strings.Contains(link, "/_thon/auth?token=") {
		t.Fatalf("thon access alice should print the link alone: %q", link)
	}
	// The link opens alice's IDE in a client that trusts only the event's CA.
	caPEM, err := os.ReadFile(filepath.Join(ev.dir, "data", "ca", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := browser.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "alice") {
		t.Fatalf("opening the link: %d %s", resp.StatusCode, body)
	}

	// Cards for a group: CSV with a header and one row per participant.
	r = ev.ok("access", "--group", "alpha", "-o", "csv")
	rows, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if err != nil || len(rows) != 3 || strings.Join(rows[0], ",") != "user,group,url,link,expires,email" || rows[1][0] != "alice" || rows[2][0] != "bob" {
		t.Fatalf("access --group alpha -o csv: %v\n%s", err, r)
	}

	// Revoked: the browser is signed out.
	if r := ev.ok("access", "revoke", "alice"); !strings.Contains(r.stdout, "1 sessions") {
		t.Fatalf("revoke: %s", r)
	}
	resp, err = browser.Get(resp.Request.URL.String() + "whoami")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after revoke: %d", resp.StatusCode)
	}
	if r := ev.thon("access", "nobody"); r.code == 0 || !strings.Contains(r.stderr, "nobody") {
		t.Fatalf("access for an unknown user: %s", r)
	}
}

func TestGatewayKeysUsageAndAReplica(t *testing.T) {
	up := upstreamtest.New(upstreamtest.Options{})
	defer up.Close()
	ev := newEvent(t)
	ev.writeConfig(testenv.SandboxImage(t), "", demoGroups)
	cfg, _ := os.ReadFile(filepath.Join(ev.dir, "thon.yaml"))
	os.WriteFile(filepath.Join(ev.dir, "thon.yaml"), append(cfg, []byte("llm:\n  backend: openai\n  url: "+up.URL+"\n")...), 0o644)
	ev.ok("run")
	if r := ev.ok("gateway", "keys"); strings.Count(r.stdout, "user:") != 3 || !strings.Contains(r.stdout, "active") {
		t.Fatalf("gateway keys: %s", r)
	}
	_, env := get(t, "http://"+ev.status()["alice"].Endpoint+"/env")
	var vars map[string]string
	json.Unmarshal([]byte(env), &vars)
	key := vars["OPENAI_API_KEY"]

	// A second gateway, in its own process, asks the daemon about keys.
	port := freePort(t)
	replica := exec.Command(thonBin, "gateway", "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	replica.Dir, replica.Env = ev.dir, ev.env
	var logs bytes.Buffer
	replica.Stderr = &logs
	if err := replica.Start(); err != nil {
		t.Fatal(err)
	}
	defer replica.Process.Kill()
	body := `{"model":"test-model","messages":[{"role":"user","content":"hi"}]}`
	var code int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", port), strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			code = resp.StatusCode
			resp.Body.Close()
			break
		}
	}
	if code != 200 {
		t.Fatalf("chat through the replica: %d\n%s", code, logs.String())
	}
	// Its usage reaches the daemon's store.
	var sum struct {
		Keys []struct {
			Key      string `json:"key"`
			Requests int64  `json:"requests"`
		} `json:"keys"`
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r := ev.ok("gateway", "usage", "--user", "alice", "-o", "json")
		json.Unmarshal([]byte(r.stdout), &sum)
		if len(sum.Keys) == 1 && sum.Keys[0].Key == "user:alice" && sum.Keys[0].Requests == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage after a request through the replica: %s", r)
		}
	}
	if r := ev.ok("gateway", "usage"); !strings.Contains(r.stdout, "user:alice") || !strings.Contains(r.stdout, "test-model") {
		t.Fatalf("usage table: %s", r)
	}
	replica.Process.Signal(os.Interrupt)
	if err := replica.Wait(); err != nil {
		t.Fatalf("replica did not stop cleanly: %v\n%s", err, logs.String())
	}
}

// The configuration files kept in the database, from the CLI: a bad file
// is refused at its line and nothing is kept; a good one is stored, read
// back, makes running sandboxes outdated, and goes again.
func TestStoredFilesFromTheCLI(t *testing.T) {
	ev := newEvent(t)
	ev.writeConfig(testenv.SandboxImage(t), "", demoGroups)
	ev.ok("run")
	bad := filepath.Join(ev.dir, "bad.json")
	os.WriteFile(bad, []byte("{\n  \"editor.fontSize\": 18\n  \"x\": 1\n}\n"), 0o644)
	if r := ev.thon("files", "put", "vscode-settings", bad); r.code == 0 || !strings.Contains(r.stderr, "vscode-settings was not saved") || !strings.Contains(r.stderr, "vscode-settings:3") {
		t.Fatalf("a bad file: %s", r)
	}
	if r := ev.ok("files", "list"); !strings.Contains(r.stdout, "no files are stored") {
		t.Fatalf("after a refused put: %s", r)
	}
	good := filepath.Join(ev.dir, "good.json")
	os.WriteFile(good, []byte("{\n  // larger text for the projector\n  \"editor.fontSize\": 18,\n}\n"), 0o644)
	if r := ev.ok("files", "put", "vscode-settings", good); !strings.Contains(r.stdout, "vscode-settings stored. New sandboxes get it") {
		t.Fatalf("put: %s", r)
	}
	if r := ev.ok("files", "get", "vscode-settings"); !strings.Contains(r.stdout, `"editor.fontSize": 18`) {
		t.Fatalf("get: %s", r)
	}
	if st := ev.status()["alice"]; !st.Outdated {
		t.Fatalf("alice's sandbox is not outdated after a new settings file: %+v", st)
	}
	if r := ev.ok("files", "list", "-o", "json"); !strings.Contains(r.stdout, `"name": "vscode-settings"`) {
		t.Fatalf("list: %s", r)
	}
	ev.ok("files", "rm", "vscode-settings")
	if r := ev.thon("files", "get", "vscode-settings"); r.code == 0 {
		t.Fatalf("get after rm: %s", r)
	}
	if r := ev.thon("files", "put", "nonsense", good); r.code == 0 || !strings.Contains(r.stderr, "unknown kind") {
		t.Fatalf("an unknown file: %s", r)
	}
	events := ev.ok("events").stdout
	for _, want := range []string{"config.file.save", "config.file.delete"} {
		if !strings.Contains(events, want) {
			t.Errorf("no %s in the audit log:\n%s", want, events)
		}
	}
}
