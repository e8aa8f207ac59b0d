// Package daemon assembles THON's long-running process: the store, the
// sandbox engine, the orchestrator and the REST API on one listener.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/thon-dev/thon/internal/access"
	"github.com/thon-dev/thon/internal/activity"
	"github.com/thon-dev/thon/internal/api"
	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/configfiles"
	"github.com/thon-dev/thon/internal/doctor"
	"github.com/thon-dev/thon/internal/frontdoor"
	"github.com/thon-dev/thon/internal/gateway"
	"github.com/thon-dev/thon/internal/gateway/keyring"
	"github.com/thon-dev/thon/internal/llm"
	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/internal/pki"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/store"
)

// Files in the data directory.
const (
	DBFile    = "thon.db"
	TokenFile = "admin.token"
	LockFile  = "thon.lock"
	LogFile   = "thon.log"
)

// Options configures a daemon.
type Options struct {
	Config  *config.Config
	Version string
	Logger  *slog.Logger
	// Instance names this THON on the engine: the prefix of its containers and
	// volumes and the name of its network (default "thon"). Two events on
	// one engine use two instances (env THON_INSTANCE).
	Instance string
	// Runtime overrides the engine (default: Docker from the environment).
	Runtime sandbox.Runtime
	// Listener overrides server.listen (tests pass 127.0.0.1:0).
	Listener net.Listener
	// ResyncInterval overrides how often the engine is re-read.
	ResyncInterval time.Duration
	// SleepInterval overrides how often idle sandboxes are looked for
	// (default 30s); Now the clock of idle times and lifetimes.
	SleepInterval time.Duration
	Now           func() time.Time
	// LLMQuiet overrides how long participant changes settle before the
	// LLM is rescaled (default 30s).
	LLMQuiet time.Duration
	// LLMPoll overrides how often THON looks at the LLM server it runs
	// (default 2s).
	LLMPoll time.Duration
	// ProviderClient talks to sign-in providers (tests: one that trusts a
	// test CA); nil means a default client.
	ProviderClient *http.Client
}

// Daemon is a running THON daemon.
type Daemon struct {
	URL   string // base URL of the REST API
	Token string // the admin token
	Orch  *orchestrator.Orchestrator
	Store *store.Store
	// Activity is what participants' browsers do, seen by the front door.
	Activity  *activity.Tracker
	FrontDoor *frontdoor.FrontDoor
	Access    *access.Service // links, sessions, passwords, invites, joining
	Tokens    *auth.Tokens    // API tokens
	Files     *configfiles.Service
	CA        *pki.Authority
	Gateway   *gateway.Gateway // nil when gateway.enabled is false
	Keyring   *keyring.Keyring
	LLM       *llm.Service
	Admins    *auth.Admins // the dashboard's sign-in
	SSO       *auth.SSO    // sign-in providers (nil: none configured)
	// Metrics holds this daemon's Prometheus metrics (served at /metrics on server.listen).
	Metrics *prometheus.Registry
	// GatewayURL is the AI gateway's address on this host ("" when off).
	GatewayURL string

	log      *slog.Logger
	startCfg *config.Config // the configuration the daemon started with
	runtime  sandbox.Runtime
	personal *personalizer
	managed  *llm.Managed // THON's own LLM server; nil when the engine cannot run one
	addrs    *frontdoor.Addresses
	srv      *http.Server
	gwSrv    *http.Server
	api      *api.Server
	lock     *os.File

	slotsMu   sync.Mutex
	planSlots map[string]int  // each model's slots in the LLM plan THON applied last
	planOn    bool            // the gateway takes them: no gateway.upstream_slots, no other upstream
	ctx       context.Context // lives as long as the daemon
	cancel    context.CancelFunc
	done      chan error
}

