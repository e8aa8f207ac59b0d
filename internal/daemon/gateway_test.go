package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/gateway/upstreamtest"
	"github.com/thon-dev/thon/internal/thontest"
)

// sandboxEnv reads a running sandbox's environment through the test IDE.
func sandboxEnv(t *testing.T, h *thontest.Harness, user string) map[string]string {
	t.Helper()
	s, err := h.Client.Sandbox(context.Background(), user)
	if err != nil || s.Endpoint == "" {
		t.Fatalf("%s's sandbox: %+v %v", user, s, err)
	}
	resp, err := http.Get("http://" + s.Endpoint + "/env")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	env := map[string]string{}
	json.NewDecoder(resp.Body).Decode(&env)
	return env
}

func chat(t *testing.T, url, key string) (int, string) {
	t.Helper()
	body := `{"model":"test-model","messages":[{"role":"user","content":"hi"}]}`
	req, _ := http.NewRequest(http.MethodPost, url+"/chat/completions", bytes.NewBufferString(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEverySandboxGetsItsOwnGatewayKey(t *testing.T) {
	up := upstreamtest.New(upstreamtest.Options{Key: "upstream-secret"})
	defer up.Close()
	h := thontest.New(t, thontest.Groups(alphaBeta...))
	h.Stop()
	h.Config.LLM.Backend, h.Config.LLM.URL, h.Config.LLM.APIKey = config.BackendOpenAI, up.URL, "upstream-secret"
	h.Start()
	ctx := context.Background()
	if _, err := h.Client.Bulk(ctx, client.BulkRequest{Action: "start"}, nil); err != nil {
		t.Fatal(err)
	}
	alice, bob := sandboxEnv(t, h, "alice"), sandboxEnv(t, h, "bob")
	key := alice["OPENAI_API_KEY"]
	if !strings.HasPrefix(key, "thon_") || key == bob["OPENAI_API_KEY"] {
		t.Fatalf("keys: alice %q, bob %q", key, bob["OPENAI_API_KEY"])
	}
	base := alice["OPENAI_BASE_URL"]
	if !strings.HasPrefix(base, "http://host.docker.internal:") || !strings.HasSuffix(base, "/v1") {
		t.Fatalf("OPENAI_BASE_URL: %q", base)
	}
	// The sandbox reaches the gateway through the host.
	hostPort := strings.TrimSuffix(strings.TrimPrefix(base, "http://"), "/v1")
	if out, code, err := h.Docker.Exec(ctx, "alice", []string{"/sandboxd", "dial", hostPort}); err != nil || code != 0 {
		t.Fatalf("alice's sandbox cannot reach the gateway at %s: %s %v", hostPort, out, err)
	}
	// One record per participant's key.
	if ks, err := h.Client.GatewayKeys(ctx); err != nil || len(ks) != 3 {
		t.Fatalf("key records: %+v %v", ks, err)
	}

	// Through the gateway with alice's key; the upstream sees its own key, never hers.
	if code, body := chat(t, h.Daemon.GatewayURL, key); code != 200 || !strings.Contains(body, `"usage"`) {
		t.Fatalf("chat through the gateway: %d %s", code, body)
	}
	if got := up.Requests()[0].Authorization; got != "Bearer upstream-secret" {
		t.Fatalf("upstream saw %q", got)
	}
	if code, _ := chat(t, h.Daemon.GatewayURL, "thon_"+strings.Repeat("0", 64)); code != http.StatusUnauthorized {
		t.Fatalf("unknown key: %d", code)
	}
	// Usage lands in the store, per key and model.
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows, err := h.Client.GatewayUsage(ctx, []string{"alice"}, nil, "")
		if err == nil && len(rows) == 1 && rows[0].Requests == 1 && rows[0].PromptTokens == 10 && rows[0].CompletionTokens == 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage of alice: %+v %v", rows, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Prometheus metrics on the daemon's loopback API.
	resp, err := http.Get(h.Daemon.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`thon_gateway_requests_total{code="200",endpoint="chat"}`, `thon_gateway_tokens_total{kind="completion",model="test-model"} 20`, "thon_gateway_upstream_latency_seconds_bucket"} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}

	// A recreate keeps the key; a rotation replaces it and marks the sandbox outdated.
	if _, err := h.Client.Action(ctx, "alice", "recreate"); err != nil {
		t.Fatal(err)
	}
	if got := sandboxEnv(t, h, "alice")["OPENAI_API_KEY"]; got != key {
		t.Fatal("a recreate changed alice's key")
	}
	rot, err := h.Client.RotateGatewayKey(ctx, "alice")
	if err != nil || rot.Key == key || rot.ID != "user:alice" {
		t.Fatalf("rotate: %+v %v", rot, err)
	}
	if code, _ := chat(t, h.Daemon.GatewayURL, key); code != http.StatusUnauthorized {
		t.Fatalf("old key after rotation: %d", code)
	}
	if s, _ := h.Client.Sandbox(ctx, "alice"); !s.Outdated {
		t.Fatalf("alice's sandbox should be outdated after the rotation: %+v", s)
	}
	if _, err := h.Client.Action(ctx, "alice", "recreate"); err != nil {
		t.Fatal(err)
	}
	if got := sandboxEnv(t, h, "alice")["OPENAI_API_KEY"]; got != rot.Key {
		t.Fatal("the recreated sandbox did not get the rotated key")
	}
	if code, _ := chat(t, h.Daemon.GatewayURL, rot.Key); code != 200 {
		t.Fatalf("rotated key: %d", code)
	}
	// Revoked: refused.
	if err := h.Client.RevokeGatewayKey(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if code, body := chat(t, h.Daemon.GatewayURL, bob["OPENAI_API_KEY"]); code != http.StatusUnauthorized || !strings.Contains(body, "revoked") {
		t.Fatalf("revoked key: %d %s", code, body)
	}
}

// gateway.upstream_slots: the daemon's gateway never sends the model more
// requests at once; one that waits longer than gateway.queue_timeout gets
// a 503 saying so. The queue shows in /metrics by model and group.
func TestGatewayUpstreamSlotsFromConfig(t *testing.T) {
	up := upstreamtest.New(upstreamtest.Options{})
	defer up.Close()
	h := thontest.New(t, thontest.Groups(alphaBeta...), thontest.FakeEngine())
	h.Stop()
	h.Config.LLM.Backend, h.Config.LLM.URL = config.BackendOpenAI, up.URL
	h.Config.Gateway.UpstreamSlots = 1
	h.Config.Gateway.QueueTimeout = config.Duration(time.Second)
	h.Start()
	ctx := context.Background()
	alice, err := h.Daemon.Keyring.KeyFor(ctx, "alice", "alpha")
	if err != nil {
		t.Fatal(err)
	}
	carol, err := h.Daemon.Keyring.KeyFor(ctx, "carol", "beta")
	if err != nil {
		t.Fatal(err)
	}
	if n := h.Daemon.Gateway.Slots("thon-test"); n != 1 {
		t.Fatalf("the gateway gives thon-test %d slots, want 1", n)
	}
	up.Hold()
	first := make(chan int, 1)
	go func() {
		code, _ := chatOnce(h.Daemon.GatewayURL, alice)
		first <- code
	}()
	if err := up.WaitInFlight(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	code, body := chatOnce(h.Daemon.GatewayURL, carol)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "model_queue_timeout") {
		t.Fatalf("carol while alice holds the only slot: %d %s", code, body)
	}
	up.Release(-1)
	if code := <-first; code != 200 {
		t.Fatalf("alice: %d", code)
	}
	if m := up.MaxInFlight(); m != 1 {
		t.Fatalf("the upstream saw %d at once, 1 slot", m)
	}
	resp, err := http.Get(h.Daemon.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`thon_gateway_model_slots{model="thon-test"} 1`, `thon_gateway_model_queue_length{group="beta",model="thon-test"} 0`,
		`thon_gateway_model_queue_wait_seconds_count{group="beta",model="thon-test"} 1`, `thon_gateway_rejections_total{reason="model_queue_timeout"} 1`} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
