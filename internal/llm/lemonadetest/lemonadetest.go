// Package lemonadetest is a Lemonade Server for tests. No LLM can run on a
// test machine, so this server stands in for lemond and speaks its wire
// format (lemonade-sdk/lemonade src/cpp/server/server.cpp, router.cpp,
// docs/api/lemonade.md): the management API (/live, health, models, stats,
// system-info, slots, pull with SSE progress, declarative load, unload,
// /metrics), Lemonade's API-key rules and its three error shapes, and the
// OpenAI-compatible chat/completions/embeddings, answered by
// internal/gateway/upstreamtest for any model Lemonade would serve (a
// registered model is downloaded and loaded on first use, as lemond does).
//
//	lem := lemonadetest.New(lemonadetest.Options{Key: "k"})
//	defer lem.Close()
//	// lem.URL is the root (http://127.0.0.1:PORT); the OpenAI base is lem.URL+"/api/v1"
//
// Every regular endpoint answers under /api/v1/, /api/v0/, /v1/ and /v0/,
// like lemond. Like lemond's default max_loaded_models of 1, loading a
// model evicts any other loaded model of the same type (llm, embedding,
// reranking).
package lemonadetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/thon-dev/thon/internal/gateway/upstreamtest"
)

// Version is what /api/v1/health and /metrics report.
const Version = "11.7.0"

// DefaultCtxSize is the context a model gets when a load sets no ctx_size
// (lemond resolves its own default; 4096 is llama.cpp's usual).
const DefaultCtxSize = 4096

// Options shape the server.
type Options struct {
	// Key and AdminKey act as LEMONADE_API_KEY and LEMONADE_ADMIN_API_KEY:
	// with Key set, the regular endpoints (/api/*, /v0/*, /v1/*, /metrics)
	// need either key; AdminKey (Key when empty) gates /internal/*; /live
	// and OPTIONS are never authenticated.
	Key, AdminKey string
	// Catalog is the registry of known models; nil means DefaultCatalog().
	Catalog []Model
	// PullChunks is the number of SSE progress events per download (default 3).
	PullChunks int
	// Delay is added before every answer (a slow server).
	Delay time.Duration
	// Chat shapes the chat/completions/embeddings answers (token counts,
	// delays); its Key and Models are ignored.
	Chat upstreamtest.Options
}

// Model is a catalog entry. Recipe "" means llamacpp. A label "embeddings"
// (or "embedding") makes it an embedding model, "reranking" a reranker;
// anything else is an llm.
type Model struct {
	ID, Checkpoint, Recipe string
	Labels                 []string
	Downloaded             bool
}

// DefaultCatalog is a small registry: a downloaded chat model, a chat model
// not yet downloaded, and a downloaded embedding model.
func DefaultCatalog() []Model {
	return []Model{
		{ID: "Qwen3-0.6B-GGUF", Checkpoint: "unsloth/Qwen3-0.6B-GGUF:Q4_0", Recipe: "llamacpp", Labels: []string{"reasoning"}, Downloaded: true},
		{ID: "Qwen3-Coder-30B-A3B-Instruct-GGUF", Checkpoint: "unsloth/Qwen3-Coder-30B-A3B-Instruct-GGUF:Q4_K_M", Recipe: "llamacpp", Labels: []string{"coding", "tool-calling"}},
		{ID: "nomic-embed-text-v1-GGUF", Checkpoint: "nomic-ai/nomic-embed-text-v1-GGUF:Q4_K_S", Recipe: "llamacpp", Labels: []string{"embeddings"}, Downloaded: true},
	}
}

// LoadOptions are the options a model was loaded with (0 / "" when the
// load did not set them).
type LoadOptions struct {
	CtxSize      int
	LlamacppArgs string
}

// Request is what the server saw of one request.
type Request struct {
	Method, Path, Query string
	Authorization       string
	Body                []byte
}

// Server is a running test Lemonade.
type Server struct {
	// URL is the root, e.g. http://127.0.0.1:PORT (no /api/v1).
	URL string

	opts Options
	srv  *httptest.Server
	up   *upstreamtest.Server

	mu       sync.Mutex
	catalog  map[string]*Model
	order    []string
	loaded   map[string]*loadedModel
	loads    int
	requests []Request
	fails    map[string][]failure
	busy     map[string]int
	seq      int64
	nextPID  int
	stats    stats
}

