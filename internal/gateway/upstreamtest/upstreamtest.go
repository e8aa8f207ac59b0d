// Package upstreamtest is an OpenAI-compatible model server for tests and
// benchmarks. No LLM can run on a test machine, so this server stands in for
// one and speaks the OpenAI wire format exactly: JSON responses carrying a
// `usage` object, Server-Sent Events with `data: {...}` chunks, a final usage
// chunk only when `stream_options.include_usage` is true, `data: [DONE]`, and
// OpenAI-shaped error bodies. Token counts and delays are configurable, and a
// test can hold requests to observe concurrency without timing anything.
//
//	up := upstreamtest.New(upstreamtest.Options{CompletionTokens: 5})
//	defer up.Close()
//	// up.URL is the base URL, ending in /v1
package upstreamtest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options shape the server's answers. The zero value answers every model with
// 10 prompt and 20 completion tokens, at once.
type Options struct {
	// Models listed by /v1/models and accepted by the other routes; empty
	// accepts any model and lists "test-model".
	Models []string
	// PromptTokens and CompletionTokens reported per request (default 10 and
	// 20). A request's max_tokens / max_completion_tokens caps the completion.
	// Embeddings report PromptTokens per input.
	PromptTokens, CompletionTokens int
	// Tokens, when set, decides the counts per request instead.
	Tokens func(r Request) (prompt, completion int)
	// Key, when set, is the bearer token the server requires.
	Key string
	// Delay before the response headers; ChunkDelay between stream chunks.
	Delay, ChunkDelay time.Duration
	// Dimensions of the embedding vectors (default 8).
	Dimensions int
	// Status, when non-zero, makes every request fail with this HTTP status
	// and an OpenAI error body.
	Status int
}

// Request is what the server saw of one request.
type Request struct {
	Path         string
	Model        string
	Stream       bool
	IncludeUsage bool // stream_options.include_usage was true
	// TimingsPerToken: llama-server's "timings_per_token" was true; every
	// token chunk then carries "timings" as llama-server's do.
	TimingsPerToken bool
	MaxTokens       int
	Authorization   string
	Body            []byte
}

// Server is a running test upstream.
type Server struct {
	// URL is the base URL clients use, e.g. http://127.0.0.1:PORT/v1.
	URL string

	opts Options
	srv  *httptest.Server

	mu        sync.Mutex
	requests  []Request
	hold      chan struct{} // non-nil: requests wait for a token from it
	pause     chan struct{} // non-nil: streams wait after their first chunk
	arrived   *sync.Cond
	inFlight  int
	maxFlight int

	completed  atomic.Int64 // streams and responses written to the end
	aborted    atomic.Int64 // streams whose reader went away
	cutTokens  atomic.Int64 // token chunks written by streams before their reader went away
	prompt     atomic.Int64 // tokens reported in usage objects
	completion atomic.Int64
}

// New starts a server on a loopback port.
func New(o Options) *Server {
	s := &Server{opts: o}
	s.arrived = sync.NewCond(&s.mu)
	s.srv = httptest.NewServer(s)
	s.URL = s.srv.URL + "/v1"
	return s
}

// NewHandler returns a server that does not listen, for programs that
// serve it themselves (benchmarks); its URL is empty and it is an
// http.Handler with the same controls and counters.
func NewHandler(o Options) *Server {
	s := &Server{opts: o}
	s.arrived = sync.NewCond(&s.mu)
	return s
}

// Close stops the server; held requests are released first.
func (s *Server) Close() {
	s.Release(-1)
	s.Resume()
	if s.srv != nil {
		s.srv.CloseClientConnections()
		s.srv.Close()
	}
}

// Break cuts every open connection, as a server that dies does: streams
// paused by PauseStreams end mid-answer.
func (s *Server) Break() {
	if s.srv != nil {
		s.srv.CloseClientConnections()
	}
}

// Hold makes new requests wait, after being counted as in flight, until
// Release lets them go.
func (s *Server) Hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hold == nil {
		s.hold = make(chan struct{}, 1<<16)
	}
}

