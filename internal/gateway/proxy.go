package gateway

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
	"strconv"
	"sync"
	"time"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// maxResponseBytes bounds a non-streaming upstream answer held in memory.
const maxResponseBytes = 256 << 20

type tokenUsage struct {
	prompt, completion int64
}

// usageJSON is OpenAI's usage object (the fields the gateway reads).
type usageJSON struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

func (u *usageJSON) tokens() tokenUsage {
	t := tokenUsage{prompt: u.PromptTokens, completion: u.CompletionTokens}
	if t.prompt == 0 && t.completion == 0 && u.TotalTokens > 0 {
		t.prompt = u.TotalTokens // embeddings from some servers: total only
	}
	return t
}

// readBody reads at most limit bytes of the request body.
func readBody(r *http.Request, limit int64) ([]byte, *apiError) {
	tooLarge := func() *apiError {
		e := errBodyTooLarge
		e.message = fmt.Sprintf("The request body is larger than the gateway's limit of %d bytes. Send less context.", limit)
		return &e
	}
	if r.ContentLength > limit {
		return nil, tooLarge()
	}
	n := r.ContentLength
	if n < 0 {
		n = 512
	}
	buf := bytes.NewBuffer(make([]byte, 0, n+1))
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1)); err != nil {
		return nil, &apiError{http.StatusBadRequest, typeInvalidRequest, "invalid_body", "Could not read the request body: " + err.Error()}
	}
	if int64(buf.Len()) > limit {
		return nil, tooLarge()
	}
	return buf.Bytes(), nil
}

func badRequest(code, msg string) apiError {
	return apiError{http.StatusBadRequest, typeInvalidRequest, code, msg}
}

