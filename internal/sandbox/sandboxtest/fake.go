package sandboxtest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/sandbox"
)

// Engine is an in-memory container engine. Sandboxes and their workspaces
// live in the Engine, whatever Runtime values come and go, as containers
// outlive a THON daemon on Docker: a test "restarts" THON by making a new
// Runtime on the same Engine. Every running sandbox's IDE is a real HTTP
// server on 127.0.0.1 that answers like test/sandboxd (health path, /, /env,
// /whoami, /headers, /files, /stat and a WebSocket echo), so the
// orchestrator, the front door and the API work on top of it unchanged.
//
// The environment of a sandbox steers it like sandboxd's: HEALTH_DELAY and
// HEALTH_FAIL delay or fail its health path, FAIL_USERS (comma-separated
// users) makes it exit with code 3 at start, IGNORE_SIGTERM makes a stop
// kill it (exit code 137), WS_ANY_ORIGIN lets any Origin open a WebSocket.
type Engine struct {
	mu      sync.Mutex
	boxes   map[boxKey]*box
	volumes map[boxKey]*memWorkspace
	seq     int
	down    error
	closed  bool
}

type boxKey struct{ instance, user string }

// NewEngine returns an empty engine. Close it when done (NewFake does).
func NewEngine() *Engine {
	return &Engine{boxes: map[boxKey]*box{}, volumes: map[boxKey]*memWorkspace{}}
}

// Close stops every sandbox's IDE server. The engine is not used after.
func (e *Engine) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	for _, b := range e.boxes {
		b.endRun()
	}
}

// SetDown makes every call but Close fail as if the engine did not answer
// (a *sandbox.UserError), until SetDown(false).
func (e *Engine) SetDown(down bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.down = nil
	if down {
		e.down = &sandbox.UserError{Msg: "the fake engine is not reachable", Hint: "bring it back with SetDown(false)"}
	}
}

// FakeOptions configures a Runtime on an Engine.
type FakeOptions struct {
	// Instance is like Docker's name prefix: Runtimes of different
	// instances never see each other's sandboxes. Default "thon".
	Instance string
	// Capabilities the Runtime has, and honours; nil means Docker's
	// (DockerCapabilities). With Kubernetes' (KubernetesCapabilities) it
	// behaves like that engine: no pause, Create starts, running means
	// healthy, no logs once stopped, no bind workspaces.
	Capabilities *sandbox.Capabilities
	// CPURate makes Usage report CPU as a rate with no CPU time, as the
	// Kubernetes metrics API does (Docker counts CPU time).
	CPURate bool
}

// DockerCapabilities are the Docker engine's.
var DockerCapabilities = sandbox.Capabilities{StoppedLogs: true, StoppedArchive: true, DiskUsage: true, Workspaces: sandbox.WorkspaceModes}

// KubernetesCapabilities are the Kubernetes engine's.
var KubernetesCapabilities = sandbox.Capabilities{
	ReadyIsHealthy: true, PauseIsStop: true, CreateStarts: true,
	Workspaces: []sandbox.WorkspaceMode{sandbox.WorkspaceVolume, sandbox.WorkspaceEphemeral},
}

// Runtime returns a new Runtime value on the engine.
func (e *Engine) Runtime(o FakeOptions) *Fake {
	if o.Instance == "" {
		o.Instance = "thon"
	}
	caps := DockerCapabilities
	if o.Capabilities != nil {
		caps = *o.Capabilities
	}
	caps.Workspaces = slices.Clone(caps.Workspaces)
	return &Fake{e: e, instance: o.Instance, caps: caps, cpuRate: o.CPURate}
}

// NewFake is a Runtime on an engine of its own, closed when t ends.
func NewFake(t testing.TB, o FakeOptions) *Fake {
	e := NewEngine()
	t.Cleanup(e.Close)
	return e.Runtime(o)
}

// Fake is the in-memory sandbox.Runtime of an Engine.
type Fake struct {
	e        *Engine
	instance string
	caps     sandbox.Capabilities
	cpuRate  bool
}

