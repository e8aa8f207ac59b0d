package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLLMProblems(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"backend", "llm: {backend: lemonad}", `llm.backend: "lemonad" is not an LLM backend (did you mean "lemonade"?`},
		{"url", "llm: {url: localhost:13305}", `llm.url: "localhost:13305" must start with http:// or https://`},
		{"same keys", "llm: {api_key: k, admin_api_key: k}", "llm.admin_api_key: must differ from api_key"},
		{"no chat name", "llm: {chat_model: {name: \"\"}}", "llm.chat_model.name: must not be empty"},
		{"checkpoint without name", "llm: {embedding_model: {checkpoint: a/b-GGUF:Q8_0}}", "llm.embedding_model.name: must be set when checkpoint is"},
		{"ctx", "llm: {chat_model: {ctx_per_user: 0}}", "llm.chat_model.ctx_per_user: 0 must be at least 1"},
		{"cap below one user", "llm: {chat_model: {ctx_per_user: 8192, max_ctx: 4096}}", "llm.chat_model.max_ctx: 4096 is less than ctx_per_user (8192)"},
		{"slots", "llm: {slots_per_user: 0}", "llm.slots_per_user: 0 must be at least 1"},
		{"max slots", "llm: {max_slots: -1}", "llm.max_slots: -1 must be at least 1"},
		{"reserved arg", "llm: {llamacpp_args: \"--flash-attn on --ctx-size 8192\"}", "llm.llamacpp_args: --ctx-size is set by the server or by THON (THON sizes the context"},
		{"key typo", "llm: {chat_model: {ctx_per_users: 1}}", `did you mean "ctx_per_user"?`},
		{"missing base file", "assistants: {kilo: {base_file: /nonexistent/kilo.json}}", "assistants.kilo.base_file: cannot read /nonexistent/kilo.json: no such file or directory"},
		{"short admin password", "auth: {admin_password: abc}", "auth.admin_password: is too short (3 characters)"},
		{"dashboard on the path-mode origin", "access: {mode: path, https_port: 8443, dashboard_port: 8443}", "access.dashboard_port: 8443 is the https_port"},
		{"dashboard in the port range", "access: {dashboard_port: 20005}", "access.dashboard_port: 20005 is inside port_range"},
		{"provider without secret", "auth: {providers: {github: {client_id: abc}}}", "auth.providers.github: client_id and client_secret go together"},
		{"oidc without issuer", "auth: {providers: {oidc: {client_id: a, client_secret: b}}}", "auth.providers.oidc.issuer: must be set with a client_id"},
		{"oidc issuer not a url", "auth: {providers: {oidc: {issuer: sso.example.org, client_id: a, client_secret: b}}}", `auth.providers.oidc.issuer: "sso.example.org" must start with http:// or https://`},
		{"admin with a space", "auth: {admins: [\"ada lovelace\"]}", `auth.admins.0: "ada lovelace" is not an identity`},
		{"assistant typo", "assistants: {kilocode: {enabled: true}}", `unknown key "kilocode"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml+"\n"), "thon.yaml")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a problem containing %q", err, c.want)
			}
		})
	}
}

func TestDashboardPortAndPasswordAlias(t *testing.T) {
	for _, tc := range []struct {
		mode       string
		https, set int
		want       int
	}{{ModePort, 443, 0, 443}, {ModeSubdomain, 8443, 0, 8443}, {ModePath, 443, 0, 444}, {ModePath, 443, 9443, 9443}} {
		if got := (Access{Mode: tc.mode, HTTPSPort: tc.https, DashboardPort: tc.set}).Dashboard(); got != tc.want {
			t.Errorf("%s https %d dashboard_port %d: %d, want %d", tc.mode, tc.https, tc.set, got, tc.want)
		}
	}
	c := Default()
	env := map[string]string{"THON_ADMIN_PASSWORD": "from the short name"}
	if err := c.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil || c.Auth.AdminPassword != "from the short name" {
		t.Fatalf("THON_ADMIN_PASSWORD: %q %v", c.Auth.AdminPassword, err)
	}
	env["THON_AUTH_ADMIN_PASSWORD"] = "the long name wins"
	if err := c.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil || c.Auth.AdminPassword != "the long name wins" {
		t.Fatalf("both names: %q %v", c.Auth.AdminPassword, err)
	}
}

func TestLLMURLs(t *testing.T) {
	for _, tc := range []struct{ backend, url, server, base string }{
		{BackendLemonade, "http://127.0.0.1:13305", "http://127.0.0.1:13305", "http://127.0.0.1:13305/api/v1"},
		{BackendLemonade, "http://127.0.0.1:13305/api/v1/", "http://127.0.0.1:13305", "http://127.0.0.1:13305/api/v1"},
		{BackendOpenAI, "http://10.0.0.2:8080/v1/", "http://10.0.0.2:8080/v1", "http://10.0.0.2:8080/v1"},
	} {
		l := LLM{Backend: tc.backend, URL: tc.url}
		if l.ServerURL() != tc.server || l.OpenAIBase() != tc.base {
			t.Errorf("%s %s: ServerURL %q OpenAIBase %q, want %q %q", tc.backend, tc.url, l.ServerURL(), l.OpenAIBase(), tc.server, tc.base)
		}
	}
}

// Assistant files are read relative to thon.yaml and checked for syntax,
// with the line of the mistake.
func TestAssistantFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("kilo.json", "{\n  // ours\n  \"theme\": \"dark\",\n}\n")
	write("continue.yaml", "name: base\nrules: [be kind]\n")
	write("settings.json", "{\n  \"editor.fontSize\": 15\n  \"x\": 1\n}\n")
	write("ext.txt", "# ours\nkilocode.kilo-code\n\n/opt/x.vsix\nnot an id\n")
	write("thon.yaml", "assistants:\n  kilo: {base_file: kilo.json}\n  continue: {base_file: continue.yaml}\n  vscode_settings_file: settings.json\n  extensions_file: ext.txt\n")
	_, err := load(filepath.Join(dir, "thon.yaml"), func(string) (string, bool) { return "", false })
	if err == nil {
		t.Fatal("bad settings.json and extensions file accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"assistants.vscode_settings_file: settings.json: not a JSON object: line 3",
		`assistants.extensions_file: ext.txt: line 5: "not an id" is neither an extension id`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "kilo.base_file") || strings.Contains(msg, "continue.base_file") {
		t.Errorf("good files reported:\n%s", msg)
	}

	write("settings.json", "{\"editor.fontSize\": 15}\n")
	write("ext.txt", "kilocode.kilo-code@4.1.0\n/opt/x.vsix\n")
	c, err := load(filepath.Join(dir, "thon.yaml"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if c.Assistants.ExtensionsFile != filepath.Join(dir, "ext.txt") {
		t.Errorf("extensions_file not made absolute: %q", c.Assistants.ExtensionsFile)
	}
	data, err := c.ReadFile(c.Assistants.ExtensionsFile)
	if err != nil {
		t.Fatal(err)
	}
	if ext, err := ParseExtensions(data); err != nil || len(ext) != 2 || ext[0] != "kilocode.kilo-code@4.1.0" {
		t.Fatalf("ParseExtensions = %q, %v", ext, err)
	}
}

func TestKubernetesSettings(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"sandbox: {runtime: k8s}", `sandbox.runtime: "k8s" is not a sandbox engine`},
		{"sandbox: {runtime: kubernetes, workspace: bind, workspace_dir: /tmp}", "sandbox.workspace: bind is not possible on Kubernetes"},
		{"sandbox: {runtime: kubernetes, kubernetes: {namespace: Thon}}", "sandbox.kubernetes.namespace"},
		{"sandbox: {runtime: kubernetes, kubernetes: {workspace_size: lots}}", "sandbox.kubernetes.workspace_size"},
		{"sandbox: {runtime: kubernetes, kubernetes: {tolerations: [\"gpu=yes:Sometimes\"]}}", "the effect must be NoSchedule"},
		{"server: {database: mysql://x}", "server.database: is not a postgres:// URL"},
	} {
		if _, err := Parse([]byte(tc.yaml+"\n"), "thon.yaml"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.yaml, err, tc.want)
		}
	}
	c, err := Parse([]byte("sandbox:\n  runtime: kubernetes\n  kubernetes: {namespace: event, node_selector: {pool: events}, tolerations: [\"dedicated=events:NoSchedule\", gpu]}\n"), "thon.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Sandbox.Kubernetes.NodeSelector["pool"] != "events" || len(c.Sandbox.Kubernetes.Tolerations) != 2 {
		t.Fatalf("%+v", c.Sandbox.Kubernetes)
	}
	if tol, _ := ParseToleration("dedicated=events:NoSchedule"); tol != (Toleration{Key: "dedicated", Value: "events", Effect: "NoSchedule"}) {
		t.Fatalf("%+v", tol)
	}
	if tol, _ := ParseToleration("gpu"); !tol.Exists || tol.Effect != "" {
		t.Fatalf("%+v", tol)
	}
}

func TestGatewayForSandboxes(t *testing.T) {
	c := Default()
	if got := c.GatewayForSandboxes(); got != "http://host.docker.internal:9080/v1" {
		t.Errorf("docker: %s", got)
	}
	c.Sandbox.Runtime, c.Sandbox.Kubernetes.Namespace = RuntimeKubernetes, "event"
	if got := c.GatewayForSandboxes(); got != "http://thon-gateway.event.svc:9080/v1" {
		t.Errorf("kubernetes: %s", got)
	}
	c.Gateway.SandboxURL = "http://gw.example.org/v1/"
	if got := c.GatewayForSandboxes(); got != "http://gw.example.org/v1" {
		t.Errorf("set: %s", got)
	}
}

func TestLlamacppProblems(t *testing.T) {
	dir := t.TempDir()
	notGGUF := filepath.Join(dir, "model.bin")
	os.WriteFile(notGGUF, []byte("PK\x03\x04 not a model"), 0o644)
	model := filepath.Join(dir, "small.gguf")
	// A GGUF header that says the model was trained for 4096 tokens.
	writeGGUFHeader(t, model, 4096)
	cases := []struct{ name, yaml, want string }{
		{"missing file", "llm: {backend: llamacpp, chat_model: {name: m, checkpoint: \"\", file: " + dir + "/none.gguf}}", "llm.chat_model.file: " + dir + "/none.gguf: no such file (download a GGUF model"},
		{"not gguf", "llm: {backend: llamacpp, chat_model: {name: m, checkpoint: \"\", file: " + notGGUF + "}}", "llm.chat_model.file: " + notGGUF + ": not a GGUF model"},
		{"a directory", "llm: {backend: llamacpp, chat_model: {name: m, checkpoint: \"\", file: " + dir + "}}", "is a directory, not a model file"},
		{"context beyond training", "llm: {backend: llamacpp, chat_model: {name: m, checkpoint: \"\", file: " + model + ", ctx_per_user: 8192}}", "llm.chat_model.ctx_per_user: 8192 is more than small.gguf was trained for (4096 tokens)"},
		{"np", "llm: {backend: llamacpp, llamacpp_args: \"-np 8\"}", "llm.llamacpp_args: -np is set by THON for its managed server (THON sizes the slots to the participants"},
		{"port", "llm: {backend: llamacpp, llamacpp_args: \"--port=9\"}", "llm.llamacpp_args: --port is set by THON"},
		{"gpu typo", "llm: {backend: llamacpp, gpu: nvidai}", `llm.gpu: "nvidai" is not a GPU kind (did you mean "nvidia"?`},
		{"managed with url", "llm: {backend: llamacpp, managed: true, url: http://127.0.0.1:8080}", "llm.url: must be empty when llm.managed is true"},
		{"managed without gateway", "llm: {backend: llamacpp}\ngateway: {enabled: false}", "llm.managed: the managed LLM server needs the AI gateway"},
		{"managed on kubernetes", "llm: {backend: llamacpp}\nsandbox: {runtime: kubernetes}", "llm.managed: THON runs its managed LLM server on Docker only"},
		{"managed for lemonade", "llm: {managed: true}", "llm.managed: needs backend llamacpp"},
		{"file for lemonade", "llm: {chat_model: {file: /x.gguf}}", "llm.chat_model.file: is set for backend lemonade"},
		{"file for a server of your own", "llm: {backend: llamacpp, url: http://127.0.0.1:8080, chat_model: {file: " + model + "}}", "llm.chat_model.file: is set, but THON does not run the server"},
		{"openai without url", "llm: {backend: openai}", "llm.url: must be set for backend openai"},
		{"bad checkpoint", "llm: {backend: llamacpp, chat_model: {checkpoint: \"gemma 4\"}}", `llm.chat_model.checkpoint: "gemma 4" is not ORG/REPO[:QUANT]`},
		{"two models one name", "llm: {backend: llamacpp, chat_models: [{name: gemma-4-31b-it}]}", `llm.chat_models.0.name: "gemma-4-31b-it" is also the name of llm.chat_model`},
		{"extra model without name", "llm: {backend: llamacpp, chat_models: [{file: " + model + "}]}", "llm.chat_models.0.name: must not be empty"},
		{"missing mmproj", "llm: {backend: llamacpp, chat_model: {name: m, checkpoint: \"\", mmproj: " + dir + "/p.gguf}}", "llm.chat_model.mmproj: " + dir + "/p.gguf: no such file"},
	}
	if MissingGPU("nvidia") != "" {
		cases = append(cases, struct{ name, yaml, want string }{"gpu not there", "llm: {backend: llamacpp, gpu: nvidia}", "llm.gpu: gpu is nvidia, but this machine has no NVIDIA GPU"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml+"\n"), "thon.yaml")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a problem containing %q", err, c.want)
			}
		})
	}
	// What is fine: the test model (no file, no checkpoint), a real file
	// within its context, a server of your own.
	for _, ok := range []string{
		"llm: {backend: llamacpp, chat_model: {name: thon-test, checkpoint: \"\"}, embedding_model: {name: thon-embed}}",
		"llm: {backend: llamacpp, chat_model: {name: m, checkpoint: \"\", file: " + model + ", ctx_per_user: 4096, max_ctx: 0}, chat_models: [{name: m2, file: " + model + "}]}",
		"llm: {backend: llamacpp, url: http://127.0.0.1:8080}",
		"llm: {backend: llamacpp, gpu: none, llamacpp_args: \"--flash-attn on -ctk q8_0\"}",
	} {
		if c, err := Parse([]byte(ok+"\n"), "thon.yaml"); err != nil {
			t.Errorf("%s: %v", ok, err)
		} else if strings.Contains(ok, "8080") == c.LLM.IsManaged() {
			t.Errorf("%s: managed = %v", ok, c.LLM.IsManaged())
		}
	}
}

// writeGGUFHeader writes the start of a GGUF file: version 3, no tensors,
// general.architecture llama and llama.context_length ctx.
func writeGGUFHeader(t *testing.T, path string, ctx uint32) {
	t.Helper()
	var b []byte
	u32 := func(v uint32) { b = append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24)) }
	u64 := func(v uint64) { u32(uint32(v)); u32(uint32(v >> 32)) }
	str := func(s string) { u64(uint64(len(s))); b = append(b, s...) }
	b = append(b, "GGUF"...)
	u32(3)
	u64(0)
	u64(2)
	str("general.architecture")
	u32(8)
	str("llama")
	str("llama.context_length")
	u32(4)
	u32(ctx)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
