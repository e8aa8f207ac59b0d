// Package llm_test proves THON's AI gateway against a real llama.cpp
// llama-server running THON's test model: the official OpenAI client
// through the gateway, usage charged as the server counts it, and no error
// a participant could have been spared.
package llm_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/thon-dev/thon/internal/gateway"
	"github.com/thon-dev/thon/internal/llm/testmodel"
	"github.com/thon-dev/thon/internal/testenv"
)

// oneKey is a key store with one participant's key.
type oneKey struct{ hash string }

func (k oneKey) KeyByHash(_ context.Context, hash string) (gateway.Key, error) {
	if hash != k.hash {
		return gateway.Key{}, gateway.ErrUnknownKey
	}
	return gateway.Key{ID: "user:alice", Owner: "alice", Group: "alpha"}, nil
}

// sink sums what the gateway charges.
type sink struct {
	mu                 sync.Mutex
	prompt, completion int64
}

func (s *sink) Add(_ context.Context, u gateway.Usage) error {
	s.mu.Lock()
	s.prompt += u.PromptTokens
	s.completion += u.CompletionTokens
	s.mu.Unlock()
	return nil
}

func (s *sink) take() (int64, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, c := s.prompt, s.completion
	s.prompt, s.completion = 0, 0
	return p, c
}

// gatewayTo starts a gateway in front of upstream (an OpenAI base URL) and
// returns its base URL, alice's key and what it charges.
func gatewayTo(t *testing.T, upstream, upstreamKey string) (string, string, *sink) {
	secret, hash := gateway.NewKey()
	s := &sink{}
	gw, err := gateway.New(gateway.Options{Upstream: upstream, UpstreamKey: upstreamKey, Keys: oneKey{hash}, Usage: s, QueueTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); gw.Close() })
	return srv.URL + "/v1", secret, s
}

