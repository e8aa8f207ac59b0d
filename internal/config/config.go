// Package config is thon.yaml: its types, defaults, loading with line numbers,
// environment overrides and validation that reports every problem at once.
package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Config is the whole of thon.yaml.
type Config struct {
	Server  Server  `yaml:"server" json:"server"`
	Access  Access  `yaml:"access" json:"access"`
	Sandbox Sandbox `yaml:"sandbox" json:"sandbox"`
	// Templates are named sandbox settings a group can use instead of
	// sandbox:'s (groups.NAME.template); what a template leaves out is
	// sandbox:'s.
	Templates  Templates  `yaml:"templates,omitempty" json:"templates,omitempty"`
	LLM        LLM        `yaml:"llm" json:"llm"`
	Assistants Assistants `yaml:"assistants" json:"assistants"`
	Gateway    Gateway    `yaml:"gateway" json:"gateway"`
	Auth       Auth       `yaml:"auth" json:"auth"`
	// Groups maps a group name to its users. In YAML both `alpha: [alice, bob]`
	// and `alpha: {users: [alice, bob]}` are accepted.
	Groups Groups `yaml:"groups" json:"groups"`

	// Path is the file the config was loaded from ("" for defaults only).
	Path string `yaml:"-" json:"-"`
}

// Auth is how organizers and participants sign in.
type Auth struct {
	// AdminPassword is the dashboard's password; only its hash is stored
	// (in the database, at daemon start). Also THON_ADMIN_PASSWORD.
	AdminPassword string `yaml:"admin_password" json:"admin_password"`
	// Admins are identities that become organizers when they sign in with
	// a provider: a user name (octocat), an e-mail, or provider:name.
	Admins    []string  `yaml:"admins" json:"admins"`
	Providers Providers `yaml:"providers" json:"providers"`
}

// Providers are the sign-in providers; one without a client_id is off.
type Providers struct {
	GitHub   GitProvider  `yaml:"github" json:"github"`
	GitLab   GitProvider  `yaml:"gitlab" json:"gitlab"`
	LinkedIn OAuthClient  `yaml:"linkedin" json:"linkedin"`
	OIDC     OIDCProvider `yaml:"oidc" json:"oidc"`
}

// OAuthClient is an OAuth2 application registered for THON.
type OAuthClient struct {
	ClientID     string `yaml:"client_id" json:"client_id"`
	ClientSecret string `yaml:"client_secret" json:"client_secret"`
}

// GitProvider is GitHub or GitLab, on its public site or self-hosted.
type GitProvider struct {
	ClientID     string `yaml:"client_id" json:"client_id"`
	ClientSecret string `yaml:"client_secret" json:"client_secret"`
	// URL is GitHub Enterprise's or a self-hosted GitLab's address
	// ("" for https://github.com, https://gitlab.com).
	URL string `yaml:"url" json:"url"`
}

// OIDCProvider is any OpenID Connect provider (Keycloak, Google, Entra ID,
// Authentik…).
type OIDCProvider struct {
	Issuer       string `yaml:"issuer" json:"issuer"`
	ClientID     string `yaml:"client_id" json:"client_id"`
	ClientSecret string `yaml:"client_secret" json:"client_secret"`
	Name         string `yaml:"name" json:"name"` // the sign-in button, e.g. "Company SSO"
}

// Server configures the daemon.
type Server struct {
	DataDir string `yaml:"data_dir" json:"data_dir"` // SQLite file, admin token, logs
	Listen  string `yaml:"listen" json:"listen"`     // REST API address
	// Database is a PostgreSQL URL (postgres://user:password@host/db) for
	// state shared by several replicas; "" keeps it in SQLite in data_dir.
	Database string `yaml:"database" json:"database"`
}

