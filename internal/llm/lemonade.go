package llm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Backends NewClient knows.
const (
	BackendLemonade = "lemonade"
	BackendOpenAI   = "openai"
)

const (
	maxBody      = 8 << 20 // cap on a JSON answer
	maxEvent     = 1 << 20 // cap on one SSE line
	queryTimeout = 30 * time.Second
)

// Client talks to the LLM server: Lemonade's management API, or just the
// OpenAI-compatible /models of any other server.
//
// Calls are bounded by their context. Queries (Live, Health, Models, Stats,
// SystemInfo, Slots) get a 30 s bound when the context has no deadline;
// Pull, Load and Unload do not, because a download or a model load can take
// many minutes.
type Client struct {
	backend string
	url     string // root (lemonade) or OpenAI base (openai), no trailing slash
	shown   string // url with any password redacted, for messages
	key     string
	hc      *http.Client
}

// NewClient: backend is "lemonade" (also when empty) or "openai". For
// lemonade, serverURL is the root (http://127.0.0.1:13305); a trailing
// /api/v1, /api/v0, /v1 or /v0 is dropped. For openai it is the OpenAI base
// URL (…/v1). key is sent as "Authorization: Bearer <key>" when not empty.
// hc nil means a client that connects within 3 s and has no overall timeout
// (each call is bounded by its context).
func NewClient(backend, serverURL, key string, hc *http.Client) *Client {
	backend = strings.ToLower(strings.TrimSpace(backend))
	if backend == "" {
		backend = BackendLemonade
	}
	u := strings.TrimRight(strings.TrimSpace(serverURL), "/")
	if backend == BackendLlamacpp {
		u = strings.TrimSuffix(u, "/v1")
	}
	if backend == BackendLemonade {
		for _, suffix := range []string{"/api/v1", "/api/v0", "/v1", "/v0"} {
			if strings.HasSuffix(u, suffix) {
				u = strings.TrimSuffix(u, suffix)
				break
			}
		}
	}
	shown := u
	if pu, err := url.Parse(u); err == nil {
		shown = pu.Redacted()
	}
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ExpectContinueTimeout: time.Second,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          16,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
		}}
	}
	return &Client{backend: backend, url: u, shown: shown, key: key, hc: hc}
}

// Backend is "lemonade" or "openai".
func (c *Client) Backend() string { return c.backend }

// URL is the server's root (lemonade) or OpenAI base URL (openai).
func (c *Client) URL() string { return c.url }

func (c *Client) lemonade() bool { return c.backend == BackendLemonade }

// Health is what /api/v1/health says about the server and its loaded models.
type Health struct {
	Status      string        `json:"status"`
	Version     string        `json:"version,omitempty"`
	ModelLoaded string        `json:"model_loaded,omitempty"` // most recently used model
	Loaded      []LoadedModel `json:"loaded"`
}

// LoadedModel is one entry of the health answer's all_models_loaded.
type LoadedModel struct {
	Name         string `json:"name"` // model_name
	Checkpoint   string `json:"checkpoint,omitempty"`
	Type         string `json:"type,omitempty"` // llm, embedding, reranking, …
	Recipe       string `json:"recipe,omitempty"`
	Device       string `json:"device,omitempty"`
	CtxSize      int    `json:"ctx_size,omitempty"`      // recipe_options.ctx_size
	LlamacppArgs string `json:"llamacpp_args,omitempty"` // recipe_options.llamacpp_args
	Busy         bool   `json:"busy"`                    // is_busy
}

// Model is one entry of /models.
type Model struct {
	ID            string   `json:"id"`
	Checkpoint    string   `json:"checkpoint,omitempty"`
	Recipe        string   `json:"recipe,omitempty"`
	Downloaded    bool     `json:"downloaded"`
	Labels        []string `json:"labels,omitempty"`
	SizeGB        float64  `json:"size_gb,omitempty"`
	ContextLength int      `json:"context_length,omitempty"`
}