// charged returns what the gateway charged since the last call (it hands
// usage on every second).
func charged(t *testing.T, s *sink) (int64, int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if p, c := s.take(); p+c > 0 || time.Now().After(deadline) {
			return p, c
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The official OpenAI client, through THON's gateway, to a real
// llama-server: chat, streaming (reassembled equals the answer), embeddings
// and the model list, each charged exactly what the server counted.
func TestOpenAIClientThroughTheGateway(t *testing.T) {
	l := testenv.LlamaServer(t, testenv.LlamaOptions{Image: testenv.LLMImage(t), Embeddings: true, Key: "server-key"})
	url, secret, s := gatewayTo(t, l.URL+"/v1", "server-key")
	c := openai.NewClient(option.WithBaseURL(url+"/"), option.WithAPIKey(secret), option.WithMaxRetries(0))
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{
		Model:    "thon-test",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("You are a coding assistant."), openai.UserMessage("Write a haiku about Go.")},
	}

	resp, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Choices[0].Message.Content; got != testmodel.Answer {
		t.Fatalf("answer %q, want %q", got, testmodel.Answer)
	}
	u := resp.Usage
	if u.PromptTokens == 0 || u.CompletionTokens == 0 {
		t.Fatalf("the server reported no usage: %+v", u)
	}
	if p, c := charged(t, s); p != u.PromptTokens || c != u.CompletionTokens {
		t.Fatalf("charged %d+%d, the server counted %d+%d", p, c, u.PromptTokens, u.CompletionTokens)
	}

	for _, askUsage := range []bool{true, false} {
		p := params
		if askUsage {
			p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		}
		stream := c.Chat.Completions.NewStreaming(ctx, p)
		acc := openai.ChatCompletionAccumulator{}
		var streamed openai.CompletionUsage
		for stream.Next() {
			ch := stream.Current()
			acc.AddChunk(ch)
			if ch.Usage.TotalTokens > 0 {
				streamed = ch.Usage
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatalf("stream (usage asked: %v): %v", askUsage, err)
		}
		if got := acc.Choices[0].Message.Content; got != resp.Choices[0].Message.Content {
			t.Fatalf("streamed %q, not the answer %q", got, resp.Choices[0].Message.Content)
		}
		switch {
		case askUsage && (streamed.PromptTokens != u.PromptTokens || streamed.CompletionTokens != u.CompletionTokens):
			t.Fatalf("streamed usage %+v, want %+v", streamed, u)
		case !askUsage && streamed.TotalTokens != 0:
			t.Fatalf("the client got usage it did not ask for: %+v", streamed)
		}
		if p, c := charged(t, s); p != u.PromptTokens || c != u.CompletionTokens {
			t.Fatalf("stream (usage asked: %v) charged %d+%d, the server counted %d+%d", askUsage, p, c, u.PromptTokens, u.CompletionTokens)
		}
	}

	emb, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "thon-embed",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"func main() {}", "Hello, world"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(emb.Data) != 2 || len(emb.Data[0].Embedding) != 64 || emb.Usage.PromptTokens == 0 {
		t.Fatalf("embeddings: %d vectors of %d, usage %+v", len(emb.Data), len(emb.Data[0].Embedding), emb.Usage)
	}
	if p, c := charged(t, s); p != emb.Usage.PromptTokens || c != 0 {
		t.Fatalf("embeddings charged %d+%d, the server counted %d", p, c, emb.Usage.PromptTokens)
	}

	page, err := c.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "thon-embed,thon-test" && strings.Join(ids, ",") != "thon-test,thon-embed" {
		t.Fatalf("models: %v", ids)
	}
}

// Under load the server closes idle keep-alive connections (after 5 s)
// while the gateway keeps sending: no participant ever sees an error for
// it. Eight agents stream long answers on two slots while two people ask
// short questions after pauses around the server's keep-alive timeout.
func TestNoErrorWhenTheServerClosesIdleConnections(t *testing.T) {
	l := testenv.LlamaServer(t, testenv.LlamaOptions{Image: testenv.LLMImage(t), Slots: 2, Ctx: 8192})
	url, secret, _ := gatewayTo(t, l.URL+"/v1", "")
	var ok, failed atomic.Int64
	var mu sync.Mutex
	var errs []string
	post := func(body string) {
		req, _ := http.NewRequest("POST", url+"/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+secret)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			failed.Add(1)
			mu.Lock()
			errs = append(errs, err.Error())
			mu.Unlock()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Contains(b, []byte("Hello")) {
			failed.Add(1)
			mu.Lock()
			errs = append(errs, fmt.Sprintf("%d %.200s", resp.StatusCode, b))
			mu.Unlock()
			return
		}
		ok.Add(1)
	}
	end := time.Now().Add(25 * time.Second)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for time.Now().Before(end) {
				post(`{"model":"thon-test","stream":true,"max_tokens":1500,"ignore_eos":true,"messages":[{"role":"user","content":"go on"}]}`)
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for time.Now().Before(end) {
				post(`{"model":"thon-test","max_tokens":8,"messages":[{"role":"user","content":"a short question"}]}`)
				time.Sleep(4*time.Second + rand.N(2*time.Second))
			}
		})
	}
	wg.Wait()
	t.Logf("%d requests answered, %d failed", ok.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Fatalf("%d of %d requests failed: %v", failed.Load(), failed.Load()+ok.Load(), errs)
	}
	if ok.Load() < 10 {
		t.Fatalf("only %d requests were answered", ok.Load())
	}
}

// keys is a key store with one key per participant.
type keys struct {
	mu sync.Mutex
	m  map[string]gateway.Key
}

func (k *keys) add(id string) string {
	secret, hash := gateway.NewKey()
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]gateway.Key{}
	}
	k.m[hash] = gateway.Key{ID: "user:" + id, Owner: id, Group: "alpha"}
	k.mu.Unlock()
	return secret
}

func (k *keys) KeyByHash(_ context.Context, hash string) (gateway.Key, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if key, ok := k.m[hash]; ok {
		return key, nil
	}
	return gateway.Key{}, gateway.ErrUnknownKey
}

