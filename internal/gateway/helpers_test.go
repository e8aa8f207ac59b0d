package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/thon-dev/thon/internal/gateway/upstreamtest"
)

// testKeys is an in-memory KeyStore.
type testKeys struct {
	mu    sync.Mutex
	m     map[string]Key
	calls int
}

func newTestKeys() *testKeys { return &testKeys{m: make(map[string]Key)} }

func (s *testKeys) KeyByHash(_ context.Context, hash string) (Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	k, ok := s.m[hash]
	if !ok {
		return Key{}, fmt.Errorf("key %s…: %w", hash[:8], ErrUnknownKey)
	}
	return k, nil
}

// add stores k and returns its secret.
func (s *testKeys) add(k Key) string {
	secret, hash := NewKey()
	s.mu.Lock()
	s.m[hash] = k
	s.mu.Unlock()
	return secret
}

func (s *testKeys) revoke(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, k := range s.m {
		if k.ID == id {
			k.Revoked = true
			s.m[h] = k
		}
	}
}

// testSink is an in-memory UsageSink.
type testSink struct {
	mu  sync.Mutex
	got []Usage
}

func (s *testSink) Add(_ context.Context, u Usage) error {
	s.mu.Lock()
	s.got = append(s.got, u)
	s.mu.Unlock()
	return nil
}

// sum adds up the records of a key.
func (s *testSink) sum(keyID string) Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Usage{KeyID: keyID}
	for _, u := range s.got {
		if u.KeyID == keyID {
			out.Requests += u.Requests
			out.PromptTokens += u.PromptTokens
			out.CompletionTokens += u.CompletionTokens
			out.Rejections += u.Rejections
		}
	}
	return out
}

// fakeClock is Options.Now under the test's control.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	// Mid-window, so nothing rolls over unless the test says so.
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 30, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a gateway on a loopback port in front of a test upstream.
type env struct {
	t     testing.TB
	up    *upstreamtest.Server
	gw    *Gateway
	srv   *httptest.Server
	keys  *testKeys
	sink  *testSink
	clock *fakeClock
	url   string // gateway base URL, ending in /v1
}

type envOpt func(*Options)

func newEnv(t testing.TB, uo upstreamtest.Options, opts ...envOpt) *env {
	t.Helper()
	up := upstreamtest.New(uo)
	t.Cleanup(up.Close)
	e := &env{t: t, up: up, keys: newTestKeys(), sink: &testSink{}, clock: newFakeClock()}
	o := Options{Upstream: up.URL, Keys: e.keys, Usage: e.sink, Now: e.clock.Now, Logger: testLogger(t), QueueTimeout: -1}
	for _, f := range opts {
		f(&o)
	}
	gw, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.gw = gw
	e.srv = httptest.NewServer(gw)
	t.Cleanup(func() {
		// A test that stops early (t.Fatal) may leave requests held at the
		// upstream: let them go first, or closing the gateway's server waits
		// for them for ever.
		up.Release(-1)
		up.Resume()
		e.srv.Close()
		gw.Close()
	})
	e.url = e.srv.URL + "/v1"
	return e
}

// addGateway starts another gateway replica with the same options on the
// same upstream and key store.
func (e *env) addGateway(opts ...envOpt) (*Gateway, string) {
	o := Options{Upstream: e.up.URL, Keys: e.keys, Now: e.clock.Now, Logger: testLogger(e.t), QueueTimeout: -1}
	for _, f := range opts {
		f(&o)
	}
	gw, err := New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	e.t.Cleanup(func() {
		e.up.Release(-1) // as in newEnv
		e.up.Resume()
		srv.Close()
		gw.Close()
	})
	return gw, srv.URL + "/v1"
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// result is one answer of the gateway as a client sees it.
type result struct {
	status int
	header http.Header
	body   []byte
	err    errorBody
}

func (r result) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

var httpClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

func do(t testing.TB, method, url, secret string, body any) result {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return result{}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	r := result{status: resp.StatusCode, header: resp.Header, body: data}
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(data, &r.err); err != nil || r.err.Error.Message == "" {
			t.Errorf("%s %s: error body is not OpenAI-shaped: %s", method, url, data)
		}
	}
	return r
}

func chat(model string) map[string]any {
	return map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": "hi"}}}
}

func (e *env) chat(secret, model string) result {
	e.t.Helper()
	return do(e.t, "POST", e.url+"/chat/completions", secret, chat(model))
}

// sseEvents reads an SSE body into its data payloads.
func sseEvents(t testing.TB, r io.Reader) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, d)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read stream: %v", err)
	}
	return out
}

// eventually polls cond until it holds or 20 s pass (a deadline against
// hangs, not a timing assertion).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// used reads a key's counters as the gateway sees them.
func (g *Gateway) used(t testing.TB, keyID, model string) verdict {
	t.Helper()
	p := plan{keyID: keyID, model: model}
	v, err := g.counters.peek(context.Background(), &p, g.now())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// ---- Redis ----

// redisServer is a redis-server process of the test's own.
type redisServer struct {
	t    testing.TB
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

const redisBinary = "/usr/bin/redis-server"

func findRedis(t testing.TB) string { return findRedisAt(t, redisBinary, "redis-server") }

// findRedisAt fails the test (it does not skip) when the binary is missing.
func findRedisAt(t testing.TB, path, name string) string {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return path
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	t.Fatalf("redis-server is not installed; the gateway's Redis tests need a real one: install it: apt-get install -y redis-server")
	return ""
}

// startRedis starts a redis-server on a free loopback port, stopped when
// the test ends.
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := &redisServer{t: t, port: port}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *redisServer) url() string { return "redis://127.0.0.1:" + strconv.Itoa(r.port) + "/0" }

func (r *redisServer) start() {
	r.t.Helper()
	bin := findRedis(r.t)
	cmd := exec.Command(bin, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", r.t.TempDir(), "--protected-mode", "no")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	r.cmd, r.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(r.done) }()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(r.port)})
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		select {
		case <-r.done:
			r.t.Fatalf("redis-server exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server did not answer on port %d: %s", r.port, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop kills the server (an outage, not a shutdown) and waits for it.
func (r *redisServer) stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}

func (r *redisServer) client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(r.port)})
	r.t.Cleanup(func() { c.Close() })
	return c
}

func isLimiterDown(err error) bool { return errors.Is(err, errLimiterDown) }

// waitCtx bounds a wait in a test, so a broken limit fails instead of
// hanging.
func waitCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// recv takes a result from ch, failing the test instead of hanging.
func recv(t testing.TB, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("gave up waiting for an answer")
		return result{}
	}
}
