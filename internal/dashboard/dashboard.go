// Package dashboard is the organizers' web dashboard: the whole event in
// the browser, live. Pages are rendered here from the same services the
// REST API calls; every action on them goes through the REST API with the
// session cookie and its anti-forgery token, so there is one code path for
// the CLI, the API and the dashboard. Assets are embedded: it works offline.
package dashboard

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/thon-dev/thon/internal/access"
	"github.com/thon-dev/thon/internal/api"
	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/configfiles"
	"github.com/thon-dev/thon/internal/frontdoor"
	"github.com/thon-dev/thon/internal/gateway"
	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/internal/store"
)

//go:embed assets templates
var files embed.FS

// TLSInfo describes the certificate the front door serves.
type TLSInfo struct {
	Own         bool // the organizer's own certificate (access.cert_file)
	Subject     string
	Names       []string
	NotAfter    time.Time
	Fingerprint string // of the CA (local CA only)
	// ACME lists the names certificates are got for from an ACME CA
	// (access.acme), and Warning what is not served as configured.
	ACME    []ACMEName
	Warning string
}

// ACMEName is one name's certificate from the ACME CA: NotAfter is zero
// while it has none, Error the last attempt's failure.
type ACMEName struct {
	Name     string
	NotAfter time.Time
	Error    string
}

// Options wires the dashboard to the daemon's services.
type Options struct {
	Orch      *orchestrator.Orchestrator
	Store     store.Records
	Access    *access.Service
	Addresses *frontdoor.Addresses
	Keys      api.GatewayKeys // nil when the gateway is off
	LLM       api.LLM         // nil when there is none
	// Queues is the gateway's slots and queue per model (nil when the
	// gateway is off); the stream's queue events update them live.
	Queues func() []gateway.QueueStat
	API    http.Handler // the REST API, mounted at /api/ on the dashboard's origin too
	TLS    func() TLSInfo
	Info   func() Info
	Logger *slog.Logger
	// SSO signs people in with providers (nil: none configured); Admins
	// are the identities that become organizers; Sessions opens sessions
	// for them.
	SSO      *auth.SSO
	Admins   []string
	Sessions *auth.Admins
	// Files are the configuration files kept in the database.
	Files *configfiles.Service
	// Tokens are the API tokens (made and revoked through the API).
	Tokens *auth.Tokens
}

// Info is what the settings page shows about the daemon.
type Info struct {
	Version, ConfigPath, DataDir, ExternalIP string
	Hostnames                                []string
	Mode                                     string
	GatewayLimits                            string
}

// Dashboard serves the pages.
type Dashboard struct {
	o     Options
	pages map[string]*template.Template
	mux   *http.ServeMux
}

// New builds the dashboard's handler.
func New(o Options) (*Dashboard, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Dashboard{o: o, pages: map[string]*template.Template{}, mux: http.NewServeMux()}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	pages, _ := fs.Glob(files, "templates/*.html")
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(files, p)
		if err != nil {
			return nil, err
		}
		d.pages[name] = t
	}
	assets, _ := fs.Sub(files, "assets")
	d.mux.Handle("GET /assets/", http.StripPrefix("/assets/", assetServer(assets)))
	d.mux.HandleFunc("GET /login", d.loginPage)
	d.mux.HandleFunc("POST /login", d.login)
	d.mux.HandleFunc("POST /logout", d.signedIn(d.logout))
	d.mux.HandleFunc("GET /auth/{provider}/login", d.authLogin)
	d.mux.HandleFunc("GET /auth/{provider}/callback", d.authCallback)
	d.mux.HandleFunc("GET /join/{code}", d.joinPage)
	d.mux.HandleFunc("POST /join/{code}", d.joinWithPassword)
	for path, h := range map[string]pageFunc{
		"/{$}":       d.overview,
		"/instances": d.instances,
		"/groups":    d.groups,
		"/llm":       d.llmPage,
		"/gateway":   d.gateway,
		"/settings":  d.settings,
	} {
		d.mux.HandleFunc("GET "+path, d.signedIn(d.page(h)))
	}
	d.mux.HandleFunc("POST /cards", d.signedIn(d.cards))
	d.mux.HandleFunc("POST /qr", d.signedIn(d.qr))
	d.mux.HandleFunc("POST /groups/import", d.signedIn(d.importUsers))
	d.mux.HandleFunc("POST /settings/files", d.signedIn(d.saveFile))
	d.mux.HandleFunc("POST /settings/files/delete", d.signedIn(d.deleteFile))
	if o.API != nil {
		d.mux.Handle("/api/", o.API)
	}
	return d, nil
}

