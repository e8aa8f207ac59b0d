package llm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/thon-dev/thon/internal/config"
)

// Service is THON's side of the LLM server: its status, its models, and
// the scaling plan, applied again (debounced) as participants come and go.
type Service struct {
	opts ServiceOptions
	kick chan struct{}

	mu     sync.Mutex
	cfg    config.LLM
	client *Client
}

// managed is THON's own server, when the configuration asks for it.
func (s *Service) managed(cfg config.LLM) *Managed {
	if cfg.IsManaged() {
		return s.opts.Managed
	}
	return nil
}

// ServiceOptions wires a Service into the daemon.
type ServiceOptions struct {
	// Participants counts the event's participants.
	Participants func(ctx context.Context) (int, error)
	// Busy reports a burst of sandbox operations (a bulk start): the plan
	// waits until it is over, so nobody's first request meets a reload.
	Busy func() bool
	// Quiet is how long participant changes must settle before the plan is
	// applied (default 30s).
	Quiet  time.Duration
	Logger *slog.Logger
	// Event records an action in the audit log, done by actor.
	Event func(ctx context.Context, actor, action, target, detail string)
	// Managed runs the server when the configuration says THON does
	// (backend llamacpp without a url); nil: THON cannot run one.
	Managed *Managed
	// ModelsDir is where thon llm pull puts models for llamacpp.
	ModelsDir string
	// HFEndpoint overrides Hugging Face's address (tests); "" is
	// $HF_ENDPOINT or huggingface.co.
	HFEndpoint string
	// Slots is told each model's parallel slots whenever THON sizes
	// Lemonade by the plan (a server THON runs says so itself, through
	// ManagedOptions.Slots). nil: nobody is told.
	Slots func(map[string]int)
}

// ErrDisabled: llm.enabled is false.
var ErrDisabled = errors.New("the LLM is off: set llm.enabled: true in thon.yaml and run thon run")

