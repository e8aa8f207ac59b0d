// Package setup prepares a machine for the event thon.yaml describes: every
// step it needs, in order — the container engine, the participant image, the
// LLM server's image, Lemonade's keys and settings, the models, a systemd
// unit for the daemon. Each step looks at the machine first (Check): a step
// already as wanted is Ready and does nothing; otherwise it says what it
// will do (Do) before Apply does it. Running it again changes nothing.
//
// The CLI (thon setup) shows each step, asks, and stops at the first that
// fails, with what to do.
package setup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/imagebuild"
	"github.com/thon-dev/thon/internal/llm"
)

// Step IDs, in the order they run.
const (
	StepEngine   = "engine"
	StepImage    = "image"
	StepLLMImage = "llm-image"
	StepLemonade = "lemonade"
	StepModels   = "models"
	StepUnit     = "unit"
)

// Options is the machine and configuration setup works on. Only Config is
// required; the rest have defaults that touch the real machine (tests
// point them elsewhere).
type Options struct {
	// Config is thon.yaml as loaded (Path set: keys are written back there).
	Config *config.Config
	// Version is THON's, for the images' labels.
	Version string
	// Instance is THON_INSTANCE, passed on to the unit.
	Instance string
	// Executable is the thon binary the unit runs (installed as Binary);
	// default: this process's.
	Executable string
	// Binary is where the unit runs thon from; default /usr/local/bin/thon.
	Binary string
	// Root is the file system root files are written under; default "/".
	Root string
	// NoUnit leaves the systemd unit out (thon run then starts the
	// daemon in the background).
	NoUnit bool
	// Command runs a program (apt-get, systemctl), its output to w; nil:
	// the real one.
	Command func(ctx context.Context, w io.Writer, name string, args ...string) error
	// LookPath finds a program; nil: exec.LookPath.
	LookPath func(string) (string, error)
	// Engine pings the container engine and returns its version; nil:
	// Docker from the environment.
	Engine func(ctx context.Context) (string, error)
	// Image describes an image of the engine (labels; ok=false when it
	// has none); nil: Docker's.
	Image func(ctx context.Context, ref string) (labels map[string]string, size int64, ok bool, err error)
	// Systemd reports whether systemd runs this machine (PID 1); nil:
	// Root/run/systemd/system exists.
	Systemd func() bool
	// IsRoot reports whether this process may change the system; nil:
	// its effective user is root.
	IsRoot func() bool
	// Log receives the full output of long steps; nil: discarded.
	Log io.Writer
	// Progress is told about the steps of image builds.
	Progress imagebuild.Progress
	// Pull is told how model downloads go.
	Pull func(model string, p llm.PullProgress)
	// HFEndpoint is Hugging Face's address (tests); "": HF_ENDPOINT.
	HFEndpoint string
	// Wait is how long to wait for a service to answer after starting it;
	// default 60s.
	Wait time.Duration
}

// Step is one step as the machine stands now.
type Step struct {
	ID    string   `json:"id"`
	Title string   `json:"title"`
	State string   `json:"state"`         // what is there now
	Ready bool     `json:"ready"`         // nothing to do
	Do    []string `json:"do,omitempty"`  // what Apply does, in order
	Root  bool     `json:"needs_root"`    // Apply needs root
	Fix   string   `json:"fix,omitempty"` // when it cannot be done here: what to do instead

	apply func(ctx context.Context) error
}

// Setup is the steps of one configuration.
type Setup struct {
	o Options
}