// Access configures the HTTPS front door: how participants reach their sandboxes.
type Access struct {
	ExternalIP string   `yaml:"external_ip" json:"external_ip"` // auto-detected when empty
	Hostnames  []string `yaml:"hostnames" json:"hostnames"`     // extra names for the certificate
	HTTPSPort  int      `yaml:"https_port" json:"https_port"`
	HTTPPort   int      `yaml:"http_port" json:"http_port"` // redirect only; 0 turns it off
	Mode       string   `yaml:"mode" json:"mode"`           // port | path | subdomain
	PortRange  string   `yaml:"port_range" json:"port_range"`
	Domain     string   `yaml:"domain" json:"domain"` // subdomain mode
	CertFile   string   `yaml:"cert_file" json:"cert_file"`
	KeyFile    string   `yaml:"key_file" json:"key_file"`
	// ACME gets and renews certificates for Hostnames from Let's Encrypt
	// (or another ACME CA); on when its email is set.
	ACME     ACME     `yaml:"acme" json:"acme"`
	TokenTTL Duration `yaml:"token_ttl" json:"token_ttl"` // access-link lifetime
	// DashboardPort serves the organizers' dashboard; 0 means https_port,
	// except in path mode, where participants share that origin: then
	// https_port + 1.
	DashboardPort int `yaml:"dashboard_port" json:"dashboard_port"`
}

// ACME is an ACME certificate authority (RFC 8555) the front door gets its
// certificates for access.hostnames from, validating them with HTTP-01 on
// http_port and TLS-ALPN-01 on https_port.
type ACME struct {
	// Email is the account's contact address; setting it turns ACME on.
	Email string `yaml:"email" json:"email"`
	// Directory is the CA's directory URL (Let's Encrypt's by default).
	Directory string `yaml:"directory" json:"directory"`
	// CARoot is a PEM file of the root the CA's own HTTPS certificate
	// chains to, for a private ACME CA; "" trusts the system's roots.
	CARoot string `yaml:"ca_root" json:"ca_root"`
}

// Enabled reports whether the front door gets certificates with ACME.
func (a ACME) Enabled() bool { return a.Email != "" }

// ACME directories.
const (
	LetsEncryptDirectory        = "https://acme-v02.api.letsencrypt.org/directory"
	LetsEncryptStagingDirectory = "https://acme-staging-v02.api.letsencrypt.org/directory"
)

// Dashboard is the port the dashboard is served on.
func (a Access) Dashboard() int {
	switch {
	case a.DashboardPort != 0:
		return a.DashboardPort
	case a.Mode == ModePath:
		return a.HTTPSPort + 1
	}
	return a.HTTPSPort
}

// Access modes.
const (
	ModePort      = "port"
	ModePath      = "path"
	ModeSubdomain = "subdomain"
)

// Ports returns the first and last port of PortRange ("20000-20999").
func (a Access) Ports() (first, last int, err error) {
	lo, hi, ok := strings.Cut(strings.TrimSpace(a.PortRange), "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not a range: write FIRST-LAST, e.g. 20000-20999", a.PortRange)
	}
	first, err1 := strconv.Atoi(strings.TrimSpace(lo))
	last, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%q is not a range of port numbers: write FIRST-LAST, e.g. 20000-20999", a.PortRange)
	}
	if first < 1024 || last > 65535 || first > last {
		return 0, 0, fmt.Errorf("%q must lie within 1024-65535, first port first", a.PortRange)
	}
	return first, last, nil
}

