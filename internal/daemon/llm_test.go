package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/llm/lemonadetest"
	"github.com/thon-dev/thon/internal/thontest"
)

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The daemon manages Lemonade for the event: status and load through the
// API, a rescale when a participant joins, and participants' chats through
// the gateway with the regular key, never the admin key.
func TestDaemonManagesLemonade(t *testing.T) {
	srv := lemonadetest.New(lemonadetest.Options{Key: "regular-key", AdminKey: "admin-key"})
	defer srv.Close()
	h := thontest.New(t, thontest.Groups(alphaBeta...), thontest.FakeEngine())
	h.Stop()
	l := &h.Config.LLM
	l.URL, l.APIKey, l.AdminAPIKey = srv.URL, "regular-key", "admin-key"
	l.ChatModel.Checkpoint, l.ChatModel.Name, l.ChatModel.CtxPerUser = "", "Qwen3-0.6B-GGUF", 4096
	h.Start()
	ctx := context.Background()

	st, err := h.Client.LLMStatus(ctx)
	if err != nil || !st.Reachable || st.Plan.Participants != 3 || len(st.Configured) != 1 || st.Configured[0].Loaded {
		t.Fatalf("status: %+v %v", st, err)
	}
	res, err := h.Client.LLMLoad(ctx, "")
	if err != nil || len(res) != 1 || res[0].Action != "loaded" {
		t.Fatalf("load: %+v %v", res, err)
	}
	if o := srv.Loaded()["Qwen3-0.6B-GGUF"]; o.CtxSize != 3*4096 || o.LlamacppArgs != "-np 3" {
		t.Fatalf("loaded with %+v", o)
	}
	plan, err := h.Client.LLMPlan(ctx)
	if err != nil || plan.Models[0].CtxPerSlot != 4096 {
		t.Fatalf("plan: %+v %v", plan, err)
	}

	// A participant joins: the model is sized for four once things settle.
	if _, err := h.Client.CreateUser(ctx, "dave", "beta"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the rescale to 4 participants", func() bool {
		return srv.Loaded()["Qwen3-0.6B-GGUF"].LlamacppArgs == "-np 4"
	})
	if o := srv.Loaded()["Qwen3-0.6B-GGUF"]; o.CtxSize != 4*4096 {
		t.Fatalf("rescaled to %+v", o)
	}
	events, _ := h.Client.Events(ctx, 0, 100)
	found := false
	for _, e := range events {
		found = found || (e.Action == "llm.load" && e.Target == "Qwen3-0.6B-GGUF")
	}
	if !found {
		t.Fatalf("no llm.load in the audit log: %+v", events)
	}

	// alice's key through the gateway reaches Lemonade's OpenAI API with the regular key.
	if _, err := h.Client.Action(ctx, "alice", "start"); err != nil {
		t.Fatal(err)
	}
	key := sandboxEnv(t, h, "alice")["OPENAI_API_KEY"]
	body := `{"model":"Qwen3-0.6B-GGUF","messages":[{"role":"user","content":"hi"}]}`
	req, _ := http.NewRequest(http.MethodPost, h.Daemon.GatewayURL+"/chat/completions", bytes.NewBufferString(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("chat through the gateway: %s", resp.Status)
	}
	for _, r := range srv.Requests() {
		if r.Path == "/api/v1/chat/completions" && r.Authorization != "Bearer regular-key" {
			t.Fatalf("Lemonade saw %q on a chat", r.Authorization)
		}
	}

	// A model the server does not know: a clear 404 through the API.
	_, err = h.Client.LLMLoad(ctx, "no-such-model")
	var ce *client.Error
	if !errors.As(err, &ce) || ce.StatusCode != http.StatusNotFound || !strings.Contains(ce.Error(), "no-such-model") {
		t.Fatalf("unknown model: %v", err)
	}
}

// An LLM server that is not there blocks nothing: sandboxes start, status
// says why, management answers 502 with the address.
func TestDaemonWithoutItsLLMServer(t *testing.T) {
	h := thontest.New(t, thontest.Groups(alphaBeta...), thontest.FakeEngine())
	h.Stop()
	h.Config.LLM.URL = "http://127.0.0.1:1"
	h.Start()
	ctx := context.Background()
	if sum, err := h.Client.Bulk(ctx, client.BulkRequest{Action: "start"}, nil); err != nil || sum.Failed != 0 {
		t.Fatalf("start without an LLM server: %+v %v", sum, err)
	}
	st, err := h.Client.LLMStatus(ctx)
	if err != nil || st.Reachable || !strings.Contains(st.Error, "127.0.0.1:1") {
		t.Fatalf("status: %+v %v", st, err)
	}
	_, err = h.Client.LLMLoad(ctx, "")
	var ce *client.Error
	if !errors.As(err, &ce) || ce.StatusCode != http.StatusBadGateway || !strings.Contains(ce.Error(), "127.0.0.1:1") {
		t.Fatalf("load without a server: %v", err)
	}
}
