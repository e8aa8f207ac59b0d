package frontdoor

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/store"
)

// Paths THON keeps for itself on every sandbox origin (under the path-mode prefix).
const (
	authPath   = "/_thon/auth"   // ?token=… : an access link lands here
	loginPath  = "/_thon/login"  // the password form
	logoutPath = "/_thon/logout" // POST: end the session
)

// cookieName is the session cookie of one sandbox. Browsers share cookies
// between the ports of a host, so each sandbox has its own name and checks
// that the session belongs to its participant.
func cookieName(user string) string { return "thon_" + user }

// serveSandbox is the gate in front of one participant's sandbox. prefix is
// "/u/{user}" in path mode, "" otherwise.
func (f *FrontDoor) serveSandbox(w http.ResponseWriter, r *http.Request, user, prefix string) {
	rest := strings.TrimPrefix(r.URL.Path, prefix)
	switch rest {
	case authPath:
		f.useLink(w, r, user, prefix)
		return
	case loginPath:
		f.login(w, r, user, prefix)
		return
	case logoutPath:
		f.logout(w, r, user, prefix)
		return
	}
	who, status := f.authorize(r, user)
	if status != http.StatusOK {
		f.refuse(w, r, user, prefix, who, status)
		return
	}
	if r.Method == http.MethodConnect {
		// WebSockets over HTTP/2 (RFC 8441): Go's server does not offer it
		// unless GODEBUG=http2xconnect=1, and browsers then use HTTP/1.1.
		http.Error(w, "WebSockets over HTTP/2 are not supported here: unset GODEBUG=http2xconnect", http.StatusNotImplemented)
		return
	}
	if isUpgrade(r) && !sameOrigin(r) {
		// Code in another origin (another participant's app, say) must not
		// drive this IDE through the participant's browser.
		http.Error(w, "WebSocket refused: its Origin is not this IDE's origin", http.StatusForbidden)
		return
	}
	live, err := f.o.Orch.Live(r.Context(), user)
	if err != nil {
		f.log.Error("look up sandbox", "user", user, "err", err)
		http.Error(w, "THON cannot look up this IDE right now; try again in a moment", http.StatusServiceUnavailable)
		return
	}
	if live.State != string(sandbox.StateRunning) || live.Endpoint == "" {
		f.waiting(w, r, user, live.State)
		return
	}
	f.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, &target{user: user, endpoint: live.Endpoint, prefix: prefix})))
}

// authorize says whether r may reach user's sandbox: 200 for the
// participant's session or an admin token, 403 for someone else's session,
// 401 for no (valid) credentials. who names the signed-in participant on 403.
func (f *FrontDoor) authorize(r *http.Request, user string) (who string, status int) {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		// An organizer's token that still works and may act on sandboxes.
		t, err := f.o.Store.TokenRecord(r.Context(), auth.HashToken(strings.TrimSpace(tok)))
		if err == nil && t.Role == auth.RoleAdmin && t.Refusal(f.o.Now()) == "" && (auth.Principal{Scopes: t.Scopes}).Allows(auth.ScopeSandboxesWrite) {
			return t.Name, http.StatusOK
		}
		return "", http.StatusUnauthorized
	}
	if c, err := r.Cookie(cookieName(user)); err == nil {
		if owner, ok := f.sessionUser(r.Context(), c.Value); ok {
			if owner == user {
				return owner, http.StatusOK
			}
			return owner, http.StatusForbidden
		}
	}
	// Signed in to another sandbox on this host? Say so rather than ask for a login.
	for _, c := range r.Cookies() {
		if other, ok := strings.CutPrefix(c.Name, "thon_"); ok && other != user {
			if owner, ok := f.sessionUser(r.Context(), c.Value); ok {
				return owner, http.StatusForbidden
			}
		}
	}
	return "", http.StatusUnauthorized
}

