package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/tidwall/sjson"

	"github.com/thon-dev/thon/internal/gateway/upstreamtest"
)

func newClient(baseURL, secret string) openai.Client {
	return openai.NewClient(option.WithBaseURL(baseURL+"/"), option.WithAPIKey(secret), option.WithMaxRetries(0))
}

// The official client works against the gateway: chat, streaming chat,
// embeddings and the model list; the upstream sees the gateway's key only.
func TestOpenAIClient(t *testing.T) {
	e := newEnv(t, upstreamtest.Options{Key: "upstream-secret", PromptTokens: 7, CompletionTokens: 5, Models: []string{"m1", "m2"}},
		func(o *Options) {
			o.UpstreamKey = "upstream-secret"
			o.Limits = Limits{RequestsPerMinute: 100, TokensPerMinute: 10000}
		})
	secret := e.keys.add(Key{ID: "user:alice", Owner: "alice", Group: "alpha"})
	c := newClient(e.url, secret)
	ctx := context.Background()

	resp, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    "m1",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
	})
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	if got := resp.Choices[0].Message.Content; got != strings.Repeat("tok ", 5) {
		t.Errorf("chat content = %q", got)
	}
	if resp.Usage.PromptTokens != 7 || resp.Usage.CompletionTokens != 5 {
		t.Errorf("chat usage = %+v", resp.Usage)
	}

	// Streaming without asking for usage: content arrives, no usage chunk.
	stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model:    "m2",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
	})
	acc := openai.ChatCompletionAccumulator{}
	chunks := 0
	for stream.Next() {
		ch := stream.Current()
		acc.AddChunk(ch)
		chunks++
		if ch.JSON.Usage.Valid() && ch.Usage.TotalTokens > 0 {
			t.Errorf("client saw a usage chunk it did not ask for: %s", ch.RawJSON())
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if got := acc.Choices[0].Message.Content; got != strings.Repeat("tok ", 5) {
		t.Errorf("streamed content = %q", got)
	}
	if chunks != 7 { // role, 5 tokens, finish
		t.Errorf("chunks = %d, want 7", chunks)
	}

	// Streaming with usage asked for: the client gets it.
	stream = c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model:         "m2",
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var usage openai.CompletionUsage
	for stream.Next() {
		if ch := stream.Current(); ch.Usage.TotalTokens > 0 {
			usage = ch.Usage
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream with usage: %v", err)
	}
	if usage.PromptTokens != 7 || usage.CompletionTokens != 5 {
		t.Errorf("streamed usage = %+v, want 7/5", usage)
	}

	emb, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "m1",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "b"}},
	})
	if err != nil {
		t.Fatalf("embeddings: %v", err)
	}
	if len(emb.Data) != 2 || len(emb.Data[0].Embedding) != 8 || emb.Usage.PromptTokens != 14 {
		t.Errorf("embeddings: %d vectors, usage %+v", len(emb.Data), emb.Usage)
	}

	page, err := c.Models.List(ctx)
	if err != nil {
		t.Fatalf("models: %v", err)
	}
	if len(page.Data) != 2 {
		t.Errorf("models = %+v", page.Data)
	}

	for _, r := range e.up.Requests() {
		if r.Authorization != "Bearer upstream-secret" {
			t.Errorf("upstream saw Authorization %q, want the gateway's key", r.Authorization)
		}
	}
	// Charged: 3 completions of 12 tokens and 14 embedding tokens.
	if v := e.gw.used(t, "user:alice", ""); v.tokens != 3*12+14 || v.requests != 4 {
		t.Errorf("counters: %d requests, %d tokens; want 4, 50", v.requests, v.tokens)
	}
	e.gw.Close()
	if u := e.sink.sum("user:alice"); u.Requests != 4 || u.PromptTokens != 3*7+14 || u.CompletionTokens != 15 {
		t.Errorf("usage sink = %+v", u)
	}
}