// Sandbox configures every participant's sandbox.
type Sandbox struct {
	Runtime        string            `yaml:"runtime" json:"runtime"` // docker | kubernetes
	Image          string            `yaml:"image" json:"image"`
	Port           int               `yaml:"port" json:"port"`
	HealthPath     string            `yaml:"health_path" json:"health_path"`
	StartupTimeout Duration          `yaml:"startup_timeout" json:"startup_timeout"`
	Workspace      string            `yaml:"workspace" json:"workspace"`           // volume | bind | ephemeral
	WorkspaceDir   string            `yaml:"workspace_dir" json:"workspace_dir"`   // bind mode only
	ExtensionsDir  string            `yaml:"extensions_dir" json:"extensions_dir"` // .vsix files thon setup image bakes into Image
	Limits         Limits            `yaml:"limits" json:"limits"`
	Env            map[string]string `yaml:"env" json:"env,omitempty"`
	Concurrency    int               `yaml:"concurrency" json:"concurrency"`
	// IdleTimeout puts a sandbox to sleep (IdleAction) when its participant
	// has done nothing for that long; 0 never. The next visit wakes it.
	IdleTimeout Duration `yaml:"idle_timeout" json:"idle_timeout"`
	IdleAction  string   `yaml:"idle_action" json:"idle_action"` // stop | pause
	// MaxLifetime stops a sandbox that long after it started, unless an
	// organizer renews it; 0 never.
	MaxLifetime Duration   `yaml:"max_lifetime" json:"max_lifetime"`
	Kubernetes  Kubernetes `yaml:"kubernetes" json:"kubernetes"`
}

// What an idle sandbox's sleep is (sandbox.idle_action).
const (
	IdleStop  = "stop"  // the container stops: its memory is freed, a wake takes seconds
	IdlePause = "pause" // the container is frozen: memory kept, a wake is instant
)

// Sandbox engines.
const (
	RuntimeDocker     = "docker"
	RuntimeKubernetes = "kubernetes"
)

// Kubernetes is where sandboxes run when sandbox.runtime is kubernetes.
type Kubernetes struct {
	// Kubeconfig is a kubeconfig file; "" uses the in-cluster service
	// account, then $KUBECONFIG, then ~/.kube/config.
	Kubeconfig    string            `yaml:"kubeconfig" json:"kubeconfig"`
	Namespace     string            `yaml:"namespace" json:"namespace"`
	StorageClass  string            `yaml:"storage_class" json:"storage_class"`
	WorkspaceSize string            `yaml:"workspace_size" json:"workspace_size"`
	NodeSelector  map[string]string `yaml:"node_selector" json:"node_selector,omitempty"`
	// Tolerations are "key=value:Effect", "key:Effect" or "key" (any effect).
	Tolerations      []string `yaml:"tolerations" json:"tolerations"`
	ImagePullSecrets []string `yaml:"image_pull_secrets" json:"image_pull_secrets"`
	// Gateway lets sandboxes reach an AI gateway outside what the
	// NetworkPolicy allows: a CIDR, an IP, or a label selector of its Pods.
	Gateway string `yaml:"gateway" json:"gateway"`
}

// LLM is the language model server behind the AI assistants: Lemonade
// Server (managed through its API), llama.cpp's llama-server (run by THON
// in a container, or one of your own), or any OpenAI-compatible server.
type LLM struct {
	Enabled bool   `yaml:"enabled" json:"enabled"`
	Backend string `yaml:"backend" json:"backend"` // lemonade | llamacpp | openai
	// URL is Lemonade's address (http://127.0.0.1:13305), a llama-server's
	// (http://host:8080), or, for the openai backend, the OpenAI-compatible
	// base URL (http://127.0.0.1:8080/v1). With backend llamacpp and no url,
	// THON runs llama-server itself (managed).
	URL string `yaml:"url" json:"url"`
	// Managed: THON runs llama-server in a container ({instance}-llm) on
	// the sandbox engine. The default for backend llamacpp with no url.
	Managed     bool   `yaml:"managed" json:"managed"`
	APIKey      string `yaml:"api_key" json:"api_key"`             // for chat requests; the gateway adds it
	AdminAPIKey string `yaml:"admin_api_key" json:"admin_api_key"` // for pull/load/unload; never leaves the daemon
	// Image is the managed server's image (thon setup llm builds it).
	Image string `yaml:"image" json:"image"`
	// GPU is what the managed server computes on: auto (a GPU when one is
	// found, else the CPU), none, nvidia, amd or intel.
	GPU string `yaml:"gpu" json:"gpu"`
	// Limits cap the managed server's container (0: no cap).
	Limits         Limits   `yaml:"limits" json:"limits"`
	ChatModel      LLMModel `yaml:"chat_model" json:"chat_model"`
	EmbeddingModel LLMModel `yaml:"embedding_model" json:"embedding_model"`
	// ChatModels are more chat models offered beside chat_model.
	ChatModels []LLMModel `yaml:"chat_models" json:"chat_models"`
	// SmallModel serves the assistants' cheap tasks (titles, summaries);
	// "" name: the chat model does them.
	SmallModel   LLMModel `yaml:"small_model" json:"small_model"`
	SlotsPerUser int      `yaml:"slots_per_user" json:"slots_per_user"`
	MaxSlots     int      `yaml:"max_slots" json:"max_slots"`
	LlamacppArgs string   `yaml:"llamacpp_args" json:"llamacpp_args"` // passed through to llama.cpp on load
}

