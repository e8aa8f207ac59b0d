package dashboard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"

	"github.com/thon-dev/thon/internal/access"
	"github.com/thon-dev/thon/internal/auth"
)

// flowCookie binds a sign-in at a provider to the browser that started it.
// SameSite=Lax: the provider's redirect back is a cross-site navigation.
const flowCookie = "__Host-thon_flow"

// signinData is what the sign-in and join pages show.
type signinData struct {
	Providers []auth.ProviderInfo
	Password  bool   // the dashboard's password form
	Code      string // join: the invite code
	Group     string
	Name      string // join: what was typed
	Go        string // continue: where to go
}

// authLogin sends the browser to a provider: to sign in as an organizer,
// or (join=CODE) to join a group with an invite code.
func (d *Dashboard) authLogin(w http.ResponseWriter, r *http.Request) {
	if d.o.SSO == nil {
		d.message(w, r, http.StatusNotFound, "Sign-in", "No sign-in provider is configured (auth.providers in thon.yaml).")
		return
	}
	p := r.PathValue("provider")
	purpose := "admin"
	if code := r.URL.Query().Get("join"); code != "" {
		purpose = "join:" + code
	}
	authURL, binding, err := d.o.SSO.Begin(r.Context(), p, d.callback(r, p), purpose, safeNext(r.URL.Query().Get("next")))
	if err != nil {
		d.o.Logger.Warn("sign-in start", "provider", p, "err", err)
		d.message(w, r, http.StatusBadGateway, "Sign-in", err.Error())
		return
	}
	http.SetCookie(w, &http.Cookie{Name: flowCookie, Value: binding, Path: "/", MaxAge: int(auth.FlowTTL.Seconds()), Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, authURL, http.StatusFound)
}

// callback is THON's fixed redirect URI for a provider.
func (d *Dashboard) callback(r *http.Request, provider string) string {
	return "https://" + r.Host + auth.CallbackPath(provider)
}

// authCallback finishes a sign-in and sends the person on: organizers to
// the dashboard, joiners into their IDE.
func (d *Dashboard) authCallback(w http.ResponseWriter, r *http.Request) {
	if d.o.SSO == nil {
		http.NotFound(w, r)
		return
	}
	p, q := r.PathValue("provider"), r.URL.Query()
	if e := q.Get("error"); e != "" {
		d.message(w, r, http.StatusUnauthorized, "Sign-in", "The provider did not sign you in: "+e+" "+q.Get("error_description"))
		return
	}
	binding := ""
	if c, err := r.Cookie(flowCookie); err == nil {
		binding = c.Value
	}
	http.SetCookie(w, &http.Cookie{Name: flowCookie, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	id, flow, err := d.o.SSO.Finish(r.Context(), p, d.callback(r, p), q.Get("code"), q.Get("state"), binding)
	if err != nil {
		d.o.Logger.Warn("sign-in refused", "provider", p, "err", err)
		d.o.Sessions.ProviderFailed(r.Context(), p, err)
		d.message(w, r, http.StatusUnauthorized, "Sign-in", err.Error())
		return
	}
	if code, ok := strings.CutPrefix(flow.Purpose, "join:"); ok {
		d.join(w, r, code, id)
		return
	}
	s, kind, err := d.o.Sessions.ProviderSignIn(r.Context(), id, d.o.Admins)
	switch {
	case errors.Is(err, auth.ErrNotOrganizer):
		d.message(w, r, http.StatusForbidden, "Not an organizer", sentence(err))
		return
	case err != nil:
		d.message(w, r, http.StatusInternalServerError, "Sign-in", err.Error())
		return
	}
	setSession(w, s.Token)
	if kind == auth.SignedInParticipant {
		// A participant who joined with this identity: their session here
		// (their own sandbox, key and usage through the API), and back to
		// their IDE.
		d.toIDE(w, r, s.User, id.Handle())
		return
	}
	next := flow.Next
	if next == "" {
		next = "/"
	}
	d.continueTo(w, r, next)
}

// sentence is an error as a sentence for a page.
func sentence(err error) string {
	msg := err.Error()
	if _, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(msg, auth.ErrNotOrganizer.Error()) {
		msg = rest
	}
	return strings.ToUpper(msg[:1]) + msg[1:] + "."
}

func setSession(w http.ResponseWriter, token string) {
	http.SetCookie(w, &http.Cookie{Name: auth.AdminCookie, Value: token, Path: "/", MaxAge: int(auth.AdminSessionTTL.Seconds()),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// continueTo finishes a sign-in with a page of our own that moves on: a
// redirect would keep the provider's cross-site navigation, and the
// browser would then hold back the SameSite=Strict session cookie.
func (d *Dashboard) continueTo(w http.ResponseWriter, r *http.Request, to string) {
	d.render(w, r, http.StatusOK, "continue", pageData{Title: "Signed in", Data: signinData{Go: to}})
}

// toIDE issues a fresh access link for user and sends the browser into
// their IDE (the access service starts their sandbox if it is not running).
func (d *Dashboard) toIDE(w http.ResponseWriter, r *http.Request, user, actor string) {
	l, err := d.o.Access.Enter(r.Context(), actor, user)
	if err != nil {
		d.message(w, r, http.StatusInternalServerError, "Your IDE", err.Error())
		return
	}
	d.continueTo(w, r, l.Link)
}

// joinPage shows an invite: sign in with a provider, or pick a name and
// password when none is configured.
func (d *Dashboard) joinPage(w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	in, ok := d.invite(w, r, code)
	if !ok {
		return
	}
	data := signinData{Code: code, Group: d.groupTitle(r.Context(), in.Group)}
	if d.o.SSO != nil {
		data.Providers = d.o.SSO.Providers()
	}
	d.render(w, r, http.StatusOK, "join", pageData{Title: "Join " + data.Group, Data: data})
}

// groupTitle is what people read for a group: its title from thon.yaml,
// else its name.
func (d *Dashboard) groupTitle(ctx context.Context, group string) string {
	if g, err := d.o.Store.Group(ctx, group); err == nil && g.Title != "" {
		return g.Title
	}
	return group
}

// invite checks an invite code, answering the page itself when it is of
// no use.
func (d *Dashboard) invite(w http.ResponseWriter, r *http.Request, code string) (access.Invite, bool) {
	in, err := d.o.Access.Invite(r.Context(), code)
	if d.joinFailed(w, r, err) {
		return access.Invite{}, false
	}
	return in, true
}

// join signs up (or signs back in) the person an identity is.
func (d *Dashboard) join(w http.ResponseWriter, r *http.Request, code string, id auth.Identity) {
	member, err := d.o.Access.JoinWithIdentity(r.Context(), code, id)
	if d.joinFailed(w, r, err) {
		return
	}
	if s, err := d.o.Sessions.Open(r.Context(), id.Handle(), auth.RoleParticipant, member); err == nil {
		setSession(w, s.Token)
	}
	d.toIDE(w, r, member, id.Handle())
}

func (d *Dashboard) joinFailed(w http.ResponseWriter, r *http.Request, err error) bool {
	var je *access.JoinError
	switch {
	case err == nil:
		return false
	case errors.As(err, &je):
		d.message(w, r, je.Status, "Invite", je.Msg)
	default:
		d.o.Logger.Error("join", "err", err)
		d.message(w, r, http.StatusInternalServerError, "Invite", err.Error())
	}
	return true
}

// joinWithPassword is joining when no provider is configured: a name and a
// password, which also bring the person back later.
func (d *Dashboard) joinWithPassword(w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	in, ok := d.invite(w, r, code)
	if !ok {
		return
	}
	if !auth.SameOrigin(r) {
		http.Error(w, "a join from another site is refused", http.StatusForbidden)
		return
	}
	addr, _, _ := net.SplitHostPort(r.RemoteAddr)
	member, err := d.o.Access.JoinWithPassword(r.Context(), code, r.PostFormValue("name"), r.PostFormValue("password"), addr)
	var je *access.JoinError
	if errors.As(err, &je) && je.Status != http.StatusNotFound && je.Status != http.StatusGone {
		title := d.groupTitle(r.Context(), in.Group)
		d.render(w, r, http.StatusUnprocessableEntity, "join", pageData{Title: "Join " + title, Error: je.Msg,
			Data: signinData{Code: code, Group: title, Name: r.PostFormValue("name")}})
		return
	}
	if d.joinFailed(w, r, err) {
		return
	}
	d.toIDE(w, r, member, member)
}

// message shows a short page with a title and what happened.
func (d *Dashboard) message(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	d.render(w, r, status, "message", pageData{Title: title, Error: msg})
}