// serveInference proxies chat completions, completions and embeddings.
// cs, when not nil, is the request's trace span, filled in on the way.
func (g *Gateway) serveInference(w http.ResponseWriter, r *http.Request, ep endpoint, key *Key, cs *callSpan) {
	body, aerr := readBody(r, g.maxBody)
	if aerr != nil {
		why := "bad_request"
		if aerr.status == http.StatusRequestEntityTooLarge {
			why = "body_too_large"
		}
		cs.note(why)
		g.fail(w, ep, *aerr, why)
		return
	}
	if !gjson.ValidBytes(body) {
		cs.note("bad_request")
		g.fail(w, ep, badRequest("invalid_json", "We could not parse the JSON body of your request. Send a JSON object (Content-Type: application/json)."), "bad_request")
		return
	}
	if !gjson.ParseBytes(body).IsObject() {
		cs.note("bad_request")
		g.fail(w, ep, badRequest("invalid_json", "The request body must be a JSON object."), "bad_request")
		return
	}
	fields := gjson.GetManyBytes(body, "model", "stream", "stream_options.include_usage", "max_tokens", "max_completion_tokens")
	if fields[0].Type != gjson.String || fields[0].Str == "" {
		cs.note("bad_request")
		g.fail(w, ep, badRequest("missing_model", "You must provide a model parameter (a string). GET /v1/models lists them."), "bad_request")
		return
	}
	model := fields[0].Str
	stream := fields[1].Type == gjson.True && ep != epEmbeddings
	if cs != nil {
		cs.model, cs.stream = truncModel(model), stream
	}
	if g.allowed != nil && !g.allowed[model] {
		cs.note("model_not_allowed")
		g.record(key.ID, model, tokenUsage{}, 0, 1)
		g.fail(w, ep, apiError{http.StatusForbidden, typeInvalidRequest, "model_not_allowed",
			fmt.Sprintf("The model %q is not allowed at this event. GET /v1/models lists the allowed ones.", model)}, "model_not_allowed")
		return
	}

	p := g.planFor(key, model)
	var t ticket
	v, err := g.admit(r.Context(), &p, &t)
	now := g.now()
	if err != nil {
		if r.Context().Err() != nil {
			return // the client left while waiting
		}
		g.log.Debug("gateway: admission refused", "key", key.ID, "err", err)
		cs.note("limiter_unavailable")
		g.fail(w, ep, errLimiter, "limiter_unavailable")
		return
	}
	h := w.Header()
	setLimitHeaders(h, &p, &v, now)
	if !v.ok {
		e := rejection(&p, &v, now, h)
		if cs != nil {
			cs.note("rate_limited_" + v.reason.String())
		}
		g.record(key.ID, model, tokenUsage{}, 0, 1)
		g.metrics.reject(v.reason, "")
		g.metrics.request(ep, e.status)
		writeError(w, e)
		return
	}

	injected := false
	if stream && fields[2].Type != gjson.True {
		if body, err = sjson.SetBytes(body, "stream_options.include_usage", true); err != nil {
			g.release(&t, 0, true)
			g.fail(w, ep, badRequest("invalid_json", "Could not read stream_options: "+err.Error()), "bad_request")
			return
		}
		injected = true
	}
	if stream && g.opts.LlamaCppTimings && !gjson.GetBytes(body, "timings_per_token").Bool() {
		// llama-server then says in every chunk how many tokens it has
		// read and generated: a stream cut short is charged exactly.
		if b, err := sjson.SetBytes(body, "timings_per_token", true); err == nil {
			body = b
		}
	}

	// The model's slots: wait for one in its fair queue.
	lease, waited, err := g.slots.acquire(r.Context(), model, key, g.short(ep, fields[3], fields[4]))
	if cs != nil {
		cs.waited = waited
	}
	if err != nil {
		g.release(&t, 0, true)
		switch {
		case r.Context().Err() != nil:
			return // the client left the queue: charged nothing
		case errors.Is(err, errModelQueueTimeout):
			cs.note("model_queue_timeout")
			g.metrics.reject(reasonNone, "model_queue_timeout")
			g.metrics.request(ep, http.StatusServiceUnavailable)
			writeError(w, errQueueTimeout(model, g.slots.capOf(model), waited, h))
		case errors.Is(err, errLimiterDown):
			cs.note("limiter_unavailable")
			g.fail(w, ep, errLimiter, "limiter_unavailable")
		default:
			cs.note("closing")
			g.fail(w, ep, errClosing, "closing")
		}
		return
	}

	// While THON swaps its own LLM server (a resize), requests wait here;
	// a client that leaves meanwhile is charged nothing.
	if err := g.drain.enter(r.Context()); err != nil {
		lease.release(0)
		g.release(&t, 0, true)
		return
	}
	g.metrics.inFlight.Inc()
	done := false
	g.forward(w, r, ep, body, stream, injected, cs, func(u tokenUsage, status int, refund bool) {
		if done {
			return
		}
		done = true
		if cs != nil {
			cs.u = u
			if refund {
				cs.note("upstream_error")
			}
		}
		lease.release(cost(u))
		g.drain.leave()
		g.metrics.inFlight.Dec()
		g.release(&t, g.tokensOf(u), refund)
		g.metrics.request(ep, status)
		g.metrics.addTokens(model, u)
		g.record(key.ID, model, u, 1, 0)
	})
}

// short reports whether a request is short: embeddings, or a completion
// asking for at most ShortMaxTokens tokens.
func (g *Gateway) short(ep endpoint, maxTokens, maxCompletion gjson.Result) bool {
	if g.opts.ShortMaxTokens <= 0 {
		return false
	}
	if ep == epEmbeddings {
		return true
	}
	n := maxCompletion.Int()
	if maxCompletion.Type != gjson.Number {
		n = maxTokens.Int()
	}
	return n > 0 && n <= int64(g.opts.ShortMaxTokens)
}

var errClosing = apiError{http.StatusServiceUnavailable, typeServer, "gateway_closing",
	"The gateway is shutting down. Nothing was charged; try again in a moment."}

