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

var backends = []string{BackendLemonade, BackendLlamacpp, BackendOpenAI}

var gpus = []string{GPUAuto, "none", "nvidia", "amd", "intel"}

// checkLLM validates the llm and assistants sections.
func (c *Config) checkLLM(bad func(path, hint, format string, args ...any)) {
	l := c.LLM
	if !slices.Contains(backends, l.Backend) {
		hint := "use lemonade (Lemonade Server), llamacpp (llama.cpp's llama-server, run by THON or your own) or openai (any OpenAI-compatible server: vLLM, Ollama)"
		if m, ok := suggest(l.Backend, backends); ok {
			hint = fmt.Sprintf("did you mean %q? ", m) + hint
		}
		bad("llm.backend", hint, "%q is not an LLM backend", l.Backend)
	}
	switch {
	case l.URL == "" && l.Backend == BackendOpenAI:
		bad("llm.url", "the server's OpenAI-compatible base URL, e.g. url: http://127.0.0.1:8080/v1", "must be set for backend openai")
	case l.URL == "":
	case l.Backend == BackendLlamacpp && l.Managed:
		bad("llm.url", "THON runs a managed server itself: remove url, or set managed: false to use the server at url", "must be empty when llm.managed is true")
	default:
		if msg := checkURL(l.URL); msg != "" {
			hint := "Lemonade's address, e.g. url: " + DefaultLLMURL
			switch l.Backend {
			case BackendOpenAI:
				hint = "the server's OpenAI-compatible base URL, e.g. url: http://127.0.0.1:8080/v1"
			case BackendLlamacpp:
				hint = "your llama-server's address, e.g. url: http://127.0.0.1:8080, or no url: THON runs one"
			}
			bad("llm.url", hint, "%q %s", l.URL, msg)
		}
	}
	if l.Managed && l.Backend != BackendLlamacpp {
		bad("llm.managed", "THON runs llama.cpp's llama-server: set backend: llamacpp", "needs backend llamacpp")
	}
	if l.APIKey != "" && l.APIKey == l.AdminAPIKey {
		bad("llm.admin_api_key", "give the admin key its own value: the api_key may reach sandboxes when the gateway is off, the admin key never does",
			"must differ from api_key")
	}
	if l.Enabled && strings.TrimSpace(l.ChatModel.Name) == "" {
		bad("llm.chat_model.name", "the model id assistants ask for, e.g. name: "+DefaultChatModel, "must not be empty")
	}
	if !slices.Contains(gpus, l.GPU) {
		hint := "use auto, none, nvidia, amd or intel"
		if m, ok := suggest(l.GPU, gpus); ok {
			hint = fmt.Sprintf("did you mean %q? ", m) + hint
		}
		bad("llm.gpu", hint, "%q is not a GPU kind", l.GPU)
	} else if l.IsManaged() && l.Enabled {
		if msg := MissingGPU(l.GPU); msg != "" {
			bad("llm.gpu", "set gpu: auto (a GPU when one is found, else the CPU) or gpu: none", "%s", msg)
		}
	}
	if l.IsManaged() && l.Enabled {
		switch {
		case c.Sandbox.Runtime == RuntimeKubernetes:
			bad("llm.managed", "run llama-server as a Deployment on the cluster (see docs/llm.md) and set llm.url to its Service, e.g. url: http://llm.thon.svc:8080",
				"THON runs its managed LLM server on Docker only, not on Kubernetes")
		case !c.Gateway.Enabled:
			bad("llm.managed", "turn the gateway on (gateway.enabled: true): sandboxes reach the managed server only through it",
				"the managed LLM server needs the AI gateway")
		}
		if strings.TrimSpace(l.Image) == "" {
			bad("llm.image", "the managed server's image, e.g. image: "+DefaultLLMImage+" (sudo thon setup llm builds it)", "must not be empty")
		}
	}
	if l.Limits.CPU < 0 || l.Limits.Memory < 0 || l.Limits.Pids < 0 {
		bad("llm.limits", "0 means no cap", "limits must not be negative")
	}
	type named struct {
		path string
		m    LLMModel
	}
	models := []named{{"llm.chat_model", l.ChatModel}, {"llm.embedding_model", l.EmbeddingModel}}
	if l.SmallModel.Name != "" {
		models = append(models, named{"llm.small_model", l.SmallModel})
	}
	for i, m := range l.ChatModels {
		models = append(models, named{fmt.Sprintf("llm.chat_models.%d", i), m})
	}
	ids := map[string]string{}
	for _, m := range models {
		if m.m.Checkpoint != "" && strings.TrimSpace(m.m.Name) == "" {
			bad(m.path+".name", "name the model the checkpoint is loaded as, e.g. name: nomic-embed-text-v1.5", "must be set when checkpoint is")
		}
		if strings.HasPrefix(m.path, "llm.chat_models.") && strings.TrimSpace(m.m.Name) == "" {
			bad(m.path+".name", "the model id assistants ask for", "must not be empty")
		}
		if strings.ContainsAny(m.m.Name, " \t\r\n") {
			bad(m.path+".name", "model ids have no spaces", "%q contains white space", m.m.Name)
		}
		if m.m.Name != "" {
			if other, dup := ids[m.m.Name]; dup {
				bad(m.path+".name", "give every model its own name", "%q is also the name of %s", m.m.Name, other)
			}
			ids[m.m.Name] = m.path
		}
		// chat_models entries may leave ctx_per_user 0: the chat model's.
		optional := strings.HasPrefix(m.path, "llm.chat_models.") && m.m.CtxPerUser == 0
		if !optional && m.m.CtxPerUser < 1 {
			bad(m.path+".ctx_per_user", "context tokens per participant, e.g. 32768", "%d must be at least 1", m.m.CtxPerUser)
		}
		switch {
		case m.m.MaxCtx < 0:
			bad(m.path+".max_ctx", "0 means no cap", "%d is negative", m.m.MaxCtx)
		case m.m.MaxCtx > 0 && m.m.MaxCtx < m.m.CtxPerUser:
			bad(m.path+".max_ctx", "the cap must hold at least one participant's context", "%d is less than ctx_per_user (%d)", m.m.MaxCtx, m.m.CtxPerUser)
		}
		if (m.m.File != "" || m.m.MMProj != "") && l.Backend != BackendLlamacpp {
			bad(m.path+".file", "model files are for backend llamacpp; Lemonade and other servers load their own (use checkpoint with Lemonade)", "is set for backend %s", l.Backend)
			continue
		}
		if l.Backend == BackendLlamacpp && l.Enabled && (m.m.Name != "" || m.path == "llm.chat_model") {
			c.checkModelFile(bad, m.path, m.m, l.IsManaged())
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
		hint, ok := reservedLlamacppArgs[name]
		switch {
		case ok && l.Backend == BackendLemonade:
			bad("llm.llamacpp_args", hint, "%s is set by the server or by THON", name)
		case l.IsManaged():
			if hint, ok := managedLlamacppArgs[name]; ok {
				bad("llm.llamacpp_args", hint, "%s is set by THON for its managed server", name)
			}
		}
	}

	a := c.Assistants
	for _, f := range []struct {
		path, file, kind string
	}{
		{"assistants.kilo.base_file", a.Kilo.BaseFile, "json"},
		{"assistants.continue.base_file", a.Continue.BaseFile, "yaml"},
		{"assistants.cline.base_file", a.Cline.BaseFile, "json"},
		{"assistants.opencode.base_file", a.OpenCode.BaseFile, "json"},
		{"assistants.vscode_settings_file", a.VSCodeSettingsFile, "json"},
		{"assistants.extensions_file", a.ExtensionsFile, "lines"},
	} {
		if f.file != "" {
			c.checkAssistantFile(f.path, f.file, f.kind, bad)
		}
	}
}

// checkAssistantFile checks that a file thon.yaml names at path can be
// read and is of kind (json, yaml, lines).
func (c *Config) checkAssistantFile(path, file, kind string, bad func(path, hint, format string, args ...any)) {
	data, err := c.ReadFile(file)
	if err != nil {
		bad(path, "check the path (relative paths start at thon.yaml's directory) and its permissions", "%v", err)
		return
	}
	if msg := checkFile(kind, data); msg != "" {
		bad(path, "fix the file, or set "+path+": \"\" to go without it", "%s: %s", file, msg)
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

// managedLlamacppArgs are llama-server arguments THON sets itself when it
// runs the server.
var managedLlamacppArgs = func() map[string]string {
	ctx := "THON sizes the context: set llm.chat_model.ctx_per_user and max_ctx"
	slots := "THON sizes the slots to the participants: set llm.slots_per_user and max_slots"
	own := "THON sets it for the server it runs; remove it"
	m := map[string]string{"-c": ctx, "--ctx-size": ctx, "-np": slots, "--parallel": slots}
	for _, f := range []string{"-m", "--model", "-hf", "--hf-repo", "-mu", "--model-url", "--port", "--host", "--api-key", "--api-key-file",
		"--models-dir", "--models-preset", "--models-max", "--mmproj", "--embeddings", "--embedding", "--pooling", "--alias", "-a",
		"--metrics", "--no-webui", "--path"} {
		m[f] = own
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

// resolveFiles makes the assistant file paths (and access.acme.ca_root) absolute, so the daemon
// reads the same files whatever its working directory.
func (c *Config) resolveFiles() {
	a := &c.Assistants
	l := &c.LLM
	paths := []*string{&a.Kilo.BaseFile, &a.Continue.BaseFile, &a.Cline.BaseFile, &a.OpenCode.BaseFile, &a.VSCodeSettingsFile, &a.ExtensionsFile,
		&l.ChatModel.File, &l.ChatModel.MMProj, &l.EmbeddingModel.File, &l.SmallModel.File, &l.SmallModel.MMProj,
		&c.Access.ACME.CARoot, &c.Sandbox.ExtensionsDir}
	for i := range l.ChatModels {
		paths = append(paths, &l.ChatModels[i].File, &l.ChatModels[i].MMProj)
	}
	for _, p := range paths {
		if *p == "" {
			continue
		}
		if abs, err := c.path(*p); err == nil {
			*p = abs
		}
	}
	c.resolveTemplateFiles()
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