// busySlots counts the real server's slots that are processing.
func busySlots(t *testing.T, url string) (busy int) {
	t.Helper()
	// A connection the Docker bridge resets (seen here under load, on new
	// connections to the published port) says nothing about the slots:
	// ask again, a few times.
	var resp *http.Response
	var err error
	for try := 0; ; try++ {
		if resp, err = http.Get(url + "/slots"); err == nil {
			break
		}
		if try == 4 {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer resp.Body.Close()
	var slots []struct {
		IsProcessing bool `json:"is_processing"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&slots); err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if s.IsProcessing {
			busy++
		}
	}
	return busy
}

// The gateway never gives the real server more streams at once than the
// model's slots, however many participants push: the server's own /slots
// never shows more busy ones. (The server has 4; the gateway is told 2.)
func TestSlotBoundAtTheRealServer(t *testing.T) {
	l := testenv.LlamaServer(t, testenv.LlamaOptions{Image: testenv.LLMImage(t), Slots: 4, Ctx: 4 * 4096})
	ks := &keys{}
	gw, err := gateway.New(gateway.Options{Upstream: l.URL + "/v1", Keys: ks, UpstreamSlots: 2, LlamaCppTimings: true, QueueTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); gw.Close() })
	end := time.Now().Add(8 * time.Second)
	var wg sync.WaitGroup
	var served, failed atomic.Int64
	for i := range 8 {
		secret := ks.add(fmt.Sprintf("p%d", i))
		wg.Go(func() {
			for time.Now().Before(end) {
				req, _ := http.NewRequest("POST", srv.URL+"/v1/chat/completions",
					strings.NewReader(`{"model":"thon-test","stream":true,"max_tokens":200,"ignore_eos":true,"messages":[{"role":"user","content":"go on"}]}`))
				req.Header.Set("Authorization", "Bearer "+secret)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !bytes.Contains(b, []byte("[DONE]")) {
					failed.Add(1)
					continue
				}
				served.Add(1)
			}
		})
	}
	most, samples := 0, 0
	for time.Now().Before(end) {
		busy := busySlots(t, l.URL)
		most = max(most, busy)
		samples++
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	t.Logf("%d streams served, %d failed; the server showed at most %d busy slots in %d samples", served.Load(), failed.Load(), most, samples)
	if failed.Load() > 0 {
		t.Fatalf("%d requests failed", failed.Load())
	}
	if most > 2 {
		t.Fatalf("the server had %d slots busy at once; the gateway may send 2", most)
	}
	if most < 2 || served.Load() < 8 {
		t.Fatalf("the load did not fill the slots (at most %d busy, %d served)", most, served.Load())
	}
}

// A participant who disconnects mid-stream frees the slot at once: the
// gateway cancels its request and the real server stops generating; what
// it generated until then is charged, exactly as its per-token timings
// count it.
func TestDisconnectMidStreamStopsTheRealServer(t *testing.T) {
	l := testenv.LlamaServer(t, testenv.LlamaOptions{Image: testenv.LLMImage(t), Slots: 1, Ctx: 16384})
	ks := &keys{}
	s := &sink{}
	gw, err := gateway.New(gateway.Options{Upstream: l.URL + "/v1", Keys: ks, Usage: s, UpstreamSlots: 1, LlamaCppTimings: true, QueueTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); gw.Close() })
	secret := ks.add("alice")
	body := `{"model":"thon-test","stream":true,"max_tokens":15000,"ignore_eos":true,"messages":[{"role":"user","content":"go on"}]}`
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	read := 0
	for read < 100 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(line, `"content":"`) && !strings.Contains(line, `"content":""`) {
			read++
		}
	}
	if busy := busySlots(t, l.URL); busy != 1 {
		t.Fatalf("%d busy slots mid-stream", busy)
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if busy := busySlots(t, l.URL); busy == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server kept generating after the client left")
		}
		time.Sleep(10 * time.Millisecond)
	}
	p, c := charged(t, s)
	t.Logf("the client read %d tokens; charged %d prompt + %d completion tokens", read, p, c)
	if c < int64(read) || c >= 15000 {
		t.Fatalf("charged %d completion tokens: want at least the %d read and less than the 15000 asked", c, read)
	}
	// The prompt is what the server counted for the same request.
	full, err := http.Post(l.URL+"/v1/chat/completions", "application/json", strings.NewReader(strings.NewReplacer(`"max_tokens":15000`, `"max_tokens":1`, `"stream":true`, `"stream":false`).Replace(body)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(full.Body)
	full.Body.Close()
	if want := fmt.Sprintf(`"prompt_tokens":%d`, p); !bytes.Contains(b, []byte(want)) {
		t.Fatalf("charged %d prompt tokens; the server counts: %s", p, b)
	}
	// The slot is free for the next participant at once.
	bob := ks.add("bob")
	req, _ = http.NewRequest("POST", srv.URL+"/v1/chat/completions", strings.NewReader(`{"model":"thon-test","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+bob)
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != 200 {
		t.Fatalf("the next request: %d", r2.StatusCode)
	}
}