// LLMModel is one model the assistants use and how its context grows with
// the number of participants.
type LLMModel struct {
	Checkpoint string `yaml:"checkpoint" json:"checkpoint"` // e.g. unsloth/gemma-4-31B-it-GGUF:Q8_K_XL
	Name       string `yaml:"name" json:"name"`             // the model id clients ask for
	// File is a GGUF model file on this machine (backend llamacpp); ""
	// with a checkpoint: the file thon llm pull downloads into
	// server.data_dir/models; "" without one: THON's built-in test model.
	File string `yaml:"file" json:"file"`
	// MMProj is the vision projector GGUF of a chat model that has one.
	MMProj     string `yaml:"mmproj" json:"mmproj"`
	CtxPerUser int    `yaml:"ctx_per_user" json:"ctx_per_user"`
	MaxCtx     int    `yaml:"max_ctx" json:"max_ctx"` // cap of the whole context (0: no cap)
}

// IsManaged reports whether THON runs the LLM server itself.
func (l LLM) IsManaged() bool {
	return l.Backend == BackendLlamacpp && (l.Managed || l.URL == "")
}

// TestModel reports whether m is served by THON's built-in test model: a
// llama.cpp model with neither a file nor a checkpoint.
func (l LLM) TestModel(m LLMModel) bool {
	return l.Backend == BackendLlamacpp && m.File == "" && m.Checkpoint == ""
}

// LLM backends.
const (
	BackendLemonade = "lemonade"
	BackendLlamacpp = "llamacpp"
	BackendOpenAI   = "openai"
)

// lemonadeAPI is the path of Lemonade's OpenAI-compatible and management API.
const lemonadeAPI = "/api/v1"

// ServerURL is the LLM server's root without a trailing slash: for Lemonade
// the address its /live and /api/v1/... endpoints hang off.
func (l LLM) ServerURL() string {
	u := strings.TrimRight(l.URL, "/")
	switch l.Backend {
	case BackendLemonade:
		if u == "" {
			u = DefaultLLMURL
		}
		u = strings.TrimSuffix(u, lemonadeAPI)
	case BackendLlamacpp:
		u = strings.TrimSuffix(u, "/v1")
	}
	return u
}

// OpenAIBase is the OpenAI-compatible base URL ("…/v1" style) that chat
// requests go to.
func (l LLM) OpenAIBase() string {
	switch l.Backend {
	case BackendLemonade:
		return l.ServerURL() + lemonadeAPI
	case BackendLlamacpp:
		if u := l.ServerURL(); u != "" {
			return u + "/v1"
		}
		return "" // managed: known once the server runs
	}
	return strings.TrimRight(l.URL, "/")
}

