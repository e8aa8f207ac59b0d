package frontdoor

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/thon-dev/thon/internal/auth"
)

// Link is a participant's personal access link.
type Link struct {
	User    string    `json:"user"`
	URL     string    `json:"url"`  // the IDE, without credentials
	Link    string    `json:"link"` // URL plus a one-time token: opening it signs the browser in
	Expires time.Time `json:"expires"`
}

// IssueLink creates a one-time access token for user (stored hashed) and
// returns the link that carries it. Earlier links stay valid until used,
// expired or revoked.
func (f *FrontDoor) IssueLink(ctx context.Context, user string) (Link, error) {
	if _, err := f.o.Store.User(ctx, user); err != nil {
		return Link{}, err
	}
	u := f.URL(user)
	if u == "" {
		if err := f.Sync(ctx); err != nil {
			return Link{}, err
		}
		if u = f.URL(user); u == "" {
			return Link{}, fmt.Errorf("%s has no port: access.port_range %s is full or its ports are taken; widen it", user, f.o.Access.PortRange)
		}
	}
	b := make([]byte, 24)
	rand.Read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	expires := f.o.Now().Add(f.o.Access.TokenTTL.D()).UTC()
	if err := f.o.Store.PutAccessToken(ctx, auth.HashToken(tok), user, expires); err != nil {
		return Link{}, err
	}
	return Link{User: user, URL: u, Link: u + authPath[1:] + "?token=" + tok, Expires: expires}, nil
}

// Revoke ends every link and browser session of user at once.
func (f *FrontDoor) Revoke(ctx context.Context, user string) (tokens, sessions int64, err error) {
	if _, err := f.o.Store.User(ctx, user); err != nil {
		return 0, 0, err
	}
	tokens, sessions, err = f.o.Store.RevokeAccess(ctx, user)
	f.sessions.forgetUser(user)
	return tokens, sessions, err
}

// SetPassword sets (or, with "", removes) a participant's password for the
// sign-in form; only a bcrypt hash is stored.
func (f *FrontDoor) SetPassword(ctx context.Context, user, password string) error {
	if _, err := f.o.Store.User(ctx, user); err != nil {
		return err
	}
	if password == "" {
		return f.o.Store.SetPassword(ctx, user, "")
	}
	if len(password) < 8 || len(password) > 72 {
		return fmt.Errorf("a password needs 8 to 72 characters")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	return f.o.Store.SetPassword(ctx, user, string(h))
}
