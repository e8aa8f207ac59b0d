package llm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/jsonc"
	"github.com/thon-dev/thon/internal/sandbox"
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
	SettingsPath       = Home + "/.local/share/code-server/User/settings.json"
	// ExtensionsPath lists extensions the image's entrypoint installs at
	// start, one id or .vsix path per line.
	ExtensionsPath = "/etc/thon/extensions.txt"

	kiloSchema = "https://app.kilo.ai/config.json"
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

// Files returns one participant's files: each enabled assistant's config
// pointing at ep, VS Code user settings, and the extensions to install.
// Files holding the key are readable by the participant only (0600).
func (a *Assistants) Files(ep Endpoint) ([]sandbox.File, error) {
	var files []sandbox.File
	add := func(path string, mode int64, data []byte) {
		files = append(files, sandbox.File{Path: path, Mode: mode, UID: UID, GID: GID, Data: data})
	}
	settings := map[string]any{
		// Nothing leaves the venue, and nothing updates itself mid-event.
		"telemetry.telemetryLevel":    "off",
		"update.mode":                 "none",
		"extensions.autoCheckUpdates": false,
		"extensions.autoUpdate":       false,
	}
	extensions := slices.Clone(a.extensions)
	want := func(id string) {
		for _, e := range extensions {
			if strings.EqualFold(strings.SplitN(e, "@", 2)[0], id) {
				return
			}
		}
		extensions = append(extensions, id)
	}

	if a.cfg.Kilo.Enabled {
		cfg, indexing := a.kilo(ep)
		data, err := jsonFile(merge(a.kiloBase, cfg))
		if err != nil {
			return nil, err
		}
		add(KiloConfigPath, 0o600, data)
		if indexing != nil {
			// A file of its own: Kilo versions without codebase indexing
			// reject a config with keys they do not know, and would then
			// lose the provider too.
			data, err := jsonFile(indexing)
			if err != nil {
				return nil, err
			}
			add(KiloIndexingPath, 0o600, data)
		}
		// The extension takes a new chat's model from these settings.
		settings["kilo-code.new.model.providerID"] = provider
		settings["kilo-code.new.model.modelID"] = a.chat.ID
		want(KiloExtension)
	}
	if a.cfg.Continue.Enabled {
		data, err := yamlFile(merge(a.continueBase, a.continueConfig(ep)))
		if err != nil {
			return nil, err
		}
		add(ContinueConfigPath, 0o600, data)
		settings["continue.telemetryEnabled"] = false
		want(ContinueExtension)
	}
	if a.cfg.Cline.Enabled {
		state, secrets := a.cline(ep)
		data, err := jsonFile(merge(a.clineBase, state))
		if err != nil {
			return nil, err
		}
		add(ClineStatePath, 0o600, data)
		if data, err = jsonFile(secrets); err != nil {
			return nil, err
		}
		add(ClineSecretsPath, 0o600, data)
		want(ClineExtension)
	}

	data, err := jsonFile(merge(a.settings, settings))
	if err != nil {
		return nil, err
	}
	add(SettingsPath, 0o644, data)
	if len(extensions) > 0 {
		text := "# Installed by the image's entrypoint at start (written by THON).\n" + strings.Join(extensions, "\n") + "\n"
		files = append(files, sandbox.File{Path: ExtensionsPath, Mode: 0o644, Data: []byte(text)})
	}
	return files, nil
}

// kilo is Kilo Code's config.json: THON as an OpenAI-compatible provider,
// its chat model the default; and, with an embeddings model, the codebase
// indexing settings (for kilo.json).
func (a *Assistants) kilo(ep Endpoint) (cfg, indexing map[string]any) {
	models := map[string]any{}
	all := a.chatModels()
	if a.small.ID != "" {
		all = append(all, a.small)
	}
	for _, m := range all {
		entry := map[string]any{
			"name":      m.Name,
			"tool_call": true,
			"limit":     map[string]any{"context": m.Context, "output": m.MaxOutput},
		}
		if m.Vision {
			entry["attachment"] = true
			entry["modalities"] = map[string]any{"input": []any{"text", "image"}, "output": []any{"text"}}
		}
		models[m.ID] = entry
	}
	small := a.chat.ID
	if a.small.ID != "" {
		small = a.small.ID
	}
	cfg = map[string]any{
		"$schema":     kiloSchema,
		"model":       provider + "/" + a.chat.ID,
		"small_model": provider + "/" + small,
		"provider": map[string]any{
			provider: map[string]any{
				"npm":     "@ai-sdk/openai-compatible",
				"name":    "THON",
				"options": map[string]any{"baseURL": ep.BaseURL, "apiKey": ep.Key},
				"models":  models,
			},
		},
	}
	if a.embed.ID == "" {
		return cfg, nil
	}
	return cfg, map[string]any{
		"$schema": kiloSchema,
		"indexing": map[string]any{
			"enabled":           true,
			"provider":          "openai-compatible",
			"model":             a.embed.ID,
			"vectorStore":       "lancedb",
			"openai-compatible": map[string]any{"baseUrl": ep.BaseURL, "apiKey": ep.Key},
		},
	}
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

// cline is Cline's globalState.json and secrets.json (read by Cline 3.66
// and later): its OpenAI-compatible provider in both plan and act modes.
func (a *Assistants) cline(ep Endpoint) (state, secrets map[string]any) {
	info := map[string]any{
		"contextWindow": a.chat.Context, "maxTokens": a.chat.MaxOutput,
		"supportsImages": a.chat.Vision, "supportsPromptCache": false, "inputPrice": 0, "outputPrice": 0,
	}
	state = map[string]any{
		"actModeApiProvider":      "openai",
		"planModeApiProvider":     "openai",
		"openAiBaseUrl":           ep.BaseURL,
		"actModeOpenAiModelId":    a.chat.ID,
		"planModeOpenAiModelId":   a.chat.ID,
		"actModeOpenAiModelInfo":  info,
		"planModeOpenAiModelInfo": info,
		"welcomeViewCompleted":    true,
	}
	return state, map[string]any{"openAiApiKey": ep.Key}
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