type loadedModel struct {
	opts     LoadOptions
	typ      string
	used     int64 // recency, higher is more recent
	lastUse  int64 // ms since the epoch
	pid      int
	port     int
	inFlight int
}

type failure struct {
	status int
	body   string
}

type stats struct {
	ttft, tps                          float64
	input, output                      int64
	requests, inputTotal, outputTotal  int64
	upPromptBefore, upCompletionBefore int64
}

// New starts a server on a loopback port.
func New(o Options) *Server {
	if o.Catalog == nil {
		o.Catalog = DefaultCatalog()
	}
	if o.PullChunks <= 0 {
		o.PullChunks = 3
	}
	chat := o.Chat
	chat.Key, chat.Models = "", nil
	s := &Server{
		opts:    o,
		up:      upstreamtest.NewHandler(chat),
		catalog: map[string]*Model{},
		loaded:  map[string]*loadedModel{},
		fails:   map[string][]failure{},
		busy:    map[string]int{},
		nextPID: 41000,
		stats:   stats{ttft: 0.25, tps: 42.5},
	}
	for _, m := range o.Catalog {
		s.register(m)
	}
	s.srv = httptest.NewServer(s)
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() {
	s.up.Close()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// Upstream is the OpenAI-compatible server answering chat, completions and
// embeddings (hold or pause its requests, read its token counters).
func (s *Server) Upstream() *upstreamtest.Server { return s.up }

// Loaded says which models are loaded, with the options their load set.
func (s *Server) Loaded() map[string]LoadOptions {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]LoadOptions, len(s.loaded))
	for name, l := range s.loaded {
		out[name] = l.opts
	}
	return out
}

// Loads counts real loads and reloads (a load with the options a model is
// already loaded with is not one; an automatic load by a chat request is).
func (s *Server) Loads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loads
}

// Requests returns every request seen so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// SetBusy marks busySlots of model's slots as processing (shown by /slots,
// and by /health's is_busy when > 0), on top of requests in flight.
func (s *Server) SetBusy(model string, busySlots int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy[model] = busySlots
}

// Fail makes the next request to path (exactly, e.g. "/api/v1/load")
// answer status with body (as application/json). Calls queue up.
func (s *Server) Fail(path string, status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails[path] = append(s.fails[path], failure{status, body})
}

func (s *Server) register(m Model) {
	if m.Recipe == "" {
		m.Recipe = "llamacpp"
	}
	m.Labels = slices.Clone(m.Labels)
	if _, ok := s.catalog[m.ID]; !ok {
		s.order = append(s.order, m.ID)
	}
	s.catalog[m.ID] = &m
}

func modelType(m *Model) string {
	for _, l := range m.Labels {
		switch l {
		case "embeddings", "embedding":
			return "embedding"
		case "reranking":
			return "reranking"
		}
	}
	return "llm"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// plainError is {"error":"msg"}, lemond's most common error shape.
func plainError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"error": msg})
}

// lemonError is LemonException::to_json: {"error":{"message","type"}}.
func lemonError(w http.ResponseWriter, status int, typ, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"message": msg, "type": typ}})
}

// modelError is Server::create_model_error.
func (s *Server) modelError(w http.ResponseWriter, status int, model, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"message": msg, "type": code, "param": "model", "code": code, "requested_model": model}})
}

