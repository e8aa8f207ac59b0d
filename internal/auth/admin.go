package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/thon-dev/thon/internal/store"
)

// Errors of the dashboard's sign-in.
var (
	ErrNoAdminPassword = errors.New("no admin password is set: set auth.admin_password in thon.yaml (or THON_ADMIN_PASSWORD) and run thon run")
	ErrWrongPassword   = errors.New("wrong password")
	ErrLockedOut       = errors.New("too many wrong passwords from this address")
	ErrNoSession       = errors.New("not signed in")
)

const (
	// AdminCookie holds a dashboard session's secret. The __Host- prefix
	// makes browsers refuse it unless it is Secure, host-only and Path=/:
	// a participant's subdomain cannot set or shadow it.
	AdminCookie = "__Host-thon_admin"

	passwordSetting = "admin.password" // bcrypt hash
	// AdminSessionTTL is how long a dashboard session lasts.
	AdminSessionTTL = 12 * time.Hour
	// AdminActor is who dashboard actions are recorded as.
	AdminActor = "admin"
)

// Admins signs organizers in to the dashboard with the admin password,
// whose bcrypt hash is all the store keeps.
type Admins struct {
	st      *store.Store
	now     func() time.Time
	guesses *Limiter // by client address
}

// NewAdmins signs admins in against st.
func NewAdmins(st *store.Store) *Admins {
	a := &Admins{st: st, now: time.Now, guesses: NewLimiter(PolicyAddress)}
	a.guesses.Now = func() time.Time { return a.now() }
	return a
}

// SetPassword makes password the admin password, unless it already is.
// A change ends every dashboard session.
func (a *Admins) SetPassword(ctx context.Context, password string) (changed bool, err error) {
	if old, err := a.st.Setting(ctx, passwordSetting); err == nil && PasswordHash(old).Check(password) {
		return false, nil
	}
	h, err := HashPassword(password)
	if err != nil {
		return false, fmt.Errorf("the admin password: %w", err)
	}
	if err := a.st.PutSetting(ctx, passwordSetting, string(h)); err != nil {
		return false, err
	}
	return true, a.st.DeleteAdminSessions(ctx)
}

// HasPassword reports whether an admin password is set.
func (a *Admins) HasPassword(ctx context.Context) bool {
	h, err := a.st.Setting(ctx, passwordSetting)
	return err == nil && h != ""
}

// AdminSession is a signed-in browser on the dashboard's origin: an
// organizer, or a participant who signed in with a provider.
type AdminSession struct {
	Token string // the cookie's secret (only when opened)
	Actor string
	CSRF  string
	Role  string // RoleAdmin or RoleParticipant
	User  string // a participant's participant
}

// Login checks the password and opens a session. Wrong passwords from one
// address lock it out for a while, longer each time (1 s, 2 s, … 5 min
// after the fifth).
func (a *Admins) Login(ctx context.Context, addr, password string) (AdminSession, error) {
	s, err := a.login(ctx, addr, password)
	if err != nil {
		a.audit(ctx, "dashboard", "admin.login.failed", addr, "")
		return s, err
	}
	a.audit(ctx, s.Actor, "admin.login", addr, "")
	return s, nil
}

func (a *Admins) login(ctx context.Context, addr, password string) (AdminSession, error) {
	if wait := a.guesses.Wait(addr); wait > 0 {
		return AdminSession{}, fmt.Errorf("%w: try again in %s", ErrLockedOut, wait.Round(time.Second))
	}
	hash, err := a.st.Setting(ctx, passwordSetting)
	if errors.Is(err, store.ErrNotFound) || hash == "" {
		return AdminSession{}, ErrNoAdminPassword
	}
	if err != nil {
		return AdminSession{}, err
	}
	if !PasswordHash(hash).Check(password) {
		a.guesses.Fail(addr)
		return AdminSession{}, ErrWrongPassword
	}
	a.guesses.Clear(addr)
	return a.Open(ctx, AdminActor, RoleAdmin, "")
}

// Signed-in kinds of ProviderSignIn.
const (
	SignedInOrganizer   = "organizer"
	SignedInParticipant = "participant"
)

// ProviderSignIn is someone a sign-in provider vouched for: an organizer
// (their identity is in organizers, auth.admins), or a participant who
// joined with that identity before; both get a session on the
// dashboard's origin. Anyone else is refused (ErrNotOrganizer), and the
// audit log says so.
func (a *Admins) ProviderSignIn(ctx context.Context, id Identity, organizers []string) (AdminSession, string, error) {
	if IsAdmin(organizers, id) {
		s, err := a.Open(ctx, id.Handle(), RoleAdmin, "")
		if err != nil {
			return AdminSession{}, "", err
		}
		a.audit(ctx, id.Handle(), "admin.login", id.Provider, id.Email)
		return s, SignedInOrganizer, nil
	}
	if user, err := a.st.IdentityUser(ctx, id.Key()); err == nil {
		s, err := a.Open(ctx, id.Handle(), RoleParticipant, user)
		return s, SignedInParticipant, err
	}
	a.audit(ctx, id.Handle(), "signin.refused", id.Provider, "not an organizer")
	return AdminSession{}, "", fmt.Errorf("%w: you are signed in as %s, which is not an organizer of this event. Organizers list their identity in auth.admins of thon.yaml; participants join with an invite link", ErrNotOrganizer, id.Handle())
}

// ErrNotOrganizer: a provider's identity that is neither an organizer nor
// a participant who joined with it.
var ErrNotOrganizer = errors.New("not an organizer")

// ProviderFailed records a sign-in the provider did not complete.
func (a *Admins) ProviderFailed(ctx context.Context, provider string, err error) {
	a.audit(ctx, "dashboard", "signin.failed", provider, err.Error())
}

func (a *Admins) audit(ctx context.Context, actor, action, target, detail string) {
	a.st.AddEvent(context.WithoutCancel(ctx), actor, action, target, detail)
}

// Open starts a session for someone signed in another way (a provider).
func (a *Admins) Open(ctx context.Context, actor, role, user string) (AdminSession, error) {
	tok, h := NewToken()
	csrf, _ := NewToken()
	s := store.AdminSession{Actor: actor, CSRF: csrf, Role: role, User: user, Expires: a.now().Add(AdminSessionTTL)}
	if err := a.st.PutAdminSession(ctx, h, s); err != nil {
		return AdminSession{}, err
	}
	return AdminSession{Token: tok, Actor: s.Actor, CSRF: s.CSRF, Role: role, User: user}, nil
}

// Session finds the session of a cookie's secret.
func (a *Admins) Session(ctx context.Context, token string) (AdminSession, error) {
	if token == "" {
		return AdminSession{}, ErrNoSession
	}
	s, err := a.st.AdminSession(ctx, HashToken(token))
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExpired) {
		return AdminSession{}, ErrNoSession
	}
	if err != nil {
		return AdminSession{}, err
	}
	return AdminSession{Actor: s.Actor, CSRF: s.CSRF, Role: s.Role, User: s.User}, nil
}

// Logout ends the session of a cookie's secret.
func (a *Admins) Logout(ctx context.Context, token string) error {
	s, err := a.Session(ctx, token)
	if err != nil {
		return nil // no session: nothing to end
	}
	if err := a.st.DeleteAdminSession(ctx, HashToken(token)); err != nil {
		return err
	}
	a.audit(ctx, s.Actor, "admin.logout", "", "")
	return nil
}

// CheckCSRF compares a request's anti-forgery token with the session's in
// constant time.
func CheckCSRF(s AdminSession, got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.CSRF)) == 1
}