// ServeHTTP adds the security headers to every answer.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin") // so forms carry their Origin, and nothing leaks elsewhere
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Strict-Transport-Security", "max-age=31536000")
	d.mux.ServeHTTP(w, r)
}

// session is the signed-in organizer of a request.
type sessionKey struct{}

func sessionOf(r *http.Request) auth.AdminSession {
	s, _ := r.Context().Value(sessionKey{}).(auth.AdminSession)
	return s
}

// signedIn sends visitors without a session to /login; a POST must carry
// the session's anti-forgery token (form field csrf or X-CSRF-Token).
func (d *Dashboard) signedIn(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(auth.AdminCookie)
		var s auth.AdminSession
		if err == nil {
			s, err = d.o.Sessions.Session(r.Context(), c.Value)
		}
		if err != nil {
			if !errors.Is(err, auth.ErrNoSession) && !errors.Is(err, http.ErrNoCookie) {
				d.o.Logger.Error("dashboard session", "err", err)
			}
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+safeNext(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, "your session has ended: sign in again", http.StatusUnauthorized)
			return
		}
		if s.Role == auth.RoleParticipant {
			d.message(w, r, http.StatusForbidden, "Organizers only", "You are signed in as a participant ("+s.Actor+"). The dashboard is for the event's organizers; your IDE is at your personal link.")
			return
		}
		if r.Method != http.MethodGet {
			tok := r.Header.Get("X-CSRF-Token")
			if tok == "" {
				tok = r.PostFormValue("csrf")
			}
			if !auth.SameOrigin(r) || !auth.CheckCSRF(s, tok) {
				http.Error(w, "this form is out of date or came from another site: reload the page", http.StatusForbidden)
				return
			}
		}
		next(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
	}
}

// safeNext keeps a post-login redirect on this site.
func safeNext(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n") {
		return "/"
	}
	return p
}

func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	msg := ""
	if !d.o.Sessions.HasPassword(r.Context()) {
		msg = auth.ErrNoAdminPassword.Error()
	}
	data := signinData{Password: true}
	if d.o.SSO != nil {
		data.Providers = d.o.SSO.Providers()
		if len(data.Providers) > 0 && msg != "" {
			msg = "" // providers are the way in
		}
	}
	d.render(w, r, http.StatusOK, "login", pageData{Title: "Sign in", Next: safeNext(r.URL.Query().Get("next")), Error: msg, Data: data})
}

func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.PostFormValue("next"))
	if !auth.SameOrigin(r) {
		http.Error(w, "sign-in from another site refused", http.StatusForbidden)
		return
	}
	addr, _, _ := net.SplitHostPort(r.RemoteAddr)
	s, err := d.o.Sessions.Login(r.Context(), addr, r.PostFormValue("password"))
	if err != nil {
		status := http.StatusUnauthorized
		if errors.Is(err, auth.ErrLockedOut) {
			status = http.StatusTooManyRequests
		}
		if !errors.Is(err, auth.ErrWrongPassword) && !errors.Is(err, auth.ErrLockedOut) && !errors.Is(err, auth.ErrNoAdminPassword) {
			d.o.Logger.Error("dashboard sign-in", "err", err)
			err = errors.New("sign-in failed; see the daemon's log")
		}
		d.render(w, r, status, "login", pageData{Title: "Sign in", Next: next, Error: err.Error()})
		return
	}
	setSession(w, s.Token)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(auth.AdminCookie); err == nil {
		d.o.Sessions.Logout(r.Context(), c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: auth.AdminCookie, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// assetServer serves embedded assets with a short cache and the right types.
func assetServer(fsys fs.FS) http.Handler {
	h := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		h.ServeHTTP(w, r)
	})
}