func (s *Server) notFound(w http.ResponseWriter, model string) {
	s.mu.Lock()
	names := slices.Sorted(slices.Values(s.order))
	s.mu.Unlock()
	msg := "Model '" + model + "' was not found. "
	if len(names) > 0 {
		msg += "Available models include: "
		for i, n := range names[:min(3, len(names))] {
			if i > 0 {
				msg += ", "
			}
			msg += "'" + n + "'"
		}
		if len(names) > 3 {
			msg += ", and " + strconv.Itoa(len(names)-3) + " more"
		}
		msg += ". "
	}
	msg += "Use 'lemonade list' or GET /api/v1/models?show_all=true to see all available models."
	s.modelError(w, http.StatusNotFound, model, "model_not_found", msg)
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	s.mu.Lock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Authorization: r.Header.Get("Authorization"), Body: body})
	s.mu.Unlock()

	if s.opts.Delay > 0 {
		select {
		case <-time.After(s.opts.Delay):
		case <-r.Context().Done():
			return
		}
	}
	s.mu.Lock()
	if q := s.fails[r.URL.Path]; len(q) > 0 {
		f := q[0]
		s.fails[r.URL.Path] = q[1:]
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.status)
		io.WriteString(w, f.body)
		return
	}
	s.mu.Unlock()

	path := r.URL.Path
	if path == "/live" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			plainError(w, http.StatusMethodNotAllowed, "Method Not Allowed. Use GET for this endpoint")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	}
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if !s.authorized(r) {
		msg := "Invalid or missing API key"
		if strings.HasPrefix(path, "/internal/") {
			msg = "Invalid or missing admin API key"
		}
		plainError(w, http.StatusUnauthorized, msg)
		return
	}
	if path == "/metrics" {
		s.metrics(w, r)
		return
	}
	endpoint := ""
	for _, p := range []string{"/api/v1/", "/api/v0/", "/v1/", "/v0/"} {
		if rest, ok := strings.CutPrefix(path, p); ok {
			endpoint = rest
			break
		}
	}
	get := func(h func()) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			plainError(w, http.StatusMethodNotAllowed, "Method Not Allowed. Use GET for this endpoint")
			return
		}
		h()
	}
	post := func(h func()) {
		if r.Method != http.MethodPost {
			plainError(w, http.StatusMethodNotAllowed, "Method Not Allowed. Use POST for this endpoint")
			return
		}
		h()
	}
	switch endpoint {
	case "health":
		get(func() { s.health(w) })
	case "models":
		get(func() { s.models(w, r.URL.Query().Get("show_all") == "true") })
	case "stats":
		get(func() { s.statsAnswer(w) })
	case "system-stats":
		get(func() {
			writeJSON(w, http.StatusOK, map[string]any{"cpu_percent": 12.5, "memory_gb": 8.4, "gpu_percent": 45.0, "vram_gb": 2.1, "npu_percent": nil})
		})
	case "system-info":
		get(func() { writeJSON(w, http.StatusOK, systemInfo()) })
	case "slots":
		get(func() { s.slots(w) })
	case "pull":
		post(func() { s.pull(w, body) })
	case "load":
		post(func() { s.load(w, body) })
	case "unload":
		post(func() { s.unload(w, body) })
	case "chat/completions", "completions", "embeddings":
		post(func() { s.infer(w, r, endpoint, body) })
	default:
		if id, ok := strings.CutPrefix(endpoint, "models/"); ok && endpoint != "" {
			get(func() { s.model(w, id) })
			return
		}
		plainError(w, http.StatusNotFound, "Not Found: "+r.Method+" "+path)
	}
}

func (s *Server) authorized(r *http.Request) bool {
	admin := s.opts.AdminKey
	if admin == "" {
		admin = s.opts.Key
	}
	got, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if strings.HasPrefix(r.URL.Path, "/internal/") {
		return admin == "" || (bearer && got == admin)
	}
	if s.opts.Key == "" {
		return true
	}
	return bearer && (got == s.opts.Key || got == admin)
}

// mostRecent is Router::get_most_recent_server: the loaded model used last,
// whatever its type.
func (s *Server) mostRecent() (string, *loadedModel) {
	var name string
	var best *loadedModel
	for n, l := range s.loaded {
		if best == nil || l.used > best.used {
			name, best = n, l
		}
	}
	return name, best
}

func (s *Server) touch(l *loadedModel) {
	s.seq++
	l.used = s.seq
	l.lastUse = time.Now().UnixMilli()
}