// Start opens the state, adopts running sandboxes and serves the API.
// It returns once the API is listening.
func Start(ctx context.Context, o Options) (*Daemon, error) {
	cfg := o.Config
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	dir, err := cfg.DataDir()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", dir, err)
	}
	lock, err := lockDataDir(dir)
	if err != nil {
		return nil, err
	}
	d := &Daemon{log: log, lock: lock, done: make(chan error, 1), Metrics: prometheus.NewRegistry(), startCfg: cfg}
	d.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ok := false
	defer func() {
		if !ok {
			d.release()
		}
	}()
	dsn := filepath.Join(dir, DBFile)
	if cfg.Server.Database != "" {
		dsn = cfg.Server.Database // PostgreSQL, shared with other replicas
	}
	d.Store, err = store.Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if d.Token, err = adminToken(ctx, d.Store, dir); err != nil {
		return nil, err
	}
	d.Admins = auth.NewAdmins(d.Store)
	rt := o.Runtime
	if rt == nil {
		if o.Instance != "" {
			if err := config.ValidName("instance", o.Instance); err != nil {
				return nil, fmt.Errorf("THON_INSTANCE: %w", err)
			}
		}
		if rt, err = newRuntime(cfg.Sandbox, o.Instance); err != nil {
			return nil, err
		}
	}
	d.runtime = rt
	if cfg.Gateway.Enabled {
		if d.Keyring, err = keyring.Open(dir, d.Store, cfg.Gateway.Mode, cfg.Gateway.Limits.TokenKind); err != nil {
			return nil, err
		}
		d.Keyring.OnChange = func() {
			if d.Gateway != nil {
				d.Gateway.ForgetKeys()
			}
			d.Orch.SpecsChanged() // a sandbox with the old key is outdated
		}
	}
	if d.personal, err = newPersonalizer(d, cfg, log); err != nil {
		return nil, err
	}
	event := func(ctx context.Context, actor, action, target, detail string) {
		d.Store.AddEvent(context.WithoutCancel(ctx), actor, action, target, detail)
	}
	// THON's own LLM server (backend llamacpp without a url) runs on the
	// sandbox engine, when the engine can run it.
	if runner, ok := rt.(sandbox.ServiceRunner); ok {
		d.managed, err = llm.NewManaged(llm.ManagedOptions{
			Runner: runner, DataDir: dir, Logger: log, Event: event, Poll: o.LLMPoll,
			// Run starts after the gateway: d.Gateway is set by then.
			Upstream: func(base string) {
				if d.Gateway != nil {
					d.Gateway.SetUpstream(base, d.managed.Key())
				}
			},
			Drain: func(ctx context.Context) (func(), error) {
				if d.Gateway == nil {
					return func() {}, nil
				}
				return d.Gateway.Drain(ctx)
			},
			Slots: d.setPlanSlots,
		})
		if err != nil {
			return nil, err
		}
	} else if cfg.LLM.IsManaged() && cfg.LLM.Enabled {
		log.Error("THON runs its LLM server on Docker only: run llama-server yourself and set llm.url", "engine", rt.Name())
	}
	d.LLM = llm.NewService(cfg.LLM, llm.ServiceOptions{
		Participants: func(ctx context.Context) (int, error) {
			users, err := d.Store.Users(ctx)
			return len(users), err
		},
		Busy:      func() bool { return d.Orch.Working() },
		Quiet:     o.LLMQuiet,
		Logger:    log,
		Event:     event,
		Managed:   d.managed,
		ModelsDir: filepath.Join(dir, "models"),
		Slots:     d.setPlanSlots,
	})
	d.Activity = activity.New(o.Now)
	d.Orch = orchestrator.New(orchestrator.Options{
		Runtime: rt, Store: d.Store, Sandboxes: cfg.SandboxSet(), Logger: log, ResyncInterval: o.ResyncInterval,
		Activity: d.Activity, SleepInterval: o.SleepInterval, Now: o.Now,
		// Port mode: a new participant gets their HTTPS port at once; a
		// removed one's gateway key stops working.
		OnUsersChanged: func(ctx context.Context) {
			d.LLM.ParticipantsChanged()
			if d.FrontDoor != nil { // nil until the daemon has started
				if err := d.FrontDoor.Sync(ctx); err != nil {
					log.Error("open participants' ports", "err", err)
				}
			}
			if d.Keyring != nil {
				if err := d.Keyring.Prune(ctx); err != nil {
					log.Error("prune gateway keys", "err", err)
				}
			}
		},
		Personalize: d.personal.personalize,
		OnImport: func(ctx context.Context, cfg *config.Config) error {
			if err := d.personal.apply(cfg); err != nil {
				return err
			}
			if err := d.setAdminPassword(ctx, cfg); err != nil {
				return err
			}
			d.LLM.Configure(cfg.LLM)
			d.pointGateway(cfg)
			return nil
		},
	})
	d.Metrics.MustRegister(newSandboxCollector(d.Orch))
	if err := d.Orch.ApplySettings(ctx, "daemon", cfg.SandboxSet()); err != nil {
		return nil, err
	}
	// Adopt what survived the last run. An engine that is down is not fatal:
	// the API says so, and actions fail with a hint until it is back.
	if err := rt.Ping(ctx); err != nil {
		log.Warn("sandbox engine unreachable; sandboxes will be adopted once it answers", "engine", rt.Name(), "err", err)
	} else if rep, err := d.Orch.Reconcile(ctx); err != nil {
		log.Warn("reconcile with engine failed", "err", err)
	} else {
		log.Info("reconciled with engine", "adopted", len(rep.Adopted), "changed", len(rep.Changed), "missing", len(rep.Missing), "orphans", len(rep.Orphans))
		for _, orphan := range rep.Orphans {
			log.Warn("orphan sandbox: its user is not in the store (remove with: thon cleanup --orphans)", "name", orphan.Name, "user", orphan.User)
		}
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.ctx, d.cancel = runCtx, cancel
	if err := d.openAddresses(cfg, dir, log); err != nil {
		return nil, err
	}
	d.Access = access.New(access.Options{Store: d.Store, URLs: d.addrs, Orch: d.Orch, TokenTTL: cfg.Access.TokenTTL.D(), Logger: log})
	d.Tokens = auth.NewTokens(d.Store, log)
	d.Files = configfiles.New(d.Store, d.personal.reapply, log)
	if err := d.startGateway(cfg, log); err != nil {
		return nil, err
	}

	ln := o.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Server.Listen); err != nil {
			return nil, fmt.Errorf("listen on %s: %w (is another program using it? set server.listen in thon.yaml or THON_SERVER_LISTEN)", cfg.Server.Listen, err)
		}
	}
	d.URL = "http://" + ln.Addr().String()
	info := api.Info{Version: o.Version, ConfigPath: cfg.Path, DataDir: dir, Runtime: rt.Name(), PID: os.Getpid(), Started: time.Now().UTC()}
	handler := api.New(api.Options{
		Orchestrator: d.Orch, Store: d.Store, Logger: log, Access: d.Access, Addresses: d.addrs, Tokens: d.Tokens, Files: d.Files, Admins: d.Admins,
		Metrics: promhttp.HandlerFor(d.Metrics, promhttp.HandlerOpts{}),
		Queues:  d.queues(),
		Keys:    keysOrNil(d.Keyring),
		LLM:     d.LLM,
		Info:    info,
		TLS:     d.tlsStatus,
		Shutdown: func(actor string) {
			d.Store.AddEvent(context.Background(), actor, "daemon.shutdown", "", "")
			d.Shutdown(context.Background())
		},
		Doctor: func(ctx context.Context, probe bool) doctor.Report { return d.Doctor(ctx, probe, nil) },
	})
	d.api = handler
	dash, err := d.newDashboard(ctx, o, cfg, handler, info, log)
	if err != nil {
		return nil, err
	}
	// The front door last, from finished handlers: remote admins use the
	// API over HTTPS too, organizers the dashboard.
	fo := frontdoor.Options{
		Addresses: d.addrs, Access: d.Access, Tokens: d.Tokens, TLS: d.CA.TLSConfig(), CA: d.CA.Handler(),
		API: handler, Dashboard: dash, Orch: d.Orch, Logger: log, Activity: d.Activity,
	}
	acme := len(d.CA.Status().ACME) > 0
	if acme {
		fo.HTTPChallenge = d.CA.HTTPChallenge
	}
	d.FrontDoor = frontdoor.New(fo)
	if err := d.FrontDoor.Start(ctx); err != nil {
		return nil, err
	}
	if acme {
		// The CA connects to the ports just opened: start only now. The
		// event goes on meanwhile with the local CA's certificate.
		if err := d.CA.StartACME(runCtx, cfg.Access.HTTPPort != 0 && d.FrontDoor.HTTPOpen()); err != nil {
			log.Error("ACME: certificates cannot be managed; serving the local CA's certificate", "err", err)
		}
	}
	d.srv = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return runCtx }}
	go d.Orch.Run(runCtx)
	go d.LLM.Run(runCtx)
	if d.managed != nil {
		go d.managed.Run(runCtx)
	}
	go func() {
		err := d.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		d.done <- err
	}()
	log.Info("THON daemon listening", "api", d.URL, "data_dir", dir, "engine", rt.Name())
	ok = true
	return d, nil
}