// NewService manages the server cfg describes.
func NewService(cfg config.LLM, o ServiceOptions) *Service {
	if o.Quiet <= 0 {
		o.Quiet = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Busy == nil {
		o.Busy = func() bool { return false }
	}
	if o.Event == nil {
		o.Event = func(context.Context, string, string, string, string) {}
	}
	if o.Slots == nil {
		o.Slots = func(map[string]int) {}
	}
	s := &Service{opts: o, kick: make(chan struct{}, 1)}
	s.Configure(cfg)
	return s
}

// Configure takes new llm settings (from `thon run`). A server THON runs
// is sized for the participants there are now.
func (s *Service) Configure(cfg config.LLM) {
	key := cfg.AdminAPIKey // accepted on every endpoint; falls back to the regular key
	if key == "" {
		key = cfg.APIKey
	}
	url := cfg.ServerURL()
	if cfg.Backend == config.BackendOpenAI {
		url = cfg.OpenAIBase()
	}
	c := NewClient(cfg.Backend, url, key, nil)
	s.mu.Lock()
	s.cfg, s.client = cfg, c
	s.mu.Unlock()
	switch m := s.managed(cfg); {
	case m != nil && cfg.Enabled:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		plan, _ := s.Plan(ctx)
		m.Configure(cfg, plan)
	case s.opts.Managed != nil:
		s.opts.Managed.Retire() // a server THON ran is no longer wanted
	}
	if cfg.Enabled && cfg.Backend == config.BackendLemonade {
		// THON loads Lemonade's models with the plan's slots (thon llm
		// load, and again as participants come and go).
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if plan, err := s.Plan(ctx); err == nil {
			s.opts.Slots(plan.Slots())
		}
	}
}

// current is the settings and a client of the server: for a server THON
// runs, of the running container (an error when it does not run).
func (s *Service) current() (config.LLM, *Client) {
	s.mu.Lock()
	cfg, c := s.cfg, s.client
	s.mu.Unlock()
	if m := s.managed(cfg); m != nil {
		if mc, err := m.serverClient(); err == nil {
			c = mc
		}
	}
	return cfg, c
}

// enabled is current, or ErrDisabled.
func (s *Service) enabled() (config.LLM, *Client, error) {
	cfg, c := s.current()
	if !cfg.Enabled {
		return cfg, c, ErrDisabled
	}
	return cfg, c, nil
}

// Status is the LLM server as THON sees it. It is always complete: what
// cannot be had is explained in Error and Notes.
type Status struct {
	Enabled    bool              `json:"enabled"`
	Backend    string            `json:"backend"`
	URL        string            `json:"url"`
	Reachable  bool              `json:"reachable"`
	Error      string            `json:"error,omitempty"`
	Version    string            `json:"version,omitempty"`
	Loaded     []LoadedModel     `json:"loaded"`
	Slots      *SlotSummary      `json:"slots,omitempty"`
	Stats      *Stats            `json:"stats,omitempty"`
	Configured []ConfiguredModel `json:"configured"`
	Plan       Plan              `json:"plan"`
	Notes      []string          `json:"notes,omitempty"`
	// Server is the container of a server THON runs (backend llamacpp
	// without a url).
	Server *ServerStatus `json:"server,omitempty"`
}

// SlotSummary counts the loaded chat model's parallel slots.
type SlotSummary struct {
	Busy  int `json:"busy"`
	Total int `json:"total"`
}

// ConfiguredModel is a model thon.yaml names, and where it stands.
type ConfiguredModel struct {
	Role       string `json:"role"`
	Model      string `json:"model"`
	Checkpoint string `json:"checkpoint,omitempty"`
	Downloaded bool   `json:"downloaded"`
	Loaded     bool   `json:"loaded"`
	// Current: loaded with the options the plan gives it now.
	Current bool `json:"current"`
}

// Status asks the server for its health, models, slots and speed. It never
// fails: a server that is down is a status, and sandboxes run on.
func (s *Service) Status(ctx context.Context) Status {
	cfg, c := s.current()
	st := Status{Enabled: cfg.Enabled, Backend: cfg.Backend, URL: c.URL(), Loaded: []LoadedModel{}, Configured: []ConfiguredModel{}}
	n, err := s.participants(ctx)
	if err != nil {
		st.Notes = append(st.Notes, "cannot count participants: "+err.Error())
	}
	st.Plan = PlanFor(cfg, n)
	for _, mp := range st.Plan.Models {
		st.Configured = append(st.Configured, ConfiguredModel{Role: mp.Role, Model: mp.Model, Checkpoint: mp.Checkpoint})
		for _, note := range mp.Notes {
			st.Notes = append(st.Notes, mp.Model+": "+note)
		}
	}
	if !cfg.Enabled {
		st.Error = "llm.enabled is false: assistants are not configured"
		return st
	}
	if m := s.managed(cfg); m != nil {
		srv := m.Status(ctx)
		st.Server = &srv
		st.URL = ""
		if srv.Endpoint != "" {
			st.URL = "http://" + srv.Endpoint
		}
		st.Notes = append(st.Notes, srv.Notes...)
		if srv.TestModel {
			st.Notes = append(st.Notes, "THON's built-in test model answers (every chat gets one sentence): set llm.chat_model.file to a GGUF model, or a checkpoint and run thon llm pull, for a real assistant")
		}
		if srv.State != "running" && srv.State != "starting" {
			st.Error = "THON's LLM server is " + srv.State
			if srv.Error != "" {
				st.Error += ": " + srv.Error
			} else if srv.LastExit != "" {
				st.Error += " (" + srv.LastExit + ")"
			}
			return st
		}
		if _, err := m.serverClient(); err != nil {
			st.Error = "THON's LLM server is starting"
			if srv.Error != "" {
				st.Error += ": " + srv.Error
			}
			return st
		}
	}
	if err := c.Live(ctx); err != nil {
		st.Error = err.Error()
		return st
	}
	st.Reachable = true
	if cfg.Backend == config.BackendLlamacpp {
		s.llamaStatus(ctx, c, &st)
		return st
	}
	models, err := c.Models(ctx, false)
	if err != nil {
		st.Notes = append(st.Notes, "models: "+err.Error())
	}
	have := map[string]bool{}
	for _, m := range models {
		have[m.ID] = true
	}
	if cfg.Backend == config.BackendOpenAI {
		for i := range st.Configured {
			st.Configured[i].Downloaded = have[st.Configured[i].Model]
			st.Configured[i].Loaded = st.Configured[i].Downloaded
			st.Configured[i].Current = st.Configured[i].Downloaded
			if !st.Configured[i].Downloaded {
				st.Notes = append(st.Notes, fmt.Sprintf("the server does not list %s: assistants asking for it will fail; check llm.%s_model.name", st.Configured[i].Model, st.Configured[i].Role))
			}
		}
		return st
	}
	h, err := c.Health(ctx)
	if err != nil {
		st.Notes = append(st.Notes, "health: "+err.Error())
	}
	st.Version, st.Loaded = h.Version, append(st.Loaded, h.Loaded...)
	for i, cm := range st.Configured {
		st.Configured[i].Downloaded = have[cm.Model]
		for _, lm := range h.Loaded {
			if lm.Name == cm.Model {
				st.Configured[i].Loaded = true
				mp := st.Plan.Models[i]
				st.Configured[i].Current = lm.CtxSize == mp.CtxSize && strings.TrimSpace(lm.LlamacppArgs) == mp.LlamacppArgs
			}
		}
		switch {
		case !st.Configured[i].Downloaded && !st.Configured[i].Loaded:
			st.Notes = append(st.Notes, fmt.Sprintf("%s is not downloaded: thon llm pull", cm.Model))
		case !st.Configured[i].Loaded:
			st.Notes = append(st.Notes, fmt.Sprintf("%s is not loaded: thon llm load (the first request would load it without THON's sizing)", cm.Model))
		case !st.Configured[i].Current:
			st.Notes = append(st.Notes, fmt.Sprintf("%s is loaded with other options than the plan: thon llm scale", cm.Model))
		}
	}
	if slots, err := c.Slots(ctx); err == nil {
		sum := &SlotSummary{Total: len(slots)}
		for _, sl := range slots {
			if sl.Busy {
				sum.Busy++
			}
		}
		st.Slots = sum
	}
	if stats, err := c.Stats(ctx); err == nil {
		st.Stats = &stats
	}
	return st
}

func (s *Service) participants(ctx context.Context) (int, error) {
	if s.opts.Participants == nil {
		return 0, nil
	}
	return s.opts.Participants(ctx)
}

// Models lists the server's models (all: also those not downloaded).
func (s *Service) Models(ctx context.Context, all bool) ([]Model, error) {
	_, c, err := s.enabled()
	if err != nil {
		return nil, err
	}
	return c.Models(ctx, all)
}

// configured finds a model thon.yaml names, by id or by name.
func configured(cfg config.LLM, model string) (role string, m config.LLMModel, ok bool) {
	for _, x := range Configured(cfg) {
		if x.Model.Name != "" && (model == x.Model.Name || model == ModelID(cfg, x.Model)) {
			return x.Role, x.Model, true
		}
	}
	return "", config.LLMModel{}, false
}

// Pull downloads model, or every configured model when model is "". A
// configured model with a checkpoint is registered from it (Lemonade), or
// downloaded from Hugging Face into server.data_dir/models (llamacpp).
func (s *Service) Pull(ctx context.Context, actor, model string, progress func(model string, p PullProgress)) error {
	cfg, c, err := s.enabled()
	if err != nil {
		return err
	}
	if cfg.Backend == config.BackendLlamacpp {
		return s.pullLlama(ctx, cfg, actor, model, progress)
	}
	var reqs []PullRequest
	add := func(role string, m config.LLMModel) {
		r := PullRequest{ModelName: ModelID(cfg, m), Embedding: role == "embedding"}
		if strings.HasPrefix(r.ModelName, "user.") {
			r.Checkpoint, r.Recipe = m.Checkpoint, "llamacpp"
		}
		reqs = append(reqs, r)
	}
	switch role, m, ok := configured(cfg, model); {
	case model == "":
		for _, rm := range Configured(cfg) {
			add(rm.Role, rm.Model)
		}
	case ok:
		add(role, m)
	default:
		reqs = append(reqs, PullRequest{ModelName: model})
	}
	for _, r := range reqs {
		s.opts.Event(ctx, actor, "llm.pull", r.ModelName, r.Checkpoint)
		if err := c.Pull(ctx, r, func(p PullProgress) {
			if progress != nil {
				progress(r.ModelName, p)
			}
		}); err != nil {
			return fmt.Errorf("pull %s: %w", r.ModelName, err)
		}
	}
	return nil
}

// pullLlama downloads the GGUF checkpoints of llamacpp models; a server
// THON runs then starts serving them.
func (s *Service) pullLlama(ctx context.Context, cfg config.LLM, actor, model string, progress func(string, PullProgress)) error {
	if model != "" {
		if _, _, ok := configured(cfg, model); !ok {
			return fmt.Errorf("%s is not a model in thon.yaml: name it in llm (chat_model, chat_models, small_model, embedding_model) with a checkpoint", model)
		}
	}
	if s.opts.ModelsDir == "" {
		return errors.New("pull: no models directory (this is a bug in THON)")
	}
	endpoint := s.opts.HFEndpoint
	if endpoint == "" {
		endpoint = HFEndpoint()
	}
	pulled := 0
	for _, rm := range Configured(cfg) {
		id := ModelID(cfg, rm.Model)
		if model != "" && model != id {
			continue
		}
		switch {
		case rm.Model.File != "":
			if progress != nil {
				progress(id, PullProgress{File: rm.Model.File, Percent: 100, Done: true})
			}
			continue // a file of the organizer's
		case rm.Model.Checkpoint == "":
			continue // THON's test model
		}
		s.opts.Event(ctx, actor, "llm.pull", id, rm.Model.Checkpoint)
		if _, err := Download(ctx, nil, endpoint, os.Getenv("HF_TOKEN"), s.opts.ModelsDir, rm.Model.Checkpoint, func(p PullProgress) {
			if progress != nil {
				progress(id, p)
			}
		}); err != nil {
			return fmt.Errorf("pull %s: %w", id, err)
		}
		pulled++
	}
	if pulled > 0 {
		s.Configure(cfg) // the managed server now has the files
	}
	return nil
}

// Applied is what applying the plan did to one model.
type Applied struct {
	Model  string `json:"model"`
	Action string `json:"action"` // loaded | unchanged | skipped
	Reason string `json:"reason,omitempty"`
}

// Load loads model: a configured one with the plan's options, another as
// the server likes. "" loads every configured model.
func (s *Service) Load(ctx context.Context, actor, model string) ([]Applied, error) {
	cfg, c, err := s.enabled()
	if err != nil {
		return nil, err
	}
	if cfg.Backend == config.BackendLlamacpp {
		s.opts.Event(ctx, actor, "llm.load", model, "")
		if m := s.managed(cfg); m != nil {
			return m.Load(ctx, model)
		}
		return loadRouter(ctx, c, model)
	}
	if _, _, ok := configured(cfg, model); model != "" && !ok {
		s.opts.Event(ctx, actor, "llm.load", model, "")
		return []Applied{{Model: model, Action: "loaded"}}, c.Load(ctx, LoadRequest{ModelName: model})
	}
	return s.apply(ctx, actor, model, false)
}

// loadRouter loads models of a router-mode llama-server of the organizer's.
func loadRouter(ctx context.Context, c *Client, model string) ([]Applied, error) {
	srv, err := c.Llama(ctx)
	if err != nil {
		return nil, err
	}
	if !srv.Router {
		return nil, fmt.Errorf("load: %w (this llama-server serves one model; start it in router mode, --models-preset or --models-dir, to load and unload models)", ErrUnsupported)
	}
	var out []Applied
	var errs []error
	for _, md := range srv.Models {
		if model != "" && md.ID != model {
			continue
		}
		if md.State == "loaded" {
			out = append(out, Applied{Model: md.ID, Action: "unchanged"})
			continue
		}
		err := c.LlamaLoad(ctx, md.ID)
		a := Applied{Model: md.ID, Action: "loaded"}
		if err != nil {
			a.Action, a.Reason = "failed", err.Error()
			errs = append(errs, err)
		}
		out = append(out, a)
	}
	if model != "" && len(out) == 0 {
		return nil, fmt.Errorf("the LLM server %s has no model %q", c.URL(), model)
	}
	return out, errors.Join(errs...)
}

// Unload unloads model ("" every model).
func (s *Service) Unload(ctx context.Context, actor, model string) error {
	cfg, c, err := s.enabled()
	if err != nil {
		return err
	}
	s.opts.Event(ctx, actor, "llm.unload", model, "")
	if cfg.Backend == config.BackendLlamacpp {
		if m := s.managed(cfg); m != nil {
			return m.Unload(ctx, model)
		}
		srv, err := c.Llama(ctx)
		if err != nil {
			return err
		}
		if !srv.Router {
			return fmt.Errorf("unload: %w (this llama-server serves one model)", ErrUnsupported)
		}
		var errs []error
		for _, md := range srv.Models {
			if (model == "" || md.ID == model) && md.State == "loaded" {
				errs = append(errs, c.LlamaUnload(ctx, md.ID))
			}
		}
		return errors.Join(errs...)
	}
	return c.Unload(ctx, model)
}

// Plan is the scaling plan for the participants there are now.
func (s *Service) Plan(ctx context.Context) (Plan, error) {
	cfg, _ := s.current()
	n, err := s.participants(ctx)
	return PlanFor(cfg, n), err
}

// Apply loads every configured model that is loaded with other options
// than the plan's. Models not loaded are left alone (a load may download
// gigabytes: that is the organizer's call, with thon llm load).
func (s *Service) Apply(ctx context.Context, actor string) ([]Applied, error) {
	return s.apply(ctx, actor, "", true)
}

func (s *Service) apply(ctx context.Context, actor, only string, loadedOnly bool) ([]Applied, error) {
	cfg, c, err := s.enabled()
	if err != nil {
		return nil, err
	}
	plan, err := s.Plan(ctx)
	if err != nil {
		return nil, err
	}
	if m := s.managed(cfg); m != nil {
		res, err := m.Apply(ctx, cfg, plan)
		for _, a := range res {
			if a.Action == "loaded" {
				s.opts.Event(ctx, actor, "llm.scale", a.Model, a.Reason)
			}
		}
		return res, err
	}
	if cfg.Backend != config.BackendLemonade {
		return nil, fmt.Errorf("scaling the server: %w (THON sizes Lemonade and the llama-server it runs itself; size your own server by hand)", ErrUnsupported)
	}
	h, err := c.Health(ctx)
	if err != nil {
		return nil, err
	}
	var out []Applied
	var errs []error
	for _, mp := range plan.Models {
		if only != "" {
			if _, m, _ := configured(cfg, only); ModelID(cfg, m) != mp.Model {
				continue
			}
		}
		a := Applied{Model: mp.Model}
		var loaded *LoadedModel
		for i := range h.Loaded {
			if h.Loaded[i].Name == mp.Model {
				loaded = &h.Loaded[i]
			}
		}
		switch {
		case loaded != nil && loaded.CtxSize == mp.CtxSize && strings.TrimSpace(loaded.LlamacppArgs) == mp.LlamacppArgs:
			a.Action = "unchanged"
		case loaded == nil && loadedOnly:
			a.Action, a.Reason = "skipped", "not loaded"
		default:
			detail := fmt.Sprintf("ctx_size %d, %s, for %d participants", mp.CtxSize, mp.LlamacppArgs, plan.Participants)
			if err := c.Load(ctx, LoadRequest{ModelName: mp.Model, CtxSize: mp.CtxSize, LlamacppArgs: mp.LlamacppArgs}); err != nil {
				errs = append(errs, fmt.Errorf("load %s: %w", mp.Model, err))
				a.Action, a.Reason = "failed", err.Error()
			} else {
				a.Action, a.Reason = "loaded", detail
				s.opts.Event(ctx, actor, "llm.load", mp.Model, detail)
				s.opts.Logger.Info("LLM model loaded for the event", "model", mp.Model, "ctx_size", mp.CtxSize, "args", mp.LlamacppArgs, "participants", plan.Participants, "by", actor)
			}
		}
		out = append(out, a)
	}
	s.opts.Slots(plan.Slots())
	return out, errors.Join(errs...)
}

// ParticipantsChanged asks for the plan to be applied once changes settle.
func (s *Service) ParticipantsChanged() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run applies the plan, debounced, after participant changes, until ctx ends.
func (s *Service) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		// Wait until changes stop for Quiet, and no burst is under way.
		t := time.NewTimer(s.opts.Quiet)
	settle:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-s.kick:
				t.Reset(s.opts.Quiet)
			case <-t.C:
				if !s.opts.Busy() {
					break settle
				}
				t.Reset(s.opts.Quiet)
			}
		}
		cfg, _ := s.current()
		if !cfg.Enabled {
			continue
		}
		if m := s.managed(cfg); m != nil {
			// The supervisor resizes the server once streams in flight end.
			plan, err := s.Plan(ctx)
			if err == nil {
				m.Configure(cfg, plan)
			}
			continue
		}
		if cfg.Backend != config.BackendLemonade {
			continue
		}
		res, err := s.Apply(ctx, "system")
		if err != nil {
			level := slog.LevelWarn
			if errors.Is(err, ErrUnreachable) {
				level = slog.LevelInfo // said by thon llm status; sandboxes do not care
			}
			s.opts.Logger.Log(ctx, level, "LLM scaling not applied; sandboxes are not affected (see thon llm status)", "err", err)
			continue
		}
		for _, a := range res {
			if a.Action == "loaded" {
				s.opts.Logger.Info("LLM rescaled for the participants", "model", a.Model, "detail", a.Reason)
			}
		}
	}
}