func (s *Server) health(w http.ResponseWriter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := []any{}
	names := make([]string, 0, len(s.loaded))
	for n := range s.loaded {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		l, m := s.loaded[n], s.catalog[n]
		ctx := l.opts.CtxSize
		if ctx == 0 {
			ctx = DefaultCtxSize
		}
		all = append(all, map[string]any{
			"model_name":      n,
			"checkpoint":      m.Checkpoint,
			"type":            l.typ,
			"residency_class": "standard",
			"device":          "gpu",
			"backend_url":     "http://127.0.0.1:" + strconv.Itoa(l.port) + "/v1",
			"pid":             l.pid,
			"launch_command":  launchCommand(m, l, ctx),
			"status":          "ready",
			"backend_alive":   true,
			"backend_health":  "healthy",
			"loaded":          true,
			"watchdog_reset":  false,
			"pinned":          false,
			"recipe":          m.Recipe,
			"recipe_options":  map[string]any{"ctx_size": ctx, "llamacpp_args": l.opts.LlamacppArgs, "llamacpp_backend": "vulkan"},
			"is_busy":         l.inFlight > 0 || s.busy[n] > 0,
			"is_streaming":    false,
			"last_use":        l.lastUse,
		})
	}
	var recent any
	if n, _ := s.mostRecent(); n != "" {
		recent = n
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"status":            "ok",
		"version":           Version,
		"model_loaded":      recent,
		"all_models_loaded": all,
		"pinned_models":     map[string]int{"transcription": 0, "embedding": 0, "image": 0, "llm": 0, "reranking": 0, "tts": 0},
		"max_models":        map[string]int{"transcription": 1, "embedding": 1, "image": 1, "llm": 1, "reranking": 1, "tts": 1},
		"telemetry":         map[string]any{"enabled": false},
		"update_check_done": true,
	})
}

func launchCommand(m *Model, l *loadedModel, ctx int) []string {
	cmd := []string{"/usr/share/lemonade/bin/llamacpp/vulkan/llama-server", "-m",
		"/var/cache/huggingface/hub/" + strings.ReplaceAll(m.Checkpoint, ":", "/") + ".gguf",
		"--ctx-size", strconv.Itoa(ctx), "--port", strconv.Itoa(l.port), "--jinja", "--metrics"}
	if l.typ == "embedding" {
		cmd = append(cmd, "--embeddings")
	}
	return append(cmd, strings.Fields(l.opts.LlamacppArgs)...)
}

func (s *Server) modelJSON(m *Model) map[string]any {
	labels := m.Labels
	if labels == nil {
		labels = []string{}
	}
	return map[string]any{
		"id": m.ID, "created": 1744173590, "object": "model", "owned_by": "lemonade",
		"checkpoint": m.Checkpoint, "recipe": m.Recipe, "size": 0.5,
		"max_context_window": 40960, "context_length": DefaultCtxSize,
		"downloaded": m.Downloaded, "suggested": true, "update_available": false, "labels": labels,
	}
}

