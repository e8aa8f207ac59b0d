package llm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/jsonc"
)

// Where the participant image (deploy/sandbox) keeps things: code-server
// runs as coder, uid 1000, with HOME=/home/coder.
const (
	Home = "/home/coder"
	UID  = 1000
	GID  = 1000

	KiloConfigPath     = Home + "/.config/kilo/config.json"
	KiloIndexingPath   = Home + "/.config/kilo/kilo.json"
	ContinueConfigPath = Home + "/.continue/config.yaml"
	ClineStatePath     = Home + "/.cline/data/globalState.json"
	ClineSecretsPath   = Home + "/.cline/data/secrets.json"
	// ClineProvidersPath is what the cline command reads (and what Cline
	// fills from globalState.json only on its first run).
	ClineProvidersPath = Home + "/.cline/data/settings/providers.json"
	OpenCodeConfigPath = Home + "/.config/opencode/opencode.json"
	SettingsPath       = Home + "/.local/share/code-server/User/settings.json"
	// ExtensionsPath lists extensions the image's entrypoint installs at
	// start, one id or .vsix path per line.
	ExtensionsPath = "/etc/thon/extensions.txt"
	// GitConfigPath is git's system-wide config: the participant's git
	// identity (user.name, user.email) when thon.yaml gives their e-mail,
	// which their own git config --global overrides.
	GitConfigPath = "/etc/gitconfig"

	kiloSchema     = "https://app.kilo.ai/config.json"
	openCodeSchema = "https://opencode.ai/config.json"
)

// Extension ids of the assistants on the VS Code marketplace / Open VSX.
const (
	KiloExtension     = "kilocode.kilo-code"
	ContinueExtension = "Continue.continue"
	ClineExtension    = "saoudrizwan.claude-dev"
)

// provider is the name THON's endpoint has in every assistant.
const provider = "thon"

// Endpoint is where a participant's assistants send requests, as seen from
// inside their sandbox: the AI gateway with their own key, or the LLM
// server itself.
type Endpoint struct {
	BaseURL string // OpenAI-compatible, e.g. http://host.docker.internal:9080/v1
	Key     string
}

// ModelInfo is a model as the assistants are told about it.
type ModelInfo struct {
	ID        string // what requests name
	Name      string // what people read
	Context   int    // tokens of context one participant gets
	MaxOutput int    // tokens one answer may have
	Vision    bool   // takes images (a llama.cpp model with a vision projector)
}

// Assistants writes each participant's assistant configs from thon.yaml.
// The organizer's base files are read once, when it is made.
type Assistants struct {
	cfg          config.Assistants
	chat, embed  ModelInfo   // embed.ID == "": no embeddings model
	small        ModelInfo   // small.ID == "": the chat model does small tasks
	chats        []ModelInfo // more chat models, offered beside chat
	kiloBase     map[string]any
	continueBase map[string]any
	clineBase    map[string]any
	openCodeBase map[string]any
	settings     map[string]any
	extensions   []string
}

// NewAssistants reads the base files thon.yaml names. Its errors say which
// file is wrong and where.
func NewAssistants(c *config.Config) (*Assistants, error) {
	return NewAssistantsWith(c, nil)
}

// Stored file kinds that stand in for thon.yaml's assistant files (kept in
// the database, edited on the dashboard): kind → the setting it replaces.
var StoredKinds = map[string]string{
	"kilo-base":       "kilo.base_file",
	"continue-base":   "continue.base_file",
	"cline-base":      "cline.base_file",
	"opencode-base":   "opencode.base_file",
	"vscode-settings": "vscode_settings_file",
	"extensions":      "extensions_file",
}

