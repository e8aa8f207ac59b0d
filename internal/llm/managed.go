package llm

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/llm/testmodel"
	"github.com/thon-dev/thon/internal/sandbox"
)

// The managed server: THON runs llama.cpp's llama-server in router mode in
// a container {instance}-llm on the sandbox engine, every configured model
// in it (each in its own llama-server process, as router mode does), sized
// by the plan. The container sits on the sandboxes' network, where
// sandboxes cannot reach it: only the gateway (this process) does, with a
// key of THON's own.
const (
	ManagedName = "llm" // the service: container {instance}-llm
	managedPort = 8080
	presetPath  = "/etc/thon/llm/models.ini"
	keyPath     = "/etc/thon/llm/api-key"
	// managedUID is the LLM image's user (deploy/llm).
	managedUID = 10001
	// KeyFile holds the managed server's key in the data directory.
	KeyFile = "llm.key"
	// TestModelFile is where THON writes its test model, in the models
	// directory.
	TestModelFile = "thon-test.gguf"
)

// Supervision: how often the container is looked at, and how long a
// crashed server waits before THON starts it again (doubling up to
// maxBackoff, back to the first after it ran well for stableAfter).
const (
	defaultPoll  = 2 * time.Second
	firstBackoff = time.Second
	maxBackoff   = time.Minute
	stableAfter  = 2 * time.Minute
	// drainWait bounds how long a resize waits for streams in flight; when
	// they do not finish, the resize waits for the next round.
	drainWait = 2 * time.Minute
	// readyWait bounds a start: every model loaded (big models take long).
	readyWait = 15 * time.Minute
)

// ManagedOptions wire a Managed server into the daemon.
type ManagedOptions struct {
	Runner sandbox.ServiceRunner
	// DataDir holds the server's key (llm.key) and models/ (downloads and
	// the test model).
	DataDir string
	Logger  *slog.Logger
	// Event records an action in the audit log.
	Event func(ctx context.Context, actor, action, target, detail string)
	// Upstream is told the server's OpenAI base URL whenever it changes;
	// "" while it does not run.
	Upstream func(base string)
	// Drain holds new requests to the server and waits, up to ctx, for
	// those in flight; release lets requests through again. nil: no drain.
	Drain func(ctx context.Context) (release func(), err error)
	// Slots is told each model's parallel slots whenever the server is
	// ready with a plan (the gateway never sends a model more requests at
	// once). nil: nobody is told.
	Slots func(map[string]int)
	// Poll overrides how often the container is looked at (default 2 s).
	Poll time.Duration
	// HTTP overrides the client status queries use (tests).
	Client func(base, key string) *Client
}

// Managed runs and supervises THON's own llama-server.
type Managed struct {
	o   ManagedOptions
	key string

	mu       sync.Mutex
	cfg      config.LLM
	plan     Plan
	spec     sandbox.ServiceSpec // what should run
	specErr  error               // why nothing can run (bad config)
	notes    []string            // what the spec left out, and why
	gpu      string              // what the spec asks for
	unloaded map[string]bool     // models the organizer unloaded
	running  sandbox.ServiceInstance
	base     string // OpenAI base URL of the running server
	client   *Client
	crashes  int
	downRun  string // the run of the container last seen stopped
	lastExit string
	nextTry  time.Time
	backoff  time.Duration
	lastErr  string
	waiting  string // a resize waiting for streams to finish
	ready    bool
	retiring bool // remove a container the settings no longer want
	kick     chan struct{}
}