// The official client sees a 429 as a rate-limit error with the OpenAI
// fields, and a budget that is used up is not retried.
func TestOpenAIClientErrors(t *testing.T) {
	e := newEnv(t, upstreamtest.Options{}, func(o *Options) { o.Limits = Limits{RequestsPerMinute: 1, BudgetTokens: 1} })
	secret := e.keys.add(Key{ID: "user:bob"})
	c := openai.NewClient(option.WithBaseURL(e.url+"/"), option.WithAPIKey(secret), option.WithMaxRetries(3),
		option.WithRequestTimeout(30*time.Second))
	params := openai.ChatCompletionNewParams{Model: "m", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")}}
	if _, err := c.Chat.Completions.New(context.Background(), params); err != nil {
		t.Fatal(err)
	}
	_, err := c.Chat.Completions.New(context.Background(), params)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Code != "budget_exhausted" {
		t.Fatalf("err = %v, want 429 budget_exhausted", err)
	}
	if n := len(e.up.Requests()); n != 1 {
		t.Errorf("upstream saw %d requests", n)
	}
	if u := e.gw.used(t, "user:bob", ""); u.requests != 1 {
		t.Errorf("requests counted = %d; the client must not have retried (X-Should-Retry)", u.requests)
	}

	bad := newClient(e.url, "thon_nope")
	_, err = bad.Chat.Completions.New(context.Background(), params)
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || apiErr.Code != "invalid_api_key" {
		t.Fatalf("err = %v, want 401 invalid_api_key", err)
	}
}

// streamRaw posts a streaming chat request and returns the response.
func streamRaw(t *testing.T, ctx context.Context, url, secret string, body map[string]any) *http.Response {
	t.Helper()
	body["stream"] = true
	j, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/chat/completions", strings.NewReader(string(j)))
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// The gateway asks the upstream for usage, removes the usage chunk the
// client did not ask for, charges it, and passes events through as they
// come (the first chunk arrives while the upstream is still paused).
func TestStreamUsageInjection(t *testing.T) {
	e := newEnv(t, upstreamtest.Options{PromptTokens: 3, CompletionTokens: 4}, func(o *Options) {
		o.Limits = Limits{TokensPerMinute: 1000}
	})
	secret := e.keys.add(Key{ID: "user:carol"})

	e.up.PauseStreams()
	resp := streamRaw(t, context.Background(), e.url, secret, chat("m"))
	if resp.StatusCode != 200 || resp.Header.Get("X-Ratelimit-Limit-Tokens") != "1000" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(first, "data: {") {
		t.Fatalf("first event while upstream paused: %q, %v (the gateway must not buffer)", first, err)
	}
	e.up.Resume()
	rest := sseEvents(t, br)
	resp.Body.Close()
	if rest[len(rest)-1] != "[DONE]" {
		t.Errorf("stream does not end in [DONE]: %q", rest)
	}
	for _, ev := range rest {
		if strings.Contains(ev, `"usage":{`) {
			t.Errorf("client saw the injected usage chunk: %s", ev)
		}
	}
	if len(rest) != 4+1+1 { // 4 tokens, finish, [DONE]; no usage chunk
		t.Errorf("events after the first: %q", rest)
	}
	reqs := e.up.Requests()
	if !reqs[0].IncludeUsage {
		t.Errorf("upstream did not get stream_options.include_usage")
	}
	if v := e.gw.used(t, "user:carol", ""); v.tokens != 7 {
		t.Errorf("charged %d tokens, want 7", v.tokens)
	}

	// Asked for: passed through untouched, include_usage kept as sent.
	body := chat("m")
	body["stream_options"] = map[string]any{"include_usage": true}
	resp = streamRaw(t, context.Background(), e.url, secret, body)
	evs := sseEvents(t, resp.Body)
	resp.Body.Close()
	if !strings.Contains(evs[len(evs)-2], `"usage":{"prompt_tokens":3`) {
		t.Errorf("client asked for usage but the last chunk is %s", evs[len(evs)-2])
	}
	if v := e.gw.used(t, "user:carol", ""); v.tokens != 14 {
		t.Errorf("charged %d tokens, want 14", v.tokens)
	}

	// include_usage: false is overridden upstream too.
	body = chat("m")
	body["stream_options"] = map[string]any{"include_usage": false}
	resp = streamRaw(t, context.Background(), e.url, secret, body)
	evs = sseEvents(t, resp.Body)
	resp.Body.Close()
	for _, ev := range evs {
		if strings.Contains(ev, `"usage":{`) {
			t.Errorf("client saw usage it declined: %s", ev)
		}
	}
	if r := e.up.Requests()[2]; !r.IncludeUsage {
		t.Errorf("include_usage false was not overridden upstream: %s", r.Body)
	}
	if v := e.gw.used(t, "user:carol", ""); v.tokens != 21 {
		t.Errorf("charged %d tokens, want 21", v.tokens)
	}
}

// A client that leaves mid-stream frees its slot at once: the gateway
// cancels the upstream request (the server stops generating) and charges
// what was generated until then: exactly, from llama-server's per-token
// timings, or one token per chunk with text plus the prompt estimated from
// the request's size.
func TestDisconnectMidStreamCancelsAndChargesWhatWasGenerated(t *testing.T) {
	for _, timings := range []bool{true, false} {
		t.Run(fmt.Sprintf("timings=%v", timings), func(t *testing.T) {
			e := newEnv(t, upstreamtest.Options{PromptTokens: 10, CompletionTokens: 100000, ChunkDelay: 2 * time.Millisecond}, func(o *Options) {
				o.Limits = Limits{Concurrency: 1, TokensPerMinute: 1 << 30}
				o.UpstreamSlots = 1
				o.LlamaCppTimings = timings
			})
			secret := e.keys.add(Key{ID: "user:dave", Group: "alpha"})
			ctx, cancel := context.WithCancel(context.Background())
			resp := streamRaw(t, ctx, e.url, secret, chat("m"))
			br := bufio.NewReader(resp.Body)
			read := 0
			for read < 20 {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("stream: %v", err)
				}
				if strings.Contains(line, `"content":"tok`) {
					read++
				}
			}
			cancel() // the client goes away mid-stream
			resp.Body.Close()
			eventually(t, "the upstream to see its request cancelled", func() bool { return e.up.Aborted() == 1 })
			// The slot and the key's concurrency are free at once.
			second := chat("m2")
			second["max_tokens"] = 20
			wantStatus(t, do(t, "POST", e.url+"/chat/completions", secret, second), 200, "")
			if e.up.Completed() != 1 {
				t.Errorf("upstream completed %d", e.up.Completed())
			}
			e.gw.Close()
			u := e.sink.sum("user:dave")
			generated := e.up.CutTokens()
			streamed := u.CompletionTokens - 20 // the second request was charged 10+20
			t.Logf("client read %d tokens, the upstream wrote %d, the gateway charged %d completion and %d prompt tokens", read, generated, streamed, u.PromptTokens-10)
			if streamed < int64(read) || streamed > generated {
				t.Errorf("charged %d completion tokens for the cut stream: want between what the client read (%d) and what the upstream wrote (%d)", streamed, read, generated)
			}
			wantPrompt := int64(10)
			if !timings {
				wantPrompt = promptEstimate(e.up.Requests()[0].Body)
			}
			if got := u.PromptTokens - 10; got != wantPrompt {
				t.Errorf("charged %d prompt tokens for the cut stream, want %d", got, wantPrompt)
			}
			if r := e.up.Requests()[0]; r.TimingsPerToken != timings {
				t.Errorf("timings_per_token sent upstream: %v, want %v", r.TimingsPerToken, timings)
			}
		})
	}
}

// A stream whose upstream reports no usage is charged one token per chunk.
func TestStreamWithoutUsage(t *testing.T) {
	// An upstream that ignores stream_options, like some servers do.
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for range 3 {
			io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n")
		}
		io.WriteString(w, ": comment\n\ndata: [DONE]\n\n")
	})
	srv := httptest.NewServer(up)
	defer srv.Close()
	e := newEnv(t, upstreamtest.Options{}, func(o *Options) { o.Upstream = srv.URL + "/v1" })
	secret := e.keys.add(Key{ID: "user:erin"})
	resp := streamRaw(t, context.Background(), e.url, secret, chat("m"))
	evs := sseEvents(t, resp.Body)
	resp.Body.Close()
	if len(evs) != 4 || evs[3] != "[DONE]" {
		t.Errorf("events = %q", evs)
	}
	// One completion token per chunk with text, the prompt estimated from
	// the request's size.
	body, _ := json.Marshal(chat("m"))
	body, _ = sjson.SetBytes(body, "stream", true)
	body, _ = sjson.SetBytes(body, "stream_options.include_usage", true)
	if v, want := e.gw.used(t, "user:erin", ""), 3+promptEstimate(body); v.tokens != want {
		t.Errorf("charged %d, want %d (3 chunks and the prompt's estimate)", v.tokens, want)
	}
}
