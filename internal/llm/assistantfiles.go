package llm

import (
	"os"
	"slices"
	"strings"

	"github.com/thon-dev/thon/internal/sandbox"
)

// Participant is whose sandbox the files are for: organizers' base files
// may name them ($THON_USERNAME, $THON_GROUP, $THON_USER_EMAIL, $WORKSPACE).
type Participant struct {
	User, Group, Email, Workspace string
}

// email is the participant's e-mail, or one that says whose it is.
func (p Participant) email() string {
	if p.Email != "" {
		return p.Email
	}
	return p.User + "@thon.invalid"
}

// base is an organizer's base file with the participant's variables
// replaced in every string; other $VARIABLES stay as they are.
func (p Participant) base(m map[string]any) map[string]any {
	vars := map[string]string{"THON_USERNAME": p.User, "THON_USER": p.User, "THON_GROUP": p.Group, "THON_USER_EMAIL": p.email(), "WORKSPACE": p.Workspace}
	var walk func(any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case string:
			if !strings.Contains(x, "$") {
				return x
			}
			return os.Expand(x, func(name string) string {
				if val, ok := vars[name]; ok {
					return val
				}
				return "${" + name + "}"
			})
		case map[string]any:
			out := make(map[string]any, len(x))
			for k, e := range x {
				out[k] = walk(e)
			}
			return out
		case []any:
			out := make([]any, len(x))
			for i, e := range x {
				out[i] = walk(e)
			}
			return out
		}
		return v
	}
	return walk(m).(map[string]any)
}