// NewManaged makes the supervisor; Configure gives it its settings, Run
// runs it. The server's key comes from llm.api_key, else from llm.key in
// the data directory (made on first use, 0600).
func NewManaged(o ManagedOptions) (*Managed, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Event == nil {
		o.Event = func(context.Context, string, string, string, string) {}
	}
	if o.Upstream == nil {
		o.Upstream = func(string) {}
	}
	if o.Slots == nil {
		o.Slots = func(map[string]int) {}
	}
	if o.Poll <= 0 {
		o.Poll = defaultPoll
	}
	if o.Client == nil {
		o.Client = func(base, key string) *Client { return NewClient(BackendLlamacpp, base, key, nil) }
	}
	m := &Managed{o: o, unloaded: map[string]bool{}, kick: make(chan struct{}, 1), backoff: firstBackoff}
	key, err := loadKey(filepath.Join(o.DataDir, KeyFile))
	if err != nil {
		return nil, err
	}
	m.key = key
	return m, nil
}

// loadKey reads the managed server's key, making one the first time.
func loadKey(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if k := strings.TrimSpace(string(b)); len(k) >= 32 {
			return k, nil
		}
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	key := "thon-llm-" + hex.EncodeToString(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write the LLM server's key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write the LLM server's key: %w", err)
	}
	return key, nil
}

// Key is what the gateway sends the server.
func (m *Managed) Key() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cfg.APIKey != "" {
		return m.cfg.APIKey
	}
	return m.key
}

// Configure takes new settings and the plan for the participants there
// are; the supervisor applies them (a change of sizes restarts the server
// once the streams in flight have finished).
func (m *Managed) Configure(cfg config.LLM, plan Plan) {
	key := cfg.APIKey
	if key == "" {
		key = m.key
	}
	spec, notes, gpu, err := m.build(cfg, plan, key)
	m.mu.Lock()
	m.cfg, m.plan, m.spec, m.notes, m.gpu, m.specErr = cfg, plan, spec, notes, gpu, err
	m.mu.Unlock()
	m.poke()
}

// Retire stops serving: the settings no longer ask THON to run the server
// (another backend, or llm.enabled false). Its container is removed.
func (m *Managed) Retire() {
	m.mu.Lock()
	m.spec, m.specErr, m.notes = sandbox.ServiceSpec{}, nil, nil
	m.retiring = true
	m.mu.Unlock()
	m.poke()
}

// retire removes a container THON no longer wants.
func (m *Managed) retire(ctx context.Context) {
	m.mu.Lock()
	retiring := m.retiring
	m.mu.Unlock()
	if !retiring {
		return
	}
	inst, err := m.o.Runner.InspectService(ctx, ManagedName)
	if errors.Is(err, sandbox.ErrNotFound) {
		m.mu.Lock()
		m.retiring = false
		m.mu.Unlock()
		return
	}
	if err != nil {
		return // the engine is down: next round
	}
	m.setUpstream("")
	if err := m.o.Runner.RemoveService(ctx, ManagedName); err != nil {
		m.o.Logger.Warn("cannot remove the LLM server THON no longer runs", "err", err)
		return
	}
	m.mu.Lock()
	m.retiring = false
	m.mu.Unlock()
	m.o.Event(ctx, "system", "llm.stop", inst.Name, "the settings no longer have THON run the LLM server")
	m.o.Logger.Info("LLM server removed: the settings no longer have THON run it", "container", inst.Name)
}

func (m *Managed) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// modelsDir is where downloads and the test model live.
func (m *Managed) modelsDir() string { return filepath.Join(m.o.DataDir, "models") }