// NewAssistantsWith is NewAssistants with files of StoredKinds given by
// content, which wins over the file thon.yaml names.
func NewAssistantsWith(c *config.Config, stored map[string][]byte) (*Assistants, error) {
	a := &Assistants{cfg: c.Assistants}
	for i, rm := range Configured(c.LLM) {
		mi := modelInfo(c.LLM, rm.Model)
		switch {
		case i == 0:
			a.chat = mi
		case rm.Role == "chat":
			a.chats = append(a.chats, mi)
		case rm.Role == "small":
			a.small = mi
		case rm.Role == "embedding":
			a.embed = mi
		}
	}
	kindOf := map[string]string{}
	for k, setting := range StoredKinds {
		kindOf[setting] = k
	}
	read := func(setting, file string, parse func([]byte) (map[string]any, error)) (map[string]any, error) {
		if data, ok := stored[kindOf[setting]]; ok {
			m, err := parse(data)
			if err != nil {
				return nil, fmt.Errorf("stored file %s: %w", kindOf[setting], err)
			}
			return m, nil
		}
		if file == "" {
			return map[string]any{}, nil
		}
		data, err := c.ReadFile(file)
		if err == nil {
			var m map[string]any
			if m, err = parse(data); err == nil {
				return m, nil
			}
		}
		return nil, fmt.Errorf("assistants.%s: %s: %w", setting, file, err)
	}
	var err error
	if a.kiloBase, err = read("kilo.base_file", c.Assistants.Kilo.BaseFile, jsonc.Object); err != nil {
		return nil, err
	}
	if a.continueBase, err = read("continue.base_file", c.Assistants.Continue.BaseFile, yamlObject); err != nil {
		return nil, err
	}
	if a.clineBase, err = read("cline.base_file", c.Assistants.Cline.BaseFile, jsonc.Object); err != nil {
		return nil, err
	}
	if a.openCodeBase, err = read("opencode.base_file", c.Assistants.OpenCode.BaseFile, jsonc.Object); err != nil {
		return nil, err
	}
	if a.settings, err = read("vscode_settings_file", c.Assistants.VSCodeSettingsFile, jsonc.Object); err != nil {
		return nil, err
	}
	if data, ok := stored["extensions"]; ok {
		if a.extensions, err = config.ParseExtensions(data); err != nil {
			return nil, fmt.Errorf("stored file extensions: %w", err)
		}
	} else if f := c.Assistants.ExtensionsFile; f != "" {
		data, err := c.ReadFile(f)
		if err == nil {
			a.extensions, err = config.ParseExtensions(data)
		}
		if err != nil {
			return nil, fmt.Errorf("assistants.extensions_file: %s: %w", f, err)
		}
	}
	return a, nil
}

func modelInfo(l config.LLM, m config.LLMModel) ModelInfo {
	return ModelInfo{ID: ModelID(l, m), Name: strings.TrimPrefix(m.Name, "user."), Context: m.CtxPerUser,
		MaxOutput: min(8192, max(256, m.CtxPerUser/4)), Vision: m.MMProj != ""}
}

// ModelID is the id a model is requested by. Lemonade registers a model it
// pulls from a checkpoint as "user.NAME"; other servers use NAME as it is.
func ModelID(l config.LLM, m config.LLMModel) string {
	if l.Backend == config.BackendLemonade && m.Checkpoint != "" && m.Name != "" && !strings.HasPrefix(m.Name, "user.") {
		return "user." + m.Name
	}
	return m.Name
}

func yamlObject(data []byte) (map[string]any, error) {
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// continueConfig is Continue's config.yaml (schema v1): the chat model in
// every editing role, the embeddings model for the codebase index.
func (a *Assistants) continueConfig(ep Endpoint) map[string]any {
	var models []any
	add := func(m ModelInfo, roles ...any) {
		caps := []any{"tool_use"}
		if m.Vision {
			caps = append(caps, "image_input")
		}
		models = append(models, map[string]any{
			"name":         "THON " + m.Name,
			"provider":     "openai",
			"model":        m.ID,
			"apiBase":      ep.BaseURL,
			"apiKey":       ep.Key,
			"roles":        roles,
			"capabilities": caps,
			"defaultCompletionOptions": map[string]any{
				"contextLength": m.Context,
				"maxTokens":     m.MaxOutput,
			},
		})
	}
	add(a.chat, "chat", "edit", "apply", "autocomplete")
	for _, m := range a.chats {
		add(m, "chat", "edit", "apply")
	}
	if a.small.ID != "" {
		add(a.small, "summarize")
	}
	if a.embed.ID != "" {
		models = append(models, map[string]any{
			"name":     "THON " + a.embed.Name,
			"provider": "openai",
			"model":    a.embed.ID,
			"apiBase":  ep.BaseURL,
			"apiKey":   ep.Key,
			"roles":    []any{"embed"},
		})
	}
	return map[string]any{"name": "THON", "version": "1.0.0", "schema": "v1", "models": models}
}

// chatModels is the chat model, then the others.
func (a *Assistants) chatModels() []ModelInfo {
	return append([]ModelInfo{a.chat}, a.chats...)
}

func yamlFile(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}

func jsonFile(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
