package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/thon-dev/thon/internal/config"
)

// thon config show prints what THON runs with: the file, defaults filled
// in, flags over it, every secret hidden; what it prints reads back.
func TestConfigShow(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "thon.yaml")
	os.WriteFile(path, []byte(`auth:
  admin_password: "my dashboard secret"
llm:
  api_key: llm-secret-1
  admin_api_key: llm-secret-2
server:
  database: postgres://thon:pg-secret@db/thon
groups:
  alpha:
    title: Team Alpha
    users: [{name: alice, email: alice@example.org}]
`), 0o644)
	code, stdout, stderr := runCLI(t, "--config", path, "--data-dir", filepath.Join(dir, "state"), "config", "show")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, secret := range []string{"my dashboard secret", "llm-secret-1", "llm-secret-2", "pg-secret"} {
		if strings.Contains(stdout, secret) {
			t.Errorf("config show prints %q", secret)
		}
	}
	for _, want := range []string{"# The effective configuration: " + path, "data_dir: " + filepath.Join(dir, "state"), "admin_password: " + config.Redacted,
		"image: thon/sandbox:latest", "title: Team Alpha", "{name: alice, email: alice@example.org}", "postgres://thon:xxxxx@db/thon"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("config show lacks %q:\n%s", want, stdout)
		}
	}
	var shown map[string]any
	if err := yaml.Unmarshal([]byte(stdout), &shown); err != nil || shown["groups"] == nil {
		t.Errorf("the output is not YAML: %v", err)
	}

	code, stdout, _ = runCLI(t, "--config", path, "config", "show", "-o", "json")
	var c config.Config
	if err := json.Unmarshal([]byte(stdout), &c); code != 0 || err != nil || c.LLM.APIKey != config.Redacted || c.Groups[0].Emails["alice"] != "alice@example.org" {
		t.Errorf("-o json: exit %d, %v\n%s", code, err, stdout)
	}
	if code, _, stderr := runCLI(t, "--config", path, "config", "show", "-o", "xml"); code != 1 || !strings.Contains(stderr, `--output "xml": use yaml or json`) {
		t.Errorf("-o xml: exit %d: %s", code, stderr)
	}
	// A broken file is reported, not shown.
	os.WriteFile(path, []byte("sandbox:\n  imgae: x\n"), 0o644)
	if code, _, stderr := runCLI(t, "--config", path, "config", "show"); code != 1 || !strings.Contains(stderr, `unknown key "imgae"`) {
		t.Errorf("bad file: exit %d: %s", code, stderr)
	}
}

func TestLogLevelFlag(t *testing.T) {
	for _, cmd := range []string{"serve", "run"} {
		code, _, stderr := runCLI(t, cmd, "--log-level", "loud")
		if code != 1 || !strings.Contains(stderr, `--log-level "loud": use debug, info, warn or error`) {
			t.Errorf("%s --log-level loud: exit %d: %s", cmd, code, stderr)
		}
	}
	for in, want := range map[string]string{"debug": "DEBUG", "WARN": "WARN", "error": "ERROR", "info": "INFO"} {
		if lv, err := parseLogLevel(in); err != nil || lv.String() != want {
			t.Errorf("parseLogLevel(%q) = %v, %v", in, lv, err)
		}
	}
	if _, err := parseLogLevel("warn+2"); err == nil {
		t.Error("warn+2 accepted")
	}
}