var _ sandbox.Runtime = (*Fake)(nil)

// box is one fake sandbox.
type box struct {
	id, name string
	spec     sandbox.Spec
	hash     string
	created  time.Time
	state    sandbox.State // created, running, paused or stopped
	exitCode int
	reason   string
	ws       workspace
	logs     *logBuf
	run      *run // while running or paused
}

// run is one run of a sandbox: its IDE server.
type run struct {
	ide      *ide
	srv      *http.Server
	cancel   context.CancelFunc
	gate     *gate
	endpoint string
}

func (b *box) endRun() {
	if b.run == nil {
		return
	}
	b.run.gate.resume()
	b.run.cancel()
	b.run.srv.Close()
	b.run = nil
	b.logs.end()
}

// Engine is the engine this Runtime is on.
func (f *Fake) Engine() *Engine { return f.e }

// Name is "fake".
func (f *Fake) Name() string { return "fake" }

// Capabilities are those of FakeOptions.
func (f *Fake) Capabilities() sandbox.Capabilities {
	c := f.caps
	c.Workspaces = slices.Clone(c.Workspaces)
	return c
}

// Close does nothing: the sandboxes keep running in the engine.
func (f *Fake) Close() error { return nil }

// lock takes the engine's lock, or returns why the engine cannot be used.
func (f *Fake) lock() error {
	f.e.mu.Lock()
	switch {
	case f.e.closed:
		f.e.mu.Unlock()
		return errors.New("the fake engine is closed")
	case f.e.down != nil:
		err := f.e.down
		f.e.mu.Unlock()
		return err
	}
	return nil
}

func (f *Fake) key(user string) boxKey { return boxKey{f.instance, user} }

// Ping fails only while the engine is down.
func (f *Fake) Ping(ctx context.Context) error {
	if err := f.lock(); err != nil {
		return err
	}
	f.e.mu.Unlock()
	return ctx.Err()
}

// Prepare checks the spec: every image is on the fake engine.
func (f *Fake) Prepare(ctx context.Context, spec sandbox.Spec) error {
	if err := spec.Check(f.caps, "the fake engine"); err != nil {
		return err
	}
	return f.Ping(ctx)
}

// Create makes the sandbox of spec.User: created, or running with
// CreateStarts.
func (f *Fake) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Instance, error) {
	if err := spec.Check(f.caps, "the fake engine"); err != nil {
		return sandbox.Instance{}, err
	}
	if err := f.lock(); err != nil {
		return sandbox.Instance{}, err
	}
	defer f.e.mu.Unlock()
	k := f.key(spec.User)
	if _, ok := f.e.boxes[k]; ok {
		return sandbox.Instance{}, fmt.Errorf("create sandbox %s: %w", spec.User, sandbox.ErrExists)
	}
	var ws workspace
	switch spec.Workspace {
	case sandbox.WorkspaceEphemeral:
		ws = &memWorkspace{}
	case sandbox.WorkspaceBind:
		dir, err := bindDir(spec)
		if err != nil {
			return sandbox.Instance{}, fmt.Errorf("create sandbox %s: %w", spec.User, err)
		}
		ws = dirWorkspace(dir)
	default:
		v := f.e.volumes[k]
		if v == nil {
			f.e.seq++
			v = &memWorkspace{id: fmt.Sprintf("%s-ws-%s-%d", f.instance, spec.User, f.e.seq)}
			f.e.volumes[k] = v
		}
		ws = v
	}
	f.e.seq++
	b := &box{
		id:      fmt.Sprintf("fake-%s-%d", spec.User, f.e.seq),
		name:    f.instance + "-" + spec.Group + "-" + spec.User,
		spec:    spec,
		hash:    spec.Hash(),
		created: time.Now(),
		state:   sandbox.StateCreated,
		ws:      ws,
		logs:    &logBuf{changed: make(chan struct{})},
	}
	f.e.boxes[k] = b
	if f.caps.CreateStarts {
		if err := f.start(b); err != nil {
			delete(f.e.boxes, k)
			return sandbox.Instance{}, fmt.Errorf("create sandbox %s: %w", spec.User, err)
		}
	}
	return f.describe(b), nil
}