func (f *FrontDoor) refuse(w http.ResponseWriter, r *http.Request, user, prefix, who string, status int) {
	if isUpgrade(r) || !wantsHTML(r) {
		msg := "sign in first: open your personal access link"
		if status == http.StatusForbidden {
			msg = "this IDE belongs to another participant"
		} else {
			// Scripts may use the admin token; browsers get the session cookie from a link.
			w.Header().Set("WWW-Authenticate", `Bearer realm="thon"`)
		}
		http.Error(w, msg, status)
		return
	}
	if status == http.StatusForbidden {
		writePage(w, status, forbiddenPage, pageData{Title: "Not your IDE", User: user, Who: who})
		return
	}
	http.Redirect(w, r, prefix+loginPath, http.StatusSeeOther)
}

func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || r.Method == http.MethodConnect
}

func wantsHTML(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html")
}

// sameOrigin accepts requests without an Origin (not from a browser page)
// and those whose Origin is the origin they are sent to.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	return o == "" || strings.EqualFold(o, "https://"+r.Host)
}

// useLink turns a one-time access token into a session cookie for this
// sandbox and sends the browser on to the IDE.
func (f *FrontDoor) useLink(w http.ResponseWriter, r *http.Request, user, prefix string) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	tok := r.URL.Query().Get("token")
	err := f.o.Store.UseAccessToken(r.Context(), auth.HashToken(tok), user)
	switch {
	case tok == "" || errors.Is(err, store.ErrNotFound):
		writePage(w, http.StatusUnauthorized, linkPage, pageData{Title: "Link not valid", User: user, Login: prefix + loginPath,
			Msg: "This access link is not valid: it was already used, revoked, or is for another IDE. Ask an organizer for a new one."})
		return
	case errors.Is(err, store.ErrExpired):
		writePage(w, http.StatusUnauthorized, linkPage, pageData{Title: "Link expired", User: user, Login: prefix + loginPath,
			Msg: "This access link has expired. Ask an organizer for a new one."})
		return
	case err != nil:
		f.log.Error("use access token", "user", user, "err", err)
		http.Error(w, "THON could not check this link; try again in a moment", http.StatusServiceUnavailable)
		return
	}
	if err := f.startSession(w, r, user, prefix); err != nil {
		f.log.Error("start session", "user", user, "err", err)
		http.Error(w, "THON could not sign you in; try again in a moment", http.StatusServiceUnavailable)
		return
	}
	http.Redirect(w, r, prefix+"/", http.StatusSeeOther)
}

// startSession issues a fresh session (a new secret at every sign-in) and
// sets its cookie: HttpOnly, Secure, SameSite=Lax, for this sandbox only.
func (f *FrontDoor) startSession(w http.ResponseWriter, r *http.Request, user, prefix string) error {
	b := make([]byte, 32)
	rand.Read(b)
	secret := base64.RawURLEncoding.EncodeToString(b)
	expires := f.o.Now().Add(f.o.SessionTTL)
	if err := f.o.Store.PutSession(r.Context(), auth.HashToken(secret), user, expires); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName(user), Value: secret, Path: prefix + "/", Expires: expires,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode,
	})
	return nil
}

