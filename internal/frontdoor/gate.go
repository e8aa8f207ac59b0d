package frontdoor

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/thon-dev/thon/internal/access"
	"github.com/thon-dev/thon/internal/activity"
	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/internal/sandbox"
)

// Paths THON keeps for itself on every sandbox origin (under the path-mode prefix).
const (
	authPath   = access.AuthPath // ?token=… : an access link lands here
	loginPath  = "/_thon/login"  // the password form
	logoutPath = "/_thon/logout" // POST: end the session
	exportPath = "/_thon/export" // GET: the participant's workspace as .tar.gz
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
	if isUpgrade(r) && !auth.SameOrigin(r) {
		// Code in another origin (another participant's app, say) must not
		// drive this IDE through the participant's browser.
		http.Error(w, "WebSocket refused: its Origin is not this IDE's origin", http.StatusForbidden)
		return
	}
	switch rest {
	case idlePath:
		f.serveIdle(w, r, user, who)
		return
	case idleJSPath:
		serveIdleJS(w, r)
		return
	case exportPath:
		f.export(w, r, user, who)
		return
	}
	live, err := f.o.Orch.Live(r.Context(), user)
	if err != nil {
		f.log.Error("look up sandbox", "user", user, "err", err)
		http.Error(w, "THON cannot look up this IDE right now; try again in a moment", http.StatusServiceUnavailable)
		return
	}
	if live.State == orchestrator.StateAsleep && who == user && wantsHTML(r) {
		// The participant came back (a page load, not a tab reconnecting by
		// itself): wake their sandbox, in line behind others waking.
		live.Queue = f.o.Orch.Wake(r.Context(), user)
		live.State = string(sandbox.StateStarting)
	}
	if live.State != string(sandbox.StateRunning) || live.Endpoint == "" {
		f.waiting(w, r, user, live.State, live.Queue)
		return
	}
	t := &target{user: user, endpoint: live.Endpoint, prefix: prefix}
	// The participant's IDE page (the top window, not a webview's frame)
	// gets the idle banner when something puts sandboxes to sleep.
	t.idleScript = who == user && wantsHTML(r) && isTopDocument(r) && f.o.Orch.Watched()
	if act := f.o.Activity; act != nil && who == user {
		// The participant's own browser (not an organizer's token): what it
		// asks for, and what it sends on a WebSocket that a person caused.
		act.Touch(user)
		if isUpgrade(r) {
			w = &tapWriter{ResponseWriter: w, t: t, vscode: activity.IsVSCode(r.URL.RawQuery), touch: func() { act.Touch(user) }}
		}
	}
	f.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, t)))
}