// bindDir makes {WorkspaceDir}/{user} on this host (mode 0755), like the
// Docker engine; an existing directory is used as it is.
func bindDir(spec sandbox.Spec) (string, error) {
	base, err := filepath.Abs(spec.WorkspaceDir)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(base, spec.User)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", sandbox.Hintf(err, "check the workspace directory setting and its permissions", "cannot create the workspace directory %s: %v", dir, err)
	}
	return dir, nil
}

// box returns user's sandbox; the engine's lock is held.
func (f *Fake) box(op, user string) (*box, error) {
	b, ok := f.e.boxes[f.key(user)]
	if !ok {
		return nil, fmt.Errorf("%s sandbox %s: %w", op, user, sandbox.ErrNotFound)
	}
	return b, nil
}

// Start starts (or resumes) the sandbox; on a running one it only returns it.
func (f *Fake) Start(ctx context.Context, user string) (sandbox.Instance, error) {
	if err := f.lock(); err != nil {
		return sandbox.Instance{}, err
	}
	defer f.e.mu.Unlock()
	b, err := f.box("start", user)
	if err != nil {
		return sandbox.Instance{}, err
	}
	switch b.state {
	case sandbox.StateRunning:
	case sandbox.StatePaused:
		b.run.gate.resume()
		b.state = sandbox.StateRunning
	default:
		if err := f.start(b); err != nil {
			return sandbox.Instance{}, fmt.Errorf("start sandbox %s: %w", user, err)
		}
		if b.state == sandbox.StateStopped { // it exited at once
			inst := f.describe(b)
			inst.State, inst.ExitCode, inst.Reason = sandbox.StateStarting, 0, ""
			return inst, nil
		}
	}
	return f.describe(b), nil
}

