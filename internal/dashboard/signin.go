package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/internal/people"
	"github.com/thon-dev/thon/internal/store"
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
		d.o.Store.AddEvent(context.WithoutCancel(r.Context()), "dashboard", "signin.failed", p, err.Error())
		d.message(w, r, http.StatusUnauthorized, "Sign-in", err.Error())
		return
	}
	if code, ok := strings.CutPrefix(flow.Purpose, "join:"); ok {
		d.join(w, r, code, id)
		return
	}
	if auth.IsAdmin(d.o.Admins, id) {
		s, err := d.o.Sessions.Open(r.Context(), id.Handle(), auth.RoleAdmin, "")
		if err != nil {
			d.message(w, r, http.StatusInternalServerError, "Sign-in", err.Error())
			return
		}
		d.o.Store.AddEvent(context.WithoutCancel(r.Context()), id.Handle(), "admin.login", p, id.Email)
		setSession(w, s.Token)
		next := flow.Next
		if next == "" {
			next = "/"
		}
		d.continueTo(w, r, next)
		return
	}
	// A participant who joined with this identity: a participant's session
	// here (their own sandbox, key and usage through the API), and back to
	// their IDE.
	if user, err := d.o.Store.IdentityUser(r.Context(), id.Key()); err == nil {
		if s, err := d.o.Sessions.Open(r.Context(), id.Handle(), auth.RoleParticipant, user); err == nil {
			setSession(w, s.Token)
		}
		d.toIDE(w, r, user, id.Handle())
		return
	}
	d.o.Store.AddEvent(context.WithoutCancel(r.Context()), id.Handle(), "signin.refused", p, "not an organizer")
	d.message(w, r, http.StatusForbidden, "Not an organizer",
		fmt.Sprintf("You are signed in as %s, which is not an organizer of this event. Organizers list their identity in auth.admins of thon.yaml; participants join with an invite link.", id.Handle()))
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
// their IDE (starting their sandbox if it is not running).
func (d *Dashboard) toIDE(w http.ResponseWriter, r *http.Request, user, actor string) {
	d.ensureRunning(user, actor)
	l, err := d.o.Access.IssueLink(r.Context(), user)
	if err != nil {
		d.message(w, r, http.StatusInternalServerError, "Your IDE", err.Error())
		return
	}
	d.continueTo(w, r, l.Link)
}

// ensureRunning starts user's sandbox in the background: the access link's
// waiting page shows progress and opens the IDE when it is up.
func (d *Dashboard) ensureRunning(user, actor string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if st, err := d.o.Orch.Get(ctx, user); err == nil && st.State == "running" {
			return
		}
		if _, err := d.o.Orch.Do(ctx, actor, orchestrator.ActionStart, user, false); err != nil {
			d.o.Logger.Warn("start a joined participant's sandbox", "user", user, "err", err)
		}
	}()
}

// joinPage shows an invite: sign in with a provider, or pick a name and
// password when none is configured.
func (d *Dashboard) joinPage(w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	in, ok := d.invite(w, r, code)
	if !ok {
		return
	}
	data := signinData{Code: code, Group: in.Group}
	if d.o.SSO != nil {
		data.Providers = d.o.SSO.Providers()
	}
	d.render(w, r, http.StatusOK, "join", pageData{Title: "Join " + in.Group, Data: data})
}

// invite checks an invite code, answering the page itself when it is of
// no use.
func (d *Dashboard) invite(w http.ResponseWriter, r *http.Request, code string) (store.Invite, bool) {
	in, err := d.o.Store.InviteByHash(r.Context(), auth.HashToken(code))
	switch {
	case errors.Is(err, store.ErrNotFound):
		d.message(w, r, http.StatusNotFound, "Invite", "This invite link is not known here. Check that you typed it completely, or ask an organizer for a new one.")
	case err != nil:
		d.message(w, r, http.StatusInternalServerError, "Invite", err.Error())
	case in.Revoked || time.Now().After(in.Expires):
		d.message(w, r, http.StatusGone, "Invite", "This invite link has expired or was withdrawn. Ask an organizer for a new one; if you joined before, use your personal link.")
	default:
		return in, true
	}
	return in, false
}

