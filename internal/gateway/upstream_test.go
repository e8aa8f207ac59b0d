package gateway

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/gateway/upstreamtest"
)

// A gateway whose upstream is not known yet (THON's own server starting)
// answers 503 and charges nothing; SetUpstream points it at the server.
func TestUpstreamLater(t *testing.T) {
	up := upstreamtest.New(upstreamtest.Options{Key: "k"})
	defer up.Close()
	e := newEnv(t, upstreamtest.Options{}, func(o *Options) { o.Upstream = "" })
	secret := e.keys.add(Key{ID: "user:a"})
	wantStatus(t, e.chat(secret, "m"), 503, "upstream_starting")
	if err := e.gw.SetUpstream("not a url", ""); err == nil {
		t.Fatal("SetUpstream took a bad URL")
	}
	if err := e.gw.SetUpstream(up.URL, "k"); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, e.chat(secret, "m"), 200, "")
	if e.gw.Upstream() != up.URL {
		t.Fatalf("Upstream() = %q", e.gw.Upstream())
	}
	// The request refused while starting was charged no tokens.
	e.gw.Close()
	p, c := up.Tokens()
	if u := e.sink.sum("user:a"); u.PromptTokens != p || u.CompletionTokens != c {
		t.Fatalf("usage: %+v, the upstream served %d+%d", u, p, c)
	}
}

// Drain waits for the requests in flight and holds new ones until release.
func TestDrain(t *testing.T) {
	e := newEnv(t, upstreamtest.Options{})
	secret := e.keys.add(Key{ID: "user:a"})
	e.up.Hold()
	first := make(chan result, 1)
	go func() { first <- e.chat(secret, "m") }()
	if err := e.up.WaitInFlight(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	// One in flight: a drain with little time gives up, and lets requests through.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if _, err := e.gw.Drain(ctx); err == nil {
		t.Fatal("the drain ended with a request in flight")
	}
	cancel()
	drained := make(chan func(), 1)
	go func() {
		release, err := e.gw.Drain(context.Background())
		if err != nil {
			t.Error(err)
		}
		drained <- release
	}()
	// The drain is waiting: a new request waits too, not reaching the upstream.
	waitFor(t, func() bool { e.gw.drain.mu.Lock(); defer e.gw.drain.mu.Unlock(); return e.gw.drain.held != nil })
	second := make(chan result, 1)
	go func() { second <- e.chat(secret, "m") }()
	time.Sleep(50 * time.Millisecond)
	if n := e.up.InFlight(); n != 1 {
		t.Fatalf("%d requests at the upstream during the drain, want 1", n)
	}
	select {
	case <-drained:
		t.Fatal("the drain ended with a request in flight")
	default:
	}
	e.up.Release(-1)
	wantStatus(t, <-first, 200, "")
	release := <-drained
	select {
	case r := <-second:
		t.Fatalf("a request went through during the drain: %s", r)
	case <-time.After(50 * time.Millisecond):
	}
	release()
	wantStatus(t, <-second, 200, "")
	if e.gw.InFlight() != 0 {
		t.Fatalf("in flight after all: %d", e.gw.InFlight())
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A request from a participant's sandbox must carry their own key (or
// their group's); other callers may use any valid key.
func TestCallerMustOwnTheKey(t *testing.T) {
	sandbox := netip.MustParseAddr("127.0.0.1")
	who := map[netip.Addr][2]string{sandbox: {"alice", "alpha"}}
	e := newEnv(t, upstreamtest.Options{}, func(o *Options) {
		o.Caller = func(_ context.Context, ip netip.Addr) (string, string, bool) {
			w, ok := who[ip]
			return w[0], w[1], ok
		}
	})
	alice := e.keys.add(Key{ID: "user:alice", Owner: "alice", Group: "alpha"})
	bob := e.keys.add(Key{ID: "user:bob", Owner: "bob", Group: "alpha"})
	alpha := e.keys.add(Key{ID: "group:alpha", Owner: "alpha", Group: "alpha"})
	beta := e.keys.add(Key{ID: "group:beta", Owner: "beta", Group: "beta"})
	wantStatus(t, e.chat(alice, "m"), 200, "")
	wantStatus(t, e.chat(alpha, "m"), 200, "")
	wantStatus(t, e.chat(bob, "m"), 401, "key_of_another_participant")
	wantStatus(t, e.chat(beta, "m"), 401, "key_of_another_participant")
	// Not from a sandbox: any valid key.
	delete(who, sandbox)
	wantStatus(t, e.chat(bob, "m"), 200, "")
}

func TestKeyIDs(t *testing.T) {
	for _, c := range []struct {
		id          string
		kind, owner string
		ok          bool
	}{{"user:alice", "user", "alice", true}, {"group:alpha", "group", "alpha", true}, {"admin:x", "", "", false}, {"user:", "", "", false}, {"alice", "", "", false}} {
		kind, owner, ok := ParseKeyID(c.id)
		if kind != c.kind || owner != c.owner || ok != c.ok {
			t.Errorf("ParseKeyID(%q) = %q %q %v", c.id, kind, owner, ok)
		}
	}
	if KeyID(KindGroup, "alpha") != "group:alpha" {
		t.Fatal(KeyID(KindGroup, "alpha"))
	}
}

// The server dies mid-answer: the client's stream ends with an
// OpenAI-shaped error event, not a silent cut, and what was streamed is
// charged.
func TestBrokenStreamEndsWithAnError(t *testing.T) {
	e := newEnv(t, upstreamtest.Options{CompletionTokens: 50})
	secret := e.keys.add(Key{ID: "user:a"})
	e.up.PauseStreams()
	req, err := http.NewRequest("POST", e.url+"/chat/completions", strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The server breaks once its first chunk has reached the client (a
	// sleep instead left it to the scheduler whether anything was streamed).
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(first, "data: ") {
		t.Fatalf("first line of the stream: %q, %v", first, err)
	}
	e.up.Break()
	rest, _ := io.ReadAll(br)
	body := first + string(rest)
	if resp.StatusCode != 200 || !strings.Contains(body, `"code":"upstream_stream_broken"`) || strings.Contains(body, "[DONE]") {
		t.Fatalf("stream: %d %s", resp.StatusCode, body)
	}
	e.gw.Close()
	// Paused after its first chunk (the role, no text yet): the prompt,
	// estimated from the request's size, and no completion token.
	if u := e.sink.sum("user:a"); u.PromptTokens == 0 || u.CompletionTokens >= 50 {
		t.Fatalf("charged %+v: want what was streamed, not nothing and not the whole answer", u)
	}
}