// Stats is /api/v1/stats: the last request's performance and, on newer
// servers, counters since the server started.
type Stats struct {
	TimeToFirstToken float64 `json:"time_to_first_token"` // seconds, last request
	TokensPerSecond  float64 `json:"tokens_per_second"`
	InputTokens      int64   `json:"input_tokens"`
	OutputTokens     int64   `json:"output_tokens"`
	RequestsTotal    int64   `json:"requests_total,omitempty"` // request_count_total when the server has it
}

// Slot is one llama-server slot of the most recently used loaded model.
type Slot struct {
	ID   int  `json:"id"`
	Busy bool `json:"busy"` // state "processing" (or non-zero) or is_processing
	NCtx int  `json:"n_ctx,omitempty"`
}

// PullRequest names a model to download. A ModelName of "user.X" with
// Checkpoint and Recipe registers a new model.
type PullRequest struct {
	ModelName  string
	Checkpoint string
	Recipe     string // default "llamacpp" when Checkpoint is set
	Embedding  bool   // adds the embeddings label when registering
}

// PullProgress is one progress report of a download; the last one has Done.
type PullProgress struct {
	File       string  `json:"file,omitempty"`
	FileIndex  int     `json:"file_index,omitempty"`
	TotalFiles int     `json:"total_files,omitempty"`
	BytesDone  int64   `json:"bytes_downloaded,omitempty"`
	BytesTotal int64   `json:"bytes_total,omitempty"`
	Percent    float64 `json:"percent"`
	Done       bool    `json:"done,omitempty"`
}

// LoadRequest loads a model with options. Lemonade's load is declarative:
// loading a model already loaded with the same options does nothing;
// different options reload it. Zero fields are left out of the request, so
// the server uses the model's saved options or its defaults.
type LoadRequest struct {
	ModelName    string `json:"model_name"`
	CtxSize      int    `json:"ctx_size,omitempty"`
	LlamacppArgs string `json:"llamacpp_args,omitempty"`
}

// Live checks that the server answers: GET /live on Lemonade (never
// authenticated), GET {base}/models on an OpenAI-compatible server.
func (c *Client) Live(ctx context.Context) error {
	path := "/live"
	switch c.backend {
	case BackendLlamacpp:
		path = "/health"
	case BackendOpenAI:
		path = "/models"
	}
	_, err := c.query(ctx, path)
	return err
}

// Health reads /api/v1/health. On the openai backend it checks /models and
// reports status "ok" with no loaded models (such servers don't say).
func (c *Client) Health(ctx context.Context) (Health, error) {
	if !c.lemonade() {
		if err := c.Live(ctx); err != nil {
			return Health{}, err
		}
		return Health{Status: "ok", Loaded: []LoadedModel{}}, nil
	}
	body, err := c.query(ctx, "/api/v1/health")
	if err != nil {
		return Health{}, err
	}
	var raw struct {
		Status      lstr `json:"status"`
		Version     lstr `json:"version"`
		ModelLoaded lstr `json:"model_loaded"`
		All         []struct {
			Name       lstr  `json:"model_name"`
			Checkpoint lstr  `json:"checkpoint"`
			Type       lstr  `json:"type"`
			Recipe     lstr  `json:"recipe"`
			Device     lstr  `json:"device"`
			Busy       lbool `json:"is_busy"`
			Options    struct {
				CtxSize      lnum `json:"ctx_size"`
				LlamacppArgs lstr `json:"llamacpp_args"`
			} `json:"recipe_options"`
		} `json:"all_models_loaded"`
	}
	if err := c.decode(body, "/api/v1/health", &raw); err != nil {
		return Health{}, err
	}
	h := Health{Status: string(raw.Status), Version: string(raw.Version), ModelLoaded: string(raw.ModelLoaded),
		Loaded: []LoadedModel{}}
	for _, m := range raw.All {
		h.Loaded = append(h.Loaded, LoadedModel{Name: string(m.Name), Checkpoint: string(m.Checkpoint),
			Type: string(m.Type), Recipe: string(m.Recipe), Device: string(m.Device),
			CtxSize: int(m.Options.CtxSize), LlamacppArgs: string(m.Options.LlamacppArgs), Busy: bool(m.Busy)})
	}
	return h, nil
}

