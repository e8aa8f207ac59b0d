package llm_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/gateway/upstreamtest"
	"github.com/thon-dev/thon/internal/llm"
	"github.com/thon-dev/thon/internal/llm/lemonadetest"
)

// eventCfg is an llm section for lemonadetest: a catalog chat model and
// an embeddings model, with the admin key set.
func eventCfg(url string) config.LLM {
	l := config.Default().LLM
	l.URL, l.APIKey, l.AdminAPIKey = url, "regular", "admin"
	l.ChatModel = config.LLMModel{Name: "Qwen3-Coder-30B-A3B-Instruct-GGUF", CtxPerUser: 8192, MaxCtx: 65536}
	l.EmbeddingModel = config.LLMModel{Name: "nomic-embed-text-v1-GGUF", CtxPerUser: 2048, MaxCtx: 65536}
	return l
}

var quiet = slog.New(slog.DiscardHandler)

type events struct {
	mu  sync.Mutex
	got []string
}

func (e *events) add(_ context.Context, _, action, target, detail string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, action+" "+target)
}

func (e *events) list() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.got, "; ")
}

// From a fresh server to a sized event: status explains each step, pull
// downloads, load sizes for the participants, scale reloads only what
// differs from the plan.
func TestServiceStatusPullLoadScale(t *testing.T) {
	srv := lemonadetest.New(lemonadetest.Options{Key: "regular", AdminKey: "admin"})
	defer srv.Close()
	var n atomic.Int64
	n.Store(4)
	ev := &events{}
	svc := llm.NewService(eventCfg(srv.URL), llm.ServiceOptions{
		Participants: func(context.Context) (int, error) { return int(n.Load()), nil },
		Event:        ev.add,
		Logger:       quiet,
	})
	ctx := context.Background()

	st := svc.Status(ctx)
	if !st.Reachable || st.Version != lemonadetest.Version || len(st.Configured) != 2 || st.Plan.Participants != 4 {
		t.Fatalf("status: %+v", st)
	}
	chat, embed := st.Configured[0], st.Configured[1]
	if chat.Downloaded || chat.Loaded || !embed.Downloaded || embed.Loaded {
		t.Fatalf("configured: %+v", st.Configured)
	}
	notes := strings.Join(st.Notes, "\n")
	if !strings.Contains(notes, "Qwen3-Coder-30B-A3B-Instruct-GGUF is not downloaded: thon llm pull") || !strings.Contains(notes, "nomic-embed-text-v1-GGUF is not loaded") {
		t.Fatalf("notes:\n%s", notes)
	}

	// Pull the configured models, with progress.
	var progress []string
	if err := svc.Pull(ctx, "admin", "", func(m string, p llm.PullProgress) {
		progress = append(progress, m)
	}); err != nil {
		t.Fatal(err)
	}
	if len(progress) < 2 || progress[0] != "Qwen3-Coder-30B-A3B-Instruct-GGUF" {
		t.Fatalf("progress: %v", progress)
	}
	// Load sizes each model for 4 participants.
	res, err := svc.Load(ctx, "admin", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Action != "loaded" || res[1].Action != "loaded" {
		t.Fatalf("load: %+v", res)
	}
	loaded := srv.Loaded()
	if o := loaded["Qwen3-Coder-30B-A3B-Instruct-GGUF"]; o.CtxSize != 4*8192 || o.LlamacppArgs != "-np 4" {
		t.Fatalf("chat loaded with %+v", o)
	}
	if o := loaded["nomic-embed-text-v1-GGUF"]; o.CtxSize != 4*2048 || o.LlamacppArgs != "-np 4" {
		t.Fatalf("embeddings loaded with %+v", o)
	}
	st = svc.Status(ctx)
	for _, c := range st.Configured {
		if !c.Downloaded || !c.Loaded || !c.Current {
			t.Fatalf("after load: %+v (notes %v)", st.Configured, st.Notes)
		}
	}
	if st.Slots == nil || st.Slots.Total != 4 || st.Stats == nil {
		t.Fatalf("slots %+v stats %+v", st.Slots, st.Stats)
	}
	// Management went with the admin key.
	for _, r := range srv.Requests() {
		if r.Path != "/live" && r.Authorization != "Bearer admin" {
			t.Fatalf("%s %s sent %q", r.Method, r.Path, r.Authorization)
		}
	}

	// Nothing changed: apply reloads nothing.
	loads := srv.Loads()
	if res, err := svc.Apply(ctx, "admin"); err != nil || res[0].Action != "unchanged" || srv.Loads() != loads {
		t.Fatalf("apply without change: %+v %v", res, err)
	}
	// Two more participants: the plan grows, apply reloads both.
	n.Store(6)
	if res, err := svc.Apply(ctx, "admin"); err != nil || res[0].Action != "loaded" || srv.Loads() != loads+2 {
		t.Fatalf("apply after growth: %+v %v", res, err)
	}
	if o := srv.Loaded()["Qwen3-Coder-30B-A3B-Instruct-GGUF"]; o.CtxSize != 6*8192 || o.LlamacppArgs != "-np 6" {
		t.Fatalf("chat reloaded with %+v", o)
	}
	// A model that is not loaded is left alone by apply (no download behind the organizer's back).
	if err := svc.Unload(ctx, "admin", "nomic-embed-text-v1-GGUF"); err != nil {
		t.Fatal(err)
	}
	n.Store(7)
	res, err = svc.Apply(ctx, "admin")
	if err != nil || len(res) != 2 || res[1].Action != "skipped" {
		t.Fatalf("apply with the embeddings unloaded: %+v %v", res, err)
	}
	if _, ok := srv.Loaded()["nomic-embed-text-v1-GGUF"]; ok {
		t.Fatal("apply loaded a model that was not loaded")
	}
	if got := ev.list(); !strings.Contains(got, "llm.pull Qwen3-Coder-30B-A3B-Instruct-GGUF") || !strings.Contains(got, "llm.load Qwen3-Coder-30B-A3B-Instruct-GGUF") || !strings.Contains(got, "llm.unload nomic-embed-text-v1-GGUF") {
		t.Fatalf("audit: %s", got)
	}
}

// Participant changes are applied once they settle, and not during a burst.
func TestServiceRescalesAfterChangesSettle(t *testing.T) {
	srv := lemonadetest.New(lemonadetest.Options{})
	defer srv.Close()
	cfg := eventCfg(srv.URL)
	cfg.APIKey, cfg.AdminAPIKey = "", ""
	cfg.EmbeddingModel = config.LLMModel{}
	cfg.ChatModel.Name = "Qwen3-0.6B-GGUF"
	var n atomic.Int64
	var busy atomic.Bool
	n.Store(2)
	svc := llm.NewService(cfg, llm.ServiceOptions{
		Participants: func(context.Context) (int, error) { return int(n.Load()), nil },
		Busy:         busy.Load,
		Quiet:        20 * time.Millisecond,
		Logger:       quiet,
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go svc.Run(ctx)
	if _, err := svc.Load(ctx, "admin", ""); err != nil {
		t.Fatal(err)
	}
	loads := srv.Loads()

	// A burst of joins while a bulk start runs: nothing is reloaded yet.
	busy.Store(true)
	for i := 3; i <= 30; i++ {
		n.Store(int64(i))
		svc.ParticipantsChanged()
	}
	time.Sleep(200 * time.Millisecond)
	if srv.Loads() != loads {
		t.Fatal("the model was reloaded during the burst")
	}
	busy.Store(false)
	waitFor(t, func() bool {
		return srv.Loaded()["Qwen3-0.6B-GGUF"].CtxSize == 30*8192 || srv.Loaded()["Qwen3-0.6B-GGUF"].CtxSize == 65536
	})
	if got := srv.Loaded()["Qwen3-0.6B-GGUF"]; got.CtxSize != 65536 || got.LlamacppArgs != "-np 30" {
		t.Fatalf("after the burst: %+v", got)
	}
	if srv.Loads() != loads+1 {
		t.Fatalf("%d reloads for one burst, want 1", srv.Loads()-loads)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A server that is down, refuses the key or does not know the model gives
// clear answers, and status never fails.
func TestServiceBadServer(t *testing.T) {
	ctx := context.Background()
	down := llm.NewService(eventCfg("http://127.0.0.1:1"), llm.ServiceOptions{})
	st := down.Status(ctx)
	if st.Reachable || !strings.Contains(st.Error, "127.0.0.1:1") || len(st.Configured) != 2 {
		t.Fatalf("status of a server that is down: %+v", st)
	}
	if _, err := down.Load(ctx, "admin", ""); !errors.Is(err, llm.ErrUnreachable) {
		t.Fatalf("load on a server that is down: %v", err)
	}

	srv := lemonadetest.New(lemonadetest.Options{Key: "right"})
	defer srv.Close()
	wrongCfg := eventCfg(srv.URL)
	wrongCfg.AdminAPIKey = "wrong-key-5e3a"
	wrong := llm.NewService(wrongCfg, llm.ServiceOptions{})
	if _, err := wrong.Models(ctx, false); !errors.Is(err, llm.ErrUnauthorized) || strings.Contains(err.Error(), "wrong-key-5e3a") {
		t.Fatalf("wrong key: %v", err)
	}
	cfg := eventCfg(srv.URL)
	cfg.APIKey, cfg.AdminAPIKey = "right", ""
	ok := llm.NewService(cfg, llm.ServiceOptions{})
	var ae *llm.APIError
	if _, err := ok.Load(ctx, "admin", "no-such-model"); !errors.As(err, &ae) || ae.Status != 404 || !strings.Contains(err.Error(), "no-such-model") {
		t.Fatalf("unknown model: %v", err)
	}

	cfg.Enabled = false
	off := llm.NewService(cfg, llm.ServiceOptions{})
	if _, err := off.Load(ctx, "admin", ""); !errors.Is(err, llm.ErrDisabled) {
		t.Fatalf("disabled: %v", err)
	}
	if st := off.Status(ctx); st.Enabled || st.Error == "" {
		t.Fatalf("disabled status: %+v", st)
	}
}

// Any OpenAI-compatible server: status and models; managing is refused.
func TestServiceOpenAIBackend(t *testing.T) {
	up := upstreamtest.New(upstreamtest.Options{Models: []string{"gemma-4-31b-it"}})
	defer up.Close()
	l := config.Default().LLM
	l.Backend, l.URL, l.ChatModel.Checkpoint = config.BackendOpenAI, up.URL, ""
	svc := llm.NewService(l, llm.ServiceOptions{})
	ctx := context.Background()
	st := svc.Status(ctx)
	if !st.Reachable || len(st.Configured) != 1 || !st.Configured[0].Downloaded || st.Configured[0].Model != "gemma-4-31b-it" {
		t.Fatalf("status: %+v", st)
	}
	if _, err := svc.Apply(ctx, "admin"); !errors.Is(err, llm.ErrUnsupported) {
		t.Fatalf("apply on openai: %v", err)
	}
	l.ChatModel.Name = "typo-model"
	svc.Configure(l)
	if st := svc.Status(ctx); !strings.Contains(strings.Join(st.Notes, "\n"), "does not list typo-model") {
		t.Fatalf("unknown model not noted: %+v", st.Notes)
	}
}
