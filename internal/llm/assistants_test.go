package llm

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/sandbox"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var testEndpoint = Endpoint{BaseURL: "http://host.docker.internal:9080/v1", Key: "thon_0123456789abcdef"}

var testParticipant = Participant{User: "alice", Group: "alpha", Workspace: "/workspace/alpha/alice"}

// testConfig is thon.yaml with every assistant on and an embeddings model.
func testConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	text := `llm:
  embedding_model: {checkpoint: "nomic-ai/nomic-embed-text-v1.5-GGUF:Q8_0", name: nomic-embed-text-v1.5}
assistants:
  cline: {enabled: true}
` + extra
	path := filepath.Join(dir, "thon.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func filesByPath(t *testing.T, files []sandbox.File) map[string]sandbox.File {
	t.Helper()
	out := map[string]sandbox.File{}
	for _, f := range files {
		if _, dup := out[f.Path]; dup {
			t.Fatalf("%s written twice", f.Path)
		}
		out[f.Path] = f
	}
	if err := sandbox.CheckFiles(files); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAssistantFilesGolden(t *testing.T) {
	a, err := NewAssistants(testConfig(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	files, err := a.Files(testEndpoint, testParticipant)
	if err != nil {
		t.Fatal(err)
	}
	byPath := filesByPath(t, files)
	golden := map[string]string{
		KiloConfigPath:     "kilo-config.json",
		KiloIndexingPath:   "kilo.json",
		ContinueConfigPath: "continue-config.yaml",
		ClineStatePath:     "cline-globalState.json",
		ClineSecretsPath:   "cline-secrets.json",
		ClineProvidersPath: "cline-providers.json",
		OpenCodeConfigPath: "opencode.json",
		SettingsPath:       "settings.json",
		ExtensionsPath:     "extensions.txt",
	}
	if len(byPath) != len(golden) {
		t.Errorf("%d files, want %d", len(byPath), len(golden))
	}
	for path, name := range golden {
		f, ok := byPath[path]
		if !ok {
			t.Errorf("no %s", path)
			continue
		}
		gp := filepath.Join("testdata", "golden", name)
		if *update {
			os.MkdirAll(filepath.Dir(gp), 0o755)
			if err := os.WriteFile(gp, f.Data, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(gp)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if !bytes.Equal(f.Data, want) {
			t.Errorf("%s differs from %s (run with -update and review the diff):\n%s", path, gp, f.Data)
		}
	}

	// Owner and mode: the participant's, and private wherever the key is.
	for _, f := range files {
		hasKey := bytes.Contains(f.Data, []byte(testEndpoint.Key))
		switch {
		case f.Path == ExtensionsPath:
			if f.UID != 0 || f.Mode != 0o644 || hasKey {
				t.Errorf("%s: uid %d mode %o key %v", f.Path, f.UID, f.Mode, hasKey)
			}
		case f.UID != UID || f.GID != GID:
			t.Errorf("%s owned by %d:%d", f.Path, f.UID, f.GID)
		case hasKey && f.Mode != 0o600:
			t.Errorf("%s holds the key with mode %o", f.Path, f.Mode)
		}
	}
	for _, p := range []string{KiloConfigPath, KiloIndexingPath, ContinueConfigPath, ClineSecretsPath, ClineProvidersPath, OpenCodeConfigPath} {
		if !bytes.Contains(byPath[p].Data, []byte(testEndpoint.Key)) {
			t.Errorf("%s lacks the participant's key", p)
		}
	}
}

func compileSchema(t *testing.T, name string) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(name, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// asJSONValue turns decoded JSON or YAML into what the validator takes.
func asJSONValue(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The generated files validate against the assistants' published schemas,
// with and without organizer base files; a file that breaks the schema is
// caught (so the check can fail).
func TestAssistantFilesMatchPublishedSchemas(t *testing.T) {
	kilo, indexing, cont := compileSchema(t, "kilo-config.schema.json"), compileSchema(t, "kilo-indexing.schema.json"), compileSchema(t, "continue-config.schema.json")
	check := func(c *config.Config) {
		t.Helper()
		a, err := NewAssistants(c)
		if err != nil {
			t.Fatal(err)
		}
		files, err := a.Files(testEndpoint, testParticipant)
		if err != nil {
			t.Fatal(err)
		}
		byPath := filesByPath(t, files)
		for path, s := range map[string]*jsonschema.Schema{KiloConfigPath: kilo, KiloIndexingPath: indexing} {
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader(byPath[path].Data))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Validate(v); err != nil {
				t.Errorf("%s does not validate:\n%v\n%s", path, err, byPath[path].Data)
			}
		}
		var y any
		if err := yaml.Unmarshal(byPath[ContinueConfigPath].Data, &y); err != nil {
			t.Fatal(err)
		}
		if err := cont.Validate(asJSONValue(t, y)); err != nil {
			t.Errorf("%s does not validate:\n%v\n%s", ContinueConfigPath, err, byPath[ContinueConfigPath].Data)
		}
	}
	check(testConfig(t, ""))

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "kilo.json"), []byte(`{
  // the organizer's skeleton
  "theme": "opencode",
  "instructions": ["CONTRIBUTING.md"],
  "provider": {"thon": {"options": {"timeout": 600000}}},
}`), 0o644)
	os.WriteFile(filepath.Join(dir, "continue.yaml"), []byte("name: Workshop\nversion: 0.1.0\nschema: v1\nrules:\n  - Answer in English.\nmodels:\n  - {name: THON gemma-4-31b-it, provider: openai, model: x, defaultCompletionOptions: {temperature: 0.2}}\n"), 0o644)
	c := testConfig(t, "  kilo: {base_file: "+filepath.Join(dir, "kilo.json")+"}\n  continue: {base_file: "+filepath.Join(dir, "continue.yaml")+"}\n")
	check(c)

	// A schema violation is reported: the check is real.
	bad, _ := jsonschema.UnmarshalJSON(strings.NewReader(`{"provider": {"thon": {"models": {"m": {"limit": {"context": "lots"}}}}}, "nonsense": 1}`))
	if kilo.Validate(bad) == nil {
		t.Fatal("the Kilo schema accepts an invalid config")
	}
	var badCont any
	yaml.Unmarshal([]byte("name: x\nmodels: [{name: m}]\n"), &badCont)
	if cont.Validate(asJSONValue(t, badCont)) == nil {
		t.Fatal("the Continue schema accepts a config without version and a model without provider")
	}
}

// Base files lie under THON's values: the organizer's own settings stay,
// THON's endpoint, key and model win.
func TestBaseFilesMergeUnderGeneratedValues(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(text), 0o644)
		return p
	}
	kilo := write("kilo.json", `{"theme": "opencode", "model": "other/x", "provider": {"thon": {"options": {"timeout": 600000, "apiKey": "organizer-key"}}}}`)
	cont := write("continue.yaml", "name: Workshop\nrules: [Answer in English.]\nmodels:\n  - {name: Cloud, provider: anthropic, model: claude}\n")
	settings := write("settings.json", "{\n  // larger text for the projector\n  \"editor.fontSize\": 18,\n  \"telemetry.telemetryLevel\": \"all\",\n}\n")
	ext := write("ext.txt", "ms-python.python\nkilocode.kilo-code@4.0.0\n")
	c := testConfig(t, "  kilo: {base_file: "+kilo+"}\n  continue: {base_file: "+cont+"}\n  vscode_settings_file: "+settings+"\n  extensions_file: "+ext+"\n")
	a, err := NewAssistants(c)
	if err != nil {
		t.Fatal(err)
	}
	files, err := a.Files(testEndpoint, testParticipant)
	if err != nil {
		t.Fatal(err)
	}
	byPath := filesByPath(t, files)

	var k map[string]any
	json.Unmarshal(byPath[KiloConfigPath].Data, &k)
	opts := k["provider"].(map[string]any)["thon"].(map[string]any)["options"].(map[string]any)
	if k["theme"] != "opencode" || opts["timeout"] != float64(600000) || opts["apiKey"] != testEndpoint.Key || k["model"] != "thon/user.gemma-4-31b-it" {
		t.Errorf("kilo merge: %s", byPath[KiloConfigPath].Data)
	}
	var y struct {
		Name   string
		Rules  []string
		Models []struct {
			Name, Provider, Model string
			APIKey                string `yaml:"apiKey"`
		}
	}
	yaml.Unmarshal(byPath[ContinueConfigPath].Data, &y)
	if y.Name != "THON" || len(y.Rules) != 1 || len(y.Models) != 3 || y.Models[0].Model != "user.gemma-4-31b-it" || y.Models[0].APIKey != testEndpoint.Key || y.Models[2].Name != "Cloud" {
		t.Errorf("continue merge: %s", byPath[ContinueConfigPath].Data)
	}
	var s map[string]any
	json.Unmarshal(byPath[SettingsPath].Data, &s)
	if s["editor.fontSize"] != float64(18) || s["telemetry.telemetryLevel"] != "off" || s["kilo-code.new.model.modelID"] != "user.gemma-4-31b-it" {
		t.Errorf("settings merge: %s", byPath[SettingsPath].Data)
	}
	got := string(byPath[ExtensionsPath].Data)
	for _, want := range []string{"ms-python.python\n", "kilocode.kilo-code@4.0.0\n", "Continue.continue\n", "saoudrizwan.claude-dev\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("extensions.txt lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(strings.ToLower(got), "kilocode.kilo-code") != 1 {
		t.Errorf("kilo listed twice:\n%s", got)
	}
}

// Only what is enabled is written; the openai backend keeps model names.
func TestAssistantsOffAndModelIDs(t *testing.T) {
	c := testConfig(t, "  kilo: {enabled: false}\n  continue: {enabled: false}\n")
	c.Assistants.Cline.Enabled, c.Assistants.OpenCode.Enabled = false, false
	a, err := NewAssistants(c)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := a.Files(testEndpoint, testParticipant)
	if len(files) != 1 || files[0].Path != SettingsPath || bytes.Contains(files[0].Data, []byte(testEndpoint.Key)) {
		t.Fatalf("all off: %+v", files)
	}
	l := config.Default().LLM
	if id := ModelID(l, l.ChatModel); id != "user.gemma-4-31b-it" {
		t.Errorf("lemonade id %q", id)
	}
	l.Backend = config.BackendOpenAI
	if id := ModelID(l, l.ChatModel); id != "gemma-4-31b-it" {
		t.Errorf("openai id %q", id)
	}
	l.Backend, l.ChatModel.Checkpoint, l.ChatModel.Name = config.BackendLemonade, "", "Qwen3-0.6B-GGUF"
	if id := ModelID(l, l.ChatModel); id != "Qwen3-0.6B-GGUF" {
		t.Errorf("catalog model id %q", id)
	}
}

// Files kept in the database win over the ones thon.yaml names.
func TestStoredFilesWin(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "settings.json"), []byte(`{"editor.fontSize": 12}`), 0o644)
	c := testConfig(t, "  vscode_settings_file: "+filepath.Join(dir, "settings.json")+"\n")
	a, err := NewAssistantsWith(c, map[string][]byte{
		"vscode-settings": []byte("{\n  // from the dashboard\n  \"editor.fontSize\": 20,\n}"),
		"extensions":      []byte("ms-python.python\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	files, _ := a.Files(testEndpoint, testParticipant)
	byPath := filesByPath(t, files)
	if !strings.Contains(string(byPath[SettingsPath].Data), `"editor.fontSize": 20`) || !strings.Contains(string(byPath[ExtensionsPath].Data), "ms-python.python") {
		t.Fatalf("stored files not used:\n%s\n%s", byPath[SettingsPath].Data, byPath[ExtensionsPath].Data)
	}
	if _, err := NewAssistantsWith(c, map[string][]byte{"kilo-base": []byte("{broken")}); err == nil || !strings.Contains(err.Error(), "stored file kilo-base") {
		t.Fatalf("a broken stored file: %v", err)
	}
}

// Every configured model reaches the assistants: extra chat models beside
// the chat model, the small model for titles and summaries, images for a
// model with a vision projector; the files still match the schemas.
func TestSeveralModelsReachTheAssistants(t *testing.T) {
	dir := t.TempDir()
	proj := filepath.Join(dir, "mmproj.gguf")
	os.WriteFile(proj, []byte("GGUF\x03\x00\x00\x00"+strings.Repeat("\x00", 16)), 0o644)
	path := filepath.Join(dir, "thon.yaml")
	os.WriteFile(path, []byte(`llm:
  backend: llamacpp
  chat_model: {name: coder, checkpoint: "unsloth/Qwen3-Coder-30B-A3B-Instruct-GGUF:Q4_K_M", mmproj: `+proj+`, ctx_per_user: 16384}
  chat_models: [{name: reasoner, checkpoint: "unsloth/gpt-oss-20b-GGUF:Q4_K_M"}]
  small_model: {name: tiny, checkpoint: "unsloth/Qwen3-0.6B-GGUF:Q8_0", ctx_per_user: 4096}
  embedding_model: {name: embed, checkpoint: "nomic-ai/nomic-embed-text-v1.5-GGUF:Q8_0"}
assistants:
  cline: {enabled: true}
`), 0o644)
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAssistants(c)
	if err != nil {
		t.Fatal(err)
	}
	files, err := a.Files(testEndpoint, testParticipant)
	if err != nil {
		t.Fatal(err)
	}
	byPath := filesByPath(t, files)
	var kilo struct {
		Model      string `json:"model"`
		SmallModel string `json:"small_model"`
		Provider   map[string]struct {
			Models map[string]struct {
				Attachment bool `json:"attachment"`
				Limit      struct{ Context int }
			} `json:"models"`
		} `json:"provider"`
	}
	if err := json.Unmarshal(byPath[KiloConfigPath].Data, &kilo); err != nil {
		t.Fatal(err)
	}
	ms := kilo.Provider["thon"].Models
	if kilo.Model != "thon/coder" || kilo.SmallModel != "thon/tiny" || len(ms) != 3 || !ms["coder"].Attachment || ms["reasoner"].Attachment || ms["reasoner"].Limit.Context != 16384 || ms["tiny"].Limit.Context != 4096 {
		t.Fatalf("kilo: %s", byPath[KiloConfigPath].Data)
	}
	var cont struct {
		Models []struct {
			Model        string
			Roles        []string
			Capabilities []string
		}
	}
	yaml.Unmarshal(byPath[ContinueConfigPath].Data, &cont)
	roles := map[string]string{}
	for _, m := range cont.Models {
		roles[m.Model] = strings.Join(m.Roles, ",") + "|" + strings.Join(m.Capabilities, ",")
	}
	want := map[string]string{"coder": "chat,edit,apply,autocomplete|tool_use,image_input", "reasoner": "chat,edit,apply|tool_use", "tiny": "summarize|tool_use", "embed": "embed|"}
	for m, r := range want {
		if roles[m] != r {
			t.Errorf("continue: %s has %q, want %q", m, roles[m], r)
		}
	}
	if !strings.Contains(string(byPath[ClineStatePath].Data), `"supportsImages": true`) {
		t.Errorf("cline: the chat model takes images: %s", byPath[ClineStatePath].Data)
	}
	kiloSchema := compileSchema(t, "kilo-config.schema.json")
	v, _ := jsonschema.UnmarshalJSON(bytes.NewReader(byPath[KiloConfigPath].Data))
	if err := kiloSchema.Validate(v); err != nil {
		t.Errorf("kilo config does not validate: %v", err)
	}
	var y any
	yaml.Unmarshal(byPath[ContinueConfigPath].Data, &y)
	if err := compileSchema(t, "continue-config.schema.json").Validate(asJSONValue(t, y)); err != nil {
		t.Errorf("continue config does not validate: %v", err)
	}
}

// Organizers' base files can name the participant; the git MCP server
// works in their workspace as them; the files still match Kilo's schema
// (OpenCode's file is the same format); the workspace is trusted unless the
// organizer wants the prompt back.
func TestParticipantInBaseFilesAndGitMCP(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "kilo.json")
	os.WriteFile(base, []byte(`{"instructions": ["$WORKSPACE/RULES.md"], "username": "$THON_USERNAME", "agent": {"build": {"prompt": "You help ${THON_USERNAME} of $THON_GROUP ($THON_USER_EMAIL); keep $HOME as it is."}}}`), 0o644)
	c := testConfig(t, "  kilo: {base_file: "+base+"}\n  opencode: {base_file: "+base+"}\n  git_mcp: true\n  workspace_trust: true\n")
	a, err := NewAssistants(c)
	if err != nil {
		t.Fatal(err)
	}
	files, err := a.Files(testEndpoint, Participant{User: "alice", Group: "alpha", Email: "alice@example.org", Workspace: "/workspace/alpha/alice"})
	if err != nil {
		t.Fatal(err)
	}
	byPath := filesByPath(t, files)
	schema := compileSchema(t, "kilo-config.schema.json")
	for _, path := range []string{KiloConfigPath, OpenCodeConfigPath} {
		text := string(byPath[path].Data)
		for _, want := range []string{`"/workspace/alpha/alice/RULES.md"`, `"username": "alice"`, `You help alice of alpha (alice@example.org); keep ${HOME} as it is.`,
			`"GIT_BASE_DIR": "/workspace/alpha/alice"`, `"GIT_EMAIL": "alice@example.org"`, `"command": [`, `"git-mcp-server"`} {
			if !strings.Contains(text, want) {
				t.Errorf("%s lacks %s:\n%s", path, want, text)
			}
		}
		v, _ := jsonschema.UnmarshalJSON(strings.NewReader(strings.Replace(text, openCodeSchema, kiloSchema, 1)))
		if err := schema.Validate(v); err != nil {
			t.Errorf("%s does not validate: %v", path, err)
		}
	}
	if !strings.Contains(string(byPath[SettingsPath].Data), `"security.workspace.trust.enabled": true`) {
		t.Errorf("settings: %s", byPath[SettingsPath].Data)
	}
	// Her git identity, as git itself reads it.
	gc, ok := byPath[GitConfigPath]
	if !ok || gc.Mode != 0o644 {
		t.Fatalf("no %s (mode 0644): %+v", GitConfigPath, gc)
	}
	sys := filepath.Join(dir, "gitconfig")
	os.WriteFile(sys, gc.Data, 0o644)
	for key, want := range map[string]string{"user.name": "alice", "user.email": "alice@example.org"} {
		cmd := exec.Command("git", "config", "--system", key)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_SYSTEM="+sys, "GIT_CONFIG_GLOBAL=/dev/null")
		out, err := cmd.Output()
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("git config %s = %q, %v; want %q\n%s", key, out, err, want, gc.Data)
		}
	}
	// Without an e-mail, git keeps its own default (no file).
	files, _ = a.Files(testEndpoint, Participant{User: "bob", Group: "alpha", Workspace: "/workspace/alpha/bob"})
	if _, ok := filesByPath(t, files)[GitConfigPath]; ok {
		t.Errorf("bob has no e-mail but got %s", GitConfigPath)
	}
}