// Wait blocks until the daemon has stopped.
func (d *Daemon) Wait() error {
	err := <-d.done
	d.done <- err
	return err
}

// Shutdown stops serving and releases the state. Every listener (the front
// door's, the gateway's, the API's) stops accepting at once; requests in
// flight, downloads and the gateway's streamed answers included, get up to
// 10 s to finish; the event streams, which never end by themselves, end at
// once, and WebSockets are cut once the rest is done (the IDE reconnects).
// Sandboxes keep running; the next start adopts them.
func (d *Daemon) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if d.api != nil {
		d.api.CloseStreams()
	}
	var wg sync.WaitGroup
	wg.Go(func() { d.FrontDoor.Shutdown(ctx) })
	if gw := d.gwSrv; gw != nil {
		wg.Go(func() { gw.Shutdown(ctx) })
	}
	var err error
	wg.Go(func() { err = d.srv.Shutdown(ctx) })
	wg.Wait()
	d.cancel()
	d.Wait()
	d.release()
	return err
}

// openAddresses opens the local CA (or the organizer's certificate), with
// ACME beside it, and works out where the front door is reached, following
// the machine's address when it is detected.
func (d *Daemon) openAddresses(cfg *config.Config, dir string, log *slog.Logger) error {
	access := cfg.Access
	detect := access.ExternalIP == ""
	if detect {
		access.ExternalIP = detectIP(log)
	}
	hosts := func(ip string) []string {
		h := append([]string{ip}, access.Hostnames...)
		if access.Mode == config.ModeSubdomain {
			h = append(h, access.Domain, "*."+access.Domain)
		}
		return h
	}
	ca, err := pki.Open(pki.Options{
		Dir: filepath.Join(dir, "ca"), Hosts: hosts(access.ExternalIP), CertFile: access.CertFile, KeyFile: access.KeyFile,
		ACME: d.acmeOptions(access, dir, log), Logger: log,
	})
	if err != nil {
		return err
	}
	d.CA = ca
	d.addrs = frontdoor.NewAddresses(access, d.Store)
	if detect {
		// The machine may move (DHCP, another network): follow its address;
		// the certificate is reissued at the next handshake, no restart.
		go func() {
			t := time.NewTicker(time.Minute)
			defer t.Stop()
			last := access.ExternalIP
			for {
				select {
				case <-d.ctx.Done():
					return
				case <-t.C:
				}
				if ip := detectIP(log); ip != last {
					log.Info("external IP changed; reissuing the certificate", "from", last, "to", ip)
					ca.SetHosts(hosts(ip))
					d.addrs.SetExternalIP(ip)
					last = ip
				}
			}
		}()
	}
	return nil
}