// login is the optional password form, a second way in.
func (f *FrontDoor) login(w http.ResponseWriter, r *http.Request, user, prefix string) {
	w.Header().Set("Cache-Control", "no-store")
	data := pageData{Title: "Sign in", User: user, Action: prefix + loginPath}
	switch r.Method {
	case http.MethodGet:
		writePage(w, http.StatusOK, loginPage, data)
		return
	case http.MethodPost:
	default:
		http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
		return
	}
	if !sameOrigin(r) || r.Header.Get("Origin") == "" && r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		http.Error(w, "sign-in refused: the form was posted from another site", http.StatusForbidden)
		return
	}
	if wait := f.logins.blocked(user, f.o.Now()); wait > 0 {
		data.Msg = "Too many failed attempts. Try again in " + wait.Round(time.Second).String() + "."
		writePage(w, http.StatusTooManyRequests, loginPage, data)
		return
	}
	hash, err := f.o.Store.PasswordHash(r.Context(), user)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		f.log.Error("read password", "user", user, "err", err)
		http.Error(w, "THON could not check the password; try again in a moment", http.StatusServiceUnavailable)
		return
	}
	pw := r.PostFormValue("password")
	if hash == "" || bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) != nil {
		f.logins.fail(user, f.o.Now())
		data.Msg = "Wrong password, or no password is set for this IDE: use your personal access link."
		writePage(w, http.StatusUnauthorized, loginPage, data)
		return
	}
	f.logins.reset(user)
	if err := f.startSession(w, r, user, prefix); err != nil {
		f.log.Error("start session", "user", user, "err", err)
		http.Error(w, "THON could not sign you in; try again in a moment", http.StatusServiceUnavailable)
		return
	}
	http.Redirect(w, r, prefix+"/", http.StatusSeeOther)
}

func (f *FrontDoor) logout(w http.ResponseWriter, r *http.Request, user, prefix string) {
	if r.Method != http.MethodPost || !sameOrigin(r) {
		http.Error(w, "sign out with a POST from this IDE's page", http.StatusMethodNotAllowed)
		return
	}
	if c, err := r.Cookie(cookieName(user)); err == nil {
		h := auth.HashToken(c.Value)
		f.o.Store.DeleteSession(r.Context(), h)
		f.sessions.forget(h)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName(user), Path: prefix + "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, prefix+loginPath, http.StatusSeeOther)
}

// sessionUser returns the participant of a live session. Lookups are cached
// briefly: every request of an IDE passes here. Revoking clears the cache.
func (f *FrontDoor) sessionUser(ctx context.Context, secret string) (string, bool) {
	if secret == "" {
		return "", false
	}
	h := auth.HashToken(secret)
	now := f.o.Now()
	if e, ok := f.sessions.get(h, now); ok {
		return e.user, e.user != ""
	}
	user, expires, err := f.o.Store.Session(ctx, h)
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrExpired) {
		f.log.Error("look up session", "err", err)
		return "", false
	}
	f.sessions.put(h, cachedSession{user: user, expires: expires, until: now.Add(sessionCacheTTL)})
	return user, user != ""
}

const sessionCacheTTL = 30 * time.Second

type cachedSession struct {
	user    string // "" for a secret known to be invalid
	expires time.Time
	until   time.Time // cache entry lifetime
}

type sessionCache struct {
	mu      sync.Mutex
	entries map[string]cachedSession
}

func (c *sessionCache) get(h string, now time.Time) (cachedSession, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[h]
	if !ok || now.After(e.until) || e.user != "" && !now.Before(e.expires) {
		delete(c.entries, h)
		return cachedSession{}, false
	}
	return e, true
}

func (c *sessionCache) put(h string, e cachedSession) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) > 100_000 { // forged cookies must not grow it without bound
		clear(c.entries)
	}
	c.entries[h] = e
}

func (c *sessionCache) forget(h string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, h)
}

func (c *sessionCache) forgetUser(user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, e := range c.entries {
		if e.user == user {
			delete(c.entries, h)
		}
	}
}

// loginLimiter slows password guessing: after 5 failures a participant's
// form is closed for a minute, doubling up to an hour.
type loginLimiter struct {
	mu       sync.Mutex
	failures map[string]*loginFailures
}

type loginFailures struct {
	n     int
	until time.Time
}

func (l *loginLimiter) blocked(user string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.failures[user]; f != nil && now.Before(f.until) {
		return f.until.Sub(now)
	}
	return 0
}

func (l *loginLimiter) fail(user string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.failures[user]
	if f == nil {
		f = &loginFailures{}
		l.failures[user] = f
	}
	f.n++
	if f.n >= 5 {
		wait := time.Minute << min(f.n-5, 6)
		f.until = now.Add(min(wait, time.Hour))
	}
}

func (l *loginLimiter) reset(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failures, user)
}