// finishFunc ends an admitted request: charges u, frees its slots (refund:
// also gives the request back) and counts it. The proxy calls it before
// its last write, so a client that sends its next request the moment it
// has the answer finds the slot free.
type finishFunc func(u tokenUsage, status int, refund bool)

// truncModel bounds a model name kept in usage and traces.
func truncModel(model string) string {
	if len(model) > 128 {
		return model[:128]
	}
	return model
}

func (g *Gateway) record(keyID, model string, u tokenUsage, requests, rejections int64) {
	if g.usage == nil {
		return
	}
	model = truncModel(model)
	g.usage.record(Usage{KeyID: keyID, Model: model, Minute: g.now().UTC().Truncate(time.Minute),
		Requests: requests, PromptTokens: u.prompt, CompletionTokens: u.completion, Rejections: rejections})
}

// upstreamRequest sends body upstream. A stream is tied to its client
// (parent): when the client goes, the upstream request is cancelled and the
// server stops generating. Anything else is detached from the client
// (parent nil): llama-server finishes a non-streaming answer whether or not
// anyone waits for it, so the slot stays busy and the answer is charged.
// Every request ends when the gateway closes.
func (g *Gateway) upstreamRequest(parent context.Context, ep endpoint, method string, body []byte, stream bool) (*http.Response, context.CancelFunc, error) {
	t := g.target.Load()
	if t.urls[ep] == "" {
		return nil, nil, errNoUpstream
	}
	if parent == nil {
		parent = g.ctx
	}
	ctx, cancelCtx := context.WithTimeout(parent, g.upTimeout)
	stop := context.AfterFunc(g.ctx, cancelCtx)
	cancel := func() { stop(); cancelCtx() }
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.urls[ep], rd)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("build upstream request: %w", err)
	}
	h := req.Header
	// The request may be sent again on a fresh connection when the pooled
	// one it went out on turns out closed by the server before it answered
	// (Go's transport replays requests marked idempotent, with a body it
	// can rebuild; a nil-valued key is not sent). The server closing an
	// idle keep-alive connection as the request arrives must never reach
	// a participant as an error.
	h["X-Idempotency-Key"] = nil
	if body != nil {
		h["Content-Type"] = []string{"application/json"}
	}
	if stream {
		h["Accept"] = []string{"text/event-stream"}
	} else {
		h["Accept"] = []string{"application/json"}
	}
	h["User-Agent"] = []string{"thon-gateway"}
	if t.key != "" {
		h["Authorization"] = []string{"Bearer " + t.key}
	}
	start := time.Now()
	resp, err := g.client.Do(req)
	g.metrics.latencyBy[ep].Observe(time.Since(start).Seconds())
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return resp, cancel, nil
}

// upstreamFailure turns a transport error into a 502 or 504.
func (g *Gateway) upstreamFailure(err error) apiError {
	if errors.Is(err, errNoUpstream) {
		return errStarting
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return apiError{http.StatusGatewayTimeout, typeServer, "upstream_timeout",
			"The AI model server did not answer in time. Nothing was charged; try again, perhaps with a shorter request."}
	}
	return apiError{http.StatusBadGateway, typeServer, "upstream_unreachable",
		"The AI model server is not reachable right now. Nothing was charged; try again shortly, and tell the organizer if it persists."}
}