// tlsStatus is the front door's certificates as the API shows them.
func (d *Daemon) tlsStatus() api.TLSStatus {
	st := d.CA.Status()
	out := api.TLSStatus{Source: st.Source, Warning: st.Warning}
	for _, n := range st.ACME {
		out.ACME = append(out.ACME, api.TLSName{Name: n.Name, NotAfter: n.NotAfter, Error: n.Error})
	}
	return out
}

// acmeOptions turns access.acme into the front door's ACME settings (nil
// when it is off): certificates for access.hostnames, kept in
// DATA_DIR/acme, each one obtained, renewed or failing written to the
// audit log.
func (d *Daemon) acmeOptions(access config.Access, dir string, log *slog.Logger) *pki.ACME {
	a := access.ACME
	if !a.Enabled() {
		return nil
	}
	if access.HTTPPort != 80 && access.HTTPSPort != 443 {
		log.Warn("ACME: a public CA validates on ports 80 (HTTP-01) and 443 (TLS-ALPN-01) only, and THON listens on neither: forward one of them to THON (e.g. a NAT rule to https_port), or no certificate can be had",
			"http_port", access.HTTPPort, "https_port", access.HTTPSPort)
	}
	fallback := "the local CA's"
	if access.CertFile != "" {
		fallback = "access.cert_file's"
	}
	return &pki.ACME{
		Email: a.Email, Directory: a.Directory, CARoot: a.CARoot, Dir: filepath.Join(dir, "acme"),
		Names: access.Hostnames, HTTPPort: access.HTTPPort, TLSPort: access.HTTPSPort,
		OnEvent: func(e pki.ACMEEvent) {
			action, detail := "tls.certificate.obtained", "from "+a.Directory
			switch {
			case e.Err != nil && e.Renewal:
				action, detail = "tls.certificate.renewal_failed", e.Err.Error()+"; the current certificate is served until it expires; retrying"
			case e.Err != nil:
				action, detail = "tls.certificate.failed", e.Err.Error()+"; "+fallback+" certificate is served for it meanwhile; retrying"
			case e.Renewal:
				action = "tls.certificate.renewed"
			}
			d.Store.AddEvent(context.WithoutCancel(d.ctx), "system", action, e.Name, detail)
		},
	}
}

