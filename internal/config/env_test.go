package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func lookupIn(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestEnvVars(t *testing.T) {
	want := []string{
		"THON_SERVER_DATA_DIR", "THON_SERVER_LISTEN", "THON_SERVER_DATABASE",
		"THON_ACCESS_EXTERNAL_IP", "THON_ACCESS_HOSTNAMES", "THON_ACCESS_HTTPS_PORT", "THON_ACCESS_HTTP_PORT",
		"THON_ACCESS_MODE", "THON_ACCESS_PORT_RANGE", "THON_ACCESS_DOMAIN", "THON_ACCESS_CERT_FILE",
		"THON_ACCESS_KEY_FILE", "THON_ACCESS_ACME_EMAIL", "THON_ACCESS_ACME_DIRECTORY", "THON_ACCESS_ACME_CA_ROOT",
		"THON_ACCESS_TOKEN_TTL", "THON_ACCESS_DASHBOARD_PORT",
		"THON_SANDBOX_RUNTIME", "THON_SANDBOX_IMAGE", "THON_SANDBOX_PORT", "THON_SANDBOX_HEALTH_PATH",
		"THON_SANDBOX_STARTUP_TIMEOUT", "THON_SANDBOX_WORKSPACE", "THON_SANDBOX_WORKSPACE_DIR", "THON_SANDBOX_EXTENSIONS_DIR",
		"THON_SANDBOX_LIMITS_CPU", "THON_SANDBOX_LIMITS_MEMORY", "THON_SANDBOX_LIMITS_PIDS",
		"THON_SANDBOX_CONCURRENCY",
		"THON_SANDBOX_IDLE_TIMEOUT",
		"THON_SANDBOX_IDLE_ACTION",
		"THON_SANDBOX_MAX_LIFETIME",
		"THON_SANDBOX_KUBERNETES_KUBECONFIG", "THON_SANDBOX_KUBERNETES_NAMESPACE", "THON_SANDBOX_KUBERNETES_STORAGE_CLASS",
		"THON_SANDBOX_KUBERNETES_WORKSPACE_SIZE", "THON_SANDBOX_KUBERNETES_TOLERATIONS", "THON_SANDBOX_KUBERNETES_IMAGE_PULL_SECRETS",
		"THON_SANDBOX_KUBERNETES_GATEWAY",
		"THON_LLM_ENABLED", "THON_LLM_BACKEND", "THON_LLM_URL", "THON_LLM_MANAGED", "THON_LLM_API_KEY", "THON_LLM_ADMIN_API_KEY", "THON_LLM_IMAGE", "THON_LLM_GPU", "THON_LLM_LIMITS_CPU", "THON_LLM_LIMITS_MEMORY", "THON_LLM_LIMITS_PIDS",
		"THON_LLM_CHAT_MODEL_CHECKPOINT", "THON_LLM_CHAT_MODEL_NAME", "THON_LLM_CHAT_MODEL_FILE", "THON_LLM_CHAT_MODEL_MMPROJ", "THON_LLM_CHAT_MODEL_CTX_PER_USER", "THON_LLM_CHAT_MODEL_MAX_CTX",
		"THON_LLM_EMBEDDING_MODEL_CHECKPOINT", "THON_LLM_EMBEDDING_MODEL_NAME", "THON_LLM_EMBEDDING_MODEL_FILE", "THON_LLM_EMBEDDING_MODEL_MMPROJ", "THON_LLM_EMBEDDING_MODEL_CTX_PER_USER",
		"THON_LLM_EMBEDDING_MODEL_MAX_CTX",
		"THON_LLM_SMALL_MODEL_CHECKPOINT", "THON_LLM_SMALL_MODEL_NAME", "THON_LLM_SMALL_MODEL_FILE", "THON_LLM_SMALL_MODEL_MMPROJ", "THON_LLM_SMALL_MODEL_CTX_PER_USER", "THON_LLM_SMALL_MODEL_MAX_CTX",
		"THON_LLM_SLOTS_PER_USER", "THON_LLM_MAX_SLOTS", "THON_LLM_LLAMACPP_ARGS",
		"THON_ASSISTANTS_KILO_ENABLED", "THON_ASSISTANTS_KILO_BASE_FILE", "THON_ASSISTANTS_CONTINUE_ENABLED",
		"THON_ASSISTANTS_CONTINUE_BASE_FILE", "THON_ASSISTANTS_CLINE_ENABLED", "THON_ASSISTANTS_CLINE_BASE_FILE", "THON_ASSISTANTS_OPENCODE_ENABLED", "THON_ASSISTANTS_OPENCODE_BASE_FILE", "THON_ASSISTANTS_WORKSPACE_TRUST", "THON_ASSISTANTS_GIT_MCP",
		"THON_ASSISTANTS_VSCODE_SETTINGS_FILE", "THON_ASSISTANTS_EXTENSIONS_FILE",
		"THON_GATEWAY_ENABLED", "THON_GATEWAY_LISTEN", "THON_GATEWAY_MODE", "THON_GATEWAY_UPSTREAM", "THON_GATEWAY_SANDBOX_URL",
		"THON_GATEWAY_LIMITS_REQUESTS_PER_MINUTE", "THON_GATEWAY_LIMITS_CONCURRENCY", "THON_GATEWAY_LIMITS_TOKENS_PER_MINUTE",
		"THON_GATEWAY_LIMITS_TOKEN_KIND", "THON_GATEWAY_LIMITS_BUDGET_TOKENS", "THON_GATEWAY_ALLOWED_MODELS",
		"THON_GATEWAY_REDIS", "THON_GATEWAY_FAIL_OPEN", "THON_GATEWAY_UPSTREAM_SLOTS", "THON_GATEWAY_QUEUE_TIMEOUT",
		"THON_GATEWAY_SHORT_REQUESTS_MAX_TOKENS", "THON_GATEWAY_SHORT_REQUESTS_SHARE",
		"THON_GATEWAY_OTLP_ENDPOINT", "THON_GATEWAY_OTLP_HEADERS", "THON_GATEWAY_OTLP_QUEUE_SIZE", "THON_GATEWAY_OTLP_TIMEOUT",
		"THON_AUTH_ADMIN_PASSWORD", "THON_AUTH_ADMINS",
		"THON_AUTH_PROVIDERS_GITHUB_CLIENT_ID", "THON_AUTH_PROVIDERS_GITHUB_CLIENT_SECRET", "THON_AUTH_PROVIDERS_GITHUB_URL",
		"THON_AUTH_PROVIDERS_GITLAB_CLIENT_ID", "THON_AUTH_PROVIDERS_GITLAB_CLIENT_SECRET", "THON_AUTH_PROVIDERS_GITLAB_URL",
		"THON_AUTH_PROVIDERS_LINKEDIN_CLIENT_ID", "THON_AUTH_PROVIDERS_LINKEDIN_CLIENT_SECRET",
		"THON_AUTH_PROVIDERS_OIDC_ISSUER", "THON_AUTH_PROVIDERS_OIDC_CLIENT_ID", "THON_AUTH_PROVIDERS_OIDC_CLIENT_SECRET", "THON_AUTH_PROVIDERS_OIDC_NAME",
	}
	if got := EnvVars(); !reflect.DeepEqual(got, want) {
		t.Errorf("EnvVars() =\n%v\nwant\n%v", got, want)
	}
}

func TestApplyEnv(t *testing.T) {
	c := Default()
	err := c.ApplyEnv(lookupIn(map[string]string{
		"THON_SERVER_DATA_DIR":         "/srv/thon",
		"THON_SERVER_LISTEN":           ":9000",
		"THON_SANDBOX_IMAGE":           "thon/sandbox:dev",
		"THON_SANDBOX_PORT":            "3000",
		"THON_SANDBOX_HEALTH_PATH":     "/ready",
		"THON_SANDBOX_STARTUP_TIMEOUT": "45s",
		"THON_SANDBOX_WORKSPACE":       "ephemeral",
		"THON_SANDBOX_WORKSPACE_DIR":   "/tmp",
		"THON_SANDBOX_EXTENSIONS_DIR":  "/srv/vsix",
		"THON_SANDBOX_LIMITS_CPU":      "2.5",
		"THON_SANDBOX_LIMITS_MEMORY":   "4Gi",
		"THON_SANDBOX_LIMITS_PIDS":     "100",
		"THON_SANDBOX_CONCURRENCY":     "16",
		"THON_SANDBOX_IDLE_TIMEOUT":    "45m",
		"THON_SANDBOX_IDLE_ACTION":     "pause",
		"THON_SANDBOX_MAX_LIFETIME":    "12h",
		"THON_SANDBOX_ENV":             "ignored: not a scalar setting",
		"THON_GROUPS":                  "ignored",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Server = Server{DataDir: "/srv/thon", Listen: ":9000"}
	want.Sandbox = Sandbox{
		Runtime: RuntimeDocker, Kubernetes: Default().Sandbox.Kubernetes,
		Image: "thon/sandbox:dev", Port: 3000, HealthPath: "/ready",
		StartupTimeout: Duration(45 * time.Second), Workspace: "ephemeral", WorkspaceDir: "/tmp", ExtensionsDir: "/srv/vsix",
		Limits: Limits{CPU: 2.5, Memory: 4 << 30, Pids: 100}, Concurrency: 16,
		IdleTimeout: Duration(45 * time.Minute), IdleAction: IdlePause, MaxLifetime: Duration(12 * time.Hour),
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("after ApplyEnv:\n%+v\nwant\n%+v", c, want)
	}
}

func TestApplyEnvBadValues(t *testing.T) {
	c := Default()
	err := c.ApplyEnv(lookupIn(map[string]string{
		"THON_SANDBOX_PORT":            "abc",
		"THON_SANDBOX_LIMITS_MEMORY":   "2 GB",
		"THON_SANDBOX_STARTUP_TIMEOUT": "120",
		"THON_SANDBOX_LIMITS_PIDS":     "99999999999999999999",
		"THON_SANDBOX_IMAGE":           "ok:1",
	}))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("ApplyEnv = %v, want *ValidationError", err)
	}
	wants := []struct{ file, msg, hint string }{
		{"$THON_SANDBOX_PORT", `sandbox.port: "abc" is not a whole number`, "e.g. THON_SANDBOX_PORT=8080"},
		{"$THON_SANDBOX_STARTUP_TIMEOUT", `"120" is not a duration`, `"120s"`},
		{"$THON_SANDBOX_LIMITS_MEMORY", `"2 GB" is not a size`, `"2Gi"`},
		{"$THON_SANDBOX_LIMITS_PIDS", "is out of range", "THON_SANDBOX_LIMITS_PIDS=512"},
	}
	if len(ve.Problems) != len(wants) {
		t.Fatalf("got %d problems, want %d:\n%v", len(ve.Problems), len(wants), err)
	}
	for i, w := range wants {
		p := ve.Problems[i]
		if p.File != w.file || !strings.Contains(p.Msg, w.msg) || !strings.Contains(p.Hint, w.hint) {
			t.Errorf("problem %d = %s; want %s: …%s… (…%s…)", i, p, w.file, w.msg, w.hint)
		}
	}
	// Bad values leave settings alone; good ones still apply.
	if c.Sandbox.Port != DefaultPort || c.Sandbox.Limits.Memory != DefaultMemory || c.Sandbox.Image != "ok:1" {
		t.Errorf("after bad env: port %d memory %s image %s", c.Sandbox.Port, c.Sandbox.Limits.Memory, c.Sandbox.Image)
	}
	if !strings.Contains(err.Error(), "$THON_SANDBOX_PORT: ") {
		t.Errorf("error does not name the variable:\n%v", err)
	}
}

func TestLoadEnvPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "thon.yaml")
	src := "server:\n  listen: 127.0.0.1:7000\nsandbox:\n  port: 70000\n  concurrency: 4\n  limits:\n    memory: 1Gi\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}

	// The environment wins over the file, even over a value the file got wrong.
	c, err := load(path, lookupIn(map[string]string{
		"THON_SANDBOX_PORT":          "9000",
		"THON_SANDBOX_LIMITS_MEMORY": "3Gi",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Sandbox.Port != 9000 || c.Sandbox.Limits.Memory != 3<<30 {
		t.Errorf("env did not win: port %d memory %s", c.Sandbox.Port, c.Sandbox.Limits.Memory)
	}
	if c.Server.Listen != "127.0.0.1:7000" || c.Sandbox.Concurrency != 4 {
		t.Errorf("file values lost: listen %s concurrency %d", c.Server.Listen, c.Sandbox.Concurrency)
	}
	if c.Path != path {
		t.Errorf("Path = %q, want %q", c.Path, path)
	}

	// Problems point at the variable that caused them, or at the file.
	_, err = load(path, lookupIn(map[string]string{
		"THON_SANDBOX_CONCURRENCY": "0",
		"THON_SERVER_LISTEN":       "nope",
		"THON_SANDBOX_IMAGE":       "",
	}))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("load = %v, want *ValidationError", err)
	}
	got := make([]string, len(ve.Problems))
	for i, p := range ve.Problems {
		got[i] = p.String()
	}
	want := []string{
		path + ":4:9: sandbox.port: 70000 is out of range",
		"$THON_SERVER_LISTEN: server.listen: \"nope\" is not host:port",
		"$THON_SANDBOX_IMAGE: sandbox.image: must not be empty",
		"$THON_SANDBOX_CONCURRENCY: sandbox.concurrency: 0 is out of range",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(got), len(want), err)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d = %s\nwant %s…", i, got[i], want[i])
		}
	}

	// A bad variable is reported with the file's problems.
	_, err = load(path, lookupIn(map[string]string{"THON_SANDBOX_LIMITS_CPU": "many"}))
	if err == nil || !strings.Contains(err.Error(), `$THON_SANDBOX_LIMITS_CPU: sandbox.limits.cpu: "many" is not a number`) ||
		!strings.Contains(err.Error(), "sandbox.port: 70000") {
		t.Errorf("load with a bad variable = %v", err)
	}
}

func TestLoadUsesProcessEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "thon.yaml")
	if err := os.WriteFile(path, []byte("sandbox:\n  image: from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("THON_SANDBOX_IMAGE", "from-env")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Sandbox.Image != "from-env" {
		t.Errorf("image = %q, want from-env", c.Sandbox.Image)
	}
}

