package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/llm"
	"github.com/thon-dev/thon/internal/llm/lemonadetest"
	"github.com/thon-dev/thon/internal/testenv"
)

// The organizer's LLM commands against a server speaking Lemonade's API:
// status says what needs doing, pull and load do it, scale --dry-run shows
// the plan; a base file that does not parse is caught before anything runs.
func TestLLMFromTheCLI(t *testing.T) {
	srv := lemonadetest.New(lemonadetest.Options{Key: "regular-key-1", AdminKey: "admin-key-1"})
	defer srv.Close()
	ev := newEvent(t)
	ev.writeConfig(testenv.SandboxImage(t), "", demoGroups)
	cfg, _ := os.ReadFile(filepath.Join(ev.dir, "thon.yaml"))
	llmCfg := "llm:\n  url: " + srv.URL + "\n  api_key: regular-key-1\n  admin_api_key: admin-key-1\n" +
		"  chat_model: {name: Qwen3-Coder-30B-A3B-Instruct-GGUF, checkpoint: \"\", ctx_per_user: 8192}\n" +
		"assistants:\n  continue: {base_file: continue-base.yaml}\n"
	os.WriteFile(filepath.Join(ev.dir, "continue-base.yaml"), []byte("name: Workshop\nrules: [\n"), 0o644)
	os.WriteFile(filepath.Join(ev.dir, "thon.yaml"), append(cfg, []byte(llmCfg)...), 0o644)

	r := ev.thon("config", "validate")
	if r.code == 0 || !strings.Contains(r.stderr, "assistants.continue.base_file: continue-base.yaml: not a YAML mapping") {
		t.Fatalf("a broken base file: %s", r)
	}
	os.WriteFile(filepath.Join(ev.dir, "continue-base.yaml"), []byte("name: Workshop\nrules: [Explain before changing.]\n"), 0o644)
	ev.ok("run")

	r = ev.ok("llm", "status")
	for _, want := range []string{"LLM server  up (lemonade)", "Configured for 3 participants", "Qwen3-Coder-30B-A3B-Instruct-GGUF is not downloaded: thon llm pull"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("llm status lacks %q:\n%s", want, r)
		}
	}
	r = ev.ok("llm", "scale", "--dry-run")
	if !strings.Contains(r.stdout, "24576") || !strings.Contains(r.stdout, "-np 3") {
		t.Fatalf("scale --dry-run:\n%s", r)
	}
	if len(srv.Loaded()) != 0 {
		t.Fatal("--dry-run loaded a model")
	}
	r = ev.ok("llm", "pull")
	if !strings.Contains(r.stderr, "Qwen3-Coder-30B-A3B-Instruct-GGUF: 100%") {
		t.Fatalf("pull progress:\n%s", r)
	}
	r = ev.ok("llm", "load")
	if !strings.Contains(r.stdout, "Qwen3-Coder-30B-A3B-Instruct-GGUF: loaded") || srv.Loaded()["Qwen3-Coder-30B-A3B-Instruct-GGUF"].CtxSize != 3*8192 {
		t.Fatalf("load:\n%s %+v", r, srv.Loaded())
	}
	if r = ev.ok("llm", "status", "-o", "json"); !strings.Contains(r.stdout, `"current": true`) {
		t.Fatalf("status after load:\n%s", r)
	}
	if r = ev.thon("llm", "load", "no-such-model"); r.code == 0 || !strings.Contains(r.stderr, "no-such-model") {
		t.Fatalf("unknown model: %s", r)
	}

	// The base file is merged into alice's Continue config.
	st := ev.status()["alice"]
	_, body := get(t, "http://"+st.Endpoint+"/stat?path="+llm.ContinueConfigPath)
	if !strings.Contains(body, "Explain before changing.") || !strings.Contains(body, "model: Qwen3-Coder-30B-A3B-Instruct-GGUF") {
		t.Fatalf("alice's Continue config: %s", body)
	}
}