// Assistants are the AI coding assistants THON configures in every sandbox.
type Assistants struct {
	Kilo     Assistant `yaml:"kilo" json:"kilo"`
	Continue Assistant `yaml:"continue" json:"continue"`
	Cline    Assistant `yaml:"cline" json:"cline"`
	OpenCode Assistant `yaml:"opencode" json:"opencode"`
	// WorkspaceTrust turns VS Code's workspace trust (and its Restricted
	// Mode prompt) back on; by default the participant's workspace is trusted.
	WorkspaceTrust bool `yaml:"workspace_trust" json:"workspace_trust"`
	// GitMCP gives Kilo and OpenCode a git MCP server working in the
	// participant's workspace, as the participant.
	GitMCP bool `yaml:"git_mcp" json:"git_mcp"`
	// VSCodeSettingsFile is a settings.json merged into every participant's
	// VS Code user settings.
	VSCodeSettingsFile string `yaml:"vscode_settings_file" json:"vscode_settings_file"`
	// ExtensionsFile lists extensions to install at first start, one
	// marketplace id or .vsix path per line.
	ExtensionsFile string `yaml:"extensions_file" json:"extensions_file"`
}

// Assistant is one assistant's switch and the organizer's base file, which
// THON's generated values are deep-merged over.
type Assistant struct {
	Enabled  bool   `yaml:"enabled" json:"enabled"`
	BaseFile string `yaml:"base_file" json:"base_file"`
}

// GatewayForSandboxes is the gateway's base URL as sandboxes reach it.
func (c *Config) GatewayForSandboxes() string {
	if c.Gateway.SandboxURL != "" {
		return strings.TrimRight(c.Gateway.SandboxURL, "/")
	}
	_, port, _ := net.SplitHostPort(c.Gateway.Listen)
	if c.Sandbox.Runtime == RuntimeKubernetes {
		return "http://thon-gateway." + c.Sandbox.Kubernetes.Namespace + ".svc:" + port + "/v1"
	}
	return "http://host.docker.internal:" + port + "/v1"
}

// Gateway is THON's OpenAI-compatible AI gateway: a key per user or group,
// token-based rate limits, usage accounting.
type Gateway struct {
	Enabled  bool   `yaml:"enabled" json:"enabled"`
	Listen   string `yaml:"listen" json:"listen"`
	Mode     string `yaml:"mode" json:"mode"`         // per-user | per-group
	Upstream string `yaml:"upstream" json:"upstream"` // defaults to llm.url
	// SandboxURL is the gateway as sandboxes reach it; "" derives it:
	// http://host.docker.internal:PORT/v1 on Docker,
	// http://thon-gateway.NAMESPACE.svc:PORT/v1 on Kubernetes.
	SandboxURL    string        `yaml:"sandbox_url" json:"sandbox_url"`
	Limits        GatewayLimits `yaml:"limits" json:"limits"`
	Models        []ModelLimit  `yaml:"models" json:"models"`
	AllowedModels []string      `yaml:"allowed_models" json:"allowed_models"`
	Redis         string        `yaml:"redis" json:"redis"`
	FailOpen      bool          `yaml:"fail_open" json:"fail_open"`
	// UpstreamSlots is how many requests the upstream serves at once per
	// model, for a server THON does not size (an openai backend, a
	// llama-server of the organizer's); 0: the LLM plan's slots for a
	// server THON sizes, else no limit.
	UpstreamSlots int `yaml:"upstream_slots" json:"upstream_slots"`
	// QueueTimeout bounds a request's wait for a free slot of its model.
	QueueTimeout  Duration      `yaml:"queue_timeout" json:"queue_timeout"`
	ShortRequests ShortRequests `yaml:"short_requests" json:"short_requests"`
	// OTLP sends a trace span per LLM request to an OpenTelemetry
	// collector or Langfuse.
	OTLP OTLP `yaml:"otlp" json:"otlp"`
}

// OTLP is where the gateway sends its traces (OTLP/HTTP).
type OTLP struct {
	// Endpoint is the collector's base URL (/v1/traces is added) or its
	// full traces URL; "" sends no traces.
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	// Headers go with every export: the collector's keys.
	Headers Headers `yaml:"headers" json:"headers"`
	// QueueSize bounds the spans waiting to be sent; more are dropped.
	QueueSize int `yaml:"queue_size" json:"queue_size"`
	// Timeout bounds one export; a batch not sent by then is dropped.
	Timeout Duration `yaml:"timeout" json:"timeout"`
}