// Files returns one participant's files: each enabled assistant's config
// pointing at ep, VS Code user settings, and the extensions to install.
// Files holding the key are readable by the participant only (0600).
func (a *Assistants) Files(ep Endpoint, p Participant) ([]sandbox.File, error) {
	var files []sandbox.File
	add := func(path string, mode int64, v any, asYAML bool) error {
		var data []byte
		var err error
		if asYAML {
			data, err = yamlFile(v)
		} else {
			data, err = jsonFile(v)
		}
		if err != nil {
			return err
		}
		files = append(files, sandbox.File{Path: path, Mode: mode, UID: UID, GID: GID, Data: data})
		return nil
	}
	settings := map[string]any{
		// Nothing leaves the venue, and nothing updates itself mid-event.
		"telemetry.telemetryLevel":    "off",
		"update.mode":                 "none",
		"extensions.autoCheckUpdates": false,
		"extensions.autoUpdate":       false,
		// The participant's own workspace is theirs to trust: no Restricted
		// Mode and no prompt (assistants.workspace_trust brings them back).
		"security.workspace.trust.enabled": a.cfg.WorkspaceTrust,
		// No Welcome walkthrough (code-server's advertises Coder, and it
		// takes the focus from what the participant opened first).
		"workbench.startupEditor": "none",
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
	var errs []error
	try := func(err error) { errs = append(errs, err) }

	if a.cfg.Kilo.Enabled {
		cfg, indexing := a.kilo(ep, p, kiloSchema)
		try(add(KiloConfigPath, 0o600, merge(merge(kiloDefaults(), p.base(a.kiloBase)), cfg), false))
		if indexing != nil {
			// A file of its own: Kilo versions without codebase indexing
			// reject a config with keys they do not know, and would then
			// lose the provider too.
			try(add(KiloIndexingPath, 0o600, indexing, false))
		}
		// The extension takes a new chat's model from these settings.
		settings["kilo-code.new.model.providerID"] = provider
		settings["kilo-code.new.model.modelID"] = a.chat.ID
		want(KiloExtension)
	}
	if a.cfg.OpenCode.Enabled {
		cfg, _ := a.kilo(ep, p, openCodeSchema) // one format: Kilo is OpenCode's fork
		try(add(OpenCodeConfigPath, 0o600, merge(merge(kiloDefaults(), p.base(a.openCodeBase)), cfg), false))
	}
	if a.cfg.Continue.Enabled {
		try(add(ContinueConfigPath, 0o600, merge(p.base(a.continueBase), a.continueConfig(ep)), true))
		settings["continue.telemetryEnabled"] = false
		want(ContinueExtension)
	}
	if a.cfg.Cline.Enabled {
		state, secrets, providers := a.cline(ep)
		try(add(ClineStatePath, 0o600, merge(p.base(a.clineBase), state), false))
		try(add(ClineSecretsPath, 0o600, secrets, false))
		try(add(ClineProvidersPath, 0o600, providers, false))
		want(ClineExtension)
	}
	try(add(SettingsPath, 0o644, merge(p.base(a.settings), settings), false))
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	if len(extensions) > 0 {
		text := "# Installed by the image's entrypoint at start (written by THON).\n" + strings.Join(extensions, "\n") + "\n"
		files = append(files, sandbox.File{Path: ExtensionsPath, Mode: 0o644, Data: []byte(text)})
	}
	if f, ok := p.gitIdentity(); ok {
		files = append(files, f)
	}
	return files, nil
}

// gitIdentity is git's system config naming the participant, so what they
// and their assistants commit carries their name and e-mail; only for a
// participant whose e-mail thon.yaml gives.
func (p Participant) gitIdentity() (sandbox.File, bool) {
	if p.Email == "" || strings.ContainsAny(p.Email+p.User, "\"\\\n") {
		return sandbox.File{}, false
	}
	text := "# Written by THON: " + p.User + "'s git identity (thon.yaml's e-mail). `git config --global` overrides it.\n" +
		"[user]\n\tname = " + p.User + "\n\temail = " + p.Email + "\n"
	return sandbox.File{Path: GitConfigPath, Mode: 0o644, Data: []byte(text)}, true
}

// kiloDefaults are what THON sets in Kilo's and OpenCode's config unless
// the organizer's base file says otherwise: no client timeout (local
// models take their time), every tool allowed without asking (the sandbox
// is the participant's own), automatic compaction, nothing shared, no
// self-update.
func kiloDefaults() map[string]any {
	return map[string]any{
		"provider":   map[string]any{provider: map[string]any{"options": map[string]any{"timeout": false}}},
		"permission": "allow",
		"compaction": map[string]any{"auto": true, "prune": true},
		"share":      "disabled",
		"autoupdate": false,
	}
}

// kilo is Kilo's config.json and, with OpenCode's schema, OpenCode's
// opencode.json (one format): THON as an OpenAI-compatible provider, its
// chat model the default, and, for Kilo with an embeddings model, the
// codebase indexing settings (kilo.json).
func (a *Assistants) kilo(ep Endpoint, p Participant, schema string) (cfg, indexing map[string]any) {
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
		"$schema":     schema,
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
	if a.cfg.GitMCP {
		cfg["mcp"] = map[string]any{
			"git": map[string]any{
				"type":    "local",
				"command": []any{"git-mcp-server"},
				"environment": map[string]any{
					"MCP_TRANSPORT_TYPE": "stdio",
					"GIT_BASE_DIR":       p.Workspace,
					"GIT_USERNAME":       p.User,
					"GIT_EMAIL":          p.email(),
				},
			},
		}
	}
	if schema != kiloSchema || a.embed.ID == "" {
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

// clineUpdated is providers.json's updatedAt. Cline replaces a file
// without one by its default provider; a fixed date keeps the file (and the
// sandbox's settings hash) the same for the same settings.
const clineUpdated = "2026-01-01T00:00:00.000Z"

// cline is Cline's globalState.json and secrets.json (read by the Cline
// extension 3.66 and later) and providers.json (read by the cline command,
// which copies the other two only on its first run, so a rotated key would
// never reach it otherwise): the OpenAI-compatible provider in plan and act
// modes.
func (a *Assistants) cline(ep Endpoint) (state, secrets, providers map[string]any) {
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
	providers = map[string]any{
		"version":          1,
		"lastUsedProvider": "openai-compatible",
		"providers": map[string]any{
			"openai-compatible": map[string]any{
				"settings": map[string]any{
					"provider": "openai-compatible",
					"apiKey":   ep.Key,
					"model":    a.chat.ID,
					"baseUrl":  ep.BaseURL,
				},
				"updatedAt":   clineUpdated,
				"tokenSource": "manual",
			},
		},
	}
	return state, map[string]any{"openAiApiKey": ep.Key}, providers
}