// forward sends the request upstream, relays the answer and calls finish
// exactly once: with the usage to charge, the status sent and whether the
// request is refunded (the upstream failed; nothing was generated).
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, ep endpoint, body []byte, stream, injected bool, cs *callSpan, finish finishFunc) {
	var parent context.Context
	if stream {
		parent = r.Context()
	}
	resp, cancel, err := g.upstreamRequest(parent, ep, http.MethodPost, body, stream)
	if err != nil {
		if r.Context().Err() != nil { // the client left before the answer began
			finish(tokenUsage{}, http.StatusServiceUnavailable, true)
			return
		}
		e := g.upstreamFailure(err)
		if !errors.Is(err, errNoUpstream) {
			g.log.Warn("gateway: upstream request failed", "url", g.target.Load().urls[ep], "err", err)
		}
		finish(tokenUsage{}, e.status, true)
		writeError(w, e)
		return
	}
	defer cancel()
	defer resp.Body.Close()

	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		g.log.Error("gateway: the upstream refused the gateway's key; check gateway upstream key", "status", resp.StatusCode, "url", g.target.Load().urls[ep])
		e := apiError{http.StatusBadGateway, typeServer, "upstream_auth_failed",
			"The AI model server refused the gateway's credentials. Nothing was charged; tell the organizer."}
		finish(tokenUsage{}, e.status, true)
		writeError(w, e)
		return
	}
	ct := resp.Header.Get("Content-Type")
	if stream && resp.StatusCode == http.StatusOK && hasPrefixFold(ct, "text/event-stream") {
		var first *time.Time
		if cs != nil {
			first = &cs.firstToken
		}
		g.relayStream(w, r.Context(), resp.Body, cancel, injected, promptEstimate(body), first, finish)
		return
	}

	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		if stream && r.Context().Err() != nil {
			finish(tokenUsage{prompt: promptEstimate(body)}, resp.StatusCode, false)
			return
		}
		e := g.upstreamFailure(err)
		g.log.Warn("gateway: read upstream response", "url", g.target.Load().urls[ep], "err", err)
		finish(tokenUsage{}, e.status, true)
		writeError(w, e)
		return
	}
	var u tokenUsage
	if resp.StatusCode/100 == 2 {
		if cs != nil {
			cs.firstToken = time.Now() // the whole answer, first token and all
		}
		var ok bool
		if u, ok = findUsage(data); !ok {
			g.warnFirst("gateway: the upstream sent no usage; its responses are not charged", "url", g.target.Load().urls[ep])
		}
	}
	// An upstream that fails or is overloaded generated nothing: refund.
	finish(u, resp.StatusCode, resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests)
	h := w.Header()
	if ct != "" {
		h["Content-Type"] = []string{ct}
	}
	h["Content-Length"] = []string{strconv.Itoa(len(data))}
	w.WriteHeader(resp.StatusCode)
	w.Write(data)
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && equalFoldASCII(s[:len(prefix)], prefix)
}

func equalFoldASCII(a, b string) bool {
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

var usageKeyBytes = []byte(`"usage"`)

// findUsage reads the top-level usage object of a JSON response. A literal
// `"usage"` followed by a colon cannot occur inside a JSON string (its quotes
// would be escaped), so the last such key is the response's usage (OpenAI
// servers put it last); a full parse is the fallback.
func findUsage(data []byte) (tokenUsage, bool) {
	if i := bytes.LastIndex(data, usageKeyBytes); i >= 0 {
		rest := bytes.TrimLeft(data[i+len(usageKeyBytes):], " \t\r\n")
		if len(rest) > 0 && rest[0] == ':' {
			var u *usageJSON
			dec := json.NewDecoder(bytes.NewReader(rest[1:]))
			if err := dec.Decode(&u); err == nil && u != nil {
				return u.tokens(), true
			}
		}
	}
	var full struct {
		Usage *usageJSON `json:"usage"`
	}
	if json.Unmarshal(data, &full) == nil && full.Usage != nil {
		return full.Usage.tokens(), true
	}
	return tokenUsage{}, false
}

var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}

var (
	dataPrefix = []byte("data:")
	doneData   = []byte("[DONE]")
	usageNull  = []byte(`"usage":null`)

	timingsKeyBytes = []byte(`"timings":{`)
)

// completeEventBuffered reports whether br already holds a whole SSE event
// (one ends with a blank line), which will be written right away.
func completeEventBuffered(br *bufio.Reader) bool {
	n := br.Buffered()
	if n == 0 {
		return false
	}
	next, _ := br.Peek(n)
	return bytes.Contains(next, []byte("\n\n"))
}