// llamaStatus fills st from a llama-server: its models and their state,
// the chat model's slots and speed, and whether each runs as planned.
func (s *Service) llamaStatus(ctx context.Context, c *Client, st *Status) {
	srv, err := c.Llama(ctx)
	if err != nil {
		st.Notes = append(st.Notes, "models: "+err.Error())
		return
	}
	st.Version = srv.Build
	byID := map[string]LlamaModel{}
	for _, md := range srv.Models {
		byID[md.ID] = md
		if md.State == "loaded" {
			lm := LoadedModel{Name: md.ID, Recipe: "llamacpp"}
			lm.CtxSize, _ = strconv.Atoi(argValue(md.Args, "--ctx-size", "-c"))
			for _, sl := range md.Slots {
				lm.Busy = lm.Busy || sl.Busy
			}
			st.Loaded = append(st.Loaded, lm)
		}
	}
	for i, cm := range st.Configured {
		md, ok := byID[cm.Model]
		mp := st.Plan.Models[i]
		st.Configured[i].Downloaded = ok
		st.Configured[i].Loaded = ok && md.State == "loaded"
		if ok && srv.Router {
			ctx, _ := strconv.Atoi(argValue(md.Args, "--ctx-size", "-c"))
			np, _ := strconv.Atoi(argValue(md.Args, "--parallel", "-np"))
			st.Configured[i].Current = ctx == mp.CtxSize && np == mp.Slots
		} else {
			st.Configured[i].Current = st.Configured[i].Loaded && (len(md.Slots) == 0 || len(md.Slots) == mp.Slots)
		}
		switch {
		case !ok:
			st.Notes = append(st.Notes, fmt.Sprintf("the server does not serve %s: assistants asking for it will fail", cm.Model))
		case md.State == "failed":
			st.Notes = append(st.Notes, fmt.Sprintf("%s failed to load (%s): see the server's log", cm.Model, md.Failed))
		case md.State != "loaded":
			st.Notes = append(st.Notes, fmt.Sprintf("%s is %s: thon llm load %s", cm.Model, md.State, cm.Model))
		case !st.Configured[i].Current && s.managed(s.cfgNow()) == nil:
			st.Notes = append(st.Notes, fmt.Sprintf("%s runs with %d slots; the plan wants %d: size your server (llama-server -np %d -c %d)", cm.Model, len(md.Slots), mp.Slots, mp.Slots, mp.CtxSize))
		case !st.Configured[i].Current:
			st.Notes = append(st.Notes, fmt.Sprintf("%s is being resized for %d participants", cm.Model, st.Plan.Participants))
		}
		if i == 0 && ok {
			sum := &SlotSummary{Total: len(md.Slots)}
			for _, sl := range md.Slots {
				if sl.Busy {
					sum.Busy++
				}
			}
			st.Slots = sum
			if md.Metrics != nil {
				st.Stats = &Stats{TokensPerSecond: md.Metrics.PredictedPerSecond, InputTokens: md.Metrics.PromptTokens, OutputTokens: md.Metrics.PredictedTokens}
			}
		}
	}
}

func (s *Service) cfgNow() config.LLM {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// argValue finds the value of a flag (any of names) in args.
func argValue(args []string, names ...string) string {
	for i, a := range args {
		for _, n := range names {
			if a == n && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, n+"="); ok {
				return v
			}
		}
	}
	return ""
}