// Models lists the server's models: on Lemonade the downloaded ones, or
// the whole catalog when all is true; on the openai backend whatever
// {base}/models lists (all counted as downloaded).
func (c *Client) Models(ctx context.Context, all bool) ([]Model, error) {
	if c.llamacpp() {
		s, err := c.Llama(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]Model, 0, len(s.Models))
		for _, m := range s.Models {
			out = append(out, Model{ID: m.ID, Downloaded: true, ContextLength: m.CtxTrain, Labels: []string{m.State}})
		}
		return out, nil
	}
	path := "/models"
	if c.lemonade() {
		path = "/api/v1/models"
		if all {
			path += "?show_all=true"
		}
	}
	body, err := c.query(ctx, path)
	if err != nil {
		return nil, err
	}
	var raw struct {
		Data []struct {
			ID            lstr     `json:"id"`
			Checkpoint    lstr     `json:"checkpoint"`
			Recipe        lstr     `json:"recipe"`
			Downloaded    *lbool   `json:"downloaded"`
			Labels        []string `json:"labels"`
			Size          lnum     `json:"size"`
			ContextLength lnum     `json:"context_length"`
		} `json:"data"`
	}
	if err := c.decode(body, path, &raw); err != nil {
		return nil, err
	}
	out := make([]Model, 0, len(raw.Data))
	for _, m := range raw.Data {
		// Without the field, a default Lemonade listing (and any OpenAI
		// server's) holds only models it can serve.
		downloaded := !c.lemonade() || !all
		if m.Downloaded != nil {
			downloaded = bool(*m.Downloaded)
		}
		out = append(out, Model{ID: string(m.ID), Checkpoint: string(m.Checkpoint), Recipe: string(m.Recipe),
			Downloaded: downloaded, Labels: m.Labels, SizeGB: float64(m.Size), ContextLength: int(m.ContextLength)})
	}
	return out, nil
}

// Stats reads /api/v1/stats.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	if err := c.need("stats"); err != nil {
		return Stats{}, err
	}
	body, err := c.query(ctx, "/api/v1/stats")
	if err != nil {
		return Stats{}, err
	}
	var raw struct {
		TTFT          lnum `json:"time_to_first_token"`
		TPS           lnum `json:"tokens_per_second"`
		Input         lnum `json:"input_tokens"`
		Output        lnum `json:"output_tokens"`
		RequestsTotal lnum `json:"request_count_total"`
	}
	if err := c.decode(body, "/api/v1/stats", &raw); err != nil {
		return Stats{}, err
	}
	return Stats{TimeToFirstToken: float64(raw.TTFT), TokensPerSecond: float64(raw.TPS),
		InputTokens: int64(raw.Input), OutputTokens: int64(raw.Output), RequestsTotal: int64(raw.RequestsTotal)}, nil
}

// SystemInfo reads /api/v1/system-info as it comes (keys such as
// "OS Version", "Processor", "devices", "recipes").
func (c *Client) SystemInfo(ctx context.Context) (map[string]any, error) {
	if err := c.need("system info"); err != nil {
		return nil, err
	}
	body, err := c.query(ctx, "/api/v1/system-info")
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := c.decode(body, "/api/v1/system-info", &m); err != nil {
		return nil, err
	}
	return m, nil
}

// Slots reads /api/v1/slots: the llama-server slots of the most recently
// used loaded model (Lemonade picks it; the answer does not name it). With
// no model loaded Lemonade answers 400.
func (c *Client) Slots(ctx context.Context) ([]Slot, error) {
	if err := c.need("slots"); err != nil {
		return nil, err
	}
	body, err := c.query(ctx, "/api/v1/slots")
	if err != nil {
		return nil, err
	}
	return c.decodeSlots(body, "/api/v1/slots")
}