// startGateway serves the AI gateway on gateway.listen, with keys and usage
// in the store.
func (d *Daemon) startGateway(cfg *config.Config, log *slog.Logger) error {
	g := cfg.Gateway
	if !g.Enabled {
		return nil
	}
	opts := GatewayOptions(cfg)
	opts.Keys, opts.Usage, opts.Logger, opts.Registerer = d.Keyring, d.Keyring, log, d.Metrics
	opts.Caller = (&callers{d: d}).lookup
	if cfg.LLM.IsManaged() && d.managed != nil && g.Upstream == "" {
		// THON's own server: its address is known once it runs.
		opts.Upstream, opts.UpstreamKey = "", d.managed.Key()
	}
	gw, err := gateway.New(opts)
	if err != nil {
		return fmt.Errorf("AI gateway: %w", err)
	}
	ln, err := net.Listen("tcp", g.Listen)
	if err != nil {
		gw.Close()
		return fmt.Errorf("AI gateway cannot listen on %s: %w (another program uses it? set gateway.listen, or gateway.enabled: false)", g.Listen, err)
	}
	d.Gateway = gw
	d.applySlots(cfg)
	// The goroutine serves srv, not d.gwSrv: a start that fails later
	// releases the daemon (d.gwSrv = nil) maybe before it runs, and Serve
	// on the closed server then closes ln and returns.
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return d.ctx }}
	d.gwSrv = srv
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	d.GatewayURL = "http://127.0.0.1:" + port + "/v1"
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("AI gateway stopped", "err", err)
		}
	}()
	log.Info("AI gateway listening", "addr", ln.Addr().String(), "upstream", opts.Upstream, "mode", g.Mode)
	return nil
}

// queues is the gateway's slots and queues for live pages (nil when the
// gateway is off).
func (d *Daemon) queues() func() []gateway.QueueStat {
	if d.Gateway == nil {
		return nil
	}
	gw := d.Gateway
	return gw.QueueStats
}

// setPlanSlots takes each model's slots from the LLM plan THON applied
// (to the llama-server it runs, or to Lemonade) and gives them to the
// gateway, unless thon.yaml sets gateway.upstream_slots or another upstream.
func (d *Daemon) setPlanSlots(slots map[string]int) {
	d.slotsMu.Lock()
	d.planSlots = slots
	on := d.planOn
	d.slotsMu.Unlock()
	if on && d.Gateway != nil {
		d.Gateway.SetSlots(slots)
	}
}

// applySlots gives the gateway thon.yaml's gateway.upstream_slots, or the
// plan's slots when THON sizes the server the gateway sends to.
func (d *Daemon) applySlots(cfg *config.Config) {
	on := cfg.Gateway.UpstreamSlots == 0 && cfg.Gateway.Upstream == ""
	d.slotsMu.Lock()
	d.planOn = on
	plan := d.planSlots
	d.slotsMu.Unlock()
	d.Gateway.SetUpstreamSlots(cfg.Gateway.UpstreamSlots)
	if on {
		d.Gateway.SetSlots(plan)
	} else {
		d.Gateway.SetSlots(nil)
	}
}

// pointGateway points the gateway at the server a new thon.yaml names (a
// server THON runs points it there itself once it runs) and takes its
// slots.
func (d *Daemon) pointGateway(cfg *config.Config) {
	if d.Gateway == nil {
		return
	}
	d.applySlots(cfg)
	if cfg.LLM.IsManaged() && d.managed != nil && cfg.Gateway.Upstream == "" {
		return
	}
	o := GatewayOptions(cfg)
	if err := d.Gateway.SetUpstream(o.Upstream, o.UpstreamKey); err != nil {
		d.log.Error("AI gateway: new upstream refused", "err", err)
	}
}

