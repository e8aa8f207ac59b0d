package faults

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/gateway"
	"github.com/thon-dev/thon/internal/testenv"
	"github.com/thon-dev/thon/internal/thontest"
)

// keys is a gateway key store of a few participants.
type keys map[string]gateway.Key // by hash

func (k keys) KeyByHash(_ context.Context, hash string) (gateway.Key, error) {
	if key, ok := k[hash]; ok {
		return key, nil
	}
	return gateway.Key{}, gateway.ErrUnknownKey
}

// sink sums what the gateway charges.
type sink struct {
	mu         sync.Mutex
	completion int64
}

func (s *sink) Add(_ context.Context, u gateway.Usage) error {
	s.mu.Lock()
	s.completion += u.CompletionTokens
	s.mu.Unlock()
	return nil
}

func (s *sink) charged() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.completion
}

// TestLLMServerKilledMidStream kills an external llama-server (THON's test
// model, in a container) while it streams an answer through the AI gateway:
// the participant's stream ends with an OpenAI-shaped error event, not a
// hang and not a silent cut; the tokens already streamed are charged; the
// gateway keeps answering; and once the server is back, requests succeed
// again without touching the gateway.
func TestLLMServerKilledMidStream(t *testing.T) {
	cli := testenv.Docker(t)
	l := testenv.LlamaServer(t, testenv.LlamaOptions{Image: testenv.LLMImage(t), Slots: 2, Ctx: 8192, Port: thontest.FreePort(t)})
	secret, hash := gateway.NewKey()
	s := &sink{}
	gw, err := gateway.New(gateway.Options{Upstream: l.URL + "/v1", Keys: keys{hash: {ID: "user:alice", Owner: "alice", Group: "alpha"}}, Usage: s, QueueTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); gw.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	post := func(body string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+secret)
		req.Header.Set("Content-Type", "application/json")
		return http.DefaultClient.Do(req)
	}

	resp, err := post(`{"model":"thon-test","stream":true,"max_tokens":8000,"ignore_eos":true,"messages":[{"role":"user","content":"go on"}]}`)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	chunks := 0
	var last string
	var killed time.Time
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		last = line
		if hasText.MatchString(line) { // generated text: not the role's chunk ("content":null or "")
			chunks++
		}
		if chunks == 50 && killed.IsZero() {
			if _, err := cli.ContainerKill(ctx, l.Name, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
				t.Fatal(err)
			}
			killed = time.Now()
		}
	}
	ended := time.Since(killed)
	if killed.IsZero() {
		t.Fatalf("the stream ended after %d chunks, before the kill: %s", chunks, last)
	}
	if !strings.Contains(last, `"error":{`) || !strings.Contains(last, `"type":"server_error"`) {
		t.Fatalf("the stream's last event after the kill is not an OpenAI error: %s", last)
	}
	t.Logf("%d content chunks before and after the kill; the stream ended %.0fms after the kill with: %.120s", chunks, ended.Seconds()*1000, last)
	deadline := time.Now().Add(10 * time.Second)
	for s.charged() < int64(chunks) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if c := s.charged(); c < int64(chunks) {
		t.Fatalf("charged %d completion tokens for %d streamed chunks", c, chunks)
	}
	t.Logf("charged %d completion tokens for %d streamed chunks", s.charged(), chunks)

	// The gateway is healthy while the server is down: it answers at once,
	// with an OpenAI error saying the server cannot be reached.
	r2, err := post(`{"model":"thon-test","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`)
	if err != nil {
		t.Fatalf("the gateway did not answer with the server down: %v", err)
	}
	r2.Body.Close()
	if r2.StatusCode < 500 {
		t.Fatalf("with the server down: %d", r2.StatusCode)
	}

	// Back: the same container started again on the same port.
	if _, err := cli.ContainerStart(ctx, l.Name, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	for {
		r, err := post(`{"model":"thon-test","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`)
		if err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("no answer through the gateway after the server came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("answers again %.1fs after the server's container was started again", time.Since(restarted).Seconds())
}

// hasText matches a streamed chunk that carries generated text.
var hasText = regexp.MustCompile(`"content":"[^"]`)