// decodeSlots reads llama-server's /slots answer (also what Lemonade
// relays).
func (c *Client) decodeSlots(body []byte, path string) ([]Slot, error) {
	var raw []struct {
		ID           lnum            `json:"id"`
		NCtx         lnum            `json:"n_ctx"`
		IsProcessing *lbool          `json:"is_processing"`
		State        json.RawMessage `json:"state"`
	}
	if err := c.decode(body, path, &raw); err != nil {
		return nil, err
	}
	out := make([]Slot, 0, len(raw))
	for _, s := range raw {
		busy := s.IsProcessing != nil && bool(*s.IsProcessing)
		if !busy && len(s.State) > 0 {
			var st string
			if json.Unmarshal(s.State, &st) == nil {
				busy = st != "" && st != "idle"
			} else {
				var n lnum
				_ = n.UnmarshalJSON(s.State)
				busy = n != 0 // llama-server's enum: 0 idle, 1 processing
			}
		}
		out = append(out, Slot{ID: int(s.ID), Busy: busy, NCtx: int(s.NCtx)})
	}
	return out, nil
}

// Pull downloads a model (and registers it first when ModelName is
// "user.X"), streaming progress: progress, when not nil, is called for each
// progress event in order and last with Done set. The call returns when the
// download is complete, failed (an *APIError, also for an error event in
// the stream) or ctx ended.
func (c *Client) Pull(ctx context.Context, req PullRequest, progress func(PullProgress)) error {
	if err := c.need("pull"); err != nil {
		return err
	}
	if req.ModelName == "" {
		return errors.New("pull: no model name")
	}
	body := map[string]any{"model_name": req.ModelName, "stream": true}
	if req.Checkpoint != "" {
		body["checkpoint"] = req.Checkpoint
		recipe := req.Recipe
		if recipe == "" {
			recipe = "llamacpp"
		}
		body["recipe"] = recipe
	} else if req.Recipe != "" {
		body["recipe"] = req.Recipe
	}
	if req.Embedding {
		body["embedding"] = true
	}
	if progress == nil {
		progress = func(PullProgress) {}
	}
	const path = "/api/v1/pull"
	resp, err := c.send(ctx, http.MethodPost, path, body, "text/event-stream")
	if err != nil {
		return fmt.Errorf("pull %s: %w", req.ModelName, err)
	}
	defer resp.Body.Close()

	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		// A server that ignores stream answers once, in JSON.
		b, err := c.read(ctx, resp, path)
		if err != nil {
			return fmt.Errorf("pull %s: %w", req.ModelName, err)
		}
		if e := legacyError(resp.StatusCode, b); e != nil {
			return fmt.Errorf("pull %s: %w", req.ModelName, c.scrubAPI(e))
		}
		progress(PullProgress{Percent: 100, Done: true})
		return nil
	}

	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxEvent)
	var event string
	var data []string
	dispatch := func() (done bool, err error) {
		defer func() { event, data = "", nil }()
		if len(data) == 0 {
			return false, nil
		}
		payload := []byte(strings.Join(data, "\n"))
		switch event {
		case "error":
			return true, c.scrubAPI(streamError(payload))
		case "progress", "complete", "":
			var raw struct {
				File       lstr `json:"file"`
				FileIndex  lnum `json:"file_index"`
				TotalFiles lnum `json:"total_files"`
				Done       lnum `json:"bytes_downloaded"`
				Total      lnum `json:"bytes_total"`
				Percent    lnum `json:"percent"`
				Error      json.RawMessage
			}
			if err := json.Unmarshal(payload, &raw); err != nil {
				return true, fmt.Errorf("unreadable %s event %q: %w", orDefault(event, "message"), bodySnippet(payload), err)
			}
			if event == "" && len(raw.Error) > 0 {
				return true, c.scrubAPI(streamError(payload))
			}
			p := PullProgress{File: string(raw.File), FileIndex: int(raw.FileIndex), TotalFiles: int(raw.TotalFiles),
				BytesDone: int64(raw.Done), BytesTotal: int64(raw.Total), Percent: float64(raw.Percent)}
			if event == "complete" {
				p.Done, p.Percent = true, 100
			}
			progress(p)
			return p.Done, nil
		}
		return false, nil // an event THON does not know
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if done, err := dispatch(); done {
				if err != nil {
					return fmt.Errorf("pull %s: %w", req.ModelName, err)
				}
				return nil
			}
		case strings.HasPrefix(line, ":"): // comment / keep-alive
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			d := strings.TrimPrefix(line, "data:")
			data = append(data, strings.TrimPrefix(d, " "))
		}
	}
	if done, err := dispatch(); done { // a last event without its blank line
		if err != nil {
			return fmt.Errorf("pull %s: %w", req.ModelName, err)
		}
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("pull %s: %w", req.ModelName, c.streamErr(ctx, err))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pull %s: %w", req.ModelName, err)
	}
	return fmt.Errorf("pull %s: the LLM server %s ended the download stream before it was complete", req.ModelName, c.shown)
}

