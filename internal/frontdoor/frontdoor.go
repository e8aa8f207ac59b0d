// Package frontdoor is THON's HTTPS entrance: it terminates TLS, routes each
// request to the right participant's sandbox (by port, path or subdomain),
// streams responses and WebSockets through, and lets nobody in without a
// session for that very sandbox.
package frontdoor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/thon-dev/thon/internal/access"
	"github.com/thon-dev/thon/internal/activity"
	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/orchestrator"
)

// Options configures the front door. It is built last, from finished
// handlers: nothing of it changes once it serves.
type Options struct {
	Addresses *Addresses      // where everything is reached
	Access    *access.Service // links, sessions, passwords
	Tokens    *auth.Tokens    // organizers' API tokens reach sandboxes too
	TLS       *tls.Config     // certificates chosen per handshake
	CA        http.Handler    // serves /ca, /ca.crt, /ca.der
	API       http.Handler    // serves /api/
	// Dashboard serves the organizers' pages (it mounts /api/ itself) on
	// access.Dashboard(): the main port, or a port of its own in path mode.
	Dashboard http.Handler
	Orch      *orchestrator.Orchestrator
	Logger    *slog.Logger
	// Activity records what each participant's browser does (nil: nothing
	// is recorded).
	Activity *activity.Tracker
	// HTTPChallenge wraps the plain-HTTP port's redirect so ACME HTTP-01
	// challenges are answered there (nil: the port only redirects).
	HTTPChallenge func(next http.Handler) http.Handler
}

// FrontDoor serves participants and organizers over HTTPS.
type FrontDoor struct {
	o       Options
	a       config.Access
	log     *slog.Logger
	proxy   *httputil.ReverseProxy
	main    *http.Server
	redir   *http.Server
	dash    *http.Server // path mode: the dashboard's own port
	baseCtx context.Context
	cancel  context.CancelFunc

	mu    sync.Mutex
	ports map[string]*portServer // port mode: user → their HTTPS server
}

type portServer struct {
	port int
	srv  *http.Server
}

// New prepares a front door; Start opens its listeners.
func New(o Options) *FrontDoor {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	f := &FrontDoor{o: o, a: o.Addresses.Access(), log: o.Logger, ports: map[string]*portServer{}}
	f.proxy = newProxy(f)
	return f
}

// SetExternalIP changes the address in the URLs handed out from now on.
func (f *FrontDoor) SetExternalIP(ip string) { f.o.Addresses.SetExternalIP(ip) }

// MainURL is the front door's main address: API, CA download, path mode.
func (f *FrontDoor) MainURL() string { return f.o.Addresses.MainURL() }

// DashboardURL is where organizers open the dashboard.
func (f *FrontDoor) DashboardURL() string { return f.o.Addresses.DashboardURL() }

// URL is where a participant's IDE is ("" when port mode has no port for them yet).
func (f *FrontDoor) URL(user string) string { return f.o.Addresses.URL(user) }

// serveDashboard is the dashboard's own port (path mode): the dashboard,
// its API, and the CA page.
func (f *FrontDoor) serveDashboard(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case p == "/ca" || p == "/ca.crt" || p == "/ca.der":
		f.o.CA.ServeHTTP(w, r)
	case f.o.Dashboard != nil:
		f.o.Dashboard.ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}

// Start listens on the main HTTPS port (an error if it cannot), the HTTP
// port that redirects and answers ACME HTTP-01 (a warning if it cannot)
// and, in port mode, every participant's port.
func (f *FrontDoor) Start(ctx context.Context) error {
	f.baseCtx, f.cancel = context.WithCancel(context.WithoutCancel(ctx))
	a := f.a
	addr := net.JoinHostPort("", strconv.Itoa(a.HTTPSPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return listenError("access.https_port", a.HTTPSPort, err)
	}
	f.main = f.server(http.HandlerFunc(f.serveMain))
	go f.serve(f.main, tls.NewListener(ln, f.o.TLS), "main")
	if a.HTTPPort != 0 {
		if rln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(a.HTTPPort))); err != nil {
			msg := "no HTTP→HTTPS redirect: the port is taken"
			if f.o.HTTPChallenge != nil {
				msg += "; ACME's HTTP-01 cannot be answered either"
			}
			f.log.Warn(msg, "port", a.HTTPPort, "err", err)
		} else {
			var h http.Handler = http.HandlerFunc(f.redirect)
			if f.o.HTTPChallenge != nil {
				h = f.o.HTTPChallenge(h)
			}
			f.redir = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
			go f.serve(f.redir, rln, "redirect")
		}
	}
	if dp := a.Dashboard(); dp != a.HTTPSPort {
		dln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(dp)))
		if err != nil {
			f.main.Close()
			return listenError("access.dashboard_port", dp, err)
		}
		f.dash = f.server(http.HandlerFunc(f.serveDashboard))
		go f.serve(f.dash, tls.NewListener(dln, f.o.TLS), "dashboard")
	}
	f.log.Info("front door listening", "https", ln.Addr().String(), "mode", a.Mode, "url", f.MainURL(), "dashboard", f.DashboardURL())
	go f.sweep()
	return f.Sync(ctx)
}

