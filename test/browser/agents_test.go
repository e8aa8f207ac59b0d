package browser

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/llm/testmodel"
	"github.com/thon-dev/thon/internal/testenv"
	"github.com/thon-dev/thon/internal/thontest"
)

// agents are the terminal coding agents baked into the participant image,
// each asked one thing the way a participant would.
var agents = []struct{ name, cmd string }{
	{"kilo", `kilo run "Say hello"`},
	{"cn", `cn -p "Say hello"`},
	{"cline", `AI_SDK_LOG_WARNINGS=false cline "Say hello"`},
	{"opencode", `opencode run "Say hello"`},
}

// TestAgentsAnswer is the AI assistant working in every participant's
// sandbox on the first visit, offline: in the real participant image,
// behind the front door, with THON's own llama-server and its test model,
// each terminal agent (kilo, cn, cline, opencode) answers through the
// gateway with alice's own key, and her usage grows; after her key is
// rotated and her sandbox recreated, every agent uses the new key and the
// old one gets 401. In Chromium her link opens the workbench without
// Restricted Mode, and an agent run in the integrated terminal shows its
// answer on screen (screenshot kept in $THON_ARTIFACTS).
//
//	THON_E2E_IMAGE=1 THON_ARTIFACTS=/tmp/thon-artifacts go test ./test/browser -run TestAgentsAnswer -v
func TestAgentsAnswer(t *testing.T) {
	if os.Getenv("THON_E2E_IMAGE") != "1" {
		t.Skip("drives the real participant image (code-server and its agents) with THON's llama-server; run it with " +
			"THON_E2E_IMAGE=1 go test ./test/browser -run TestAgentsAnswer -v (as root, with Docker; the first run builds the images offline)")
	}
	image := csImage(t)
	h := thontest.New(t, thontest.Groups(config.Group{Name: "alpha", Users: []string{"alice"}}))
	h.Stop()
	h.Config.Sandbox.Image = image
	h.Config.Sandbox.Limits = config.Limits{CPU: 1, Memory: 2 << 30, Pids: 1024}
	h.Config.Sandbox.StartupTimeout = config.Duration(3 * time.Minute)
	l := &h.Config.LLM
	l.Backend, l.Image, l.GPU = config.BackendLlamacpp, testenv.LLMImage(t), "none"
	// Agents send system prompts of tens of thousands of characters.
	l.ChatModel = config.LLMModel{Name: "thon-test", CtxPerUser: 65536}
	// The DOM renderer, so the terminal's text can be read (and screenshots
	// show it the same).
	settings := filepath.Join(t.TempDir(), "settings.json")
	os.WriteFile(settings, []byte(`{"terminal.integrated.gpuAcceleration": "off"}`), 0o644)
	h.Config.Assistants.VSCodeSettingsFile = settings
	h.Start()
	ctx := context.Background()
	csStartAll(t, h)
	waitLLM(t, h)

	ask := func(round string) string {
		t.Helper()
		var key string
		for _, a := range agents {
			before := usedTokens(t, h, "alice")
			t0 := time.Now()
			out, code := sandboxShell(t, h, "alice", a.cmd)
			if code != 0 || !strings.Contains(out, testmodel.Answer) {
				t.Fatalf("%s: %s exits %d:\n%s", round, a.cmd, code, out)
			}
			waitUsage(t, h, "alice", before)
			t.Logf("%s: %s answered in %s", round, a.name, time.Since(t0).Round(100*time.Millisecond))
		}
		key, _ = sandboxShell(t, h, "alice", `printf %s "$OPENAI_API_KEY"`)
		return key
	}
	oldKey := ask("first visit")

	// A new key: rotated, and the sandbox recreated (the workspace is kept).
	if _, err := h.Client.RotateGatewayKey(ctx, "user:alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Client.Action(ctx, "alice", "recreate"); err != nil {
		t.Fatal(err)
	}
	newKey := ask("after the key was rotated")
	if newKey == oldKey || !strings.HasPrefix(newKey, "thon_") {
		t.Fatalf("the key did not change: %q", newKey)
	}
	out, _ := sandboxShell(t, h, "alice", `curl -s -o /dev/null -w '%{http_code}' "$OPENAI_BASE_URL/models" -H "Authorization: Bearer `+oldKey+`"`)
	if out != "401" {
		t.Fatalf("the old key after the rotation: %q, want 401", out)
	}
	for _, f := range []string{"~/.config/kilo/config.json", "~/.config/opencode/opencode.json", "~/.continue/config.yaml", "~/.cline/data/settings/providers.json"} {
		if out, _ := sandboxShell(t, h, "alice", "cat "+f); strings.Contains(out, oldKey) || !strings.Contains(out, newKey) {
			t.Errorf("%s does not hold the new key only", f)
		}
	}

	// In the browser: no Restricted Mode, and an agent in the terminal.
	b := csBrowser(t, h, "")
	t0 := time.Now()
	alice, resp := b.openLink(h, "alice")
	if resp.Status != 200 {
		t.Fatalf("alice's link %s: %d", alice.Link, resp.Status)
	}
	v := &vscode{browser: b, url: alice.URL, folder: "alice", noTrustPrompt: true}
	v.step("load alice's workbench", v.load)
	if restricted, _ := tryEval[bool](b, csRestricted); restricted {
		t.Fatal("the workbench is in Restricted Mode")
	}
	v.step("ask an agent in the terminal", func() error {
		if err := v.newTerminal(); err != nil {
			return err
		}
		return v.run(`cn -p "Say hello"`, func() bool { return strings.Contains(v.terminalText(), testmodel.Answer) })
	})
	t.Logf("from alice's link to the agent's answer on screen: %s", time.Since(t0).Round(100*time.Millisecond))
	b.screenshot(artifacts(t), "agents-terminal.png")

	// An idle workbench with the agents installed: its memory.
	time.Sleep(5 * time.Second)
	if mem, err := containerMemory(h, "alice"); err == nil {
		t.Logf("alice's sandbox with the workbench open and idle uses %.0f MiB", float64(mem)/(1<<20))
	}
}