// Load loads a model with options (POST /api/v1/load). Lemonade downloads
// the model first when needed, so this can take long; bound it with ctx.
func (c *Client) Load(ctx context.Context, req LoadRequest) error {
	if err := c.need("load"); err != nil {
		return err
	}
	if req.ModelName == "" {
		return errors.New("load: no model name")
	}
	if err := c.call(ctx, http.MethodPost, "/api/v1/load", req); err != nil {
		return fmt.Errorf("load %s: %w", req.ModelName, err)
	}
	return nil
}

// Unload unloads a model (POST /api/v1/unload); model "" unloads all of
// them. A model that is not loaded is an *APIError with Status 404.
func (c *Client) Unload(ctx context.Context, model string) error {
	if err := c.need("unload"); err != nil {
		return err
	}
	var body any
	what := "all models"
	if model != "" {
		body = map[string]string{"model_name": model}
		what = model
	}
	if err := c.call(ctx, http.MethodPost, "/api/v1/unload", body); err != nil {
		return fmt.Errorf("unload %s: %w", what, err)
	}
	return nil
}

func (c *Client) need(op string) error {
	if c.lemonade() {
		return nil
	}
	kind := "an OpenAI-compatible server"
	if c.llamacpp() {
		kind = "llama.cpp's llama-server"
	}
	return &wrapErr{
		msg:  fmt.Sprintf("%s: %s (the LLM server %s is %s, which has no such API)", op, ErrUnsupported, c.shown, kind),
		errs: []error{ErrUnsupported},
	}
}

// query GETs path and returns the body of a 2xx answer.
func (c *Client) query(ctx context.Context, path string) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, queryTimeout)
		defer cancel()
	}
	resp, err := c.send(ctx, http.MethodGet, path, nil, "application/json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := c.read(ctx, resp, path)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, c.scrubAPI(parseAPIError(resp.StatusCode, b))
	}
	return b, nil
}