// build is the container spec for cfg sized by plan.
func (m *Managed) build(cfg config.LLM, plan Plan, key string) (sandbox.ServiceSpec, []string, string, error) {
	var notes []string
	gpu := cfg.GPU
	if gpu == config.GPUAuto || gpu == "" {
		gpu = config.DetectGPU()
	} else if msg := config.MissingGPU(gpu); msg != "" {
		return sandbox.ServiceSpec{}, nil, gpu, errors.New(msg + ": set llm.gpu: auto or none")
	}
	spec := sandbox.ServiceSpec{
		Name:  ManagedName,
		Image: cfg.Image,
		User:  fmt.Sprintf("%d:%d", managedUID, managedUID),
		Port:  managedPort,
		Limits: sandbox.Limits{
			NanoCPUs:    int64(math.Round(cfg.Limits.CPU * 1e9)),
			MemoryBytes: int64(cfg.Limits.Memory),
			Pids:        cfg.Limits.Pids,
		},
	}
	switch gpu {
	case "nvidia":
		spec.GPU = sandbox.GPUNvidia
	case "amd":
		spec.GPU = sandbox.GPUAMD
	case "intel":
		spec.GPU = sandbox.GPUDRI
	}
	var ini strings.Builder
	ini.WriteString("version = 1\n")
	byID := map[string]ModelPlan{}
	for _, mp := range plan.Models {
		byID[mp.Model] = mp
	}
	mounted := map[string]string{} // host path → path inside
	mount := func(host string, dir bool) string {
		if in, ok := mounted[host]; ok {
			return in
		}
		in := fmt.Sprintf("/models/%d/%s", len(mounted), filepath.Base(host))
		mounted[host] = in
		spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: host, Target: in})
		return in
	}
	n := 0
	for _, rm := range Configured(cfg) {
		id := ModelID(cfg, rm.Model)
		mp, ok := byID[id]
		if !ok {
			continue
		}
		file, dir, note := m.modelFile(cfg, rm.Model)
		if note != "" {
			notes = append(notes, id+": "+note)
			continue
		}
		var inside string
		if dir {
			inside = filepath.Join(mount(filepath.Dir(file), true), filepath.Base(file))
		} else {
			inside = mount(file, false)
		}
		fmt.Fprintf(&ini, "\n[%s]\nmodel = %s\nctx-size = %d\nparallel = %d\nload-on-startup = true\n", id, inside, mp.CtxSize, mp.Slots)
		if rm.Role == "embedding" {
			ini.WriteString("embeddings = true\npooling = mean\n")
		}
		if rm.Model.MMProj != "" {
			fmt.Fprintf(&ini, "mmproj = %s\n", mount(rm.Model.MMProj, false))
		}
		n++
	}
	if n == 0 {
		return spec, notes, gpu, errors.New("no configured model can be served: " + strings.Join(notes, "; "))
	}
	spec.Files = []sandbox.File{
		{Path: presetPath, Mode: 0o600, UID: managedUID, GID: managedUID, Data: []byte(ini.String())},
		{Path: keyPath, Mode: 0o600, UID: managedUID, GID: managedUID, Data: []byte(key + "\n")},
	}
	spec.Args = []string{
		"--models-preset", presetPath, "--models-max", strconv.Itoa(n),
		"--host", "0.0.0.0", "--port", strconv.Itoa(managedPort),
		"--api-key-file", keyPath, "--metrics", "--no-webui",
	}
	spec.Args = append(spec.Args, strings.Fields(cfg.LlamacppArgs)...)
	return spec, notes, gpu, nil
}

// splitRE matches the parts of a split GGUF model (-00001-of-00003.gguf).
var splitRE = regexp.MustCompile(`-\d{5}-of-\d{5}\.gguf$`)

// modelFile is the host file of a model, whether its directory must be
// mounted (split models, downloads), or why it cannot be served.
func (m *Managed) modelFile(cfg config.LLM, mdl config.LLMModel) (file string, dir bool, note string) {
	switch {
	case cfg.TestModel(mdl):
		path := filepath.Join(m.modelsDir(), TestModelFile)
		if err := ensureTestModel(path); err != nil {
			return "", false, "cannot write THON's test model: " + err.Error()
		}
		return path, false, ""
	case mdl.File != "":
		if _, err := config.ModelFileInfo(mdl.File); err != nil {
			return "", false, fmt.Sprintf("%s: %v", mdl.File, err)
		}
		return mdl.File, splitRE.MatchString(mdl.File), ""
	default:
		f, err := DownloadedFile(m.modelsDir(), mdl.Checkpoint)
		if err != nil {
			return "", false, err.Error()
		}
		return f, true, ""
	}
}