// waitLLM waits until THON's llama-server answers.
func waitLLM(t *testing.T, h *thontest.Harness) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st, err := h.Client.LLMStatus(context.Background())
		if err == nil && st.Reachable && st.Server != nil && st.Server.State == "running" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("THON's LLM server is not up: %+v %v", st, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// sandboxShell runs a shell line in user's sandbox as the participant would
// in their terminal: as coder, at home, in the workspace.
func sandboxShell(t *testing.T, h *thontest.Harness, user, line string) (string, int) {
	t.Helper()
	cli := testenv.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	inst, err := h.Runtime.Inspect(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := cli.ExecCreate(ctx, inst.ID, client.ExecCreateOptions{
		User: "1000:1000", Env: []string{"HOME=/home/coder", "TERM=dumb"},
		WorkingDir: "/workspace/alpha/" + user, AttachStdout: true, AttachStderr: true,
		Cmd: []string{"bash", "-lc", line},
	})
	if err != nil {
		t.Fatal(err)
	}
	att, err := cli.ExecAttach(ctx, ec.ID, client.ExecAttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer att.Close()
	var buf bytes.Buffer
	stdcopy.StdCopy(&buf, &buf, att.Reader)
	for {
		ins, err := cli.ExecInspect(ctx, ec.ID, client.ExecInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !ins.Running {
			return strings.TrimSpace(buf.String()), ins.ExitCode
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// usedTokens is user's tokens as `thon gateway usage` counts them.
func usedTokens(t *testing.T, h *thontest.Harness, user string) int64 {
	t.Helper()
	rows, err := h.Client.GatewayUsage(context.Background(), []string{user}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, r := range rows {
		n += r.PromptTokens + r.CompletionTokens
	}
	return n
}

// waitUsage waits until user's usage grew past before (the gateway hands
// usage to the store every second).
func waitUsage(t *testing.T, h *thontest.Harness, user string, before int64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for usedTokens(t, h, user) <= before {
		if time.Now().After(deadline) {
			t.Fatalf("%s's usage did not grow past %d tokens", user, before)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// containerMemory is the memory user's sandbox uses now, as the engine
// counts it (without the page cache).
func containerMemory(h *thontest.Harness, user string) (uint64, error) {
	inst, err := h.Runtime.Inspect(context.Background(), user)
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile(fmt.Sprintf("/sys/fs/cgroup/system.slice/docker-%s.scope/memory.current", inst.ID))
	if err != nil {
		b, err = os.ReadFile(fmt.Sprintf("/sys/fs/cgroup/memory/docker/%s/memory.usage_in_bytes", inst.ID))
	}
	if err != nil {
		return 0, err
	}
	var n uint64
	fmt.Sscan(strings.TrimSpace(string(b)), &n)
	return n, nil
}