func (s *Server) models(w http.ResponseWriter, all bool) {
	s.mu.Lock()
	data := []any{}
	for _, id := range s.order {
		if m := s.catalog[id]; all || m.Downloaded {
			data = append(data, s.modelJSON(m))
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (s *Server) model(w http.ResponseWriter, id string) {
	s.mu.Lock()
	m, ok := s.catalog[id]
	var out map[string]any
	if ok {
		out = s.modelJSON(m)
		out["recipe_options"] = map[string]any{}
	}
	s.mu.Unlock()
	if !ok {
		lemonError(w, http.StatusNotFound, "not_found", "Model "+id+" has not been found")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) statsAnswer(w http.ResponseWriter) {
	s.mu.Lock()
	st := s.stats
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"time_to_first_token": st.ttft, "tokens_per_second": st.tps,
		"input_tokens": st.input, "output_tokens": st.output, "prompt_tokens": st.input, "cache_tokens": nil,
		"request_count_total": st.requests, "input_tokens_total": st.inputTotal, "output_tokens_total": st.outputTotal,
		"prompt_tokens_total": st.inputTotal, "cache_tokens_total": 0,
		"routing_decisions_total": 0, "routing_switches_total": 0,
	})
}

func systemInfo() map[string]any {
	return map[string]any{
		"OS Version":      "Linux-6.8.0-lemonadetest",
		"Processor":       "AMD Ryzen AI MAX+ 395 w/ Radeon 8060S",
		"Physical Memory": "128.0 GB",
		"model_storage":   map[string]any{"path": "/var/cache/huggingface/hub", "used_bytes": 2147483648, "total_bytes": 1000204886016, "free_bytes": 700000000000},
		"devices": map[string]any{
			"cpu":        map[string]any{"name": "AMD Ryzen AI MAX+ 395", "cores": 16, "threads": 32, "available": true, "family": "x86_64"},
			"amd_gpu":    []any{map[string]any{"name": "AMD Radeon 8060S", "vram_gb": 96.0, "available": true, "family": "gfx1151"}},
			"nvidia_gpu": []any{},
			"amd_npu":    map[string]any{"name": "AMD NPU", "available": false},
		},
		"recipes": map[string]any{
			"llamacpp": map[string]any{"default_backend": "vulkan", "backends": map[string]any{
				"vulkan": map[string]any{"devices": []string{"amd_gpu"}, "state": "installed", "message": "", "action": "", "version": "b6000"},
				"cpu":    map[string]any{"devices": []string{"cpu"}, "state": "installed", "message": "", "action": "", "version": "b6000"},
			}},
		},
	}
}

// parallel finds -np N / --parallel N (or =N) in llama.cpp arguments and
// whether the KV cache is unified (-kvu / --kv-unified).
func parallel(args string) (n int, unified bool) {
	n = 1
	f := strings.Fields(args)
	for i, a := range f {
		name, val, hasVal := strings.Cut(a, "=")
		switch name {
		case "-kvu", "--kv-unified":
			unified = true
		case "-np", "--parallel":
			if !hasVal && i+1 < len(f) {
				val = f[i+1]
			}
			if v, err := strconv.Atoi(val); err == nil && v > 0 {
				n = v
			}
		}
	}
	return n, unified
}

// slots answers like llama-server's /slots for the most recently used
// model: -np N slots (default 1), each with ctx_size/N tokens (the whole
// context with -kvu); the first busy ones processing.
func (s *Server) slots(w http.ResponseWriter) {
	s.mu.Lock()
	name, l := s.mostRecent()
	if l == nil {
		s.mu.Unlock()
		plainError(w, http.StatusBadRequest, "No model loaded for slots query")
		return
	}
	m := s.catalog[name]
	if m.Recipe != "llamacpp" {
		s.mu.Unlock()
		lemonError(w, http.StatusBadRequest, "unsupported_operation", "Slots not supported by npu")
		return
	}
	s.touch(l)
	n, unified := parallel(l.opts.LlamacppArgs)
	ctx := l.opts.CtxSize
	if ctx <= 0 {
		ctx = DefaultCtxSize
	}
	per := ctx / n
	if unified {
		per = ctx
	}
	busy := min(n, s.busy[name]+l.inFlight)
	s.mu.Unlock()
	out := []any{}
	for i := range n {
		processing := i < busy
		state, task := "idle", -1
		if processing {
			state, task = "processing", 100+i
		}
		out = append(out, map[string]any{
			"id": i, "id_task": task, "task_id": task, "n_ctx": per, "speculative": false,
			"is_processing": processing, "state": state,
			"params": map[string]any{"n_predict": -1, "temperature": 0.8, "top_k": 40, "top_p": 0.95, "stream": true},
			"next_token": []any{map[string]any{"has_next_token": processing, "has_new_line": false,
				"n_remain": -1, "n_decoded": 0, "stopping_word": ""}},
		})
	}
	writeJSON(w, http.StatusOK, out)
}

// pull is handle_pull: registration of user.* models, UnknownModelError
// for unregistered names (400 with code unknown_model, or an SSE error
// event when streaming), SSE progress/complete events when streaming.
func (s *Server) pull(w http.ResponseWriter, body []byte) {
	var req map[string]any
	if err := json.Unmarshal(body, &req); err != nil || req == nil {
		plainError(w, http.StatusBadRequest, "Invalid JSON in request body")
		return
	}
	str := func(k string) string { v, _ := req[k].(string); return v }
	name := str("model")
	if name == "" {
		name = str("model_name")
	}
	if name == "" {
		plainError(w, http.StatusBadRequest, "A string `model_name` is required")
		return
	}
	stream, _ := req["stream"].(bool)
	checkpoint, recipe := str("checkpoint"), str("recipe")
	user := strings.HasPrefix(name, "user.") && len(name) > 5

	s.mu.Lock()
	m, known := s.catalog[name]
	s.mu.Unlock()

	if checkpoint != "" || recipe != "" {
		if !user {
			plainError(w, http.StatusBadRequest, "Registered model definitions must use a non-empty `user.*` name, for example `user.Phi-4-Mini-GGUF`. Received: "+name)
			return
		}
		if !known {
			if recipe == "" {
				plainError(w, http.StatusInternalServerError, "Model "+name+" is not registered with Lemonade Server. To register it, provide the `recipe` argument.")
				return
			}
			if checkpoint == "" {
				plainError(w, http.StatusInternalServerError, "Model "+name+" is not registered with Lemonade Server. To register and install it, provide the `checkpoint` and `recipe` arguments.")
				return
			}
			nm := Model{ID: name, Checkpoint: checkpoint, Recipe: recipe}
			for flag, label := range map[string]string{"embedding": "embeddings", "reranking": "reranking", "reasoning": "reasoning", "vision": "vision"} {
				if v, _ := req[flag].(bool); v {
					nm.Labels = append(nm.Labels, label)
				}
			}
			if ls, ok := req["labels"].([]any); ok {
				for _, l := range ls {
					if l, ok := l.(string); ok && !slices.Contains(nm.Labels, l) {
						nm.Labels = append(nm.Labels, l)
					}
				}
			}
			slices.Sort(nm.Labels)
			s.mu.Lock()
			s.register(nm)
			m, known = s.catalog[name], true
			s.mu.Unlock()
		}
	}
	if !known {
		code := "unknown_model"
		msg := "When registering a new model, the model name must include the `user` namespace, for example `user.Phi-4-Mini-GGUF`. Received: " + name
		status := http.StatusBadRequest
		if user {
			code, status = "", http.StatusInternalServerError
			msg = "Model " + name + " is not registered with Lemonade Server. To register it, provide the `recipe` argument."
		}
		e := map[string]any{"error": msg}
		if code != "" {
			e["code"] = code
		}
		if stream {
			startSSE(w)
			sendEvent(w, "error", e)
			return
		}
		writeJSON(w, status, e)
		return
	}

	if !stream {
		s.download(m)
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "model_name": name})
		return
	}
	startSSE(w)
	file := fileOf(m)
	const total = int64(512 << 20)
	s.mu.Lock()
	already := m.Downloaded
	s.mu.Unlock()
	if !already {
		chunks := s.opts.PullChunks
		for i := 1; i <= chunks; i++ {
			done := total * int64(i) / int64(chunks+1)
			if !sendEvent(w, "progress", progressData(file, done, total, int(done*100/total))) {
				return // the client went away: the download is cancelled
			}
		}
	}
	s.download(m)
	sendEvent(w, "complete", progressData(file, total, total, 100))
}

