package llm

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/config"
)

func TestLemonadeSetup(t *testing.T) {
	root := t.TempDir()
	var calls []string
	s := LemonadeSetup{Root: root, Systemctl: func(_ context.Context, args ...string) error {
		calls = append(calls, strings.Join(args, " "))
		return nil
	}}
	const key, admin = "regular0123456789", "adminkey0123456789"
	keys := func(k, a string) config.LLM {
		l := config.Default().LLM
		l.APIKey, l.AdminAPIKey = k, a
		return l
	}

	// No Lemonade: a clear refusal, nothing written.
	if _, err := s.Plan(keys(key, admin)); err == nil || !strings.Contains(err.Error(), "lemond.service or lemonade-server.service") {
		t.Fatalf("without Lemonade: %v", err)
	}
	if _, err := s.Plan(keys("", admin)); err == nil || !strings.Contains(err.Error(), "llm.api_key") {
		t.Fatalf("without keys: %v", err)
	}
	if _, err := s.Plan(keys("a b", admin)); err == nil {
		t.Fatal("a key with a space accepted")
	}

	unit := filepath.Join(root, "usr/lib/systemd/system/lemond.service")
	os.MkdirAll(filepath.Dir(unit), 0o755)
	os.WriteFile(unit, []byte("[Service]\nExecStart=/usr/bin/lemond\n"), 0o644)
	p, err := s.Plan(keys(key, admin))
	if err != nil {
		t.Fatal(err)
	}
	if p.Unit != "lemond.service" || p.DropIn != "/etc/systemd/system/lemond.service.d/thon.conf" || p.Current || len(p.Steps) != 4 || p.ConfigJSON != "" {
		t.Fatalf("plan: %+v", p)
	}
	// The plan shown to the organizer never holds the keys.
	if shown := strings.Join(p.Steps, "\n"); strings.Contains(shown, key) || strings.Contains(shown, admin) {
		t.Fatalf("the steps show a key:\n%s", shown)
	}
	if err := s.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(root, p.DropIn))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("drop-in: %v %v", fi.Mode(), err)
	}
	data, _ := os.ReadFile(filepath.Join(root, p.DropIn))
	if !strings.Contains(string(data), "Environment=LEMONADE_API_KEY="+key+"\n") || !strings.Contains(string(data), "Environment=LEMONADE_ADMIN_API_KEY="+admin+"\n") {
		t.Fatalf("drop-in:\n%s", data)
	}
	if strings.Join(calls, ";") != "daemon-reload;restart lemond.service" {
		t.Fatalf("systemctl calls: %v", calls)
	}
	// Again: nothing to do, no restart.
	calls = nil
	if p, err = s.Plan(keys(key, admin)); err != nil || !p.Current {
		t.Fatalf("second plan: %+v %v", p, err)
	}
	if err := s.Apply(context.Background(), p); err != nil || len(calls) != 0 {
		t.Fatalf("second apply: %v %v", calls, err)
	}
	// Lemonade older than 10.3.
	os.Remove(unit)
	old := filepath.Join(root, "lib/systemd/system/lemonade-server.service")
	os.MkdirAll(filepath.Dir(old), 0o755)
	os.WriteFile(old, nil, 0o644)
	if p, err = s.Plan(keys(key, admin)); err != nil || p.Unit != "lemonade-server.service" {
		t.Fatalf("old unit: %+v %v", p, err)
	}
}

// Lemonade's config.json gets THON's settings (the llama.cpp backend, the
// system's llama-server, how many models may be loaded), the rest of the
// file as it was, its owner kept; a second run changes nothing.
func TestLemonadeConfigJSON(t *testing.T) {
	root := t.TempDir()
	var calls []string
	s := LemonadeSetup{Root: root, Systemctl: func(_ context.Context, args ...string) error {
		calls = append(calls, strings.Join(args, " "))
		return nil
	}}
	unit := filepath.Join(root, "usr/lib/systemd/system/lemond.service")
	os.MkdirAll(filepath.Dir(unit), 0o755)
	os.WriteFile(unit, nil, 0o644)
	cfgPath := filepath.Join(root, "var/lib/lemonade/.cache/lemonade/config.json")
	os.MkdirAll(filepath.Dir(cfgPath), 0o755)
	os.WriteFile(cfgPath, []byte(`{"port": 13305, "llamacpp": {"backend": "auto", "vulkan_bin": "builtin"}, "max_loaded_models": 1}`), 0o640)
	llama := filepath.Join(root, "usr/bin/llama-server")
	os.MkdirAll(filepath.Dir(llama), 0o755)
	os.WriteFile(llama, nil, 0o755)

	l := config.Default().LLM
	l.APIKey, l.AdminAPIKey, l.GPU = "regular0123456789", "adminkey0123456789", "amd"
	l.SmallModel = config.LLMModel{Name: "qwen3-4b", Checkpoint: "unsloth/Qwen3-4B-Instruct-2507-GGUF:Q4_K_M"}
	p, err := s.Plan(l)
	if err != nil {
		t.Fatal(err)
	}
	if p.ConfigJSON != "/var/lib/lemonade/.cache/lemonade/config.json" || !strings.Contains(strings.Join(p.Steps, "\n"), "llamacpp.backend: vulkan, llamacpp.prefer_system: true, max_loaded_models: 2") {
		t.Fatalf("plan: %+v", p)
	}
	if err := s.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	b, _ := os.ReadFile(cfgPath)
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	lc, _ := got["llamacpp"].(map[string]any)
	if got["port"] != 13305.0 || got["max_loaded_models"] != 2.0 || lc["backend"] != "vulkan" || lc["prefer_system"] != true || lc["vulkan_bin"] != "builtin" {
		t.Fatalf("config.json: %s", b)
	}
	if fi, _ := os.Stat(cfgPath); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640 as it was", fi.Mode())
	}
	if strings.Join(calls, ";") != "daemon-reload;restart lemond.service" {
		t.Fatalf("systemctl: %v", calls)
	}
	calls = nil
	if p, err = s.Plan(l); err != nil || !p.Current {
		t.Fatalf("second plan: %+v %v", p, err)
	}
	// A changed setting in thon.yaml: only config.json changes, Lemonade restarts.
	l.GPU = "none"
	if p, err = s.Plan(l); err != nil || p.Current || len(p.Steps) != 3 || !strings.Contains(p.Steps[0], "llamacpp.backend: cpu") {
		t.Fatalf("after a change: %+v %v", p, err)
	}
	os.WriteFile(cfgPath, []byte("{broken"), 0o640)
	if _, err := s.Plan(l); err == nil || !strings.Contains(err.Error(), "is not valid JSON") {
		t.Errorf("broken config.json: %v", err)
	}
}