// start runs the sandbox's IDE; the engine's lock is held.
func (f *Fake) start(b *box) error {
	if !f.caps.StoppedLogs {
		b.logs.reset() // a new Pod: the old output is gone
	}
	b.logs.begin()
	env := map[string]string{}
	for _, v := range b.spec.Environ() {
		env[v.Name] = v.Value
	}
	if slices.Contains(strings.Split(env["FAIL_USERS"], ","), b.spec.User) {
		b.logs.add(fmt.Sprintf("sandboxd: failing on purpose for %s (FAIL_USERS)", b.spec.User))
		b.logs.end()
		b.state, b.exitCode, b.reason = sandbox.StateStopped, 3, "exited with code 3"
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &gate{}
	d := newIDE(b.spec, b.ws, g, time.Now())
	srv := &http.Server{Handler: d.handler(), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go srv.Serve(ln)
	b.run = &run{ide: d, srv: srv, cancel: cancel, gate: g, endpoint: ln.Addr().String()}
	b.state, b.exitCode, b.reason = sandbox.StateRunning, 0, ""
	b.logs.add(fmt.Sprintf("fake sandboxd listening on %s user=%s group=%s", b.run.endpoint, b.spec.User, b.spec.Group))
	b.logs.add("sandboxd stderr ready")
	return nil
}

// Stop stops the sandbox (a paused one too); a stopped one is left alone.
// grace is not waited for: an IDE that ignores SIGTERM (IGNORE_SIGTERM=1)
// is killed at once, with code 137.
func (f *Fake) Stop(ctx context.Context, user string, grace time.Duration) error {
	if err := f.lock(); err != nil {
		return err
	}
	defer f.e.mu.Unlock()
	b, err := f.box("stop", user)
	if err != nil {
		return err
	}
	f.stop(b)
	return nil
}

func (f *Fake) stop(b *box) {
	if b.run == nil {
		return
	}
	code := 0
	if b.run.ide.env["IGNORE_SIGTERM"] == "1" {
		code = 137
	} else {
		b.logs.add("sandboxd stopping")
	}
	b.endRun()
	b.state, b.exitCode, b.reason = sandbox.StateStopped, code, fmt.Sprintf("exited with code %d", code)
}

// Pause freezes a running sandbox: its IDE holds every request. With
// PauseIsStop it stops it.
func (f *Fake) Pause(ctx context.Context, user string) error {
	if f.caps.PauseIsStop {
		return f.Stop(ctx, user, 0)
	}
	if err := f.lock(); err != nil {
		return err
	}
	defer f.e.mu.Unlock()
	b, err := f.box("pause", user)
	if err != nil {
		return err
	}
	switch b.state {
	case sandbox.StatePaused:
		return nil
	case sandbox.StateRunning:
		b.run.gate.pause()
		b.state = sandbox.StatePaused
		return nil
	}
	return fmt.Errorf("pause sandbox %s: it is %s, not running", user, b.state)
}

// Resume thaws a paused sandbox; a running one is left alone. With
// PauseIsStop it starts it.
func (f *Fake) Resume(ctx context.Context, user string) error {
	if f.caps.PauseIsStop {
		_, err := f.Start(ctx, user)
		return err
	}
	if err := f.lock(); err != nil {
		return err
	}
	defer f.e.mu.Unlock()
	b, err := f.box("resume", user)
	if err != nil {
		return err
	}
	switch b.state {
	case sandbox.StateRunning:
		return nil
	case sandbox.StatePaused:
		b.run.gate.resume()
		b.state = sandbox.StateRunning
		return nil
	}
	return fmt.Errorf("resume sandbox %s: it is %s, not paused", user, b.state)
}

// Remove deletes the sandbox; with purge its volume too (even without a
// sandbox, which still returns ErrNotFound). Bind directories stay.
func (f *Fake) Remove(ctx context.Context, user string, purge bool) error {
	if err := f.lock(); err != nil {
		return err
	}
	defer f.e.mu.Unlock()
	k := f.key(user)
	b, existed := f.e.boxes[k]
	if existed {
		b.endRun()
		delete(f.e.boxes, k)
	}
	if purge {
		delete(f.e.volumes, k)
	}
	if !existed {
		return fmt.Errorf("remove sandbox %s: %w", user, sandbox.ErrNotFound)
	}
	return nil
}

// PurgeWorkspace deletes the user's volume; it refuses while the user has
// a sandbox.
func (f *Fake) PurgeWorkspace(ctx context.Context, spec sandbox.Spec) error {
	if err := f.lock(); err != nil {
		return err
	}
	defer f.e.mu.Unlock()
	k := f.key(spec.User)
	if _, ok := f.e.boxes[k]; ok {
		return &sandbox.UserError{
			Msg:  fmt.Sprintf("cannot purge the workspace of %s: the user still has a sandbox", spec.User),
			Hint: "remove the sandbox first",
			Err:  sandbox.ErrExists,
		}
	}
	delete(f.e.volumes, k)
	return nil
}

// Inspect returns the user's sandbox; ErrNotFound when there is none.
func (f *Fake) Inspect(ctx context.Context, user string) (sandbox.Instance, error) {
	if err := f.lock(); err != nil {
		return sandbox.Instance{}, err
	}
	defer f.e.mu.Unlock()
	b, err := f.box("inspect", user)
	if err != nil {
		return sandbox.Instance{}, err
	}
	return f.describe(b), nil
}

// Spec returns the spec user's sandbox was created from, as a test reads a
// Docker container's configuration with docker inspect.
func (f *Fake) Spec(user string) (sandbox.Spec, error) {
	if err := f.lock(); err != nil {
		return sandbox.Spec{}, err
	}
	defer f.e.mu.Unlock()
	b, err := f.box("inspect", user)
	if err != nil {
		return sandbox.Spec{}, err
	}
	return b.spec, nil
}

// List returns the instance's sandboxes, sorted by user.
func (f *Fake) List(ctx context.Context) ([]sandbox.Instance, error) {
	if err := f.lock(); err != nil {
		return nil, err
	}
	defer f.e.mu.Unlock()
	out := []sandbox.Instance{}
	for k, b := range f.e.boxes {
		if k.instance == f.instance {
			out = append(out, f.describe(b))
		}
	}
	slices.SortFunc(out, func(a, b sandbox.Instance) int { return cmp.Compare(a.User, b.User) })
	return out, nil
}

// instance_ describes b; the engine's lock is held.
func (f *Fake) describe(b *box) sandbox.Instance {
	inst := sandbox.Instance{
		ID: b.id, Name: b.name, User: b.spec.User, Group: b.spec.Group, Image: b.spec.Image,
		State: b.state, SpecHash: b.hash, Created: b.created, ExitCode: b.exitCode, Reason: b.reason,
	}
	if b.state == sandbox.StateRunning {
		inst.Endpoint = b.run.endpoint
		if f.caps.ReadyIsHealthy && !b.run.ide.healthy(time.Now()) {
			inst.State, inst.Endpoint = sandbox.StateStarting, "" // not ready yet
		}
	}
	return inst
}

// WorkspaceID names the user's kept volume ("" when there is none): a new
// volume gets a new name.
func (f *Fake) WorkspaceID(user string) string {
	f.e.mu.Lock()
	defer f.e.mu.Unlock()
	if v := f.e.volumes[f.key(user)]; v != nil {
		return v.id
	}
	return ""
}

// Logs streams the sandbox's output: that of every run (with StoppedLogs),
// or of the current one.
func (f *Fake) Logs(ctx context.Context, user string, opts sandbox.LogOptions) (io.ReadCloser, error) {
	if err := f.lock(); err != nil {
		return nil, err
	}
	b, err := f.box("logs of", user)
	if err != nil {
		f.e.mu.Unlock()
		return nil, err
	}
	stopped := b.run == nil && b.state != sandbox.StateCreated
	logs := b.logs
	f.e.mu.Unlock()
	if stopped && !f.caps.StoppedLogs {
		return nil, sandbox.Hintf(nil, "start it to see new output", "the sandbox of %s is stopped: the fake engine keeps no logs of a stopped sandbox", user)
	}
	return logs.stream(ctx, opts), nil
}

// logBuf is a sandbox's output, line by line.
type logBuf struct {
	mu      sync.Mutex
	lines   []string
	running bool
	changed chan struct{} // closed (and replaced) on every change
}

func (l *logBuf) notify() {
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *logBuf) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	l.notify()
}

func (l *logBuf) begin() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running = true
	l.notify()
}

