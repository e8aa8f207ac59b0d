package daemon_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/daemon"
	"github.com/thon-dev/thon/internal/llm"
	"github.com/thon-dev/thon/internal/thontest"
)

type fileStat struct {
	UID, GID int
	Mode     string
	Data     string
}

func sandboxFile(t *testing.T, h *thontest.Harness, user, path string) fileStat {
	t.Helper()
	s, err := h.Client.Sandbox(context.Background(), user)
	if err != nil || s.Endpoint == "" {
		t.Fatalf("%s's sandbox: %+v %v", user, s, err)
	}
	resp, err := http.Get("http://" + s.Endpoint + "/stat?path=" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s in %s's sandbox: %s", path, user, resp.Status)
	}
	var st fileStat
	json.NewDecoder(resp.Body).Decode(&st)
	return st
}

type kiloConfig struct {
	Model    string
	Provider map[string]struct {
		Options struct{ BaseURL, APIKey string }
	}
}

// Every participant's assistants point at the gateway with their own key;
// the files are theirs and private; the LLM server's keys never reach a
// sandbox; a model change in thon.yaml reaches a sandbox on recreate.
func TestAssistantsGetTheParticipantsOwnKey(t *testing.T) {
	h := thontest.New(t, thontest.Groups(alphaBeta...), thontest.FakeEngine())
	h.Stop()
	h.Config.LLM.APIKey, h.Config.LLM.AdminAPIKey = "llm-regular-secret", "llm-admin-secret"
	h.Start()
	ctx := context.Background()
	if _, err := h.Client.Bulk(ctx, client.BulkRequest{Action: "start"}, nil); err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, user := range []string{"alice", "bob"} {
		env := sandboxEnv(t, h, user)
		keys[user] = env["OPENAI_API_KEY"]
		st := sandboxFile(t, h, user, llm.KiloConfigPath)
		if st.UID != llm.UID || st.GID != llm.GID || st.Mode != "0600" {
			t.Errorf("%s's Kilo config: %+v", user, st)
		}
		var k kiloConfig
		if err := json.Unmarshal([]byte(st.Data), &k); err != nil {
			t.Fatal(err)
		}
		opts := k.Provider["thon"].Options
		if opts.APIKey != keys[user] || opts.BaseURL != env["OPENAI_BASE_URL"] || k.Model != "thon/user.gemma-4-31b-it" {
			t.Errorf("%s's Kilo config does not use their key and the gateway: %s (env %v)", user, st.Data, env)
		}
		cont := sandboxFile(t, h, user, llm.ContinueConfigPath)
		if !strings.Contains(cont.Data, "apiKey: "+keys[user]) || cont.Mode != "0600" {
			t.Errorf("%s's Continue config: %+v", user, cont)
		}
		for _, p := range []string{llm.KiloConfigPath, llm.ContinueConfigPath, llm.SettingsPath} {
			data := sandboxFile(t, h, user, p).Data
			if strings.Contains(data, "llm-admin-secret") || strings.Contains(data, "llm-regular-secret") {
				t.Errorf("the LLM server's key is in %s of %s", p, user)
			}
		}
		for k, v := range env {
			if strings.Contains(v, "llm-admin-secret") || strings.Contains(v, "llm-regular-secret") {
				t.Errorf("the LLM server's key is in %s's environment (%s)", user, k)
			}
		}
	}
	if keys["alice"] == keys["bob"] || !strings.HasPrefix(keys["alice"], "thon_") {
		t.Fatalf("keys: %v", keys)
	}

	// A new model in thon.yaml: sandboxes are outdated, a recreate updates them.
	cfg := *h.Config
	cfg.LLM.ChatModel.Name = "qwen3-coder-30b"
	if _, err := h.Client.Import(ctx, &cfg); err != nil {
		t.Fatal(err)
	}
	if s, _ := h.Client.Sandbox(ctx, "alice"); !s.Outdated {
		t.Fatalf("alice's sandbox should be outdated after the model change: %+v", s)
	}
	if _, err := h.Client.Action(ctx, "alice", "recreate"); err != nil {
		t.Fatal(err)
	}
	var k kiloConfig
	json.Unmarshal([]byte(sandboxFile(t, h, "alice", llm.KiloConfigPath).Data), &k)
	if k.Model != "thon/user.qwen3-coder-30b" || k.Provider["thon"].Options.APIKey != keys["alice"] {
		t.Fatalf("after recreate: %+v", k)
	}
	var settings map[string]any
	json.Unmarshal([]byte(sandboxFile(t, h, "alice", llm.SettingsPath).Data), &settings)
	if settings["kilo-code.new.model.modelID"] != "user.qwen3-coder-30b" {
		t.Fatalf("settings after recreate: %v", settings)
	}

	// A base file that does not parse refuses the import and changes nothing.
	cfg.Assistants.Kilo.BaseFile = "/nonexistent/kilo.json"
	if _, err := h.Client.Import(ctx, &cfg); err == nil || !strings.Contains(err.Error(), "/nonexistent/kilo.json") {
		t.Fatalf("import with a missing base file: %v", err)
	}
	if s, _ := h.Client.Sandbox(ctx, "alice"); s.Outdated {
		t.Fatal("a refused import changed the settings")
	}
}

// With the gateway off, assistants go straight to the LLM server with
// llm.api_key, at an address a sandbox can reach.
func TestAssistantsWithoutTheGateway(t *testing.T) {
	h := thontest.New(t, thontest.Groups(config.Group{Name: "alpha", Users: []string{"alice"}}), thontest.FakeEngine())
	h.Stop()
	h.Config.Gateway.Enabled = false
	h.Config.LLM.Backend, h.Config.LLM.URL, h.Config.LLM.APIKey = config.BackendOpenAI, "http://127.0.0.1:8080/v1", "llm-regular-secret"
	h.Config.LLM.ChatModel.Checkpoint = ""
	h.Start()
	ctx := context.Background()
	if _, err := h.Client.Action(ctx, "alice", "start"); err != nil {
		t.Fatal(err)
	}
	env := sandboxEnv(t, h, "alice")
	if env["OPENAI_BASE_URL"] != "http://host.docker.internal:8080/v1" || env["OPENAI_API_KEY"] != "llm-regular-secret" {
		t.Fatalf("env: %v", env)
	}
	var c struct {
		Models []struct {
			Model   string
			APIBase string `yaml:"apiBase"`
			APIKey  string `yaml:"apiKey"`
		}
	}
	raw := sandboxFile(t, h, "alice", llm.ContinueConfigPath).Data
	if err := yaml.Unmarshal([]byte(raw), &c); err != nil || len(c.Models) != 1 {
		t.Fatalf("Continue config: %v\n%s", err, raw)
	}
	if m := c.Models[0]; m.APIBase != "http://host.docker.internal:8080/v1" || m.APIKey != "llm-regular-secret" || m.Model != "gemma-4-31b-it" {
		t.Fatalf("Continue config:\n%s", raw)
	}
}

func TestSandboxURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:13305/api/v1": "http://host.docker.internal:13305/api/v1",
		"http://localhost:8080/v1":      "http://host.docker.internal:8080/v1",
		"http://0.0.0.0:8080/v1":        "http://host.docker.internal:8080/v1",
		"http://[::1]:8080/v1":          "http://host.docker.internal:8080/v1",
		"http://10.1.2.3:8080/v1":       "http://10.1.2.3:8080/v1",
		"https://llm.example.org/v1":    "https://llm.example.org/v1",
	} {
		if got := daemon.SandboxURL(in); got != want {
			t.Errorf("SandboxURL(%q) = %q, want %q", in, got, want)
		}
	}
}