// New prepares setup for o.Config.
func New(o Options) *Setup {
	if o.Root == "" {
		o.Root = "/"
	}
	if o.Binary == "" {
		o.Binary = "/usr/local/bin/thon"
	}
	if o.Command == nil {
		o.Command = runCommand
	}
	if o.LookPath == nil {
		o.LookPath = exec.LookPath
	}
	if o.Systemd == nil {
		o.Systemd = func() bool {
			fi, err := os.Stat(filepath.Join(o.Root, "run/systemd/system"))
			return err == nil && fi.IsDir()
		}
	}
	if o.IsRoot == nil {
		o.IsRoot = func() bool { return os.Geteuid() == 0 }
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Wait <= 0 {
		o.Wait = time.Minute
	}
	if o.Engine == nil || o.Image == nil {
		eng, img := dockerProbes(o.Config.Sandbox.Runtime)
		if o.Engine == nil {
			o.Engine = eng
		}
		if o.Image == nil {
			o.Image = img
		}
	}
	return &Setup{o: o}
}

// Steps are the IDs of the steps the configuration needs, in order.
func (s *Setup) Steps() []string {
	c := s.o.Config
	ids := []string{StepEngine}
	if c.Sandbox.Runtime != config.RuntimeKubernetes {
		ids = append(ids, StepImage)
	}
	if c.LLM.Enabled && c.LLM.IsManaged() {
		ids = append(ids, StepLLMImage)
	}
	if c.LLM.Enabled && c.LLM.Backend == config.BackendLemonade {
		ids = append(ids, StepLemonade)
	}
	if c.LLM.Enabled && (c.LLM.IsManaged() || c.LLM.Backend == config.BackendLemonade) {
		ids = append(ids, StepModels)
	}
	if !s.o.NoUnit {
		ids = append(ids, StepUnit)
	}
	return ids
}

// Check looks at the machine and says what step id would do.
func (s *Setup) Check(ctx context.Context, id string) Step {
	var st Step
	switch id {
	case StepEngine:
		st = s.engine(ctx)
	case StepImage:
		st = s.image(ctx)
	case StepLLMImage:
		st = s.llmImage(ctx)
	case StepLemonade:
		st = s.lemonade(ctx)
	case StepModels:
		st = s.models(ctx)
	case StepUnit:
		st = s.unit(ctx)
	default:
		st = Step{ID: id, Title: id, State: "no such step", Fix: "this is a bug in THON"}
	}
	st.ID = id
	return st
}

// Apply does what st says. A step that is Ready does nothing.
func (s *Setup) Apply(ctx context.Context, st Step) error {
	if st.Ready {
		return nil
	}
	if st.apply == nil {
		if st.Fix != "" {
			return errors.New(st.State + ": " + st.Fix)
		}
		return errors.New(st.State)
	}
	if st.Root && !s.o.IsRoot() {
		return fmt.Errorf("%s needs root: run sudo thon setup", strings.ToLower(st.Title[:1])+st.Title[1:])
	}
	return st.apply(ctx)
}

// Config is the configuration as setup left it (Lemonade's keys, once
// written into thon.yaml).
func (s *Setup) Config() *config.Config { return s.o.Config }

// path is p under Root.
func (s *Setup) path(p string) string { return filepath.Join(s.o.Root, p) }

func runCommand(ctx context.Context, w io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var tail tailBuffer
	cmd.Stdout = io.MultiWriter(w, &tail)
	cmd.Stderr = io.MultiWriter(w, &tail)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v%s", name, strings.Join(args, " "), err, tail.String())
	}
	return nil
}

// tailBuffer keeps the last lines a command wrote, for its error.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	s := strings.TrimSpace(string(t.b))
	if s == "" {
		return ""
	}
	ls := strings.Split(s, "\n")
	if len(ls) > 8 {
		ls = ls[len(ls)-8:]
	}
	return "\n  " + strings.Join(ls, "\n  ")
}

// daemon is a client of the daemon at server.listen, when one answers.
func (s *Setup) daemon(ctx context.Context) (*client.Client, bool) {
	cfg := s.o.Config
	dir, err := cfg.DataDir()
	if err != nil {
		return nil, false
	}
	tok, _ := os.ReadFile(filepath.Join(dir, "admin.token"))
	c := client.New("http://"+cfg.Server.Listen, strings.TrimSpace(string(tok)))
	hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c, c.Health(hctx) == nil
}

// waitHTTP waits until url answers (any status).
func waitHTTP(ctx context.Context, url string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer within %s", url, limit)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