func fileOf(m *Model) string {
	_, variant, _ := strings.Cut(m.Checkpoint, ":")
	repo, _, _ := strings.Cut(m.Checkpoint, ":")
	base := repo[strings.LastIndex(repo, "/")+1:]
	base = strings.TrimSuffix(base, "-GGUF")
	if variant == "" {
		return base + ".gguf"
	}
	return base + "-" + variant + ".gguf"
}

func progressData(file string, done, total int64, percent int) map[string]any {
	return map[string]any{"file": file, "file_index": 1, "total_files": 1, "bytes_downloaded": done,
		"bytes_total": total, "total_download_size": total, "bytes_previously_downloaded": 0, "percent": percent}
}

func (s *Server) download(m *Model) {
	s.mu.Lock()
	m.Downloaded = true
	s.mu.Unlock()
}

func startSSE(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
}

func sendEvent(w http.ResponseWriter, event string, data any) bool {
	b, _ := json.Marshal(data)
	if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
		return false
	}
	return http.NewResponseController(w).Flush() == nil
}

// reservedArgs are the llama-server flags Lemonade sets itself
// (llamacpp_server.cpp push_arg/push_reserved, plus -ngl from the docs).
var reservedArgs = []string{"-m", "--model", "-hf", "--hf-repo", "-mr", "--hf-file", "-mf", "--ctx-size", "-c",
	"--device", "-dev", "--port", "--jinja", "--no-jinja", "--metrics", "--mmproj", "-mm", "-mmu", "--mmproj-url",
	"--no-mmproj", "--mmproj-auto", "--no-mmproj-auto", "--model-draft", "-md", "--spec-draft-model",
	"--embeddings", "--embedding", "--reranking", "--rerank", "-ngl"}