var testModelOnce sync.Mutex

// ensureTestModel writes the test model to path unless the file there is
// the model this binary makes.
func ensureTestModel(path string) error {
	testModelOnce.Lock()
	defer testModelOnce.Unlock()
	f, err := testmodel.Build()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := f.Write(&buf); err != nil {
		return err
	}
	want := sha256.Sum256(buf.Bytes())
	if old, err := os.ReadFile(path); err == nil && sha256.Sum256(old) == want {
		return nil
	}
	return testmodel.WriteFile(path)
}

// Run supervises the server until ctx ends: starts it, restarts it when it
// crashes (with backoff), resizes it when the plan changes, and keeps the
// gateway pointed at it. The container keeps running when the daemon
// stops; the next daemon adopts it.
func (m *Managed) Run(ctx context.Context) {
	t := time.NewTicker(m.o.Poll)
	defer t.Stop()
	for {
		m.reconcile(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.kick:
		}
	}
}

// reconcile makes the container match the spec once.
func (m *Managed) reconcile(ctx context.Context) {
	m.mu.Lock()
	spec, specErr, plan := m.spec, m.specErr, m.plan
	m.mu.Unlock()
	if specErr != nil {
		m.setErr(specErr.Error())
		return
	}
	if spec.Name == "" {
		m.retire(ctx)
		return
	}
	inst, err := m.o.Runner.InspectService(ctx, ManagedName)
	notFound := errors.Is(err, sandbox.ErrNotFound)
	if err != nil && !notFound {
		m.setErr("cannot inspect the LLM server: " + err.Error())
		return
	}
	switch {
	case notFound || inst.SpecHash != spec.Hash():
		m.replace(ctx, spec, plan, inst, !notFound)
	case inst.State != sandbox.StateRunning:
		m.restartCrashed(ctx, inst, plan)
	default:
		m.observe(ctx, inst, plan)
	}
}

// replace starts the server from spec, replacing one made from other
// settings once its streams in flight have finished.
func (m *Managed) replace(ctx context.Context, spec sandbox.ServiceSpec, plan Plan, old sandbox.ServiceInstance, exists bool) {
	verb, detail := "llm.start", m.describe(spec)
	if exists {
		verb = "llm.resize"
		if old.State == sandbox.StateRunning && m.o.Drain != nil {
			dctx, cancel := context.WithTimeout(ctx, drainWait)
			release, err := m.o.Drain(dctx)
			cancel()
			if err != nil {
				m.mu.Lock()
				m.waiting = "waiting for the requests in flight to finish before resizing: " + detail
				m.mu.Unlock()
				m.o.Logger.Info("LLM server resize waits for streams in flight to finish", "detail", detail)
				return
			}
			defer release()
		}
	}
	m.setUpstream("")
	inst, err := m.o.Runner.RunService(ctx, spec)
	if err != nil {
		m.setErr("cannot start the LLM server: " + err.Error())
		m.o.Logger.Error("LLM server not started; sandboxes are not affected", "err", err)
		return
	}
	m.o.Event(ctx, "system", verb, inst.Name, detail)
	m.o.Logger.Info("LLM server started", "container", inst.Name, "detail", detail)
	m.mu.Lock()
	m.running, m.lastErr, m.waiting, m.ready = inst, "", "", false
	m.unloaded = map[string]bool{}
	m.mu.Unlock()
	m.waitReady(ctx, inst, plan)
}

// describe says what a spec runs, for the audit log.
func (m *Managed) describe(spec sandbox.ServiceSpec) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var parts []string
	for _, mp := range m.plan.Models {
		parts = append(parts, fmt.Sprintf("%s ctx %d, %d slots", mp.Model, mp.CtxSize, mp.Slots))
	}
	gpu := "cpu"
	if spec.GPU != "" {
		gpu = spec.GPU
	}
	return fmt.Sprintf("%s for %d participants (%s)", strings.Join(parts, "; "), m.plan.Participants, gpu)
}