// relayStream passes SSE events through one by one, flushing after each burst,
// and finishes the request with the usage the upstream reported, before
// passing on [DONE]. When the gateway asked for usage (injected), the
// usage-only chunk is kept from the client. When the client goes away
// (clientCtx ends, or a write fails), the upstream request is cancelled at
// once, which stops the server generating, and what was generated until
// then is charged: llama-server's per-token timings when it sends them,
// else one completion token per chunk with text and the prompt estimated
// from the request's size (prompt). first, when not nil, is set to when
// the first chunk with text came.
func (g *Gateway) relayStream(w http.ResponseWriter, clientCtx context.Context, body io.Reader, cancel context.CancelFunc, injected bool, prompt int64, first *time.Time, finish finishFunc) {
	h := w.Header()
	h["Content-Type"] = []string{"text/event-stream"}
	h["Cache-Control"] = []string{"no-cache"}
	h["X-Accel-Buffering"] = []string{"no"}
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	clientGone := rc.Flush() != nil
	if clientGone {
		cancel()
	}

	br := readers.Get().(*bufio.Reader)
	br.Reset(body)
	defer func() {
		br.Reset(nil)
		readers.Put(br)
	}()

	var (
		ev         []byte
		u          tokenUsage
		got        bool // the upstream's usage came
		timed      bool // llama-server's timings came
		tm         tokenUsage
		textChunks int64
		finished   bool // [DONE], or a finish_reason: the answer is whole
	)
	charge := func() {
		switch {
		case got:
		case timed:
			u = tm
			// A chunk's timings may not count its own token yet: never
			// fewer than the chunks with text that were relayed.
			u.completion = max(u.completion, textChunks)
		default:
			if !clientGone {
				g.warnFirst("gateway: the upstream sent no usage in a stream; counting one completion token per chunk and the prompt from the request's size")
			}
			u = tokenUsage{prompt: prompt, completion: textChunks}
		}
		finish(u, http.StatusOK, false)
	}
	emit := func() {
		if len(ev) == 0 {
			return
		}
		forward := true
		payload := eventData(ev)
		if payload != nil && bytes.Equal(payload, doneData) {
			finished = true
			charge()
		} else if payload != nil {
			if hasText(payload) {
				if textChunks == 0 && first != nil {
					*first = time.Now()
				}
				textChunks++
			}
			finished = finished || bytes.Contains(payload, finishReasonBytes)
			if bytes.Contains(payload, timingsKeyBytes) {
				t := gjson.GetManyBytes(payload, "timings.prompt_n", "timings.cache_n", "timings.predicted_n")
				if t[2].Exists() {
					timed = true
					tm = tokenUsage{prompt: t[0].Int() + t[1].Int(), completion: t[2].Int()}
				}
			}
			if bytes.Contains(payload, usageKeyBytes) && !bytes.Contains(payload, usageNull) {
				var c struct {
					Choices []json.RawMessage `json:"choices"`
					Usage   *usageJSON        `json:"usage"`
				}
				if json.Unmarshal(payload, &c) == nil && c.Usage != nil {
					u, got = c.Usage.tokens(), true
					if injected && len(c.Choices) == 0 {
						forward = false
					}
				}
			}
		}
		if forward && !clientGone {
			_, err := w.Write(ev)
			if err == nil && !completeEventBuffered(br) {
				// Flush once per burst: events already read from the
				// upstream go out together, in one write.
				err = rc.Flush()
			}
			if err != nil {
				clientGone = true
				cancel() // the server stops generating
			}
		}
		ev = ev[:0]
	}
	for !clientGone {
		line, err := br.ReadSlice('\n')
		ev = append(ev, line...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if clientCtx.Err() != nil {
				clientGone = true // the upstream request ended with the client
				break
			}
			emit()
			if !finished && !clientGone {
				// The server went away mid-answer: say so in the stream,
				// as OpenAI does, rather than cut it silently.
				g.log.Warn("gateway: the upstream stream broke off before the answer was complete", "err", err)
				w.Write(brokenStreamEvent)
				rc.Flush()
			}
			break
		}
		if len(line) == 1 || (len(line) == 2 && line[0] == '\r') { // blank line: end of event
			emit()
		}
	}
	charge() // no-op when [DONE] came
}