// GatewayOptions turns thon.yaml's gateway section into the gateway's
// options (without keys, usage, logger and metrics).
func GatewayOptions(cfg *config.Config) gateway.Options {
	g := cfg.Gateway
	upstream := g.Upstream
	if upstream == "" {
		upstream = cfg.LLM.OpenAIBase()
	}
	models := make([]gateway.ModelLimit, len(g.Models))
	for i, m := range g.Models {
		models[i] = gateway.ModelLimit{Model: m.Model, Concurrency: m.Concurrency, TokensPerMinute: m.TokensPerMinute, Priority: m.Priority}
	}
	return gateway.Options{
		Upstream: upstream, UpstreamKey: cfg.LLM.APIKey,
		Limits: gateway.Limits{
			RequestsPerMinute: g.Limits.RequestsPerMinute, Concurrency: g.Limits.Concurrency,
			TokensPerMinute: g.Limits.TokensPerMinute, TokenKind: g.Limits.TokenKind, BudgetTokens: g.Limits.BudgetTokens,
		},
		Models: models, AllowedModels: allowedModels(cfg), Redis: g.Redis, FailOpen: g.FailOpen,
		UpstreamSlots: g.UpstreamSlots, ModelQueueTimeout: g.QueueTimeout.D(),
		ShortMaxTokens: g.ShortRequests.MaxTokens, ShortShare: g.ShortRequests.Share,
		// llama-server counts tokens in every chunk when asked: a stream
		// cut short is charged exactly. Other servers are not asked.
		LlamaCppTimings: cfg.LLM.Backend == config.BackendLlamacpp && g.Upstream == "",
		OTLP: gateway.OTLPOptions{Endpoint: g.OTLP.Endpoint, Headers: g.OTLP.Headers,
			QueueSize: g.OTLP.QueueSize, Timeout: g.OTLP.Timeout.D(), Instance: hostname()},
	}
}

// hostname names this machine in traces (service.instance.id), so that
// spans from gateway replicas can be told apart; "" when unknown.
func hostname() string {
	h, _ := os.Hostname()
	return h
}

// allowedModels is gateway.allowed_models and, when that restricts
// anything, every model thon.yaml configures (the assistants ask for
// them); nil allows every model.
func allowedModels(cfg *config.Config) []string {
	if len(cfg.Gateway.AllowedModels) == 0 {
		return nil
	}
	out := slices.Clone(cfg.Gateway.AllowedModels)
	for _, rm := range llm.Configured(cfg.LLM) {
		if id := llm.ModelID(cfg.LLM, rm.Model); id != "" && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

func detectIP(log *slog.Logger) string {
	ip, err := pki.DetectExternalIP()
	if err != nil {
		log.Warn("cannot detect the external IP; participants on other machines need access.external_ip", "err", err)
		return "127.0.0.1"
	}
	return ip.String()
}

func (d *Daemon) release() {
	if d.cancel != nil {
		d.cancel()
	}
	if d.gwSrv != nil {
		d.gwSrv.Close()
		d.gwSrv = nil
	}
	if d.Gateway != nil {
		d.Gateway.Close() // flushes usage to the store
		d.Gateway = nil
	}
	if d.FrontDoor != nil {
		d.FrontDoor.Shutdown(context.Background())
		d.FrontDoor = nil
	}
	if d.CA != nil {
		d.CA.Close() // ACME's renewals and retries
	}
	if d.Store != nil {
		d.Store.Close()
		d.Store = nil
	}
	if d.lock != nil {
		os.Remove(d.lock.Name())
		d.lock.Close()
		d.lock = nil
	}
}

// lockDataDir makes sure one daemon at a time owns a data directory.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("another THON daemon (pid %s) is using %s: stop it with `thon down`, or set server.data_dir", strings.TrimSpace(string(b)), dir)
	}
	f.Truncate(0)
	f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	return f, nil
}

// adminToken returns the admin token from the data directory, creating it
// (file mode 0600, only its hash in the store) when it is missing or stale.
func adminToken(ctx context.Context, st *store.Store, dir string) (string, error) {
	path := filepath.Join(dir, TokenFile)
	if b, err := os.ReadFile(path); err == nil {
		tok := strings.TrimSpace(string(b))
		if t, err := st.TokenRecord(ctx, auth.HashToken(tok)); err == nil && t.Name == "admin" && t.Refusal(time.Now()) == "" {
			return tok, nil
		}
	}
	tok, hash := auth.NewToken()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write admin token: %w", err)
	}
	if err := st.PutToken(ctx, "admin", hash, "admin"); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("store admin token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write admin token: %w", err)
	}
	return tok, nil
}

// keysOrNil keeps a nil key ring a nil interface (the API then says the
// gateway is off).
func keysOrNil(k *keyring.Keyring) api.GatewayKeys {
	if k == nil {
		return nil
	}
	return k
}