// join signs up (or signs back in) the person an identity is.
func (d *Dashboard) join(w http.ResponseWriter, r *http.Request, code string, id auth.Identity) {
	if _, ok := d.invite(w, r, code); !ok {
		return
	}
	hash := auth.HashToken(code)
	var candidates []string
	for _, s := range []string{id.Username, id.Email, id.Name} {
		if n := people.NameFrom(s); n != "" && config.ValidName("user", n) == nil {
			candidates = append(candidates, n)
		}
	}
	candidates = append(candidates, "user-"+strings.ToLower(auth.HashToken(id.Key())[:6]))
	var member string
	var created bool
	var err error
	for _, base := range candidates {
		for i := 1; i <= 9; i++ {
			name := base
			if i > 1 {
				name = fmt.Sprintf("%s-%d", strings.TrimSuffix(base[:min(len(base), 60)], "-"), i)
			}
			member, created, err = d.o.Store.JoinWithInvite(r.Context(), hash, name, id.Key(), id.Handle(), id.Email)
			if !errors.Is(err, store.ErrConflict) {
				break
			}
		}
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	if d.joinFailed(w, r, err) {
		return
	}
	if created {
		u, _ := d.o.Store.User(r.Context(), member)
		d.o.Orch.Joined(r.Context(), id.Handle(), member, u.Group)
	}
	if s, err := d.o.Sessions.Open(r.Context(), id.Handle(), auth.RoleParticipant, member); err == nil {
		setSession(w, s.Token)
	}
	d.toIDE(w, r, member, id.Handle())
}

func (d *Dashboard) joinFailed(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, store.ErrInviteUsedUp):
		d.message(w, r, http.StatusGone, "Invite", "This invite link has been used as often as it may. Ask an organizer for a new one; if you joined before, use your personal link.")
	case errors.Is(err, store.ErrInviteExpired):
		d.message(w, r, http.StatusGone, "Invite", "This invite link has expired or was withdrawn.")
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
	if !sameOrigin(r) {
		http.Error(w, "a join from another site is refused", http.StatusForbidden)
		return
	}
	addr, _, _ := net.SplitHostPort(r.RemoteAddr)
	again := func(msg string) {
		d.render(w, r, http.StatusUnprocessableEntity, "join", pageData{Title: "Join " + in.Group, Error: msg,
			Data: signinData{Code: code, Group: in.Group, Name: r.PostFormValue("name")}})
	}
	if wait := d.joins.Wait(addr); wait > 0 {
		again(fmt.Sprintf("Too many tries from your address: wait %s.", wait.Round(time.Second)))
		return
	}
	name := people.NameFrom(r.PostFormValue("name"))
	pw := r.PostFormValue("password")
	if err := config.ValidName("user", name); err != nil {
		again("Choose a name of letters and digits (it becomes your user name).")
		return
	}
	if len(pw) < 8 || len(pw) > 72 {
		again("Choose a password of 8 to 72 characters: it brings you back to your IDE later.")
		return
	}
	// Back again: the same name with the right password.
	if u, err := d.o.Store.User(r.Context(), name); err == nil {
		h, herr := d.o.Store.PasswordHash(r.Context(), name)
		if herr != nil || u.Group != in.Group || bcrypt.CompareHashAndPassword([]byte(h), []byte(pw)) != nil {
			d.joins.Fail(addr)
			again(fmt.Sprintf("The name %q is taken. If it is yours, enter your password; otherwise choose another name.", name))
			return
		}
		d.toIDE(w, r, name, name)
		return
	}
	member, _, err := d.o.Store.JoinWithInvite(r.Context(), auth.HashToken(code), name, "", "", "")
	if errors.Is(err, store.ErrConflict) {
		again(fmt.Sprintf("The name %q was just taken: choose another.", name))
		return
	}
	if d.joinFailed(w, r, err) {
		return
	}
	if err := d.o.Access.SetPassword(r.Context(), member, pw); err != nil {
		d.message(w, r, http.StatusInternalServerError, "Invite", err.Error())
		return
	}
	d.o.Orch.Joined(r.Context(), member, member, in.Group)
	d.toIDE(w, r, member, member)
}

// message shows a short page with a title and what happened.
func (d *Dashboard) message(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	d.render(w, r, status, "message", pageData{Title: title, Error: msg})
}