// authorize says whether r may reach user's sandbox: 200 for the
// participant's session or an admin token, 403 for someone else's session,
// 401 for no (valid) credentials. who names the signed-in participant on 403.
func (f *FrontDoor) authorize(r *http.Request, user string) (who string, status int) {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		// An organizer's token that still works and may act on sandboxes.
		p, err := f.o.Tokens.Authenticate(r.Context(), tok)
		if err == nil && p.Role == auth.RoleAdmin && p.Allows(auth.ScopeSandboxesWrite) {
			return p.Name, http.StatusOK
		}
		return "", http.StatusUnauthorized
	}
	if c, err := r.Cookie(cookieName(user)); err == nil {
		if owner, ok := f.o.Access.SessionUser(r.Context(), c.Value); ok {
			if owner == user {
				return owner, http.StatusOK
			}
			return owner, http.StatusForbidden
		}
	}
	// Signed in to another sandbox on this host? Say so rather than ask for a login.
	for _, c := range r.Cookies() {
		if other, ok := strings.CutPrefix(c.Name, "thon_"); ok && other != user {
			if owner, ok := f.o.Access.SessionUser(r.Context(), c.Value); ok {
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

// isTopDocument says whether a page load is for a top-level window (not a
// frame), as far as the browser says.
func isTopDocument(r *http.Request) bool {
	d := r.Header.Get("Sec-Fetch-Dest")
	return d == "" || d == "document"
}

func wantsHTML(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html")
}

// sameOrigin accepts requests without an Origin (not from a browser page)
// and those whose Origin is the origin they are sent to.
// useLink turns a one-time access token into a session cookie for this
// sandbox and sends the browser on to the IDE.
func (f *FrontDoor) useLink(w http.ResponseWriter, r *http.Request, user, prefix string) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	sess, err := f.o.Access.UseLink(r.Context(), user, r.URL.Query().Get("token"))
	switch {
	case errors.Is(err, access.ErrLinkInvalid):
		writePage(w, http.StatusUnauthorized, linkPage, pageData{Title: "Link not valid", User: user, Login: prefix + loginPath, Msg: sentence(err)})
		return
	case errors.Is(err, access.ErrLinkExpired):
		writePage(w, http.StatusUnauthorized, linkPage, pageData{Title: "Link expired", User: user, Login: prefix + loginPath, Msg: sentence(err)})
		return
	case err != nil:
		f.log.Error("use access link", "user", user, "err", err)
		http.Error(w, "THON could not check this link; try again in a moment", http.StatusServiceUnavailable)
		return
	}
	setCookie(w, sess, prefix)
	http.Redirect(w, r, prefix+"/", http.StatusSeeOther)
}

// sentence is an error as a sentence for a page.
func sentence(err error) string {
	s := err.Error()
	return strings.ToUpper(s[:1]) + s[1:] + "."
}

// setCookie gives the browser its session for this sandbox: HttpOnly,
// Secure, SameSite=Lax, for this sandbox only.
func setCookie(w http.ResponseWriter, s access.Session, prefix string) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName(s.User), Value: s.Secret, Path: prefix + "/", Expires: s.Expires,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode,
	})
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
	if !auth.SameOrigin(r) {
		http.Error(w, "sign-in refused: the form was posted from another site", http.StatusForbidden)
		return
	}
	sess, err := f.o.Access.PasswordSignIn(r.Context(), user, r.PostFormValue("password"))
	var tooMany *access.TooManyTries
	switch {
	case errors.As(err, &tooMany):
		data.Msg = sentence(err)
		writePage(w, http.StatusTooManyRequests, loginPage, data)
		return
	case errors.Is(err, access.ErrWrongPassword):
		data.Msg = sentence(err)
		writePage(w, http.StatusUnauthorized, loginPage, data)
		return
	case err != nil:
		f.log.Error("password sign-in", "user", user, "err", err)
		http.Error(w, "THON could not check the password; try again in a moment", http.StatusServiceUnavailable)
		return
	}
	setCookie(w, sess, prefix)
	http.Redirect(w, r, prefix+"/", http.StatusSeeOther)
}

func (f *FrontDoor) logout(w http.ResponseWriter, r *http.Request, user, prefix string) {
	if r.Method != http.MethodPost || !auth.SameOrigin(r) {
		http.Error(w, "sign out with a POST from this IDE's page", http.StatusMethodNotAllowed)
		return
	}
	if c, err := r.Cookie(cookieName(user)); err == nil {
		f.o.Access.EndSession(r.Context(), c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName(user), Path: prefix + "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, prefix+loginPath, http.StatusSeeOther)
}

// export downloads the participant's own workspace (the gate has checked
// that the session is theirs, or an organizer's token).
func (f *FrontDoor) export(w http.ResponseWriter, r *http.Request, user, who string) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "use GET to download your workspace", http.StatusMethodNotAllowed)
		return
	}
	err := f.o.Orch.ServeExport(w, r, who, user)
	switch {
	case err == nil:
	case errors.Is(err, sandbox.ErrNotFound):
		f.exportFailed(w, r, user, http.StatusNotFound, "You have no workspace yet: an organizer needs to start your IDE first.")
	case r.Context().Err() != nil:
	default:
		f.log.Error("export a workspace", "user", user, "err", err)
		f.exportFailed(w, r, user, http.StatusServiceUnavailable, "THON cannot read your workspace right now; try again in a moment.")
	}
}

func (f *FrontDoor) exportFailed(w http.ResponseWriter, r *http.Request, user string, status int, msg string) {
	if !wantsHTML(r) {
		http.Error(w, msg, status)
		return
	}
	writePage(w, status, messagePage, pageData{Title: "No download", User: user, Msg: msg})
}