// waitReady waits until the server answers and its models have loaded,
// then tells the gateway their slots (plan: what the server runs with) and
// points it at the server.
func (m *Managed) waitReady(ctx context.Context, inst sandbox.ServiceInstance, plan Plan) {
	ctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	c := m.clientFor(inst)
	for {
		if c != nil {
			if s, err := c.Llama(ctx); err == nil && allSettled(s) {
				m.o.Slots(plan.Slots())
				m.setUpstream(c.URL() + "/v1")
				m.mu.Lock()
				m.ready = true
				m.mu.Unlock()
				return
			}
		}
		select {
		case <-ctx.Done():
			m.setErr("the LLM server did not get ready in time: see thon llm status and its log (docker logs " + inst.Name + ")")
			return
		case <-time.After(250 * time.Millisecond):
		}
		// The container may have died while loading.
		cur, err := m.o.Runner.InspectService(ctx, ManagedName)
		if err != nil || cur.State != sandbox.StateRunning {
			return // the next round restarts it
		}
		if cur.Endpoint != inst.Endpoint || c == nil {
			inst = cur
			c = m.clientFor(inst)
		}
	}
}

// allSettled: no model is still loading.
func allSettled(s LlamaServer) bool {
	for _, md := range s.Models {
		if md.State == "loading" {
			return false
		}
	}
	return len(s.Models) > 0
}

func (m *Managed) clientFor(inst sandbox.ServiceInstance) *Client {
	if inst.Endpoint == "" {
		return nil
	}
	c := m.o.Client("http://"+inst.Endpoint, m.Key())
	m.mu.Lock()
	m.client = c
	m.mu.Unlock()
	return c
}

// restartCrashed starts a server that stopped without THON stopping it
// (it crashed, was killed, or the engine restarted): once it is noticed,
// recorded, and the backoff has passed.
func (m *Managed) restartCrashed(ctx context.Context, inst sandbox.ServiceInstance, plan Plan) {
	run := inst.ID + "@" + inst.Started.String() // one run of the container
	m.mu.Lock()
	now := time.Now()
	if m.downRun != run {
		if !m.running.Started.IsZero() && now.Sub(m.running.Started) > stableAfter {
			m.backoff = firstBackoff // it had run well: start again soon
		}
		m.downRun = run
		m.crashes++
		m.lastExit = inst.Reason
		m.nextTry = now.Add(m.backoff)
		m.ready = false
		crashes, backoff := m.crashes, m.backoff
		m.mu.Unlock()
		m.setUpstream("")
		m.o.Event(ctx, "system", "llm.crashed", inst.Name, fmt.Sprintf("%s (%d so far); restarting in %s%s", inst.Reason, crashes, backoff, m.logTail(ctx, 5)))
		m.o.Logger.Warn("LLM server stopped; THON restarts it", "reason", inst.Reason, "crashes", crashes, "in", backoff)
		return
	}
	if now.Before(m.nextTry) {
		m.mu.Unlock()
		return
	}
	m.backoff = min(2*m.backoff, maxBackoff)
	m.nextTry = now.Add(m.backoff)
	m.mu.Unlock()
	started, err := m.o.Runner.StartService(ctx, ManagedName)
	if err != nil {
		m.setErr("cannot restart the LLM server: " + err.Error())
		return
	}
	m.o.Event(ctx, "system", "llm.restarted", started.Name, "")
	m.mu.Lock()
	m.running, m.lastErr = started, ""
	m.mu.Unlock()
	m.waitReady(ctx, started, plan)
}