// The collector's keys come from the environment as
// OTEL_EXPORTER_OTLP_HEADERS is written, and a bad one is refused without
// showing its value.
func TestApplyEnvOTLPHeaders(t *testing.T) {
	c := Default()
	err := c.ApplyEnv(lookupIn(map[string]string{
		"THON_GATEWAY_OTLP_ENDPOINT": "https://cloud.langfuse.com/api/public/otel",
		"THON_GATEWAY_OTLP_HEADERS":  "Authorization=Basic%20cGs6c2s+/w==, x-langfuse-ingestion-version=4",
		"THON_GATEWAY_OTLP_TIMEOUT":  "3s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := Headers{"Authorization": "Basic cGs6c2s+/w==", "x-langfuse-ingestion-version": "4"}
	if o := c.Gateway.OTLP; !reflect.DeepEqual(o.Headers, want) || o.Endpoint != "https://cloud.langfuse.com/api/public/otel" || o.Timeout.D() != 3*time.Second {
		t.Errorf("gateway.otlp = %+v", o)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	c = Default()
	err = c.ApplyEnv(lookupIn(map[string]string{"THON_GATEWAY_OTLP_HEADERS": "Authorization:Basic-sk-lf-secret-value"}))
	if err == nil || !strings.Contains(err.Error(), "not name=value") || strings.Contains(err.Error(), "sk-lf-secret") {
		t.Errorf("a bad header: %v", err)
	}
	err = c.ApplyEnv(lookupIn(map[string]string{"THON_GATEWAY_OTLP_HEADERS": "Authorization=Basic%zzsk-lf-secret"}))
	if err == nil || !strings.Contains(err.Error(), "percent-encoded") || strings.Contains(err.Error(), "sk-lf-secret") {
		t.Errorf("a bad escape: %v", err)
	}
}