// Release lets n held requests go (n < 0: all of them and stop holding).
func (s *Server) Release(n int) {
	s.mu.Lock()
	h := s.hold
	if n < 0 {
		s.hold = nil
	}
	s.mu.Unlock()
	if h == nil {
		return
	}
	if n < 0 {
		close(h)
		return
	}
	for range n {
		h <- struct{}{}
	}
}

// PauseStreams makes each stream stop after its first chunk until Resume.
func (s *Server) PauseStreams() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pause == nil {
		s.pause = make(chan struct{})
	}
}

// Resume lets paused streams go on.
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pause != nil {
		close(s.pause)
		s.pause = nil
	}
}

// WaitInFlight blocks until at least n requests are in flight (held ones
// included) or ctx ends.
func (s *Server) WaitInFlight(ctx context.Context, n int) error {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.arrived.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.inFlight < n {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("wait for %d requests in flight (have %d): %w", n, s.inFlight, err)
		}
		s.arrived.Wait()
	}
	return nil
}

// Requests returns a copy of every request seen so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// InFlight and MaxInFlight count requests being answered now and at most.
func (s *Server) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight
}

// MaxInFlight is the highest number of requests answered at once.
func (s *Server) MaxInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxFlight
}

// Completed counts responses written to the end; Aborted counts streams
// whose reader went away before the end.
func (s *Server) Completed() int64 { return s.completed.Load() }

// Aborted counts streams whose reader disconnected before [DONE].
func (s *Server) Aborted() int64 { return s.aborted.Load() }

// CutTokens counts the token chunks aborted streams had written when their
// reader went away: what a server that stops generating then generated.
func (s *Server) CutTokens() int64 { return s.cutTokens.Load() }

// Tokens sums the prompt and completion tokens of every completed response.
func (s *Server) Tokens() (prompt, completion int64) {
	return s.prompt.Load(), s.completion.Load()
}