// logTail is the last lines of the server's log, for the audit log.
func (m *Managed) logTail(ctx context.Context, n int) string {
	rc, err := m.o.Runner.ServiceLogs(ctx, ManagedName, sandbox.LogOptions{Tail: n})
	if err != nil {
		return ""
	}
	defer rc.Close()
	b, _ := io.ReadAll(io.LimitReader(rc, 4096))
	s := strings.TrimSpace(string(b))
	if s == "" {
		return ""
	}
	return "; its log ends: " + strings.Join(strings.Fields(s), " ")
}

// observe looks at a running server: points the gateway at it when its
// address changed, and loads again a model whose process died.
func (m *Managed) observe(ctx context.Context, inst sandbox.ServiceInstance, plan Plan) {
	m.mu.Lock()
	adopted := m.running.ID != inst.ID
	if adopted || m.running.Started.IsZero() || inst.Started.Sub(m.running.Started) > 0 {
		m.running = inst
	}
	if !inst.Started.IsZero() && time.Since(inst.Started) > stableAfter {
		m.backoff = firstBackoff
	}
	ready := m.ready
	m.mu.Unlock()
	if adopted || !ready {
		m.waitReady(ctx, inst, plan)
		return
	}
	c := m.clientFor(inst)
	if c == nil {
		return
	}
	m.setUpstream(c.URL() + "/v1")
	s, err := c.Llama(ctx)
	if err != nil {
		return
	}
	for _, md := range s.Models {
		m.mu.Lock()
		off := m.unloaded[md.ID]
		m.mu.Unlock()
		if md.State == "failed" && !off {
			m.o.Event(ctx, "system", "llm.model_failed", md.ID, md.Failed+"; loading it again")
			if err := c.LlamaLoad(ctx, md.ID); err != nil {
				m.o.Logger.Warn("LLM model could not be loaded again", "model", md.ID, "err", err)
			}
		}
	}
}

func (m *Managed) setUpstream(base string) {
	m.mu.Lock()
	changed := m.base != base
	m.base = base
	m.mu.Unlock()
	if changed {
		m.o.Upstream(base)
	}
}

func (m *Managed) setErr(msg string) {
	m.mu.Lock()
	m.lastErr = msg
	m.mu.Unlock()
}

// serverClient is a client of the running server.
func (m *Managed) serverClient() (*Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.client == nil || m.base == "" {
		why := "it is starting"
		if m.lastErr != "" {
			why = m.lastErr
		}
		return nil, &wrapErr{msg: fmt.Sprintf("%s: THON's LLM server is not running (%s): see thon llm status", ErrUnreachable, why), errs: []error{ErrUnreachable}}
	}
	return m.client, nil
}

// ServerStatus is the managed server's container as THON sees it.
type ServerStatus struct {
	Container string    `json:"container"`
	Image     string    `json:"image"`
	State     string    `json:"state"` // running | starting | restarting | stopped | missing
	Ready     bool      `json:"ready"`
	Endpoint  string    `json:"endpoint,omitempty"`
	Started   time.Time `json:"started,omitempty"`
	GPU       string    `json:"gpu"` // none | nvidia | amd | intel
	Crashes   int       `json:"crashes"`
	LastExit  string    `json:"last_exit,omitempty"`
	Error     string    `json:"error,omitempty"`
	Waiting   string    `json:"waiting,omitempty"`
	Notes     []string  `json:"notes,omitempty"`
	TestModel bool      `json:"test_model,omitempty"` // THON's test model answers
}

