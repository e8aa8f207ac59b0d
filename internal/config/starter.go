package config

// starter is the file `thon init` writes. Every value shown is the default;
// TestStarter checks that it parses to Default() and names every setting.
const starter = `# thon.yaml: the configuration of a THON event.
# Every setting is optional; the values below are the defaults.
# Environment variables override this file: THON_<SECTION>_<KEY>, e.g.
#   THON_SANDBOX_IMAGE=thon/sandbox:dev  THON_SANDBOX_LIMITS_MEMORY=4Gi
# Check it with: thon config validate

server:
  # Where THON keeps its state: database, admin token, certificates, logs.
  data_dir: ~/.thon
  # Address of the REST API and dashboard, host:port (":8100" for every interface).
  listen: 127.0.0.1:8100
  # PostgreSQL for state shared by several replicas, e.g.
  # postgres://thon:secret@db:5432/thon; "" keeps it in SQLite in data_dir.
  database: ""

access:
  # The address participants reach THON at; detected (the default route's
  # interface) when empty. It goes into the HTTPS certificate.
  external_ip: ""
  # Extra host names for the certificate, e.g. [thon.example.org].
  hostnames: []
  # HTTPS port of the front door (dashboard, API, CA download, path mode).
  https_port: 443
  # Plain HTTP port that redirects to HTTPS (and answers ACME's HTTP-01
  # challenges); 0 turns it off.
  http_port: 80
  # How participants reach their IDE: port (their own HTTPS port: own origin,
  # strongest isolation), path (https://host/u/{user}/: one shared origin) or
  # subdomain (https://{user}.{domain}/: needs a wildcard DNS record).
  mode: port
  # Ports handed out one per participant in port mode.
  port_range: 20000-20999
  # Domain of subdomain mode.
  domain: ""
  # Your own certificate (PEM, full chain) instead of THON's local CA...
  cert_file: ""
  # ...and its private key (PEM).
  key_file: ""
  # Certificates for hostnames from Let's Encrypt (or another ACME CA), got
  # and renewed by THON. The names must resolve to this machine, and port 80
  # (http_port) or 443 (https_port) must be reachable from the internet.
  # Subdomain mode needs a wildcard certificate: get it with DNS-01 and use
  # cert_file and key_file; ACME then covers the hostnames it does not.
  acme:
    # The CA's contact address for your account; setting it turns ACME on.
    email: ""
    # The CA's directory URL (staging, for trying things out:
    # https://acme-staging-v02.api.letsencrypt.org/directory).
    directory: https://acme-v02.api.letsencrypt.org/directory
    # A private ACME CA's root certificate (PEM), which its HTTPS chains to;
    # "" trusts the system's roots.
    ca_root: ""
  # How long a personal access link works, e.g. 72h (7 days: 168h).
  token_ttl: 72h
  # Port of the organizers' dashboard; 0 means https_port (https_port + 1 in
  # path mode, where participants share the main port's origin).
  dashboard_port: 0

sandbox:
  # Where sandboxes run: docker (this machine's engine) or kubernetes (a
  # cluster, see kubernetes: below).
  runtime: docker
  # Container image of every participant's sandbox (code-server inside).
  image: thon/sandbox:latest
  # Port code-server listens on inside the container (1..65535).
  port: 8080
  # HTTP path polled until a new sandbox answers; starts with "/".
  health_path: /healthz
  # How long a sandbox may take to become healthy: 90s, 2m, 1m30s.
  startup_timeout: 2m
  # Where workspaces live: volume (a named volume per user), bind (a host
  # directory, see workspace_dir) or ephemeral (lost when the sandbox goes).
  workspace: volume
  # Host directory holding one directory per user (bind mode only); it must exist.
  workspace_dir: ""
  # Directory of .vsix files thon setup image bakes into the image (e.g.
  # Kilo Code's, Continue's, Cline's for a venue without internet); "" for none.
  extensions_dir: ""
  # Resource limits of each sandbox.
  limits:
    # CPU cores, e.g. 1, 0.5, 2.
    cpu: 1
    # Memory: 2Gi, 512Mi, 1.5Gi, 2g, or plain bytes.
    memory: 2Gi
    # Most processes a sandbox may run (0: no limit).
    pids: 512
  # Extra environment variables for every sandbox, e.g. {TZ: Europe/Paris}.
  env: {}
  # How many sandboxes are created or started at the same time (1..256);
  # also how many sleeping sandboxes wake at once.
  concurrency: 8
  # Put a sandbox to sleep when its participant has done nothing for this
  # long (typing, clicking, a terminal: an open tab alone does not count);
  # their next visit wakes it. 0 never; e.g. 45m.
  idle_timeout: 0s
  # How a sandbox sleeps: stop (frees its memory; waking takes seconds) or
  # pause (keeps its memory; waking is instant).
  idle_action: stop
  # Stop a sandbox this long after it started unless an organizer renews
  # it (thon instance renew USER --for 2h). 0 never; e.g. 12h.
  max_lifetime: 0s
  # The cluster, when runtime is kubernetes.
  kubernetes:
    # A kubeconfig file; "" is in-cluster, then $KUBECONFIG, then ~/.kube/config.
    kubeconfig: ""
    # The namespace holding every sandbox.
    namespace: thon
    # Storage class of the workspaces' volumes; "" is the cluster's default.
    storage_class: ""
    # Size of each workspace volume.
    workspace_size: 10Gi
    # Node labels sandboxes must run on, e.g. {pool: events}.
    node_selector: {}
    # Taints sandboxes tolerate: "key=value:Effect", "key:Effect" or "key".
    tolerations: []
    # Secrets for pulling the sandbox image from a private registry.
    image_pull_secrets: []
    # The AI gateway, if the NetworkPolicy would not let sandboxes reach
    # it: a CIDR, an IP, or a label selector of its Pods.
    gateway: ""

# Named sandbox settings groups can use instead of sandbox:'s: image,
# limits, env (added over sandbox.env), workspace, workspace_dir, the
# assistants' files (assistants: {kilo: {base_file: …}, extensions_file: …})
# and the idle policy (idle_timeout, idle_action, max_lifetime). What a template
# leaves out is sandbox:'s. A group names one (see groups: below);
# changing a template marks that group's sandboxes outdated, and
# thon run --recreate applies it (workspaces are kept). For example:
#   node:
#     description: Node.js 22
#     image: thon/sandbox-node:22
#     limits: {memory: 4Gi}
#     env: {NODE_ENV: development}
#     idle_timeout: 30m
templates: {}

llm:
  # Run the AI assistants against a language model server.
  enabled: true
  # lemonade (Lemonade Server: THON loads models and sizes them for the
  # event), llamacpp (llama.cpp's llama-server: with no url THON runs it in
  # a container and sizes it; with a url, yours) or openai (any
  # OpenAI-compatible server: vLLM, Ollama; THON only sends it requests).
  backend: lemonade
  # The server's address: "" is Lemonade's http://127.0.0.1:13305, or, for
  # llamacpp, a server THON runs; for openai, the base URL, e.g.
  # http://127.0.0.1:8080/v1.
  url: ""
  # llamacpp: THON runs llama-server itself (the default when url is "").
  managed: false
  # Key for model requests (Lemonade's LEMONADE_API_KEY). The gateway adds
  # it; with the gateway off, sandboxes get it. THON makes one for a server
  # it runs.
  api_key: ""
  # Key for pull, load and unload (LEMONADE_ADMIN_API_KEY); never leaves THON.
  admin_api_key: ""
  # The managed server's image: sudo thon setup llm builds it.
  image: thon/llm:latest
  # What the managed server computes on: auto, none, nvidia, amd or intel.
  gpu: auto
  # Caps of the managed server's container (0: none).
  limits:
    # Cores, e.g. 4.
    cpu: 0
    # Memory, e.g. 16Gi.
    memory: 0
    # Processes.
    pids: 0
  # The chat model every assistant uses.
  chat_model:
    # A Hugging Face GGUF checkpoint, REPO:QUANT: what Lemonade pulls, or
    # what thon llm pull downloads for llamacpp.
    checkpoint: unsloth/gemma-4-31B-it-GGUF:Q8_K_XL
    # The model id assistants ask for.
    name: gemma-4-31b-it
    # llamacpp: a GGUF file on this machine instead of a checkpoint. With
    # neither, THON's built-in test model answers (for trying THON out).
    file: ""
    # llamacpp: the vision projector GGUF of a model that has one.
    mmproj: ""
    # Context tokens per participant; the server's context is this times
    # the participants...
    ctx_per_user: 32768
    # ...capped here (0: no cap).
    max_ctx: 262144
  # The embeddings model for codebase indexing; "" goes without.
  embedding_model:
    # e.g. nomic-ai/nomic-embed-text-v1.5-GGUF:Q8_0.
    checkpoint: ""
    # e.g. nomic-embed-text-v1.5.
    name: ""
    # llamacpp: a GGUF file instead of a checkpoint.
    file: ""
    # Unused for embeddings.
    mmproj: ""
    # Context tokens per participant.
    ctx_per_user: 8192
    # Cap of the whole context (0: no cap).
    max_ctx: 262144
  # More chat models offered beside chat_model, each {name, checkpoint or
  # file, ctx_per_user}.
  chat_models: []
  # A small model for the assistants' cheap tasks (titles, summaries);
  # "" name: the chat model does them.
  small_model:
    # e.g. unsloth/Qwen3-4B-Instruct-2507-GGUF:Q4_K_M.
    checkpoint: ""
    # e.g. qwen3-4b.
    name: ""
    # llamacpp: a GGUF file instead of a checkpoint.
    file: ""
    # llamacpp: its vision projector, if any.
    mmproj: ""
    # Context tokens per participant.
    ctx_per_user: 8192
    # Cap of the whole context (0: no cap).
    max_ctx: 262144
  # Parallel requests (slots) per participant...
  slots_per_user: 1
  # ...and at most this many in all.
  max_slots: 64
  # Extra llama.cpp arguments passed through when a model loads, e.g. "--flash-attn on".
  llamacpp_args: ""

assistants:
  # Kilo Code, configured in ~/.config/kilo/config.json.
  kilo:
    # Write its configuration into every sandbox.
    enabled: true
    # Your own config.json; THON's values are merged over it.
    base_file: ""
  # Continue, configured in ~/.continue/config.yaml.
  continue:
    # Write its configuration into every sandbox.
    enabled: true
    # Your own config.yaml; THON's values are merged over it.
    base_file: ""
  # Cline (the extension and the cline command), configured through its settings.
  cline:
    # Write its configuration into every sandbox.
    enabled: true
    # Your own settings (JSON); THON's values are merged over it.
    base_file: ""
  # OpenCode (the opencode command), configured in ~/.config/opencode/opencode.json.
  opencode:
    # Write its configuration into every sandbox.
    enabled: true
    # Your own opencode.json; THON's values are merged over it.
    base_file: ""
  # Turn VS Code's workspace trust prompt (Restricted Mode) back on; by
  # default each participant's own workspace is trusted.
  workspace_trust: false
  # Give Kilo and OpenCode a git MCP server in the participant's workspace.
  git_mcp: false
  # A VS Code settings.json merged into every participant's settings.
  vscode_settings_file: ""
  # Extensions to install at first start: one id (kilocode.kilo-code) or .vsix path per line.
  extensions_file: ""

gateway:
  # The AI gateway: an OpenAI-compatible endpoint for every sandbox, with a
  # key per participant (or group) and token-based rate limits.
  enabled: true
  # Where it listens; sandboxes reach it at host.docker.internal.
  listen: 0.0.0.0:9080
  # per-user (a key each) or per-group (one key per group, limits times its size).
  mode: per-user
  # The gateway as sandboxes reach it; "" is http://host.docker.internal:PORT/v1
  # on Docker, http://thon-gateway.NAMESPACE.svc:PORT/v1 on Kubernetes.
  sandbox_url: ""
  # Where requests go; "" means the llm server.
  upstream: ""
  # Limits of each key; 0 means no limit.
  limits:
    # Requests per minute.
    requests_per_minute: 60
    # Requests at the same time.
    concurrency: 2
    # Tokens per minute, counting the token_kind below.
    tokens_per_minute: 20000
    # Which tokens count: total, prompt or completion.
    token_kind: total
    # Tokens for the whole event.
    budget_tokens: 0
  # Per-model overrides, e.g. [{model: gemma-4-31b-it, concurrency: 1, tokens_per_minute: 10000, priority: 1}].
  models: []
  # Models participants may use; [] allows all.
  allowed_models: []
  # Redis URL to share limits between gateway replicas, e.g. redis://127.0.0.1:6379/0.
  redis: ""
  # When Redis is unreachable: keep serving on local counters (true) or refuse (false).
  fail_open: true
  # Requests the LLM server serves at once per model (its parallel slots);
  # the gateway never sends more and queues the rest fairly between keys.
  # 0: the LLM plan's slots when THON sizes the server, else no limit.
  # Set it for an openai backend or a llama-server of yours (its -np).
  upstream_slots: 0
  # How long a request may wait for a free slot before a 503 (retry later).
  queue_timeout: 2m
  # Requests asking for few tokens (autocompletion, a quick question) get a
  # share of each model's slots of their own, never waiting for agents.
  short_requests:
    # A request asking for at most this many tokens is short; 0: none is.
    max_tokens: 256
    # The share of each model's slots kept for them (0 to 0.5, rounded).
    share: 0.125
  # Traces: a span per LLM request (user, group, model, tokens, time to first
  # token, status) sent over OTLP/HTTP to an OpenTelemetry collector or to
  # Langfuse. Never waited for: a slow or absent collector drops spans.
  otlp:
    # The collector's base URL, e.g. http://127.0.0.1:4318 (/v1/traces is
    # added) or https://cloud.langfuse.com/api/public/otel; "" sends none.
    endpoint: ""
    # Sent with every export: the collector's keys, e.g.
    # {Authorization: "Basic …"}. Better kept out of this file:
    # THON_GATEWAY_OTLP_HEADERS=Authorization=Basic%20… thon run
    headers: {}
    # Spans waiting to be sent at most; more are dropped and counted.
    queue_size: 2048
    # How long one export may take before its spans are dropped.
    timeout: 10s

auth:
  # The dashboard's password (at least 8 characters); only its hash is
  # stored. Better kept out of this file: THON_ADMIN_PASSWORD=... thon run
  admin_password: ""
  # Identities that become organizers when they sign in with a provider:
  # a user name (octocat), an e-mail, or provider:name (github:octocat).
  admins: []
  # Sign-in providers for organizers and participants (invite links). A
  # provider is on once it has a client_id; register THON's callback
  # https://{address}/auth/{provider}/callback with it.
  providers:
    github:
      # The OAuth app's client id...
      client_id: ""
      # ...and secret.
      client_secret: ""
      # GitHub Enterprise's address; "" for github.com.
      url: ""
    gitlab:
      # The application's id...
      client_id: ""
      # ...and secret.
      client_secret: ""
      # A self-hosted GitLab's address; "" for gitlab.com.
      url: ""
    linkedin:
      # The app's client id...
      client_id: ""
      # ...and secret.
      client_secret: ""
    oidc:
      # Any OpenID Connect provider: its issuer URL...
      issuer: ""
      # ...the client id...
      client_id: ""
      # ...and secret...
      client_secret: ""
      # ...and what the sign-in button says, e.g. Company SSO.
      name: ""

# Participants, by group. Names use lowercase letters a-z, digits and "-"
# (at most 63 characters); a user is in exactly one group. Two forms:
groups:
  alpha: [alice, bob]   # a list of users
  beta:                 # or a mapping: users, and a title people read
    title: Team Beta    # on access cards and the invite page
    # template: node    # its sandboxes made from a template (templates: above)
    # idle_timeout: 20m # and its own idle_timeout, idle_action, max_lifetime
    users:
      # A user with an e-mail: on cards and in "thon access -o csv", the
      # assistants' git identity, and joining through an invite with it.
      - {name: carol, email: carol@example.org}
`

// Starter returns a commented thon.yaml showing every setting with its
// default and a demo groups: section in both accepted forms.
func Starter() []byte { return []byte(starter) }