// HTTPOpen reports whether the plain-HTTP port (redirects, ACME HTTP-01)
// is listening.
func (f *FrontDoor) HTTPOpen() bool { return f.redir != nil }

// sweep deletes expired links and sessions every hour.
func (f *FrontDoor) sweep() {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if err := f.o.Access.Sweep(f.baseCtx); err != nil && f.baseCtx.Err() == nil {
			f.log.Warn("delete expired sessions", "err", err)
		}
		select {
		case <-f.baseCtx.Done():
			return
		case <-t.C:
		}
	}
}

func listenError(key string, port int, err error) error {
	hint := "another program uses it; stop it or set " + key
	if errors.Is(err, syscall.EACCES) {
		hint = "ports below 1024 need root (or: setcap cap_net_bind_service=+ep $(which thon)); or set " + key + " to e.g. 8443"
	}
	return fmt.Errorf("front door cannot listen on port %d: %w (%s)", port, err, hint)
}

func (f *FrontDoor) server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute, // IDEs hold long-lived WebSockets; those are not idle
		BaseContext:       func(net.Listener) context.Context { return f.baseCtx },
		ErrorLog:          slog.NewLogLogger(f.log.Handler(), slog.LevelDebug), // TLS handshake noise
	}
}

func (f *FrontDoor) serve(srv *http.Server, ln net.Listener, what string) {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		f.log.Error("front door listener stopped", "listener", what, "err", err)
	}
}

// Shutdown stops every listener at once, lets the requests in flight finish
// (up to ctx), then cuts what is left, WebSockets included.
func (f *FrontDoor) Shutdown(ctx context.Context) {
	var servers []*http.Server
	f.mu.Lock()
	for user, ps := range f.ports {
		servers = append(servers, ps.srv)
		delete(f.ports, user)
	}
	f.mu.Unlock()
	servers = append(servers, f.main, f.redir, f.dash)
	// Every listener closes at once; each server then waits for its own
	// requests in flight (up to ctx).
	var wg sync.WaitGroup
	for _, s := range servers {
		if s != nil {
			wg.Go(func() { s.Shutdown(ctx) })
		}
	}
	wg.Wait()
	for _, s := range servers {
		if s != nil {
			s.Close() // hijacked (WebSocket) connections are not closed by Shutdown
		}
	}
	if f.cancel != nil {
		f.cancel()
	}
}

// redirect sends plain HTTP to the same place over HTTPS.
func (f *FrontDoor) redirect(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	if host == "" {
		host = f.o.Addresses.currentHost()
	}
	target := "https://" + hostPort(host, f.a.HTTPSPort) + r.URL.RequestURI()
	http.Redirect(w, r, target, http.StatusMovedPermanently)
}

// serveMain is the main HTTPS port: the API, the CA, a landing page, and the
// sandboxes in path and subdomain mode.
func (f *FrontDoor) serveMain(w http.ResponseWriter, r *http.Request) {
	a := f.a
	if a.Mode == config.ModeSubdomain {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		if user, ok := strings.CutSuffix(strings.ToLower(host), "."+a.Domain); ok && config.ValidName("user", user) == nil {
			f.serveSandbox(w, r, user, "")
			return
		}
	}
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/api/") && f.o.API != nil:
		f.o.API.ServeHTTP(w, r)
	case p == "/ca" || p == "/ca.crt" || p == "/ca.der":
		f.o.CA.ServeHTTP(w, r)
	case a.Mode == config.ModePath && strings.HasPrefix(p, "/u/"):
		user, rest, _ := strings.Cut(strings.TrimPrefix(p, "/u/"), "/")
		if config.ValidName("user", user) != nil {
			http.NotFound(w, r)
			return
		}
		if rest == "" && !strings.HasSuffix(p, "/") {
			// /u/alice → /u/alice/, so relative URLs resolve under the prefix.
			http.Redirect(w, r, "/u/"+user+"/"+query(r), http.StatusMovedPermanently)
			return
		}
		f.serveSandbox(w, r, user, "/u/"+user)
	case f.o.Dashboard != nil && a.Dashboard() == a.HTTPSPort:
		f.o.Dashboard.ServeHTTP(w, r)
	case f.o.Dashboard != nil && (strings.HasPrefix(p, "/join/") || p == "/login"):
		// Invite links and sign-in live on the dashboard's own port.
		http.Redirect(w, r, strings.TrimSuffix(f.DashboardURL(), "/")+p, http.StatusFound)
	case p == "/":
		writePage(w, http.StatusOK, landingPage, pageData{Title: "THON", CA: "/ca"})
	default:
		http.NotFound(w, r)
	}
}

func query(r *http.Request) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return "?" + r.URL.RawQuery
}
