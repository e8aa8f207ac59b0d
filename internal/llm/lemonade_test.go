package llm_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/gateway/upstreamtest"
	"github.com/thon-dev/thon/internal/llm"
	"github.com/thon-dev/thon/internal/llm/lemonadetest"
)

const (
	lemChat  = "Qwen3-0.6B-GGUF"                   // downloaded in the default catalog
	lemCoder = "Qwen3-Coder-30B-A3B-Instruct-GGUF" // not downloaded
	lemEmbed = "nomic-embed-text-v1-GGUF"
)

func lemCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func lemServer(t *testing.T, o lemonadetest.Options) (*lemonadetest.Server, *llm.Client) {
	t.Helper()
	s := lemonadetest.New(o)
	t.Cleanup(s.Close)
	return s, llm.NewClient("lemonade", s.URL, o.Key, nil)
}

func lemAPIError(t *testing.T, err error) *llm.APIError {
	t.Helper()
	var e *llm.APIError
	if !errors.As(err, &e) {
		t.Fatalf("want an *llm.APIError, got %T: %v", err, err)
	}
	return e
}

// lemRaw sends a request straight to the server and decodes its JSON answer.
func lemRaw(t *testing.T, method, url, key, body string) (int, any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s %s: not JSON (%v): %s", method, url, err, b)
	}
	return resp.StatusCode, v
}

func lemChatRequest(t *testing.T, url, model string) {
	t.Helper()
	code, v := lemRaw(t, "POST", url+"/api/v1/chat/completions", "", `{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`)
	if code != 200 {
		t.Fatalf("chat: %d %v", code, v)
	}
}