// call POSTs body as JSON (nil: no body) and checks the answer.
func (c *Client) call(ctx context.Context, method, path string, body any) error {
	resp, err := c.send(ctx, method, path, body, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := c.read(ctx, resp, path)
	if err != nil {
		return err
	}
	if e := legacyError(resp.StatusCode, b); e != nil {
		return c.scrubAPI(e)
	}
	return nil
}

// legacyError is the error of an answer: any non-2xx status, or a 2xx one
// whose body is {"status":"error",…} (older Lemonade).
func legacyError(status int, body []byte) *APIError {
	if status/100 != 2 {
		return parseAPIError(status, body)
	}
	var s struct {
		Status lstr `json:"status"`
	}
	if json.Unmarshal(body, &s) == nil && s.Status == "error" {
		return parseAPIError(status, body)
	}
	return nil
}

// send makes the request. Transport failures come back explained, wrapping
// ErrUnreachable when no connection was made; 401/403 answers come back as
// errors wrapping ErrUnauthorized (and the *APIError). Other answers are
// the caller's to read.
func (c *Client) send(ctx context.Context, method, path string, body any, accept string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	var connected atomic.Bool
	tctx := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { connected.Store(true) }})
	req, err := http.NewRequestWithContext(tctx, method, c.url+path, rd)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("LLM server URL %q is not usable: %w", c.shown, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", accept)
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportErr(ctx, method, path, err, connected.Load())
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		apiErr := c.scrubAPI(parseAPIError(resp.StatusCode, b))
		hint := "set llm.api_key / llm.admin_api_key to LEMONADE_API_KEY / LEMONADE_ADMIN_API_KEY"
		if !c.lemonade() {
			hint = "set llm.api_key to the key the server expects"
		}
		sent := "refused the key"
		if c.key == "" {
			sent = "wants a key and none is set"
		}
		return nil, &wrapErr{
			msg:  fmt.Sprintf("the LLM server %s %s (%d: %s): %s", c.shown, sent, resp.StatusCode, orDefault(squashSpace(apiErr.Message), http.StatusText(resp.StatusCode)), hint),
			errs: []error{ErrUnauthorized, apiErr},
		}
	}
	return resp, nil
}

func (c *Client) transportErr(ctx context.Context, method, path string, err error, connected bool) error {
	inner := err
	var ue *url.Error
	if errors.As(err, &ue) {
		inner = ue.Err
	}
	errs := []error{err}
	if ctxErr := ctx.Err(); ctxErr != nil {
		errs = append(errs, ctxErr)
		if connected {
			what := "in time"
			if errors.Is(ctxErr, context.Canceled) {
				what = "before the call was cancelled"
			}
			return &wrapErr{msg: fmt.Sprintf("the LLM server %s did not answer %s %s %s (%v)", c.shown, method, path, what, ctxErr), errs: errs}
		}
	}
	var ne net.Error
	if connected && errors.As(err, &ne) && ne.Timeout() {
		return &wrapErr{msg: fmt.Sprintf("the LLM server %s did not answer %s %s in time (%v)", c.shown, method, path, inner), errs: errs}
	}
	if connected {
		return &wrapErr{msg: fmt.Sprintf("the LLM server %s broke off %s %s: %v", c.shown, method, path, inner), errs: errs}
	}
	hint := "is Lemonade running? `systemctl status lemond`, or set llm.url"
	switch c.backend {
	case BackendLlamacpp:
		hint = "is llama-server running? check llm.url (a server THON runs: thon llm status)"
	case BackendOpenAI:
		hint = "is the LLM server running? check llm.url"
	}
	return &wrapErr{
		msg:  fmt.Sprintf("%s at %s (%v): %s", ErrUnreachable, c.shown, inner, hint),
		errs: append([]error{ErrUnreachable}, errs...),
	}
}

// read reads a whole answer, at most maxBody bytes.
func (c *Client) read(ctx context.Context, resp *http.Response, path string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read the answer to %s: %w", path, c.streamErr(ctx, err))
	}
	if len(b) > maxBody {
		return nil, fmt.Errorf("the LLM server %s answered %s with more than %d MiB", c.shown, path, maxBody>>20)
	}
	return b, nil
}

func (c *Client) streamErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		return &wrapErr{msg: fmt.Sprintf("the LLM server %s did not finish in time (%v)", c.shown, ctxErr), errs: []error{err, ctxErr}}
	}
	return err
}

func (c *Client) decode(body []byte, path string, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("the LLM server %s answered %s with unexpected JSON (%v): %s", c.shown, path, err, bodySnippet(body))
	}
	return nil
}

// scrubAPI makes sure the key never shows in an error's text, even if a
// server echoes it.
func (c *Client) scrubAPI(e *APIError) *APIError {
	if c.key != "" {
		e.Message = strings.ReplaceAll(e.Message, c.key, "[redacted]")
	}
	return e
}

func squashSpace(s string) string { return strings.Join(strings.Fields(s), " ") }

func orDefault(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}
