package setup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/imagebuild"
	"github.com/thon-dev/thon/internal/llm/lemonadetest"
	"github.com/thon-dev/thon/internal/testenv"
)

// commands records what setup runs, and answers like the programs would.
type commands struct {
	mu    sync.Mutex
	calls []string
	// answer, when set, runs instead of the program; nil error is success.
	answer func(name string, args []string) error
}

func (c *commands) run(_ context.Context, _ io.Writer, name string, args ...string) error {
	line := strings.Join(append([]string{name}, args...), " ")
	c.mu.Lock()
	c.calls = append(c.calls, line)
	answer := c.answer
	c.mu.Unlock()
	if answer != nil {
		return answer(name, args)
	}
	return nil
}

func (c *commands) changing() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, l := range c.calls {
		if !strings.Contains(l, " is-") { // is-enabled, is-active only look
			out = append(out, l)
		}
	}
	return out
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// The engine step on this machine's real engine: ready. Where Docker is
// missing, it installs Debian's docker.io with apt and starts it (the
// package manager and systemd are the ones this machine cannot let a test
// drive: their commands are recorded).
func TestEngineStep(t *testing.T) {
	cfg := config.Default()
	s := New(Options{Config: cfg})
	if st := s.Check(context.Background(), StepEngine); !st.Ready || !strings.HasPrefix(st.State, "Docker ") {
		t.Fatalf("real engine: %+v", st)
	}

	installed := false
	cmds := &commands{answer: func(name string, args []string) error {
		if name == "apt-get" && args[0] == "install" {
			installed = true
		}
		return nil
	}}
	s = New(Options{
		Config: cfg, Command: cmds.run, Systemd: func() bool { return true }, IsRoot: func() bool { return true }, Wait: 5 * time.Second,
		LookPath: func(p string) (string, error) {
			if p == "dockerd" && !installed {
				return "", exec.ErrNotFound
			}
			return "/usr/bin/" + p, nil
		},
		Engine: func(context.Context) (string, error) {
			if !installed {
				return "", errors.New("no engine")
			}
			return "20.10.24", nil
		},
	})
	st := s.Check(context.Background(), StepEngine)
	want := []string{"apt-get update -q", "apt-get install -y -q docker.io", "systemctl enable --now docker.service", "wait until it answers"}
	if st.Ready || st.State != "Docker is not installed" || strings.Join(st.Do, "|") != strings.Join(want, "|") || !st.Root {
		t.Fatalf("plan: %+v", st)
	}
	if err := s.Apply(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if got := cmds.changing(); strings.Join(got, "|") != strings.Join(want[:3], "|") {
		t.Fatalf("ran %q", got)
	}
	if st := s.Check(context.Background(), StepEngine); !st.Ready {
		t.Fatalf("after: %+v", st)
	}

	// Not root: refused before anything runs.
	installed = false
	s.o.IsRoot = func() bool { return false }
	if err := s.Apply(context.Background(), s.Check(context.Background(), StepEngine)); err == nil || !strings.Contains(err.Error(), "needs root: run sudo thon setup") {
		t.Errorf("not root: %v", err)
	}
	// No apt: what to do instead.
	s.o.LookPath = func(string) (string, error) { return "", exec.ErrNotFound }
	if st := s.Check(context.Background(), StepEngine); st.Ready || !strings.Contains(st.Fix, "docs.docker.com") || s.Apply(context.Background(), st) == nil {
		t.Errorf("no apt: %+v", st)
	}
}

// The image steps on the real engine: THON's image is ready, one of the
// organizer's is left alone, a missing one is to be built.
func TestImageSteps(t *testing.T) {
	labelled := testenv.DerivedImage(t, testenv.SandboxImage(t), "codeserver", "LABEL "+imagebuild.LabelCodeServerVersion+"="+imagebuild.DefaultCodeServerVersion)
	cfg := config.Default()
	s := New(Options{Config: cfg})
	for _, tc := range []struct {
		image string
		ready bool
		state string
	}{
		{labelled, true, "present: code-server " + imagebuild.DefaultCodeServerVersion},
		{testenv.SandboxImage(t), true, "not built by THON"},
		{"thon-test/none:" + testenv.Prefix(t), false, "not on the engine"},
	} {
		cfg.Sandbox.Image = tc.image
		st := s.Check(context.Background(), StepImage)
		if st.Ready != tc.ready || !strings.Contains(st.State, tc.state) {
			t.Errorf("%s: %+v", tc.image, st)
		}
		if !tc.ready && (len(st.Do) != 1 || !strings.Contains(st.Do[0], "build "+tc.image+": code-server") || !st.Root) {
			t.Errorf("%s: %+v", tc.image, st)
		}
	}
	cfg.LLM.Backend, cfg.LLM.Image = config.BackendLlamacpp, testenv.LLMImage(t)
	if st := s.Check(context.Background(), StepLLMImage); !st.Ready || !strings.Contains(st.State, "llama-server") {
		t.Errorf("LLM image: %+v", st)
	}
}

// Which steps a configuration needs, in order.
func TestSteps(t *testing.T) {
	cfg := config.Default()
	if got := strings.Join(New(Options{Config: cfg}).Steps(), " "); got != "engine image lemonade models unit" {
		t.Errorf("Lemonade: %s", got)
	}
	cfg.LLM.Backend = config.BackendLlamacpp
	if got := strings.Join(New(Options{Config: cfg, NoUnit: true}).Steps(), " "); got != "engine image llm-image models" {
		t.Errorf("llama.cpp, no unit: %s", got)
	}
	cfg.LLM.Backend, cfg.LLM.URL = config.BackendOpenAI, "http://127.0.0.1:8080/v1"
	if got := strings.Join(New(Options{Config: cfg}).Steps(), " "); got != "engine image unit" {
		t.Errorf("OpenAI: %s", got)
	}
	cfg.Sandbox.Runtime = config.RuntimeKubernetes
	if got := strings.Join(New(Options{Config: cfg}).Steps(), " "); got != "engine unit" {
		t.Errorf("Kubernetes: %s", got)
	}
}

// Lemonade: keys made and written into thon.yaml (which becomes 0600),
// the drop-in and config.json written, Lemonade restarted and waited for;
// then its models pulled; a second run has nothing to do.
func TestLemonadeAndItsModels(t *testing.T) {
	lem := lemonadetest.New(lemonadetest.Options{})
	defer lem.Close()
	root := t.TempDir()
	unit := filepath.Join(root, "usr/lib/systemd/system/lemond.service")
	os.MkdirAll(filepath.Dir(unit), 0o755)
	os.WriteFile(unit, nil, 0o644)
	os.MkdirAll(filepath.Join(root, "var/lib/lemonade/.cache/lemonade"), 0o755)

	path := filepath.Join(t.TempDir(), "thon.yaml")
	os.WriteFile(path, append(config.Starter(), []byte("# the end\n")...), 0o644)
	starter := strings.Replace(string(config.Starter()), `  url: ""`, `  url: "`+lem.URL+`"`, 1)
	// Its own data directory and an address where no daemon answers (one
	// running on this machine's default would be asked for the models).
	starter = strings.Replace(starter, "  data_dir: ~/.thon\n", "  data_dir: "+t.TempDir()+"\n", 1)
	starter = strings.Replace(starter, "  listen: 127.0.0.1:8100\n", fmt.Sprintf("  listen: 127.0.0.1:%d\n", freePort(t)), 1)
	os.WriteFile(path, []byte(starter), 0o644)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Listen == config.DefaultListen {
		t.Fatal("the test's thon.yaml kept the default server.listen")
	}
	cmds := &commands{}
	s := New(Options{Config: cfg, Root: root, Command: cmds.run, IsRoot: func() bool { return true }, Wait: 10 * time.Second})
	st := s.Check(context.Background(), StepLemonade)
	do := strings.Join(st.Do, "\n")
	for _, want := range []string{"make llm.api_key and llm.admin_api_key (random) and write them into " + path, "lemond.service.d/thon.conf", "max_loaded_models: 1 in /var/lib/lemonade/.cache/lemonade/config.json", "systemctl restart lemond.service", "wait until Lemonade answers"} {
		if !strings.Contains(do, want) {
			t.Errorf("plan lacks %q:\n%s", want, do)
		}
	}
	if err := s.Apply(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	back, err := config.Load(path)
	if err != nil || back.LLM.APIKey == "" || back.LLM.AdminAPIKey == "" || back.LLM.APIKey == back.LLM.AdminAPIKey || back.LLM.APIKey != s.Config().LLM.APIKey {
		t.Fatalf("keys in thon.yaml: %+v %v", back.LLM, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("thon.yaml mode %v", fi.Mode())
	}
	dropIn, _ := os.ReadFile(filepath.Join(root, "etc/systemd/system/lemond.service.d/thon.conf"))
	if !strings.Contains(string(dropIn), "LEMONADE_API_KEY="+back.LLM.APIKey) {
		t.Errorf("drop-in:\n%s", dropIn)
	}
	if got := strings.Join(cmds.changing(), "|"); got != "systemctl daemon-reload|systemctl restart lemond.service" {
		t.Errorf("ran %s", got)
	}
	if st := s.Check(context.Background(), StepLemonade); !st.Ready {
		t.Errorf("second check: %+v", st)
	}

	// Its models: the configured chat model, pulled into Lemonade.
	st = s.Check(context.Background(), StepModels)
	if st.Ready || !strings.Contains(st.State, "Lemonade lacks user.gemma-4-31b-it") {
		t.Fatalf("models: %+v", st)
	}
	if err := s.Apply(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if st := s.Check(context.Background(), StepModels); !st.Ready {
		t.Errorf("models after the pull: %+v", st)
	}
}

// llama.cpp's models: THON's test model needs nothing, a checkpoint is
// downloaded from Hugging Face (here a server speaking its API), a file
// that is not there is reported with what to do.
func TestLlamaModels(t *testing.T) {
	model := []byte("GGUF fake model bytes")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/models/org/Tiny-GGUF/tree/main", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]map[string]any{{"type": "file", "path": "tiny-Q4_K_M.gguf", "size": len(model)}})
	})
	mux.HandleFunc("GET /org/Tiny-GGUF/resolve/main/tiny-Q4_K_M.gguf", func(w http.ResponseWriter, r *http.Request) { w.Write(model) })
	hf := httptest.NewServer(mux)
	defer hf.Close()

	cfg := config.Default()
	cfg.Server.DataDir = t.TempDir()
	cfg.Server.Listen = fmt.Sprintf("127.0.0.1:%d", freePort(t)) // no daemon there
	cfg.LLM.Backend = config.BackendLlamacpp
	cfg.LLM.ChatModel = config.LLMModel{Name: "thon-test"}
	s := New(Options{Config: cfg, HFEndpoint: hf.URL})
	if st := s.Check(context.Background(), StepModels); !st.Ready || !strings.Contains(st.State, "test model") {
		t.Errorf("test model: %+v", st)
	}
	cfg.LLM.ChatModel = config.LLMModel{Name: "tiny", Checkpoint: "org/Tiny-GGUF:Q4_K_M"}
	st := s.Check(context.Background(), StepModels)
	if st.Ready || !strings.Contains(strings.Join(st.Do, ""), "download org/Tiny-GGUF:Q4_K_M from "+hf.URL) {
		t.Fatalf("checkpoint: %+v", st)
	}
	if err := s.Apply(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(cfg.Server.DataDir, "models", "org", "Tiny-GGUF", "tiny-Q4_K_M.gguf"))
	if err != nil || string(got) != string(model) {
		t.Fatalf("downloaded: %q %v", got, err)
	}
	if st := s.Check(context.Background(), StepModels); !st.Ready {
		t.Errorf("after: %+v", st)
	}
	cfg.LLM.ChatModel = config.LLMModel{Name: "mine", File: "/nonexistent/model.gguf"}
	if st := s.Check(context.Background(), StepModels); st.Ready || !strings.Contains(st.State, "/nonexistent/model.gguf") || s.Apply(context.Background(), st) == nil {
		t.Errorf("a missing file: %+v", st)
	}
}

// The systemd unit: written, checked by systemd-analyze verify, enabled and
// (re)started — started here the way systemd would, running its ExecStart=
// line, since no machine here runs systemd as PID 1 — until the API
// answers; a daemon running outside systemd is stopped first; a second run
// has nothing to do.
func TestUnitStep(t *testing.T) {
	root := testenv.ModuleRoot(t)
	bin := filepath.Join(t.TempDir(), "thon")
	build := exec.Command("go", "build", "-o", bin, "./cmd/thon")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build thon: %v\n%s", err, out)
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is needed to check the unit: apt-get install systemd (scripts/test does): %v", err)
	}
	prefix := testenv.Prefix(t)
	t.Cleanup(func() { testenv.Cleanup(t, prefix) })

	dir := filepath.Join(t.TempDir(), "my event") // a space the unit must quote
	os.MkdirAll(dir, 0o755)
	path := filepath.Join(dir, "thon.yaml")
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	os.WriteFile(path, []byte(fmt.Sprintf(`server: {data_dir: %q, listen: %q}
access: {external_ip: 127.0.0.1, https_port: %d, http_port: 0, port_range: 43000-43009}
sandbox: {image: %s}
llm: {enabled: false}
gateway: {listen: "127.0.0.1:%d"}
groups: {alpha: [alice]}
`, filepath.Join(dir, "data 1"), listen, freePort(t), testenv.SandboxImage(t), freePort(t))), 0o644)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}

	fsRoot := t.TempDir()
	var mu sync.Mutex
	enabled, active := false, false
	var running *exec.Cmd
	stop := func() {
		mu.Lock()
		defer mu.Unlock()
		if running != nil {
			running.Process.Signal(syscall.SIGTERM)
			running.Wait()
			running = nil
		}
	}
	t.Cleanup(stop)
	cmds := &commands{}
	cmds.answer = func(name string, args []string) error {
		if name != "systemctl" {
			return fmt.Errorf("unexpected %s", name)
		}
		mu.Lock()
		defer mu.Unlock()
		switch args[0] {
		case "is-enabled":
			if !enabled {
				return errors.New("disabled")
			}
		case "is-active":
			if !active {
				return errors.New("inactive")
			}
		case "enable":
			enabled = true
		case "restart":
			// What systemd does: run ExecStart= with the unit's environment.
			unit, err := os.ReadFile(filepath.Join(fsRoot, UnitPath))
			if err != nil {
				return err
			}
			argv, err := ExecStart(unit)
			if err != nil {
				return err
			}
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
			for _, l := range strings.Split(string(unit), "\n") {
				if v, ok := strings.CutPrefix(l, "Environment="); ok {
					cmd.Env = append(cmd.Env, v)
				}
				if v, ok := strings.CutPrefix(l, "WorkingDirectory="); ok {
					cmd.Dir = v
				}
			}
			cmd.Stdout, cmd.Stderr = testWriter{t}, testWriter{t}
			if err := cmd.Start(); err != nil {
				return err
			}
			running, active = cmd, true
		}
		return nil
	}
	s := New(Options{Config: cfg, Executable: bin, Binary: bin, Root: fsRoot, Instance: prefix, Command: cmds.run,
		Systemd: func() bool { return true }, IsRoot: func() bool { return true }, Wait: 60 * time.Second})

	// A daemon already runs, started by hand (thon run does that).
	manual := exec.Command(bin, "serve", "--config", path)
	manual.Env = append(os.Environ(), "THON_INSTANCE="+prefix)
	manual.Stdout, manual.Stderr = testWriter{t}, testWriter{t}
	if err := manual.Start(); err != nil {
		t.Fatal(err)
	}
	defer manual.Process.Kill()
	if err := waitHTTP(context.Background(), "http://"+listen+"/api/v1/health", 60*time.Second); err != nil {
		t.Fatal(err)
	}

	st := s.Check(context.Background(), StepUnit)
	do := strings.Join(st.Do, "\n")
	for _, want := range []string{"write " + UnitPath, "systemctl daemon-reload", "systemctl enable thon.service", "stop the THON daemon running outside systemd", "systemctl restart thon.service"} {
		if !strings.Contains(do, want) {
			t.Errorf("plan lacks %q:\n%s", want, do)
		}
	}
	// The binary goes where the unit runs it (here under the test's root).
	if st.Ready || !strings.Contains(st.State, "a THON daemon runs outside systemd") || !strings.Contains(do, "install "+bin+" as "+bin) {
		t.Fatalf("plan: %+v", st)
	}
	if err := s.Apply(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if err := manual.Wait(); err != nil {
		t.Errorf("the daemon run by hand did not stop cleanly: %v", err)
	}
	if got := strings.Join(cmds.changing(), "|"); got != "systemctl daemon-reload|systemctl enable thon.service|systemctl restart thon.service" {
		t.Errorf("ran %s", got)
	}

	// The unit as systemd reads it.
	unitFile := filepath.Join(fsRoot, UnitPath)
	out, err := exec.Command(analyze, "verify", unitFile).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	unit, _ := os.ReadFile(unitFile)
	argv, _ := ExecStart(unit)
	if strings.Join(argv, "|") != strings.Join([]string{bin, "serve", "--config", path, "--data-dir", filepath.Join(dir, "data 1")}, "|") {
		t.Errorf("ExecStart: %q\n%s", argv, unit)
	}
	for _, want := range []string{"WorkingDirectory=" + dir + "\n", "Environment=THON_INSTANCE=" + prefix + "\n", "WantedBy=multi-user.target", "After=network-online.target docker.service"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	// The daemon the unit started answers, with the data directory it names.
	if _, err := os.Stat(filepath.Join(dir, "data 1", "admin.token")); err != nil {
		t.Errorf("the unit's daemon has no admin token in its data directory: %v", err)
	}
	if !sameFile(bin, filepath.Join(fsRoot, bin)) {
		t.Errorf("thon was not installed under the root")
	}

	// Again: nothing to do.
	cmds.calls = nil
	if st := s.Check(context.Background(), StepUnit); !st.Ready {
		t.Fatalf("second check: %+v", st)
	}
	stop()

	// No systemd: what to do instead, nothing written.
	s.o.Systemd = func() bool { return false }
	st = s.Check(context.Background(), StepUnit)
	if err := s.Apply(context.Background(), st); err == nil || !strings.Contains(err.Error(), "--no-unit") {
		t.Errorf("without systemd: %+v %v", st, err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