// hasText reports whether a chunk carries generated text (content,
// reasoning, a completion's text or a tool call's arguments).
func hasText(payload []byte) bool {
	for _, k := range textKeys {
		if i := bytes.Index(payload, k); i >= 0 && i+len(k) < len(payload) && payload[i+len(k)] != '"' {
			return true
		}
	}
	return false
}

var textKeys = [][]byte{[]byte(`"content":"`), []byte(`"text":"`), []byte(`"reasoning_content":"`), []byte(`"arguments":"`)}

// promptEstimate is the prompt's tokens guessed from the request's size
// (about 4 bytes a token, OpenAI's rule of thumb), for streams cut short
// before the server said what it counted.
func promptEstimate(body []byte) int64 { return int64(len(body)+3) / 4 }

var (
	finishReasonBytes = []byte(`"finish_reason":"`)
	brokenStreamEvent = []byte(`data: {"error":{"message":"The AI model server stopped in the middle of this answer. What it generated until then was charged; try again.","type":"server_error","param":null,"code":"upstream_stream_broken"}}` + "\n\n")
)

// eventData returns the data of an SSE event (its data: lines joined), or
// nil when it has none.
func eventData(ev []byte) []byte {
	var out []byte
	n := 0
	for len(ev) > 0 {
		line := ev
		if i := bytes.IndexByte(ev, '\n'); i >= 0 {
			line, ev = ev[:i], ev[i+1:]
		} else {
			ev = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if !bytes.HasPrefix(line, dataPrefix) {
			continue
		}
		d := line[len(dataPrefix):]
		if len(d) > 0 && d[0] == ' ' {
			d = d[1:]
		}
		if n == 0 {
			out = d
		} else {
			out = append(append(append([]byte(nil), out...), '\n'), d...)
		}
		n++
	}
	return out
}

// serveModels lists the upstream's models, only the allowed ones.
func (g *Gateway) serveModels(w http.ResponseWriter, r *http.Request, key *Key) {
	p := g.planFor(key, "")
	now := g.now()
	if v, err := g.counters.peek(r.Context(), &p, now); err == nil {
		setLimitHeaders(w.Header(), &p, &v, now)
	}
	resp, cancel, err := g.upstreamRequest(nil, epModels, http.MethodGet, nil, false)
	if err != nil {
		g.log.Warn("gateway: list upstream models", "url", g.target.Load().urls[epModels], "err", err)
		e := g.upstreamFailure(err)
		g.metrics.request(epModels, e.status)
		writeError(w, e)
		return
	}
	defer cancel()
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		e := g.upstreamFailure(err)
		g.metrics.request(epModels, e.status)
		writeError(w, e)
		return
	}
	if resp.StatusCode == http.StatusOK && g.allowed != nil {
		var list struct {
			Object string            `json:"object"`
			Data   []json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(data, &list); err == nil {
			kept := list.Data[:0]
			for _, m := range list.Data {
				if g.allowed[gjson.GetBytes(m, "id").Str] {
					kept = append(kept, m)
				}
			}
			list.Data = kept
			if list.Object == "" {
				list.Object = "list"
			}
			if list.Data == nil {
				list.Data = []json.RawMessage{}
			}
			data, _ = json.Marshal(list)
		} else {
			g.warnFirst("gateway: could not read the upstream's model list", "err", err)
		}
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(data))}
	w.WriteHeader(resp.StatusCode)
	w.Write(data)
	g.metrics.request(epModels, resp.StatusCode)
}
