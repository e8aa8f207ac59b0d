package access

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/store"
)

// Why a link or a password did not sign a browser in.
var (
	ErrLinkInvalid   = errors.New("this access link is not valid: it was already used, revoked, or is for another IDE. Ask an organizer for a new one")
	ErrLinkExpired   = errors.New("this access link has expired. Ask an organizer for a new one")
	ErrWrongPassword = errors.New("wrong password, or no password is set for this IDE: use your personal access link")
)

// TooManyTries: too many wrong passwords; Wait says for how long.
type TooManyTries struct{ Wait time.Duration }

func (e *TooManyTries) Error() string {
	return "too many failed attempts: try again in " + e.Wait.Round(time.Second).String()
}

// Session is a browser signed in to one participant's IDE: Secret goes in
// its cookie.
type Session struct {
	User    string
	Secret  string
	Expires time.Time
}

// UseLink spends a one-time access token of user's and opens a session.
func (s *Service) UseLink(ctx context.Context, user, token string) (Session, error) {
	if token == "" {
		return Session{}, ErrLinkInvalid
	}
	err := s.o.Store.UseAccessToken(ctx, auth.HashToken(token), user)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Session{}, ErrLinkInvalid
	case errors.Is(err, store.ErrExpired):
		return Session{}, ErrLinkExpired
	case err != nil:
		return Session{}, fmt.Errorf("check the access link: %w", err)
	}
	return s.open(ctx, user)
}

// PasswordSignIn checks user's password (the optional sign-in form) and
// opens a session. Wrong passwords close the form for a while (per
// participant, whatever the address).
func (s *Service) PasswordSignIn(ctx context.Context, user, password string) (Session, error) {
	if wait := s.logins.Wait(user); wait > 0 {
		return Session{}, &TooManyTries{Wait: wait}
	}
	hash, err := s.o.Store.PasswordHash(ctx, user)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return Session{}, fmt.Errorf("read the password: %w", err)
	}
	if !auth.PasswordHash(hash).Check(password) {
		s.logins.Fail(user)
		return Session{}, ErrWrongPassword
	}
	s.logins.Clear(user)
	return s.open(ctx, user)
}

// open issues a fresh session (a new secret at every sign-in).
func (s *Service) open(ctx context.Context, user string) (Session, error) {
	sec := secret()
	expires := s.o.Now().Add(s.o.SessionTTL)
	if err := s.o.Store.PutSession(ctx, auth.HashToken(sec), user, expires); err != nil {
		return Session{}, fmt.Errorf("start a session: %w", err)
	}
	return Session{User: user, Secret: sec, Expires: expires}, nil
}

// SessionUser returns the participant of a live session. Lookups are
// cached briefly (every request of an IDE asks); Revoke and EndSession
// clear the cache.
func (s *Service) SessionUser(ctx context.Context, secret string) (string, bool) {
	if secret == "" {
		return "", false
	}
	h := auth.HashToken(secret)
	now := s.o.Now()
	if e, ok := s.sessions.get(h, now); ok {
		return e.user, e.user != ""
	}
	user, expires, err := s.o.Store.Session(ctx, h)
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrExpired) {
		s.o.Logger.Error("look up session", "err", err)
		return "", false
	}
	s.sessions.put(h, cachedSession{user: user, expires: expires, until: now.Add(sessionCacheTTL)})
	return user, user != ""
}

// EndSession signs a browser out.
func (s *Service) EndSession(ctx context.Context, secret string) error {
	h := auth.HashToken(secret)
	s.sessions.forget(h)
	return s.o.Store.DeleteSession(ctx, h)
}

// Sweep deletes expired links and sessions.
func (s *Service) Sweep(ctx context.Context) error { return s.o.Store.DeleteExpired(ctx) }

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
