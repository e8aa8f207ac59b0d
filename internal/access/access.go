// Package access is how participants get into their IDE and into the
// event: personal access links, the browser sessions they open, passwords,
// invite codes and joining with them. It is one service that the REST API,
// the dashboard and the front door call; each of its actions records
// itself in the audit log, done by the actor it is given.
package access

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"time"

	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/internal/store"
)

// DefaultSessionTTL is how long a browser stays signed in to a sandbox.
const DefaultSessionTTL = 7 * 24 * time.Hour

// URLs says where participants' IDEs are (the front door's addresses).
type URLs interface {
	// URL is a participant's IDE ("" when it has none yet).
	URL(user string) string
	// Ensure gives user an address (port mode: a port) and returns it.
	Ensure(ctx context.Context, user string) (string, error)
	// DashboardURL is where invite links lead (/join/{code} under it).
	DashboardURL() string
}

// Options wire the service.
type Options struct {
	Store *store.Store
	URLs  URLs
	// Orch starts a joined participant's sandbox and announces them.
	Orch *orchestrator.Orchestrator
	// TokenTTL is an access link's lifetime (access.token_ttl);
	// SessionTTL a browser session's (DefaultSessionTTL when 0).
	TokenTTL, SessionTTL time.Duration
	Now                  func() time.Time
	Logger               *slog.Logger
}

// Service is the access service.
type Service struct {
	o        Options
	sessions sessionCache
	// Guessing: a participant's password form (per participant), and
	// name-and-password joins (per address).
	logins *auth.Limiter
	joins  *auth.Limiter
}

// New makes the service.
func New(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SessionTTL == 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	s := &Service{o: o, logins: auth.NewLimiter(auth.PolicyAccount), joins: auth.NewLimiter(auth.PolicyAddress)}
	s.logins.Now, s.joins.Now = o.Now, o.Now
	s.sessions.entries = map[string]cachedSession{}
	return s
}

// audit records an action; a failure to record is logged, not returned:
// the action happened.
func (s *Service) audit(ctx context.Context, actor, action, target, detail string) {
	if _, err := s.o.Store.AddEvent(context.WithoutCancel(ctx), actor, action, target, detail); err != nil {
		s.o.Logger.Warn("audit log", "action", action, "err", err)
	}
}

// Link is a participant's personal access link.
type Link struct {
	User    string    `json:"user"`
	Group   string    `json:"group,omitempty"`
	Email   string    `json:"email,omitempty"` // thon.yaml's, for a mail merge
	URL     string    `json:"url"`             // the IDE, without credentials
	Link    string    `json:"link"`            // URL plus a one-time token: opening it signs the browser in
	Expires time.Time `json:"expires"`
}

// AuthPath is where an access link lands on a sandbox's origin (under the
// path-mode prefix).
const AuthPath = "/_thon/auth"

// IssueLink creates a one-time access token for user (stored hashed) and
// returns the link that carries it. Earlier links stay valid until used,
// expired or revoked.
func (s *Service) IssueLink(ctx context.Context, actor, user string) (Link, error) {
	l, err := s.link(ctx, user)
	if err != nil {
		return Link{}, err
	}
	s.audit(ctx, actor, "access.link", user, "expires "+l.Expires.Format("2006-01-02 15:04 MST"))
	return l, nil
}

func (s *Service) link(ctx context.Context, user string) (Link, error) {
	u, err := s.o.Store.User(ctx, user)
	if err != nil {
		return Link{}, err
	}
	url, err := s.o.URLs.Ensure(ctx, user)
	if err != nil {
		return Link{}, err
	}
	tok := secret()
	expires := s.o.Now().Add(s.o.TokenTTL).UTC()
	if err := s.o.Store.PutAccessToken(ctx, auth.HashToken(tok), user, expires); err != nil {
		return Link{}, err
	}
	return Link{User: user, Group: u.Group, Email: u.Email, URL: url, Link: url + AuthPath[1:] + "?token=" + tok, Expires: expires}, nil
}

// IssueLinks creates links for many participants (a group's access cards,
// a mail merge): those of groups and users, or everyone when both are
// empty.
func (s *Service) IssueLinks(ctx context.Context, actor string, f orchestrator.Filter) ([]Link, error) {
	list, err := s.o.Orch.List(ctx, f)
	if err != nil {
		return nil, err
	}
	out := make([]Link, 0, len(list))
	for _, st := range list {
		l, err := s.link(ctx, st.User)
		if err != nil {
			return nil, fmt.Errorf("access link for %s: %w", st.User, err)
		}
		out = append(out, l)
	}
	s.audit(ctx, actor, "access.links", f.String(), fmt.Sprintf("%d links issued", len(out)))
	return out, nil
}

// Revoke ends every link and browser session of user at once.
func (s *Service) Revoke(ctx context.Context, actor, user string) (tokens, sessions int64, err error) {
	if _, err := s.o.Store.User(ctx, user); err != nil {
		return 0, 0, err
	}
	tokens, sessions, err = s.o.Store.RevokeAccess(ctx, user)
	s.sessions.forgetUser(user)
	if err != nil {
		return tokens, sessions, err
	}
	s.audit(ctx, actor, "access.revoke", user, fmt.Sprintf("%d links, %d sessions", tokens, sessions))
	return tokens, sessions, nil
}

// SetPassword sets (or, with "", removes) a participant's password for the
// sign-in form; only its hash is stored.
func (s *Service) SetPassword(ctx context.Context, actor, user, password string) error {
	if _, err := s.o.Store.User(ctx, user); err != nil {
		return err
	}
	if password == "" {
		if err := s.o.Store.SetPassword(ctx, user, ""); err != nil {
			return err
		}
		s.audit(ctx, actor, "access.password", user, "removed")
		return nil
	}
	h, err := auth.HashPassword(password)
	if err != nil {
		return config.Problem{Msg: err.Error()}
	}
	if err := s.o.Store.SetPassword(ctx, user, string(h)); err != nil {
		return err
	}
	s.audit(ctx, actor, "access.password", user, "set")
	return nil
}

func secret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