func checkArgs(args string) string {
	for _, a := range strings.Fields(args) {
		flag, _, _ := strings.Cut(a, "=")
		if strings.HasPrefix(flag, "-") && slices.Contains(reservedArgs, flag) {
			list := slices.Clone(reservedArgs)
			slices.Sort(list)
			return "Argument '" + flag + "' is managed by Lemonade and cannot be overridden.\nReserved arguments: " + strings.Join(list, ", ")
		}
	}
	return ""
}

// load is handle_load: 404 create_model_error for an unknown model, a
// download first when needed, declarative (re)load, 500 model_load_error
// when llama-server would refuse the arguments.
func (s *Server) load(w http.ResponseWriter, body []byte) {
	var req struct {
		ModelName    *string         `json:"model_name"`
		Model        *string         `json:"model"`
		CtxSize      json.RawMessage `json:"ctx_size"`
		LlamacppArgs *string         `json:"llamacpp_args"`
	}
	invalid := func(msg string) {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{
			"message": "Invalid request: " + msg, "type": "invalid_request_error", "code": "invalid_request"}})
	}
	if err := json.Unmarshal(body, &req); err != nil {
		invalid(err.Error())
		return
	}
	if req.ModelName == nil {
		req.ModelName = req.Model
	}
	if req.ModelName == nil || *req.ModelName == "" {
		invalid("model_name is required")
		return
	}
	name := *req.ModelName
	var opts LoadOptions
	if len(req.CtxSize) > 0 && string(req.CtxSize) != "null" {
		if err := json.Unmarshal(req.CtxSize, &opts.CtxSize); err != nil {
			invalid("ctx_size must be an integer")
			return
		}
	}
	if req.LlamacppArgs != nil {
		opts.LlamacppArgs = *req.LlamacppArgs
	}

	s.mu.Lock()
	m, ok := s.catalog[name]
	if ok {
		m.Downloaded = true // lemond downloads a registered model before loading it
	}
	s.mu.Unlock()
	if !ok {
		s.notFound(w, name)
		return
	}
	if m.Recipe == "llamacpp" {
		if msg := checkArgs(opts.LlamacppArgs); msg != "" {
			s.modelError(w, http.StatusInternalServerError, name, "model_load_error",
				"Failed to load model '"+name+"': Invalid custom llama-server arguments:\n"+msg)
			return
		}
	}
	s.mu.Lock()
	s.ensureLoaded(m, opts, true)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "model_name": name, "checkpoint": m.Checkpoint, "recipe": m.Recipe})
}

// ensureLoaded loads m with opts unless it is loaded with them already
// (or loaded at all, when reload is false: automatic loads keep what is
// there). Another loaded model of the same type is evicted. s.mu is held.
func (s *Server) ensureLoaded(m *Model, opts LoadOptions, reload bool) *loadedModel {
	if l, ok := s.loaded[m.ID]; ok && (!reload || l.opts == opts) {
		s.touch(l)
		return l
	}
	typ := modelType(m)
	for n, l := range s.loaded {
		if n != m.ID && l.typ == typ {
			delete(s.loaded, n)
		}
	}
	s.nextPID++
	l := &loadedModel{opts: opts, typ: typ, pid: s.nextPID, port: 8001 + s.nextPID%1000}
	if old, ok := s.loaded[m.ID]; ok {
		l.inFlight = old.inFlight
	}
	s.loaded[m.ID] = l
	s.loads++
	s.touch(l)
	return l
}