func (l *logBuf) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running = false
	l.notify()
}

func (l *logBuf) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = nil
	l.notify()
}

// stream returns the last opts.Tail lines (all with 0) and, with Follow,
// what comes after until the run ends, ctx is done or it is closed.
func (l *logBuf) stream(ctx context.Context, opts sandbox.LogOptions) io.ReadCloser {
	l.mu.Lock()
	start := 0
	if opts.Tail > 0 && len(l.lines) > opts.Tail {
		start = len(l.lines) - opts.Tail
	}
	var b strings.Builder
	for _, line := range l.lines[start:] {
		b.WriteString(line + "\n")
	}
	next := len(l.lines)
	l.mu.Unlock()
	if !opts.Follow {
		return io.NopCloser(strings.NewReader(b.String()))
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		_, err := io.WriteString(pw, b.String())
		for err == nil {
			l.mu.Lock()
			var chunk strings.Builder
			for _, line := range l.lines[min(next, len(l.lines)):] {
				chunk.WriteString(line + "\n")
			}
			next = len(l.lines)
			running, ch := l.running, l.changed
			l.mu.Unlock()
			if chunk.Len() > 0 {
				if _, err = io.WriteString(pw, chunk.String()); err != nil {
					break
				}
			}
			if !running {
				break
			}
			select {
			case <-ch:
			case <-ctx.Done():
				err = ctx.Err()
			case <-done:
				err = io.ErrClosedPipe
			}
		}
		pw.CloseWithError(err)
	}()
	return &followStream{PipeReader: pr, done: done}
}

type followStream struct {
	*io.PipeReader
	once sync.Once
	done chan struct{}
}

func (s *followStream) Close() error {
	s.once.Do(func() { close(s.done) })
	return s.PipeReader.Close()
}