// Status looks at the container now.
func (m *Managed) Status(ctx context.Context) ServerStatus {
	m.mu.Lock()
	st := ServerStatus{Image: m.spec.Image, GPU: m.gpu, Crashes: m.crashes, LastExit: m.lastExit, Error: m.lastErr,
		Waiting: m.waiting, Notes: slices.Clone(m.notes), Ready: m.ready}
	if m.specErr != nil {
		st.Error = m.specErr.Error()
	}
	for _, rm := range Configured(m.cfg) {
		if m.cfg.TestModel(rm.Model) {
			st.TestModel = true
		}
	}
	m.mu.Unlock()
	inst, err := m.o.Runner.InspectService(ctx, ManagedName)
	switch {
	case errors.Is(err, sandbox.ErrNotFound):
		st.State = "missing"
	case err != nil:
		st.State, st.Error = "unknown", err.Error()
	default:
		st.Container, st.Endpoint, st.Started = inst.Name, inst.Endpoint, inst.Started
		switch {
		case inst.State == sandbox.StateRunning && st.Ready:
			st.State = "running"
		case inst.State == sandbox.StateRunning:
			st.State = "starting"
		case st.Crashes > 0:
			st.State = "restarting"
			st.LastExit = inst.Reason
		default:
			st.State = string(inst.State)
		}
	}
	return st
}

// Unload unloads a model (every model when ""); THON does not load it
// again by itself until Load or a restart of the server.
func (m *Managed) Unload(ctx context.Context, model string) error {
	c, err := m.serverClient()
	if err != nil {
		return err
	}
	s, err := c.Llama(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, md := range s.Models {
		if (model == "" || md.ID == model) && md.State != "unloaded" {
			m.mu.Lock()
			m.unloaded[md.ID] = true
			m.mu.Unlock()
			errs = append(errs, c.LlamaUnload(ctx, md.ID))
		}
	}
	return errors.Join(errs...)
}

// Load loads a model the server knows (every one when "").
func (m *Managed) Load(ctx context.Context, model string) ([]Applied, error) {
	c, err := m.serverClient()
	if err != nil {
		return nil, err
	}
	s, err := c.Llama(ctx)
	if err != nil {
		return nil, err
	}
	var out []Applied
	var errs []error
	found := false
	for _, md := range s.Models {
		if model != "" && md.ID != model {
			continue
		}
		found = true
		m.mu.Lock()
		delete(m.unloaded, md.ID)
		m.mu.Unlock()
		if md.State == "loaded" {
			out = append(out, Applied{Model: md.ID, Action: "unchanged"})
			continue
		}
		if err := c.LlamaLoad(ctx, md.ID); err != nil {
			errs = append(errs, err)
			out = append(out, Applied{Model: md.ID, Action: "failed", Reason: err.Error()})
			continue
		}
		out = append(out, Applied{Model: md.ID, Action: "loaded"})
	}
	if !found {
		return nil, fmt.Errorf("the LLM server has no model %q: configure it in thon.yaml (llm.chat_model, chat_models, small_model, embedding_model) and run thon run", model)
	}
	return out, errors.Join(errs...)
}

// Apply resizes the server to the plan now (thon llm scale): it returns
// once the server runs with it, or with why not.
func (m *Managed) Apply(ctx context.Context, cfg config.LLM, plan Plan) ([]Applied, error) {
	m.Configure(cfg, plan)
	m.mu.Lock()
	spec, specErr := m.spec, m.specErr
	m.mu.Unlock()
	if specErr != nil {
		return nil, specErr
	}
	inst, err := m.o.Runner.InspectService(ctx, ManagedName)
	action := "unchanged"
	if err != nil || inst.SpecHash != spec.Hash() {
		action = "loaded"
		m.reconcile(ctx)
		m.mu.Lock()
		failed, waiting := m.lastErr, m.waiting
		m.mu.Unlock()
		switch {
		case failed != "":
			return nil, errors.New(failed)
		case waiting != "":
			return nil, errors.New(waiting)
		}
	}
	var out []Applied
	for _, mp := range plan.Models {
		out = append(out, Applied{Model: mp.Model, Action: action, Reason: fmt.Sprintf("ctx_size %d, %d slots, for %d participants", mp.CtxSize, mp.Slots, plan.Participants)})
	}
	return out, nil
}

// Stop removes the server's container (thon cleanup).
func (m *Managed) Stop(ctx context.Context) error {
	m.setUpstream("")
	return m.o.Runner.RemoveService(ctx, ManagedName)
}