// ErrorBody is the OpenAI error envelope.
type ErrorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// WriteError answers with an OpenAI-shaped error.
func WriteError(w http.ResponseWriter, status int, typ, code, msg string) {
	var b ErrorBody
	b.Error.Message, b.Error.Type = msg, typ
	if code != "" {
		b.Error.Code = &code
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(b)
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.opts.Key != "" && r.Header.Get("Authorization") != "Bearer "+s.opts.Key {
		WriteError(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.")
		return
	}
	switch r.URL.Path {
	case "/v1/models":
		if r.Method != http.MethodGet {
			WriteError(w, http.StatusMethodNotAllowed, "invalid_request_error", "method_not_allowed", "use GET")
			return
		}
		s.models(w)
		return
	case "/v1/chat/completions", "/v1/completions", "/v1/embeddings":
	default:
		WriteError(w, http.StatusNotFound, "invalid_request_error", "unknown_url", "Unknown request URL: "+r.Method+" "+r.URL.Path)
		return
	}
	if r.Method != http.MethodPost {
		WriteError(w, http.StatusMethodNotAllowed, "invalid_request_error", "method_not_allowed", "use POST")
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		WriteError(w, http.StatusBadRequest, "invalid_request_error", "", "read body: "+err.Error())
		return
	}
	var in struct {
		Model         string `json:"model"`
		Stream        bool   `json:"stream"`
		StreamOptions *struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
		TimingsPerToken     bool            `json:"timings_per_token"`
		MaxTokens           int             `json:"max_tokens"`
		MaxCompletionTokens int             `json:"max_completion_tokens"`
		Messages            json.RawMessage `json:"messages"`
		Prompt              json.RawMessage `json:"prompt"`
		Input               json.RawMessage `json:"input"`
		EncodingFormat      string          `json:"encoding_format"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "invalid_request_error", "", "We could not parse the JSON body of your request: "+err.Error())
		return
	}
	req := Request{Path: r.URL.Path, Model: in.Model, Stream: in.Stream, Authorization: r.Header.Get("Authorization"), Body: body,
		IncludeUsage: in.StreamOptions != nil && in.StreamOptions.IncludeUsage, TimingsPerToken: in.TimingsPerToken}
	req.MaxTokens = in.MaxTokens
	if in.MaxCompletionTokens > 0 {
		req.MaxTokens = in.MaxCompletionTokens
	}

	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.inFlight++
	s.maxFlight = max(s.maxFlight, s.inFlight)
	hold := s.hold
	s.arrived.Broadcast()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	if s.opts.Delay > 0 {
		select {
		case <-time.After(s.opts.Delay):
		case <-r.Context().Done():
			return
		}
	}
	if s.opts.Status != 0 {
		WriteError(w, s.opts.Status, "server_error", "", "The server had an error while processing your request.")
		return
	}
	if in.Model == "" {
		WriteError(w, http.StatusBadRequest, "invalid_request_error", "", "you must provide a model parameter")
		return
	}
	if len(s.opts.Models) > 0 && !contains(s.opts.Models, in.Model) {
		WriteError(w, http.StatusNotFound, "invalid_request_error", "model_not_found", "The model `"+in.Model+"` does not exist or you do not have access to it.")
		return
	}
	prompt, completion := s.opts.PromptTokens, s.opts.CompletionTokens
	if prompt == 0 {
		prompt = 10
	}
	if completion == 0 {
		completion = 20
	}
	if s.opts.Tokens != nil {
		prompt, completion = s.opts.Tokens(req)
	}
	if req.MaxTokens > 0 && completion > req.MaxTokens {
		completion = req.MaxTokens
	}
	switch r.URL.Path {
	case "/v1/embeddings":
		s.embeddings(w, in.Model, in.Input, in.EncodingFormat, prompt)
	case "/v1/chat/completions":
		if len(in.Messages) == 0 || in.Messages[0] != '[' {
			WriteError(w, http.StatusBadRequest, "invalid_request_error", "", "'messages' is a required property")
			return
		}
		s.complete(w, r, req, true, prompt, completion)
	default:
		if len(in.Prompt) == 0 {
			WriteError(w, http.StatusBadRequest, "invalid_request_error", "", "'prompt' is a required property")
			return
		}
		s.complete(w, r, req, false, prompt, completion)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (s *Server) models(w http.ResponseWriter) {
	ids := s.opts.Models
	if len(ids) == 0 {
		ids = []string{"test-model"}
	}
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	out := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list"}
	for _, id := range ids {
		out.Data = append(out.Data, model{ID: id, Object: "model", Created: 1700000000, OwnedBy: "upstreamtest"})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func (s *Server) embeddings(w http.ResponseWriter, model string, input json.RawMessage, format string, perInput int) {
	n := 1
	var many []json.RawMessage
	if len(input) > 0 && input[0] == '[' && json.Unmarshal(input, &many) == nil && len(many) > 0 {
		// An array of strings, or of token arrays, is a batch; one array of
		// numbers is a single tokenised input.
		if many[0][0] == '"' || many[0][0] == '[' {
			n = len(many)
		}
	} else if len(input) == 0 {
		WriteError(w, http.StatusBadRequest, "invalid_request_error", "", "'input' is a required property")
		return
	}
	dim := s.opts.Dimensions
	if dim == 0 {
		dim = 8
	}
	type item struct {
		Object    string `json:"object"`
		Index     int    `json:"index"`
		Embedding any    `json:"embedding"`
	}
	out := struct {
		Object string `json:"object"`
		Data   []item `json:"data"`
		Model  string `json:"model"`
		Usage  struct {
			PromptTokens int `json:"prompt_tokens"`
			TotalTokens  int `json:"total_tokens"`
		} `json:"usage"`
	}{Object: "list", Model: model}
	for i := range n {
		vec := make([]float32, dim)
		for j := range vec {
			vec[j] = float32(math.Sin(float64(i*dim + j)))
		}
		var emb any = vec
		if format == "base64" {
			buf := make([]byte, 4*dim)
			for j, f := range vec {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(f))
			}
			emb = base64.StdEncoding.EncodeToString(buf)
		}
		out.Data = append(out.Data, item{Object: "embedding", Index: i, Embedding: emb})
	}
	out.Usage.PromptTokens = perInput * n
	out.Usage.TotalTokens = perInput * n
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
	s.completed.Add(1)
	s.prompt.Add(int64(out.Usage.PromptTokens))
}

func (s *Server) complete(w http.ResponseWriter, r *http.Request, req Request, chat bool, prompt, completion int) {
	id := "cmpl-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	u := usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}
	text := strings.Repeat("tok ", completion)
	if !req.Stream {
		var choice map[string]any
		object := "text_completion"
		if chat {
			object = "chat.completion"
			choice = map[string]any{"index": 0, "finish_reason": "stop", "logprobs": nil,
				"message": map[string]any{"role": "assistant", "content": text, "refusal": nil}}
		} else {
			choice = map[string]any{"index": 0, "finish_reason": "stop", "logprobs": nil, "text": text}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"id": id, "object": object, "created": time.Now().Unix(),
			"model": req.Model, "choices": []any{choice}, "usage": u})
		s.completed.Add(1)
		s.prompt.Add(int64(prompt))
		s.completion.Add(int64(completion))
		return
	}

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	object := "text_completion"
	if chat {
		object = "chat.completion.chunk"
	}
	var buf bytes.Buffer
	sent := 0 // token chunks written
	send := func(choices []any, withUsage *usage) error {
		buf.Reset()
		chunk := map[string]any{"id": id, "object": object, "created": time.Now().Unix(), "model": req.Model, "choices": choices}
		if req.TimingsPerToken && sent > 0 {
			chunk["timings"] = map[string]any{"cache_n": 0, "prompt_n": prompt, "predicted_n": sent}
		}
		if req.IncludeUsage {
			// OpenAI sends "usage": null on every chunk but the last one
			// when usage was asked for, and omits the field otherwise.
			chunk["usage"] = withUsage
		}
		buf.WriteString("data: ")
		b, _ := json.Marshal(chunk)
		buf.Write(b)
		buf.WriteString("\n\n")
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
		return rc.Flush()
	}
	delta := func(content string, role bool, finish any) []any {
		if !chat {
			return []any{map[string]any{"index": 0, "text": content, "finish_reason": finish, "logprobs": nil}}
		}
		d := map[string]any{"content": content}
		if role {
			d["role"] = "assistant"
		}
		return []any{map[string]any{"index": 0, "delta": d, "finish_reason": finish, "logprobs": nil}}
	}
	fail := func() {
		s.aborted.Add(1)
		s.cutTokens.Add(int64(sent))
	}
	if err := send(delta("", true, nil), nil); err != nil {
		fail()
		return
	}
	s.mu.Lock()
	pause := s.pause
	s.mu.Unlock()
	if pause != nil {
		select {
		case <-pause:
		case <-r.Context().Done():
			fail()
			return
		}
	}
	for i := 0; i < completion; i++ {
		if s.opts.ChunkDelay > 0 {
			select {
			case <-time.After(s.opts.ChunkDelay):
			case <-r.Context().Done():
				fail()
				return
			}
		}
		sent++
		if err := send(delta("tok ", false, nil), nil); err != nil {
			sent--
			fail()
			return
		}
	}
	if err := send(delta("", false, "stop"), nil); err != nil {
		fail()
		return
	}
	if req.IncludeUsage {
		if err := send([]any{}, &u); err != nil {
			fail()
			return
		}
	}
	if _, err := io.WriteString(w, "data: [DONE]\n\n"); err != nil {
		fail()
		return
	}
	if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		fail()
		return
	}
	s.completed.Add(1)
	s.prompt.Add(int64(prompt))
	s.completion.Add(int64(completion))
}