// Headers are HTTP headers by name: a mapping in thon.yaml, "k=v,k2=v2" in
// the environment (as OTEL_EXPORTER_OTLP_HEADERS, values percent-encoded).
// They hold secrets: never shown in messages.
type Headers map[string]string

// ShortRequests keep a share of every model's slots for requests that ask
// for few tokens (autocompletion, a quick question).
type ShortRequests struct {
	MaxTokens int     `yaml:"max_tokens" json:"max_tokens"` // 0: no request is short
	Share     float64 `yaml:"share" json:"share"`           // of each model's slots, 0 to 0.5
}

// GatewayLimits apply to each key (0 = no limit).
type GatewayLimits struct {
	RequestsPerMinute int    `yaml:"requests_per_minute" json:"requests_per_minute"`
	Concurrency       int    `yaml:"concurrency" json:"concurrency"`
	TokensPerMinute   int    `yaml:"tokens_per_minute" json:"tokens_per_minute"`
	TokenKind         string `yaml:"token_kind" json:"token_kind"`       // total | prompt | completion
	BudgetTokens      int64  `yaml:"budget_tokens" json:"budget_tokens"` // whole event
}

// ModelLimit overrides limits for one model.
type ModelLimit struct {
	Model           string `yaml:"model" json:"model"`
	Concurrency     int    `yaml:"concurrency" json:"concurrency"`
	TokensPerMinute int    `yaml:"tokens_per_minute" json:"tokens_per_minute"`
	Priority        int    `yaml:"priority" json:"priority"`
}

// Limits are per-sandbox resource limits.
type Limits struct {
	CPU    float64 `yaml:"cpu" json:"cpu"`       // cores, e.g. 1 or 0.5
	Memory Size    `yaml:"memory" json:"memory"` // e.g. 2Gi, 2g, 512Mi
	Pids   int64   `yaml:"pids" json:"pids"`
}

// Group is one group of participants, in declaration order.
type Group struct {
	Name string `json:"name"`
	// Title is what people read (access cards, the invite page, the
	// dashboard): "Team Alpha"; "" shows the name.
	Title string   `json:"title,omitempty"`
	Users []string `json:"users"`
	// Emails holds the e-mail address of each user that has one: on
	// access cards and in `thon access -o csv` for a mail merge, the
	// assistants' git identity, and the address that lets its owner join
	// through an invite as this participant.
	Emails map[string]string `json:"emails,omitempty"`
	// Template is the template its sandboxes are made from ("": sandbox:).
	Template string `json:"template,omitempty"`
	// IdlePolicy overrides the template's (or sandbox:'s) idle policy.
	IdlePolicy
}

// Email is user's e-mail address in the group, "" when none is given.
func (g Group) Email(user string) string { return g.Emails[user] }

// Display is the group's title, or its name when it has none.
func (g Group) Display() string {
	if g.Title != "" {
		return g.Title
	}
	return g.Name
}

// Groups keeps the order groups were declared in.
type Groups []Group

// Duration is a time.Duration written as "90s", "2m".
type Duration time.Duration

// Size is a byte count written as "2Gi", "2g", "512Mi", "1073741824".
type Size int64

