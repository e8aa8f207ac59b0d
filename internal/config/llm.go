package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/thon-dev/thon/internal/jsonc"
)

var backends = []string{BackendLemonade, BackendOpenAI}

// checkLLM validates the llm and assistants sections.
func (c *Config) checkLLM(bad func(path, hint, format string, args ...any)) {
	l := c.LLM
	if !slices.Contains(backends, l.Backend) {
		hint := "use lemonade (Lemonade Server, managed by THON) or openai (any OpenAI-compatible server: llama-server, vLLM, Ollama)"
		if m, ok := suggest(l.Backend, backends); ok {
			hint = fmt.Sprintf("did you mean %q? ", m) + hint
		}
		bad("llm.backend", hint, "%q is not an LLM backend", l.Backend)
	}
	if msg := checkURL(l.URL); msg != "" {
		hint := "Lemonade's address, e.g. url: " + DefaultLLMURL
		if l.Backend == BackendOpenAI {
			hint = "the server's OpenAI-compatible base URL, e.g. url: http://127.0.0.1:8080/v1"
		}
		bad("llm.url", hint, "%q %s", l.URL, msg)
	}
	if l.APIKey != "" && l.APIKey == l.AdminAPIKey {
		bad("llm.admin_api_key", "give the admin key its own value: the api_key may reach sandboxes when the gateway is off, the admin key never does",
			"must differ from api_key")
	}
	if l.Enabled && strings.TrimSpace(l.ChatModel.Name) == "" {
		bad("llm.chat_model.name", "the model id assistants ask for, e.g. name: "+DefaultChatModel, "must not be empty")
	}
	for _, m := range []struct {
		path string
		m    LLMModel
	}{{"llm.chat_model", l.ChatModel}, {"llm.embedding_model", l.EmbeddingModel}} {
		if m.m.Checkpoint != "" && strings.TrimSpace(m.m.Name) == "" {
			bad(m.path+".name", "name the model the checkpoint is loaded as, e.g. name: nomic-embed-text-v1.5", "must be set when checkpoint is")
		}
		if strings.ContainsAny(m.m.Name, " \t\r\n") {
			bad(m.path+".name", "model ids have no spaces", "%q contains white space", m.m.Name)
		}
		if m.m.CtxPerUser < 1 {
			bad(m.path+".ctx_per_user", "context tokens per participant, e.g. 32768", "%d must be at least 1", m.m.CtxPerUser)
		}
		switch {
		case m.m.MaxCtx < 0:
			bad(m.path+".max_ctx", "0 means no cap", "%d is negative", m.m.MaxCtx)
		case m.m.MaxCtx > 0 && m.m.MaxCtx < m.m.CtxPerUser:
			bad(m.path+".max_ctx", "the cap must hold at least one participant's context", "%d is less than ctx_per_user (%d)", m.m.MaxCtx, m.m.CtxPerUser)
		}
	}
	if l.SlotsPerUser < 1 {
		bad("llm.slots_per_user", "parallel requests the server keeps room for per participant, e.g. 1", "%d must be at least 1", l.SlotsPerUser)
	}
	if l.MaxSlots < 1 {
		bad("llm.max_slots", fmt.Sprintf("the most parallel slots the server runs, e.g. %d", DefaultMaxSlots), "%d must be at least 1", l.MaxSlots)
	}

	for _, f := range strings.Fields(l.LlamacppArgs) {
		name, _, _ := strings.Cut(f, "=")
		if hint, ok := reservedLlamacppArgs[name]; ok && l.Backend == BackendLemonade {
			bad("llm.llamacpp_args", hint, "%s is set by the server or by THON", name)
		}
	}

	a := c.Assistants
	for _, f := range []struct {
		path, file, kind string
	}{
		{"assistants.kilo.base_file", a.Kilo.BaseFile, "json"},
		{"assistants.continue.base_file", a.Continue.BaseFile, "yaml"},
		{"assistants.cline.base_file", a.Cline.BaseFile, "json"},
		{"assistants.vscode_settings_file", a.VSCodeSettingsFile, "json"},
		{"assistants.extensions_file", a.ExtensionsFile, "lines"},
	} {
		if f.file == "" {
			continue
		}
		data, err := c.ReadFile(f.file)
		if err != nil {
			bad(f.path, "check the path (relative paths start at thon.yaml's directory) and its permissions", "%v", err)
			continue
		}
		if msg := checkFile(f.kind, data); msg != "" {
			bad(f.path, "fix the file, or set "+f.path+": \"\" to go without it", "%s: %s", f.file, msg)
		}
	}
}

// reservedLlamacppArgs are llama.cpp arguments Lemonade sets itself (a load
// with them fails) or THON derives from other settings.
var reservedLlamacppArgs = func() map[string]string {
	ctx := "THON sizes the context: set llm.chat_model.ctx_per_user and max_ctx"
	lemonade := "Lemonade passes it itself; remove it"
	m := map[string]string{"-c": ctx, "--ctx-size": ctx}
	for _, f := range []string{"-m", "--model", "-hf", "--port", "-ngl", "--jinja", "--no-jinja", "--mmproj", "--embeddings", "--embedding", "--reranking", "--rerank", "--metrics", "-md", "--device", "-dev"} {
		m[f] = lemonade
	}
	return m
}()

// checkFile says what is wrong with the contents of an assistant file, or "".
func checkFile(kind string, data []byte) string {
	switch kind {
	case "json":
		if _, err := jsonc.Object(data); err != nil {
			return "not a JSON object: " + err.Error()
		}
	case "yaml":
		var m map[string]any
		if err := yaml.Unmarshal(data, &m); err != nil {
			return "not a YAML mapping: " + err.Error()
		}
	case "lines":
		if _, err := ParseExtensions(data); err != nil {
			return err.Error()
		}
	}
	return ""
}

// ParseExtensions reads an extensions file: one marketplace id
// (publisher.name, optionally @version) or .vsix path per line; blank lines
// and lines starting with # are skipped.
func ParseExtensions(data []byte) ([]string, error) {
	var out []string
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, _, _ := strings.Cut(line, "@")
		pub, name, ok := strings.Cut(id, ".")
		if !strings.HasSuffix(line, ".vsix") && (!ok || pub == "" || name == "" || strings.ContainsAny(line, " \t\"'`$;|&<>")) {
			return nil, fmt.Errorf("line %d: %q is neither an extension id (publisher.name, e.g. kilocode.kilo-code) nor a .vsix file", i+1, line)
		}
		out = append(out, line)
	}
	return out, nil
}

// resolveFiles makes the assistant file paths absolute, so the daemon
// reads the same files whatever its working directory.
func (c *Config) resolveFiles() {
	a := &c.Assistants
	for _, p := range []*string{&a.Kilo.BaseFile, &a.Continue.BaseFile, &a.Cline.BaseFile, &a.VSCodeSettingsFile, &a.ExtensionsFile} {
		if *p == "" {
			continue
		}
		if abs, err := c.path(*p); err == nil {
			*p = abs
		}
	}
}

// path resolves a file name from thon.yaml; see ReadFile.
func (c *Config) path(name string) (string, error) {
	p, err := expandHome(name)
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(p) && c.Path != "" {
		p = filepath.Join(filepath.Dir(c.Path), p)
	}
	return filepath.Abs(p)
}

// ReadFile reads a file named in thon.yaml: ~ is the home directory, and a
// relative path starts at the directory of the config file (or the working
// directory when there is none).
func (c *Config) ReadFile(name string) ([]byte, error) {
	p, err := c.path(name)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", name, unwrapPath(err))
	}
	return data, nil
}

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