func TestLemonadeHealthModelsStats(t *testing.T) {
	s, c := lemServer(t, lemonadetest.Options{})
	ctx := lemCtx(t)
	if c.Backend() != "lemonade" || c.URL() != s.URL {
		t.Fatalf("backend %q url %q", c.Backend(), c.URL())
	}
	if got := llm.NewClient("", s.URL+"/api/v1/", "", nil).URL(); got != s.URL {
		t.Errorf("URL with /api/v1 suffix: %q, want the root %q", got, s.URL)
	}
	if err := c.Live(ctx); err != nil {
		t.Fatal(err)
	}

	h, err := c.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != "ok" || h.Version != lemonadetest.Version || h.ModelLoaded != "" || len(h.Loaded) != 0 {
		t.Fatalf("health before any load: %+v", h)
	}

	models, err := c.Models(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range models {
		ids = append(ids, m.ID)
		if !m.Downloaded {
			t.Errorf("%s listed without show_all but not downloaded", m.ID)
		}
	}
	if !slices.Equal(ids, []string{lemChat, lemEmbed}) {
		t.Fatalf("downloaded models %v", ids)
	}
	all, err := c.Models(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[1].ID != lemCoder || all[1].Downloaded {
		t.Fatalf("show_all: %+v", all)
	}
	if m := all[0]; m.Checkpoint != "unsloth/Qwen3-0.6B-GGUF:Q4_0" || m.Recipe != "llamacpp" || m.SizeGB != 0.5 ||
		m.ContextLength != lemonadetest.DefaultCtxSize || !slices.Equal(m.Labels, []string{"reasoning"}) {
		t.Errorf("model fields: %+v", m)
	}
	if !slices.Equal(all[2].Labels, []string{"embeddings"}) {
		t.Errorf("embedding labels %v", all[2].Labels)
	}

	if err := c.Load(ctx, llm.LoadRequest{ModelName: lemChat, CtxSize: 8192, LlamacppArgs: "-np 4 --no-mmap"}); err != nil {
		t.Fatal(err)
	}
	h, err = c.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := llm.LoadedModel{Name: lemChat, Checkpoint: "unsloth/Qwen3-0.6B-GGUF:Q4_0", Type: "llm", Recipe: "llamacpp",
		Device: "gpu", CtxSize: 8192, LlamacppArgs: "-np 4 --no-mmap"}
	if h.ModelLoaded != lemChat || len(h.Loaded) != 1 || h.Loaded[0] != want {
		t.Fatalf("health after load: %+v", h)
	}

	st, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.RequestsTotal != 0 || st.InputTokens != 0 || st.TokensPerSecond <= 0 {
		t.Fatalf("stats before any request: %+v", st)
	}
	lemChatRequest(t, s.URL, lemChat)
	st2, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st2.RequestsTotal != 1 || st2.InputTokens != 10 || st2.OutputTokens != 20 || st2 == st {
		t.Fatalf("stats after a chat request: %+v (before %+v)", st2, st)
	}

	info, err := c.SystemInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := info["OS Version"].(string); !ok {
		t.Errorf("system-info without \"OS Version\": %v", info)
	}
	if _, ok := info["devices"].(map[string]any); !ok {
		t.Errorf("system-info without devices: %v", info)
	}
}

func TestLemonadeSlots(t *testing.T) {
	s, c := lemServer(t, lemonadetest.Options{})
	ctx := lemCtx(t)

	_, err := c.Slots(ctx)
	e := lemAPIError(t, err)
	if e.Status != 400 || !strings.Contains(e.Message, "No model loaded") {
		t.Fatalf("slots with nothing loaded: %+v", e)
	}

	if err := c.Load(ctx, llm.LoadRequest{ModelName: lemChat, CtxSize: 8192, LlamacppArgs: "--parallel 4"}); err != nil {
		t.Fatal(err)
	}
	s.SetBusy(lemChat, 3)
	slots, err := c.Slots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []llm.Slot{{0, true, 2048}, {1, true, 2048}, {2, true, 2048}, {3, false, 2048}}
	if !slices.Equal(slots, want) {
		t.Fatalf("slots %+v, want %+v", slots, want)
	}
	h, err := c.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Loaded[0].Busy {
		t.Errorf("health: busy model not busy: %+v", h.Loaded[0])
	}

	// The default is one slot with the whole context.
	if err := c.Load(ctx, llm.LoadRequest{ModelName: lemChat}); err != nil {
		t.Fatal(err)
	}
	s.SetBusy(lemChat, 0)
	slots, err = c.Slots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(slots, []llm.Slot{{0, false, lemonadetest.DefaultCtxSize}}) {
		t.Fatalf("default slots %+v", slots)
	}
}

func TestLemonadeLoadIsDeclarative(t *testing.T) {
	s, c := lemServer(t, lemonadetest.Options{})
	ctx := lemCtx(t)

	req := llm.LoadRequest{ModelName: lemChat, CtxSize: 8192, LlamacppArgs: "-np 2"}
	if err := c.Load(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := c.Load(ctx, req); err != nil {
		t.Fatal(err)
	}
	if n := s.Loads(); n != 1 {
		t.Fatalf("an identical second load counted: %d loads", n)
	}
	req.CtxSize = 16384
	if err := c.Load(ctx, req); err != nil {
		t.Fatal(err)
	}
	if n := s.Loads(); n != 2 {
		t.Fatalf("a changed ctx_size did not reload: %d loads", n)
	}
	if got := s.Loaded()[lemChat]; got != (lemonadetest.LoadOptions{CtxSize: 16384, LlamacppArgs: "-np 2"}) {
		t.Fatalf("loaded with %+v", got)
	}
	var body map[string]any
	reqs := s.Requests()
	last := reqs[len(reqs)-1]
	if err := json.Unmarshal(last.Body, &body); err != nil || last.Path != "/api/v1/load" ||
		body["model_name"] != lemChat || body["ctx_size"] != 16384.0 || body["llamacpp_args"] != "-np 2" {
		t.Fatalf("load request %s %s", last.Path, last.Body)
	}

	// One model per type stays loaded: an embedding model joins the llm,
	// a second llm replaces it (and gets downloaded first).
	if err := c.Load(ctx, llm.LoadRequest{ModelName: lemEmbed}); err != nil {
		t.Fatal(err)
	}
	if err := c.Load(ctx, llm.LoadRequest{ModelName: lemCoder}); err != nil {
		t.Fatal(err)
	}
	loaded := s.Loaded()
	if _, ok := loaded[lemChat]; ok || len(loaded) != 2 {
		t.Fatalf("loaded %v", loaded)
	}
	models, err := c.Models(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(models) != 3 {
		t.Errorf("a load did not download %s: %+v", lemCoder, models)
	}

	if err := c.Unload(ctx, lemEmbed); err != nil {
		t.Fatal(err)
	}
	err = c.Unload(ctx, lemEmbed)
	if e := lemAPIError(t, err); e.Status != 404 || !strings.Contains(e.Message, "not loaded") || !strings.Contains(err.Error(), lemEmbed) {
		t.Fatalf("unload of a model not loaded: %v", err)
	}
	if err := c.Unload(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if len(s.Loaded()) != 0 {
		t.Fatalf("unload all left %v", s.Loaded())
	}
	reqs = s.Requests()
	if last := reqs[len(reqs)-1]; last.Path != "/api/v1/unload" || len(last.Body) != 0 {
		t.Fatalf("unload all sent %s %q", last.Path, last.Body)
	}
}

func TestLemonadePullProgress(t *testing.T) {
	s, c := lemServer(t, lemonadetest.Options{PullChunks: 4})
	ctx := lemCtx(t)

	var got []llm.PullProgress
	if err := c.Pull(ctx, llm.PullRequest{ModelName: lemCoder}, func(p llm.PullProgress) { got = append(got, p) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("%d progress reports, want 4 progress events and the completion: %+v", len(got), got)
	}
	for i, p := range got {
		if i > 0 && p.Percent <= got[i-1].Percent {
			t.Errorf("progress out of order at %d: %+v", i, got)
		}
		if (i == len(got)-1) != p.Done {
			t.Errorf("report %d Done=%v", i, p.Done)
		}
		if p.File == "" || p.TotalFiles != 1 || p.BytesTotal == 0 || p.BytesDone > p.BytesTotal {
			t.Errorf("report %d: %+v", i, p)
		}
	}
	if last := got[len(got)-1]; last.Percent != 100 || last.BytesDone != last.BytesTotal {
		t.Errorf("last report %+v", last)
	}
	models, err := c.Models(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(models, func(m llm.Model) bool { return m.ID == lemCoder }) {
		t.Fatalf("pulled model not downloaded: %+v", models)
	}

	// Registering a user model: the recipe defaults to llamacpp.
	got = nil
	err = c.Pull(ctx, llm.PullRequest{ModelName: "user.bge", Checkpoint: "BAAI/bge-small-en-v1.5-GGUF:Q8_0", Embedding: true},
		func(p llm.PullProgress) { got = append(got, p) })
	if err != nil {
		t.Fatal(err)
	}
	reqs := s.Requests()
	var body map[string]any
	if err := json.Unmarshal(reqs[len(reqs)-1].Body, &body); err != nil {
		t.Fatal(err)
	}
	if body["model_name"] != "user.bge" || body["recipe"] != "llamacpp" || body["stream"] != true || body["embedding"] != true ||
		body["checkpoint"] != "BAAI/bge-small-en-v1.5-GGUF:Q8_0" {
		t.Fatalf("pull body %v", body)
	}
	all, err := c.Models(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(all, func(m llm.Model) bool { return m.ID == "user.bge" })
	if i < 0 || !slices.Equal(all[i].Labels, []string{"embeddings"}) || !got[len(got)-1].Done {
		t.Fatalf("registered model %+v; progress %+v", all, got)
	}

	// Pulling what is already there completes at once.
	got = nil
	if err := c.Pull(ctx, llm.PullRequest{ModelName: lemChat}, func(p llm.PullProgress) { got = append(got, p) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].Done {
		t.Fatalf("pull of a downloaded model: %+v", got)
	}
}

func TestLemonadeErrorShapes(t *testing.T) {
	s, c := lemServer(t, lemonadetest.Options{})
	ctx := lemCtx(t)
	cases := []struct {
		name, body string
		status     int
		want       llm.APIError
		text       string
	}{
		{"openai", `{"error":{"message":"Model 'x' was not found.","type":"model_not_found","param":"model","code":"model_not_found"}}`, 404,
			llm.APIError{Status: 404, Message: "Model 'x' was not found.", Type: "model_not_found", Code: "model_not_found"},
			"LLM server: Model 'x' was not found. (404 model_not_found)"},
		{"lemon", `{"error":{"message":"No model loaded: y","type":"model_not_loaded"}}`, 404,
			llm.APIError{Status: 404, Message: "No model loaded: y", Type: "model_not_loaded"},
			"LLM server: No model loaded: y (404 model_not_loaded)"},
		{"plain", `{"error":"Stats unavailable"}`, 500,
			llm.APIError{Status: 500, Message: "Stats unavailable"}, "LLM server: Stats unavailable (500)"},
		{"plain with code", `{"error":"offline","code":"lemond_offline"}`, 400,
			llm.APIError{Status: 400, Message: "offline", Code: "lemond_offline"}, "LLM server: offline (400 lemond_offline)"},
		{"legacy", `{"status":"error","message":"Model not found: z"}`, 500,
			llm.APIError{Status: 500, Message: "Model not found: z"}, "LLM server: Model not found: z (500)"},
		{"numeric code", `{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}`, 503,
			llm.APIError{Status: 503, Message: "Loading model", Type: "unavailable_error", Code: "503"}, "LLM server: Loading model (503 503)"},
		{"not json", "<html>Bad Gateway</html>", 502,
			llm.APIError{Status: 502, Message: "<html>Bad Gateway</html>"}, "LLM server: <html>Bad Gateway</html> (502)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.Fail("/api/v1/health", tc.status, tc.body)
			_, err := c.Health(ctx)
			if e := lemAPIError(t, err); *e != tc.want {
				t.Fatalf("got %+v, want %+v", *e, tc.want)
			}
			if err.Error() != tc.text {
				t.Fatalf("text %q, want %q", err.Error(), tc.text)
			}
		})
	}

	// An old server's 200 with {"status":"error"} is an error too.
	s.Fail("/api/v1/load", 200, `{"status":"error","message":"Model not found: q"}`)
	err := c.Load(ctx, llm.LoadRequest{ModelName: "q"})
	if e := lemAPIError(t, err); e.Message != "Model not found: q" {
		t.Fatalf("legacy load error %+v", e)
	}
	// The next request answers normally again.
	if _, err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestLemonadeModelErrors(t *testing.T) {
	_, c := lemServer(t, lemonadetest.Options{})
	ctx := lemCtx(t)

	err := c.Load(ctx, llm.LoadRequest{ModelName: "No-Such-Model"})
	e := lemAPIError(t, err)
	if e.Status != 404 || e.Code != "model_not_found" || !strings.Contains(e.Message, "'No-Such-Model' was not found") {
		t.Fatalf("load unknown: %+v", e)
	}
	if !strings.Contains(err.Error(), "(404 model_not_found)") {
		t.Errorf("error text %q", err)
	}

	// lemond reports an unregistered name inside the SSE stream.
	err = c.Pull(ctx, llm.PullRequest{ModelName: "No-Such-Model"}, nil)
	e = lemAPIError(t, err)
	if e.Status != 0 || e.Code != "unknown_model" || !strings.Contains(e.Message, "`user` namespace") {
		t.Fatalf("pull unknown: %+v", e)
	}
	err = c.Pull(ctx, llm.PullRequest{ModelName: "user.Nothing"}, nil)
	if e := lemAPIError(t, err); !strings.Contains(e.Message, "provide the `recipe`") {
		t.Fatalf("pull unregistered user model: %+v", e)
	}
	err = c.Pull(ctx, llm.PullRequest{ModelName: "NotUser", Checkpoint: "a/b-GGUF:Q4_0"}, nil)
	if e := lemAPIError(t, err); e.Status != 400 || !strings.Contains(e.Message, "user.*") {
		t.Fatalf("pull registering without user.: %+v", e)
	}

	err = c.Load(ctx, llm.LoadRequest{ModelName: lemChat, LlamacppArgs: "-np 2 --ctx-size 9000"})
	e = lemAPIError(t, err)
	if e.Status != 500 || e.Code != "model_load_error" || !strings.Contains(e.Message, "Invalid custom llama-server arguments") ||
		!strings.Contains(e.Message, "'--ctx-size'") {
		t.Fatalf("reserved argument: %+v", e)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error text spans lines: %q", err)
	}
}

func TestLemonadeUnauthorized(t *testing.T) {
	const key, admin, wrong = "regular-key-5f2a", "admin-key-9c1d", "wrong-key-77e0"
	s := lemonadetest.New(lemonadetest.Options{Key: key, AdminKey: admin})
	t.Cleanup(s.Close)
	ctx := lemCtx(t)

	for _, k := range []string{wrong, ""} {
		c := llm.NewClient("lemonade", s.URL, k, nil)
		if err := c.Live(ctx); err != nil {
			t.Fatalf("/live is never authenticated: %v", err)
		}
		_, err := c.Health(ctx)
		if !errors.Is(err, llm.ErrUnauthorized) {
			t.Fatalf("key %q: want ErrUnauthorized, got %v", k, err)
		}
		if e := lemAPIError(t, err); e.Status != 401 || e.Message != "Invalid or missing API key" {
			t.Errorf("api error %+v", e)
		}
		if k != "" && strings.Contains(err.Error(), k) {
			t.Fatalf("the key shows in the error: %v", err)
		}
		if !strings.Contains(err.Error(), "llm.api_key") || !strings.Contains(err.Error(), s.URL) {
			t.Errorf("error says nothing useful: %v", err)
		}
		if err := c.Load(ctx, llm.LoadRequest{ModelName: lemChat}); !errors.Is(err, llm.ErrUnauthorized) {
			t.Errorf("load: %v", err)
		}
	}
	for _, k := range []string{key, admin} {
		if _, err := llm.NewClient("lemonade", s.URL, k, nil).Health(ctx); err != nil {
			t.Errorf("key %q refused: %v", k, err)
		}
	}
	for _, r := range s.Requests() {
		if r.Path != "/live" && r.Authorization != "" && !strings.HasPrefix(r.Authorization, "Bearer ") {
			t.Errorf("authorization sent as %q", r.Authorization)
		}
	}

	// A server that echoes the key back does not get it into the error.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		json.NewEncoder(w).Encode(map[string]string{"error": "bad key " + r.Header.Get("Authorization")})
	}))
	t.Cleanup(echo.Close)
	_, err := llm.NewClient("lemonade", echo.URL, wrong, nil).Stats(ctx)
	if !errors.Is(err, llm.ErrUnauthorized) || strings.Contains(err.Error(), wrong) {
		t.Fatalf("echoed key: %v", err)
	}
	if e := lemAPIError(t, err); strings.Contains(e.Message, wrong) || e.Error() == "" || strings.Contains(e.Error(), wrong) {
		t.Fatalf("echoed key in the APIError: %+v", e)
	}
}

func TestLemonadeUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	ctx := lemCtx(t)

	c := llm.NewClient("lemonade", url, "secret-key-3e", nil)
	_, err = c.Health(ctx)
	if !errors.Is(err, llm.ErrUnreachable) {
		t.Fatalf("want ErrUnreachable, got %v", err)
	}
	for _, want := range []string{url, "systemctl status lemond", "llm.url"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "secret-key-3e") {
		t.Fatalf("key in error: %v", err)
	}
	if err := c.Pull(ctx, llm.PullRequest{ModelName: lemChat}, nil); !errors.Is(err, llm.ErrUnreachable) {
		t.Errorf("pull: %v", err)
	}
	if err := llm.NewClient("openai", url+"/v1", "", nil).Live(ctx); !errors.Is(err, llm.ErrUnreachable) ||
		!strings.Contains(err.Error(), url+"/v1") {
		t.Errorf("openai live: %v", err)
	}
}

func TestLemonadeSlowServer(t *testing.T) {
	_, c := lemServer(t, lemonadetest.Options{Delay: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Health(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a deadline error, got %v", err)
	}
	if errors.Is(err, llm.ErrUnreachable) {
		t.Errorf("a slow server is not an unreachable one: %v", err)
	}
	if !strings.Contains(err.Error(), "did not answer GET /api/v1/health in time") {
		t.Errorf("unclear timeout error: %v", err)
	}
}

func TestLemonadeOpenAIBackend(t *testing.T) {
	up := upstreamtest.New(upstreamtest.Options{Models: []string{"qwen", "embed"}, Key: "up-key"})
	t.Cleanup(up.Close)
	ctx := lemCtx(t)
	c := llm.NewClient("openai", up.URL, "up-key", nil)
	if c.Backend() != "openai" || c.URL() != up.URL {
		t.Fatalf("backend %q url %q", c.Backend(), c.URL())
	}
	if err := c.Live(ctx); err != nil {
		t.Fatal(err)
	}
	models, err := c.Models(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(models) != 2 || models[0].ID != "qwen" || !models[0].Downloaded || models[0].Recipe != "" || models[1].ID != "embed" {
		t.Fatalf("models %+v", models)
	}
	h, err := c.Health(ctx)
	if err != nil || h.Status != "ok" {
		t.Fatalf("health %+v %v", h, err)
	}
	n := len(up.Requests())
	for name, call := range map[string]func() error{
		"load":   func() error { return c.Load(ctx, llm.LoadRequest{ModelName: "qwen"}) },
		"unload": func() error { return c.Unload(ctx, "qwen") },
		"pull":   func() error { return c.Pull(ctx, llm.PullRequest{ModelName: "qwen"}, nil) },
		"slots":  func() error { _, err := c.Slots(ctx); return err },
		"stats":  func() error { _, err := c.Stats(ctx); return err },
		"info":   func() error { _, err := c.SystemInfo(ctx); return err },
	} {
		err := call()
		if !errors.Is(err, llm.ErrUnsupported) || !strings.Contains(err.Error(), "only with backend: lemonade") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if len(up.Requests()) != n {
		t.Errorf("unsupported calls reached the server")
	}
	_, err = llm.NewClient("openai", up.URL, "nope", nil).Models(ctx, false)
	if !errors.Is(err, llm.ErrUnauthorized) || strings.Contains(err.Error(), "nope") {
		t.Errorf("openai wrong key: %v", err)
	}
}

// Servers differ: old and non-Lemonade answers parse too.
func TestLemonadeLenientParsing(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/v1/health":
			io.WriteString(w, `{"status":"ok","model_loaded":null,"all_models_loaded":[
				{"model_name":"m","last_use":1732123450.123,"recipe_options":{"ctx_size":8192.0},"is_busy":1,"extra":{"x":[1,2]}},
				{"model_name":"e","last_use":1732123450123,"pinned":false}]}`)
		case "/api/v1/stats":
			io.WriteString(w, `{"time_to_first_token":2.14,"tokens_per_second":33.33,"input_tokens":128,"output_tokens":5,"cache_tokens":null}`)
		case "/api/v1/slots":
			io.WriteString(w, `[{"id":0,"state":0,"n_ctx":4096},{"id":1,"state":1},{"id":2,"state":"processing","cache_tokens":null},{"id":3,"is_processing":true}]`)
		case "/api/v1/models":
			io.WriteString(w, `{"data":[{"id":"a","size":"1.5","context_length":8192.0}]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	c := llm.NewClient("lemonade", srv.URL, "", nil)
	ctx := lemCtx(t)

	h, err := c.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.ModelLoaded != "" || len(h.Loaded) != 2 || h.Loaded[0].CtxSize != 8192 || !h.Loaded[0].Busy || h.Loaded[1].Busy {
		t.Fatalf("health %+v", h)
	}
	st, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st != (llm.Stats{TimeToFirstToken: 2.14, TokensPerSecond: 33.33, InputTokens: 128, OutputTokens: 5}) {
		t.Fatalf("stats %+v", st)
	}
	slots, err := c.Slots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(slots, []llm.Slot{{0, false, 4096}, {1, true, 0}, {2, true, 0}, {3, true, 0}}) {
		t.Fatalf("slots %+v", slots)
	}
	models, err := c.Models(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if m := models[0]; m.ID != "a" || !m.Downloaded || m.SizeGB != 1.5 || m.ContextLength != 8192 || m.Labels != nil {
		t.Fatalf("models %+v", models)
	}
	// A path the server does not have.
	if _, err := c.SystemInfo(ctx); lemAPIError(t, err).Status != 404 {
		t.Fatalf("404: %v", err)
	}
}

// The test double answers in the shapes lemond documents and sends
// (docs/api/lemonade.md, server.cpp): pinned here so it stays honest.
func TestLemonadetestWire(t *testing.T) {
	const key = "wire-key"
	s := lemonadetest.New(lemonadetest.Options{Key: key, PullChunks: 2})
	t.Cleanup(s.Close)

	if code, v := lemRaw(t, "GET", s.URL+"/live", "", ""); code != 200 || !jsonEq(v, `{"status":"ok"}`) {
		t.Fatalf("/live: %d %v", code, v)
	}
	if code, v := lemRaw(t, "GET", s.URL+"/api/v1/health", "", ""); code != 401 || !jsonEq(v, `{"error":"Invalid or missing API key"}`) {
		t.Fatalf("no key: %d %v", code, v)
	}
	code, v := lemRaw(t, "GET", s.URL+"/api/v1/health", key, "")
	h, _ := v.(map[string]any)
	if code != 200 || h["status"] != "ok" || h["model_loaded"] != nil || !jsonEq(h["all_models_loaded"], `[]`) ||
		h["max_models"] == nil || h["version"] != lemonadetest.Version {
		t.Fatalf("health: %d %v", code, v)
	}
	if code, v := lemRaw(t, "GET", s.URL+"/api/v1/slots", key, ""); code != 400 || !jsonEq(v, `{"error":"No model loaded for slots query"}`) {
		t.Fatalf("slots, nothing loaded: %d %v", code, v)
	}
	if code, v := lemRaw(t, "GET", s.URL+"/api/v1/load", key, ""); code != 405 || !jsonEq(v, `{"error":"Method Not Allowed. Use POST for this endpoint"}`) {
		t.Fatalf("GET load: %d %v", code, v)
	}

	code, v = lemRaw(t, "POST", s.URL+"/api/v1/load", key, `{"model_name":"`+lemChat+`","ctx_size":8192,"llamacpp_args":"-np 2 -kvu"}`)
	if code != 200 || !jsonEq(v, `{"status":"success","model_name":"`+lemChat+`","checkpoint":"unsloth/Qwen3-0.6B-GGUF:Q4_0","recipe":"llamacpp"}`) {
		t.Fatalf("load: %d %v", code, v)
	}
	code, v = lemRaw(t, "POST", s.URL+"/api/v1/load", key, `{"model_name":"Nope"}`)
	if e, _ := v.(map[string]any)["error"].(map[string]any); code != 404 || e["code"] != "model_not_found" || e["type"] != "model_not_found" ||
		e["param"] != "model" || e["requested_model"] != "Nope" {
		t.Fatalf("load unknown: %d %v", code, v)
	}

	_, v = lemRaw(t, "GET", s.URL+"/api/v1/health", key, "")
	all := v.(map[string]any)["all_models_loaded"].([]any)
	m := all[0].(map[string]any)
	if m["model_name"] != lemChat || m["type"] != "llm" || m["is_busy"] != false || m["recipe"] != "llamacpp" ||
		!jsonEq(m["recipe_options"], `{"ctx_size":8192,"llamacpp_args":"-np 2 -kvu","llamacpp_backend":"vulkan"}`) {
		t.Fatalf("loaded model: %v", m)
	}
	if _, ok := m["last_use"].(float64); !ok {
		t.Errorf("last_use %v", m["last_use"])
	}
	if cmd, _ := m["launch_command"].([]any); !slices.Contains(cmd, any("--ctx-size")) || !slices.Contains(cmd, any("-kvu")) {
		t.Errorf("launch_command %v", cmd)
	}

	_, v = lemRaw(t, "GET", s.URL+"/api/v1/slots", key, "")
	slots := v.([]any)
	s0 := slots[0].(map[string]any)
	if len(slots) != 2 || s0["id"] != 0.0 || s0["n_ctx"] != 8192.0 || s0["is_processing"] != false || s0["state"] != "idle" {
		t.Fatalf("slots with -np 2 -kvu: %v", v)
	}

	_, v = lemRaw(t, "GET", s.URL+"/api/v1/models?show_all=true", key, "")
	data := v.(map[string]any)["data"].([]any)
	m1 := data[1].(map[string]any)
	if v.(map[string]any)["object"] != "list" || len(data) != 3 || m1["id"] != lemCoder || m1["downloaded"] != false ||
		m1["object"] != "model" || m1["recipe"] != "llamacpp" {
		t.Fatalf("models: %v", v)
	}

	code, v = lemRaw(t, "POST", s.URL+"/api/v1/unload", key, `{"model_name":"`+lemCoder+`"}`)
	if code != 404 || !jsonEq(v, `{"error":"Model not loaded: `+lemCoder+`"}`) {
		t.Fatalf("unload not loaded: %d %v", code, v)
	}
	code, v = lemRaw(t, "POST", s.URL+"/api/v1/pull", key, `{"model_name":"user.x","checkpoint":"a/b-GGUF:Q4_0","recipe":"llamacpp"}`)
	if code != 200 || !jsonEq(v, `{"status":"success","model_name":"user.x"}`) {
		t.Fatalf("pull without stream: %d %v", code, v)
	}
	code, v = lemRaw(t, "POST", s.URL+"/api/v1/pull", key, `{"model_name":"Nope"}`)
	if e, _ := v.(map[string]any); code != 400 || e["code"] != "unknown_model" {
		t.Fatalf("pull unknown without stream: %d %v", code, v)
	}

	// Pull streams SSE: event lines, data lines, blank lines.
	req, _ := http.NewRequest("POST", s.URL+"/api/v1/pull", strings.NewReader(`{"model_name":"`+lemCoder+`","stream":true}`))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 9 || lines[0] != "event: progress" || lines[2] != "" || lines[3] != "event: progress" ||
		lines[6] != "event: complete" || lines[8] != "" {
		t.Fatalf("SSE stream:\n%s", strings.Join(lines, "\n"))
	}
	var p map[string]any
	if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[1], "data: ")), &p); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"file", "file_index", "total_files", "bytes_downloaded", "bytes_total", "percent"} {
		if _, ok := p[k]; !ok {
			t.Errorf("progress event without %s: %s", k, lines[1])
		}
	}

	// A chat request loads a downloaded model by itself; the answer is OpenAI's.
	code, v = lemRaw(t, "POST", s.URL+"/api/v1/chat/completions", key, `{"model":"`+lemCoder+`","messages":[{"role":"user","content":"hi"}]}`)
	if code != 200 || v.(map[string]any)["object"] != "chat.completion" {
		t.Fatalf("chat: %d %v", code, v)
	}
	if _, ok := s.Loaded()[lemCoder]; !ok || s.Loads() != 2 {
		t.Fatalf("chat did not load %s (loaded %v, %d loads)", lemCoder, s.Loaded(), s.Loads())
	}
	code, v = lemRaw(t, "POST", s.URL+"/api/v1/embeddings", key, `{"model":"`+lemEmbed+`","input":"hi"}`)
	if code != 200 || v.(map[string]any)["object"] != "list" {
		t.Fatalf("embeddings: %d %v", code, v)
	}
	code, v = lemRaw(t, "POST", s.URL+"/api/v1/chat/completions", key, `{"model":"`+lemEmbed+`","messages":[{"role":"user","content":"hi"}]}`)
	if e, _ := v.(map[string]any)["error"].(map[string]any); code != 400 || e["type"] != "invalid_request_error" {
		t.Fatalf("chat with an embedding model: %d %v", code, v)
	}
	code, v = lemRaw(t, "POST", s.URL+"/api/v1/chat/completions", key, `{"model":"Nope","messages":[]}`)
	if e, _ := v.(map[string]any)["error"].(map[string]any); code != 404 || e["code"] != "model_not_found" {
		t.Fatalf("chat with an unknown model: %d %v", code, v)
	}

	req, _ = http.NewRequest("GET", s.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if !strings.HasPrefix(resp2.Header.Get("Content-Type"), "text/plain; version=0.0.4") ||
		!strings.Contains(string(b), "\nlemonade_server_up 1\n") || !strings.Contains(string(b), "\nlemonade_requests_total 2\n") {
		t.Fatalf("metrics:\n%s", b)
	}
}

// Lemonade's key rules (docs/guide/configuration § API Key and Security).
func TestLemonadetestKeys(t *testing.T) {
	for _, tc := range []struct {
		key, admin string
		regular    map[string]int // key sent -> status on /api/v1/health
		internal   map[string]int // … on /internal/config (404 once past auth)
	}{
		{"", "", map[string]int{"": 200}, map[string]int{"": 404}},
		{"secret", "", map[string]int{"": 401, "secret": 200}, map[string]int{"": 401, "secret": 404}},
		{"", "admin", map[string]int{"": 200}, map[string]int{"": 401, "admin": 404}},
		{"regular", "admin", map[string]int{"": 401, "regular": 200, "admin": 200, "x": 401}, map[string]int{"regular": 401, "admin": 404}},
	} {
		s := lemonadetest.New(lemonadetest.Options{Key: tc.key, AdminKey: tc.admin})
		for k, want := range tc.regular {
			if code, _ := lemRaw(t, "GET", s.URL+"/api/v1/health", k, ""); code != want {
				t.Errorf("key %q admin %q: regular endpoint with %q: %d, want %d", tc.key, tc.admin, k, code, want)
			}
		}
		for k, want := range tc.internal {
			if code, _ := lemRaw(t, "GET", s.URL+"/internal/config", k, ""); code != want {
				t.Errorf("key %q admin %q: /internal with %q: %d, want %d", tc.key, tc.admin, k, code, want)
			}
		}
		s.Close()
	}
}

func jsonEq(v any, want string) bool {
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		panic(err)
	}
	a, _ := json.Marshal(v)
	b, _ := json.Marshal(w)
	return string(a) == string(b)
}
