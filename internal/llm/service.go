package llm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// Event records an action in the audit log.
	Event func(ctx context.Context, action, target, detail string)
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
		o.Event = func(context.Context, string, string, string) {}
	}
	s := &Service{opts: o, kick: make(chan struct{}, 1)}
	s.Configure(cfg)
	return s
}

// Configure takes new llm settings (from `thon run`).
func (s *Service) Configure(cfg config.LLM) {
	key := cfg.AdminAPIKey // accepted on every endpoint; falls back to the regular key
	if key == "" {
		key = cfg.APIKey
	}
	url := cfg.ServerURL()
	if cfg.Backend != config.BackendLemonade {
		url = cfg.OpenAIBase()
	}
	c := NewClient(cfg.Backend, url, key, nil)
	s.mu.Lock()
	s.cfg, s.client = cfg, c
	s.mu.Unlock()
}

func (s *Service) current() (config.LLM, *Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg, s.client
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
	if err := c.Live(ctx); err != nil {
		st.Error = err.Error()
		return st
	}
	st.Reachable = true
	models, err := c.Models(ctx, false)
	if err != nil {
		st.Notes = append(st.Notes, "models: "+err.Error())
	}
	have := map[string]bool{}
	for _, m := range models {
		have[m.ID] = true
	}
	if cfg.Backend != config.BackendLemonade {
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
	for _, x := range []struct {
		role string
		m    config.LLMModel
	}{{"chat", cfg.ChatModel}, {"embedding", cfg.EmbeddingModel}} {
		if x.m.Name != "" && (model == x.m.Name || model == ModelID(cfg, x.m)) {
			return x.role, x.m, true
		}
	}
	return "", config.LLMModel{}, false
}

// Pull downloads model, or every configured model when model is "". A
// configured model with a checkpoint is registered from it.
func (s *Service) Pull(ctx context.Context, actor, model string, progress func(model string, p PullProgress)) error {
	cfg, c, err := s.enabled()
	if err != nil {
		return err
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
		add("chat", cfg.ChatModel)
		if cfg.EmbeddingModel.Name != "" {
			add("embedding", cfg.EmbeddingModel)
		}
	case ok:
		add(role, m)
	default:
		reqs = append(reqs, PullRequest{ModelName: model})
	}
	for _, r := range reqs {
		s.opts.Event(ctx, "llm.pull", r.ModelName, r.Checkpoint)
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
	if _, _, ok := configured(cfg, model); model != "" && !ok {
		s.opts.Event(ctx, "llm.load", model, "")
		return []Applied{{Model: model, Action: "loaded"}}, c.Load(ctx, LoadRequest{ModelName: model})
	}
	return s.apply(ctx, actor, model, false)
}

// Unload unloads model ("" every model).
func (s *Service) Unload(ctx context.Context, actor, model string) error {
	_, c, err := s.enabled()
	if err != nil {
		return err
	}
	s.opts.Event(ctx, "llm.unload", model, "")
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
	if cfg.Backend != config.BackendLemonade {
		return nil, fmt.Errorf("scaling the server: %w", ErrUnsupported)
	}
	plan, err := s.Plan(ctx)
	if err != nil {
		return nil, err
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
				s.opts.Event(ctx, "llm.load", mp.Model, detail)
				s.opts.Logger.Info("LLM model loaded for the event", "model", mp.Model, "ctx_size", mp.CtxSize, "args", mp.LlamacppArgs, "participants", plan.Participants, "by", actor)
			}
		}
		out = append(out, a)
	}
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
		if !cfg.Enabled || cfg.Backend != config.BackendLemonade {
			continue
		}
		res, err := s.Apply(ctx, "thon")
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