func (s *Server) unload(w http.ResponseWriter, body []byte) {
	var name string
	if len(bytes.TrimSpace(body)) > 0 {
		var req struct {
			ModelName string `json:"model_name"`
			Model     string `json:"model"`
		}
		if json.Unmarshal(body, &req) == nil {
			name = cmpOr(req.ModelName, req.Model)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if name == "" {
		clear(s.loaded)
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "message": "All models unloaded successfully"})
		return
	}
	if _, ok := s.loaded[name]; !ok {
		plainError(w, http.StatusNotFound, "Model not loaded: "+name)
		return
	}
	delete(s.loaded, name)
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "message": "Model unloaded successfully", "model_name": name})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// infer answers chat/completions, completions and embeddings for a
// registered model, loading (and downloading) it first when needed, with
// upstreamtest's answers.
func (s *Server) infer(w http.ResponseWriter, r *http.Request, endpoint string, body []byte) {
	var req map[string]any
	if err := json.Unmarshal(body, &req); err != nil || req == nil {
		lemonError(w, http.StatusBadRequest, "invalid_request_error", "Invalid JSON in request body")
		return
	}
	name, _ := req["model"].(string)
	s.mu.Lock()
	if name == "" {
		recent, _ := s.mostRecent()
		if recent == "" {
			s.mu.Unlock()
			plainError(w, http.StatusBadRequest, "No model loaded and no model specified in request")
			return
		}
		name = recent
		req["model"] = name
		body, _ = json.Marshal(req)
	}
	m, ok := s.catalog[name]
	if !ok {
		s.mu.Unlock()
		s.notFound(w, name)
		return
	}
	m.Downloaded = true
	l := s.ensureLoaded(m, LoadOptions{}, false)
	typ := l.typ
	s.mu.Unlock()

	switch {
	case endpoint == "chat/completions" && typ != "llm":
		lemonError(w, http.StatusBadRequest, "invalid_request_error", "This model does not support chat completion. Only LLM models support this endpoint.")
		return
	case endpoint == "completions" && typ != "llm":
		lemonError(w, http.StatusBadRequest, "invalid_request_error", "This model does not support completion. Only LLM models support this endpoint.")
		return
	case endpoint == "embeddings" && typ != "embedding":
		lemonError(w, http.StatusBadRequest, "invalid_request_error", "This model does not support embeddings. Only embedding models support this endpoint.")
		return
	}

	s.mu.Lock()
	l.inFlight++
	s.mu.Unlock()
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/v1/" + endpoint
	r2.URL.RawPath = ""
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.ContentLength = int64(len(body))
	s.up.ServeHTTP(w, r2)

	prompt, completion := s.up.Tokens()
	s.mu.Lock()
	defer s.mu.Unlock()
	l.inFlight--
	st := &s.stats
	dp, dc := prompt-st.upPromptBefore, completion-st.upCompletionBefore
	st.upPromptBefore, st.upCompletionBefore = prompt, completion
	if dp == 0 && dc == 0 {
		return // the request failed or was cut off: no stats, like lemond
	}
	st.requests++
	st.input, st.output = dp, dc
	st.inputTotal += dp
	st.outputTotal += dc
	st.ttft = 0.1 + 0.01*float64(st.requests%10)
	st.tps = 40 + float64(st.requests%7)
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		plainError(w, http.StatusMethodNotAllowed, "Method Not Allowed. Use GET for this endpoint")
		return
	}
	s.mu.Lock()
	var b strings.Builder
	gauge := func(name, help string) { fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name) }
	counter := func(name, help string) { fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name) }
	gauge("lemonade_server_up", "Whether the Lemonade server is up")
	b.WriteString("lemonade_server_up 1\n")
	gauge("lemonade_server_info", "Lemonade server information")
	fmt.Fprintf(&b, "lemonade_server_info{version=%q} 1\n", Version)
	gauge("lemonade_loaded_models", "Number of loaded models")
	fmt.Fprintf(&b, "lemonade_loaded_models %d\n", len(s.loaded))
	gauge("lemonade_max_loaded_models", "Maximum number of loaded models per type")
	b.WriteString("lemonade_max_loaded_models 1\n")
	gauge("lemonade_model_loaded", "Whether a model is loaded")
	names := make([]string, 0, len(s.loaded))
	for n := range s.loaded {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(&b, "lemonade_model_loaded{model=%q,type=%q} 1\n", n, s.loaded[n].typ)
	}
	counter("lemonade_requests_total", "Inference requests since start")
	fmt.Fprintf(&b, "lemonade_requests_total %d\n", s.stats.requests)
	counter("lemonade_input_tokens_total", "Input tokens since start")
	fmt.Fprintf(&b, "lemonade_input_tokens_total %d\n", s.stats.inputTotal)
	counter("lemonade_output_tokens_total", "Output tokens since start")
	fmt.Fprintf(&b, "lemonade_output_tokens_total %d\n", s.stats.outputTotal)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	io.WriteString(w, b.String())
}
