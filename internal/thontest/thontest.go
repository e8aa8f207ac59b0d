// Package thontest starts a real THON daemon for tests: a temp data
// directory, a sandbox engine under a unique instance name (its own
// sandboxes, volumes and network), and the API on a loopback port.
// Everything it made is removed when the test ends.
//
// The engine is the real Docker engine with the test sandbox image, unless
// FakeEngine: then it is sandboxtest's in-memory engine, whose sandboxes are
// HTTP servers in this process answering like the test image — no Docker
// needed, and no container to wait for. Tests of the API, the dashboard, the
// front door and sign-in that are not about containers use it; tests of what
// only a container shows (its network, files it wrote, the LLM server) stay
// on Docker.
//
//	h := thontest.New(t, thontest.Groups(config.Group{Name: "alpha", Users: []string{"alice"}}), thontest.FakeEngine())
//	sum, err := h.Client.Bulk(ctx, client.BulkRequest{Action: "start"}, nil)
package thontest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/daemon"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/sandbox/docker"
	"github.com/thon-dev/thon/internal/sandbox/sandboxtest"
	"github.com/thon-dev/thon/internal/testenv"
)

// Harness is a running daemon and what a test needs to poke at it.
type Harness struct {
	t        testing.TB
	Config   *config.Config
	Instance string // prefix of this test's containers, volumes and network
	// Runtime is the daemon's engine: Docker's, or the fake's.
	Runtime sandbox.Runtime
	// Docker is the Docker engine's Runtime (nil with FakeEngine), for
	// what only a container does (Exec).
	Docker *docker.Runtime
	// Fake is the fake engine's Runtime (nil on Docker).
	Fake *sandboxtest.Fake

	engine *sandboxtest.Engine // the fake engine, across restarts
	now    func() time.Time
	Daemon *daemon.Daemon
	Client *client.Client
}

// Option adjusts New.
type Option func(*options)

type options struct {
	groups []config.Group
	fake   bool
	now    func() time.Time
}

// Clock gives the daemon a test's clock for idle times and lifetimes (the
// daemon then looks for idle sandboxes only when the test calls
// Orch.SleepIdle).
func Clock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Groups are imported into the store, like `thon run` does, without
// starting sandboxes.
func Groups(gs ...config.Group) Option {
	return func(o *options) { o.groups = append(o.groups, gs...) }
}

// FakeEngine runs the sandboxes on sandboxtest's in-memory engine (Docker's
// capabilities) instead of the Docker engine; the engine outlives daemon
// restarts (Stop, Start) like Docker does.
func FakeEngine() Option { return func(o *options) { o.fake = true } }

// New starts a daemon, with the groups of Groups already in its store.
func New(t testing.TB, opts ...Option) *Harness {
	t.Helper()
	var o options
	for _, f := range opts {
		f(&o)
	}
	b := make([]byte, 4)
	rand.Read(b)
	h := &Harness{t: t, Instance: "thontest" + hex.EncodeToString(b), now: o.now}
	cfg := config.Default()
	cfg.Server.DataDir = t.TempDir()
	if o.fake {
		h.engine = sandboxtest.NewEngine()
		t.Cleanup(h.engine.Close)
		cfg.Sandbox.Image = "thon-test/fake:latest" // every image is on the fake engine
	} else {
		testenv.Docker(t)
		cfg.Sandbox.Image = testenv.SandboxImage(t)
		t.Cleanup(func() { testenv.Cleanup(t, h.Instance) })
	}
	cfg.Sandbox.StartupTimeout = config.Duration(60 * time.Second)
	cfg.Sandbox.Limits = config.Limits{CPU: 0.5, Memory: 128 << 20, Pids: 64}
	cfg.Sandbox.Concurrency = 4
	cfg.Groups = o.groups
	cfg.Access = Access(t)
	// The AI gateway on a port of its own, on every interface so sandboxes
	// reach it through the host.
	cfg.Gateway.Listen = fmt.Sprintf("0.0.0.0:%d", FreePort(t))
	h.Config = cfg
	h.Start()
	if len(o.groups) > 0 {
		if _, err := h.Client.Import(context.Background(), cfg); err != nil {
			t.Fatalf("import groups: %v", err)
		}
	}
	return h
}

// Start (re)starts the daemon on the same data directory and engine.
func (h *Harness) Start() {
	h.t.Helper()
	var rt sandbox.Runtime
	if h.engine != nil {
		h.Fake = h.engine.Runtime(sandboxtest.FakeOptions{Instance: h.Instance})
		rt = h.Fake
	} else {
		d, err := docker.New(docker.Options{NamePrefix: h.Instance, Network: h.Instance})
		if err != nil {
			h.t.Fatal(err)
		}
		h.Docker, rt = d, d
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	d, err := daemon.Start(context.Background(), daemon.Options{
		Config: h.Config, Version: "test", Runtime: rt, Listener: ln,
		Logger: slog.New(slog.NewTextHandler(testWriter{h.t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		// Long enough that tests decide when to reconcile, and when to
		// look for idle sandboxes.
		ResyncInterval: time.Hour,
		SleepInterval:  time.Hour,
		Now:            h.now,
		// Short, so tests see the LLM rescaled after participant changes.
		LLMQuiet: 50 * time.Millisecond,
		// Often, so tests see THON's own LLM server restarted at once.
		LLMPoll: 200 * time.Millisecond,
	})
	if err != nil {
		h.t.Fatalf("start daemon: %v", err)
	}
	h.Runtime, h.Daemon = rt, d
	h.Client = client.New(d.URL, d.Token)
	h.t.Cleanup(func() { h.Stop() })
}

// Stop shuts the daemon down (sandboxes keep running). Safe to call twice.
func (h *Harness) Stop() {
	if h.Daemon == nil {
		return
	}
	h.Daemon.Shutdown(context.Background())
	h.Runtime.Close()
	h.Daemon = nil
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// Access is a front door configuration that cannot collide with another
// test's: port mode, a free HTTPS port, no HTTP redirect, 127.0.0.1 as the
// external IP and a random window of 200 participant ports.
func Access(t testing.TB) config.Access {
	a := config.Default().Access
	a.ExternalIP = "127.0.0.1"
	a.HTTPSPort = FreePort(t)
	a.HTTPPort = 0
	b := make([]byte, 2)
	rand.Read(b)
	first := 30000 + int(b[0])<<8%25000 + int(b[1])
	first -= first % 200
	a.PortRange = fmt.Sprintf("%d-%d", first, first+199)
	if a.HTTPSPort >= first && a.HTTPSPort < first+200 {
		a.HTTPSPort = FreePort(t) // the kernel picked one inside the window: pick again
	}
	return a
}

// FreePort returns a TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