// Defaults.
const (
	DefaultListen         = "127.0.0.1:8100"
	DefaultImage          = "thon/sandbox:latest"
	DefaultPort           = 8080
	DefaultHealthPath     = "/healthz"
	DefaultStartupTimeout = Duration(120 * time.Second)
	DefaultWorkspace      = "volume"
	DefaultConcurrency    = 8
	MinIdleTimeout        = 5 * time.Minute
	DefaultCPU            = 1
	DefaultMemory         = Size(2 << 30)
	DefaultPids           = 512
	DefaultDataDir        = "~/.thon"
	DefaultHTTPSPort      = 443
	DefaultHTTPPort       = 80
	DefaultMode           = ModePort
	DefaultPortRange      = "20000-20999"
	DefaultTokenTTL       = Duration(72 * time.Hour)
	DefaultLLMURL         = "http://127.0.0.1:13305"
	DefaultChatCheckpoint = "unsloth/gemma-4-31B-it-GGUF:Q8_K_XL"
	DefaultChatModel      = "gemma-4-31b-it"
	DefaultChatCtx        = 32768
	DefaultMaxCtx         = 262144
	DefaultEmbeddingCtx   = 8192
	DefaultMaxSlots       = 64
	DefaultSmallCtx       = 8192
	DefaultLLMImage       = "thon/llm:latest"
	GPUAuto               = "auto"
	DefaultGatewayListen  = "0.0.0.0:9080"
	DefaultQueueTimeout   = Duration(2 * time.Minute)
	DefaultShortTokens    = 256
	DefaultShortShare     = 0.125
	DefaultOTLPQueueSize  = 2048
	DefaultOTLPTimeout    = Duration(10 * time.Second)
	GatewayPerUser        = "per-user"
	GatewayPerGroup       = "per-group"
)

// Default returns the configuration used when thon.yaml says nothing.
func Default() *Config {
	return &Config{
		Server: Server{DataDir: DefaultDataDir, Listen: DefaultListen},
		Access: Access{
			HTTPSPort: DefaultHTTPSPort,
			HTTPPort:  DefaultHTTPPort,
			Mode:      DefaultMode,
			PortRange: DefaultPortRange,
			ACME:      ACME{Directory: LetsEncryptDirectory},
			TokenTTL:  DefaultTokenTTL,
		},
		LLM: LLM{
			Enabled: true, Backend: BackendLemonade, Image: DefaultLLMImage, GPU: GPUAuto,
			ChatModel:      LLMModel{Checkpoint: DefaultChatCheckpoint, Name: DefaultChatModel, CtxPerUser: DefaultChatCtx, MaxCtx: DefaultMaxCtx},
			EmbeddingModel: LLMModel{CtxPerUser: DefaultEmbeddingCtx, MaxCtx: DefaultMaxCtx},
			SmallModel:     LLMModel{CtxPerUser: DefaultSmallCtx, MaxCtx: DefaultMaxCtx},
			SlotsPerUser:   1, MaxSlots: DefaultMaxSlots,
		},
		Assistants: Assistants{Kilo: Assistant{Enabled: true}, Continue: Assistant{Enabled: true}, Cline: Assistant{Enabled: true}, OpenCode: Assistant{Enabled: true}},
		Gateway: Gateway{
			Enabled:  true,
			Listen:   DefaultGatewayListen,
			Mode:     GatewayPerUser,
			Limits:   GatewayLimits{RequestsPerMinute: 60, Concurrency: 2, TokensPerMinute: 20000, TokenKind: "total"},
			FailOpen: true,

			QueueTimeout:  DefaultQueueTimeout,
			ShortRequests: ShortRequests{MaxTokens: DefaultShortTokens, Share: DefaultShortShare},
			OTLP:          OTLP{QueueSize: DefaultOTLPQueueSize, Timeout: DefaultOTLPTimeout},
		},
		Sandbox: Sandbox{
			Runtime:        RuntimeDocker,
			Kubernetes:     Kubernetes{Namespace: "thon", WorkspaceSize: "10Gi"},
			Image:          DefaultImage,
			Port:           DefaultPort,
			HealthPath:     DefaultHealthPath,
			StartupTimeout: DefaultStartupTimeout,
			Workspace:      DefaultWorkspace,
			Limits:         Limits{CPU: DefaultCPU, Memory: DefaultMemory, Pids: DefaultPids},
			Concurrency:    DefaultConcurrency,
			IdleAction:     IdleStop,
		},
	}
}
