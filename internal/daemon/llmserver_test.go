package daemon_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	thonclient "github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/llm/testmodel"
	"github.com/thon-dev/thon/internal/testenv"
	"github.com/thon-dev/thon/internal/thontest"
)

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// THON runs llama.cpp's llama-server itself, with its test model: sized for
// the participants, reachable only through the gateway with each
// participant's own key, resized as people join without cutting a stream,
// and restarted when it dies.
func TestDaemonRunsLlamaServer(t *testing.T) {
	img := testenv.LLMImage(t)
	h := thontest.New(t, thontest.Groups(config.Group{Name: "alpha", Users: []string{"alice", "bob"}}))
	h.Stop()
	l := &h.Config.LLM
	l.Backend, l.Image, l.GPU = config.BackendLlamacpp, img, "none"
	l.ChatModel = config.LLMModel{Name: "thon-test", CtxPerUser: 16384}
	l.EmbeddingModel = config.LLMModel{Name: "thon-embed", CtxPerUser: 1024}
	h.Start()
	ctx := context.Background()

	var st thonclient.LLMStatus
	waitFor(t, 2*time.Minute, "the LLM server with 2 slots", func() bool {
		var err error
		st, err = h.Client.LLMStatus(ctx)
		return err == nil && st.Reachable && st.Slots != nil && st.Slots.Total == 2
	})
	if st.Server == nil || st.Server.State != "running" || !st.Server.TestModel || st.Server.Container != h.Instance+"-llm" || len(st.Loaded) != 2 {
		t.Fatalf("status: %+v server %+v", st, st.Server)
	}
	if !strings.Contains(strings.Join(st.Notes, "\n"), "THON's built-in test model answers") {
		t.Errorf("the status does not say the test model answers: %q", st.Notes)
	}
	// The gateway never sends a model more than the slots it runs with.
	waitFor(t, 10*time.Second, "the gateway to know the plan's slots", func() bool {
		return h.Daemon.Gateway.Slots("thon-test") == 2 && h.Daemon.Gateway.Slots("thon-embed") == 2
	})

	for _, u := range []string{"alice", "bob"} {
		if _, err := h.Client.Action(ctx, u, "start"); err != nil {
			t.Fatal(err)
		}
	}
	// From inside alice's sandbox, with only what THON gave her.
	chat := `{"model":"thon-test","messages":[{"role":"user","content":"Say hello."}]}`
	fetch := func(user string, header ...string) (int, string) {
		t.Helper()
		cmd := []string{"/sandboxd", "fetch"}
		for _, hd := range header {
			cmd = append(cmd, "-H", hd)
		}
		cmd = append(cmd, "-d", chat, "$OPENAI_BASE_URL/chat/completions")
		out, code, err := h.Docker.Exec(ctx, user, cmd)
		if err != nil || code != 0 {
			t.Fatalf("fetch in %s's sandbox: %q %d %v", user, out, code, err)
		}
		status, body, _ := strings.Cut(out, "\n")
		var n int
		fmt.Sscan(status, &n)
		return n, body
	}
	code, body := fetch("alice", "Authorization: Bearer $OPENAI_API_KEY")
	if code != 200 || !strings.Contains(body, testmodel.Answer) {
		t.Fatalf("alice's own key: %d %s", code, body)
	}
	bobKey := sandboxEnv(t, h, "bob")["OPENAI_API_KEY"]
	if bobKey == "" {
		t.Fatal("bob's sandbox has no OPENAI_API_KEY")
	}
	if code, body := fetch("alice", "Authorization: Bearer "+bobKey); code != 401 || !strings.Contains(body, "key_of_another_participant") {
		t.Fatalf("bob's key in alice's sandbox: %d %s", code, body)
	}
	if code, body := fetch("alice"); code != 401 || !strings.Contains(body, "missing_api_key") {
		t.Fatalf("no key: %d %s", code, body)
	}
	if out, _, _ := h.Docker.Exec(ctx, "alice", []string{"/sandboxd", "dial", st.Server.Endpoint}); strings.TrimSpace(out) == "ok" {
		t.Fatalf("alice's sandbox reaches the LLM server at %s directly", st.Server.Endpoint)
	}
	rows, err := h.Client.GatewayUsage(ctx, []string{"alice"}, nil, "")
	if err != nil || len(rows) == 0 || rows[0].PromptTokens == 0 || rows[0].CompletionTokens != 15 {
		t.Fatalf("alice's usage: %+v %v", rows, err)
	}

	// A third participant joins while alice streams a long answer: the
	// server is resized once the stream has finished, and the stream is
	// whole. 2000 tokens outlast the join (checked below) and stay inside
	// the gateway's 10-minute upstream timeout on a loaded host: 12000 took
	// longer than that on a two-core host at load 40 (about 8 tokens a
	// second), and the gateway cut the stream.
	aliceKey := sandboxEnv(t, h, "alice")["OPENAI_API_KEY"]
	gw := h.Daemon.GatewayURL
	started := make(chan struct{})
	type result struct {
		text, finish string
		completion   int
		err          error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		begin := time.Now()
		r.text, r.finish, r.completion, r.err = stream(gw, aliceKey, 2000, started)
		t.Logf("the stream across the resize: %d tokens in %s", r.completion, time.Since(begin).Round(time.Millisecond))
		done <- r
	}()
	<-started
	if _, err := h.Client.CreateUser(ctx, "carol", "alpha"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		t.Fatalf("the stream ended before carol joined, so it proves nothing about a resize (make it longer): %q, %d tokens, %v", r.finish, r.completion, r.err)
	default:
	}
	r := <-done
	if r.err != nil || r.finish != "length" || r.completion != 2000 || !strings.HasPrefix(r.text, testmodel.Answer+testmodel.Answer) {
		t.Fatalf("the stream across the resize: finish %q, %d tokens, %d bytes, %v", r.finish, r.completion, len(r.text), r.err)
	}
	waitFor(t, 2*time.Minute, "3 slots", func() bool {
		st, _ = h.Client.LLMStatus(ctx)
		return st.Reachable && st.Slots != nil && st.Slots.Total == 3
	})
	waitFor(t, 10*time.Second, "the gateway to know the resized server's slots", func() bool { return h.Daemon.Gateway.Slots("thon-test") == 3 })

	// The server dies in the middle of alice's stream: her stream ends with
	// an OpenAI error event (not a hang, not a silent cut), what she got is
	// charged, THON says so, starts the server again, and nothing else
	// restarts.
	cli := testenv.Docker(t)
	before, err := cli.ContainerInspect(ctx, h.Instance+"-alpha-alice", client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	charged := func() int64 {
		rows, err := h.Client.GatewayUsage(ctx, []string{"alice"}, nil, "")
		if err != nil || len(rows) == 0 {
			return -1
		}
		return rows[0].CompletionTokens
	}
	var chargedBefore int64
	waitFor(t, 30*time.Second, "the resize stream's tokens charged", func() bool { chargedBefore = charged(); return chargedBefore >= 2015 })
	started = make(chan struct{})
	go func() {
		var r result
		r.text, r.finish, r.completion, r.err = stream(gw, aliceKey, 2000, started)
		done <- r
	}()
	<-started
	if _, err := cli.ContainerKill(ctx, h.Instance+"-llm", client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	r = <-done
	if r.err == nil || !strings.Contains(r.err.Error(), "error event") || !strings.Contains(r.err.Error(), `"server_error"`) || r.text == "" {
		t.Fatalf("alice's stream when the server died: %d bytes, finish %q, %v", len(r.text), r.finish, r.err)
	}
	t.Logf("the stream ended %s after the kill, %d bytes in, with: %.120s", time.Since(killed).Round(time.Millisecond), len(r.text), r.err)
	waitFor(t, 30*time.Second, "what alice got before the kill charged", func() bool { return charged() > chargedBefore })
	waitFor(t, 30*time.Second, "the status to say the server crashed", func() bool {
		st, _ = h.Client.LLMStatus(ctx)
		return st.Server != nil && st.Server.Crashes >= 1
	})
	waitFor(t, time.Minute, "answers again", func() bool {
		code, _ := chatOnce(gw, aliceKey)
		return code == 200
	})
	t.Logf("the managed server answers again %s after the kill", time.Since(killed).Round(time.Millisecond))
	after, err := cli.ContainerInspect(ctx, h.Instance+"-alpha-alice", client.ContainerInspectOptions{})
	if err != nil || after.Container.State.StartedAt != before.Container.State.StartedAt {
		t.Fatalf("alice's sandbox restarted: %v → %v %v", before.Container.State.StartedAt, after.Container.State.StartedAt, err)
	}
	events, _ := h.Client.Events(ctx, 0, 200)
	var seen []string
	for _, e := range events {
		if strings.HasPrefix(e.Action, "llm.") {
			seen = append(seen, e.Action)
		}
	}
	for _, want := range []string{"llm.start", "llm.resize", "llm.crashed", "llm.restarted"} {
		if !strings.Contains(strings.Join(seen, " "), want) {
			t.Errorf("no %s in the audit log: %v", want, seen)
		}
	}
}

func chatOnce(gw, key string) (int, string) {
	req, _ := http.NewRequest("POST", gw+"/chat/completions", strings.NewReader(`{"model":"thon-test","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// stream asks for n tokens (the test model repeats its answer when told to
// ignore the end of its turn) and reassembles the streamed text.
func stream(gw, key string, n int, started chan<- struct{}) (text, finish string, completion int, err error) {
	body := fmt.Sprintf(`{"model":"thon-test","stream":true,"stream_options":{"include_usage":true},"max_tokens":%d,"ignore_eos":true,"messages":[{"role":"user","content":"go on"}]}`, n)
	req, _ := http.NewRequest("POST", gw+"/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		close(started)
		return "", "", 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		close(started)
		b, _ := io.ReadAll(resp.Body)
		return "", "", 0, fmt.Errorf("%d %s", resp.StatusCode, b)
	}
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	first := true
	for sc.Scan() {
		line := bytes.TrimPrefix(sc.Bytes(), []byte("data: "))
		if len(line) == 0 || bytes.Equal(line, []byte("[DONE]")) {
			continue
		}
		if first {
			close(started)
			first = false
		}
		var ev struct {
			Choices []struct {
				Delta        struct{ Content string } `json:"delta"`
				FinishReason string                   `json:"finish_reason"`
			} `json:"choices"`
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
			Error any `json:"error"`
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			return b.String(), finish, completion, fmt.Errorf("event %q: %w", line, err)
		}
		if ev.Error != nil {
			return b.String(), finish, completion, fmt.Errorf("error event: %s", line)
		}
		for _, c := range ev.Choices {
			b.WriteString(c.Delta.Content)
			if c.FinishReason != "" {
				finish = c.FinishReason
			}
		}
		if ev.Usage != nil {
			completion = ev.Usage.CompletionTokens
		}
	}
	if first {
		close(started)
	}
	return b.String(), finish, completion, sc.Err()
}
