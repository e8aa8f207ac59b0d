package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/store"
)

// Tokens is the API tokens service: who a bearer token is, and making,
// listing and revoking tokens. The REST API and the front door (an
// organizer's token reaching a sandbox) ask it; it records its changes in
// the audit log, done by the actor it is given.
type Tokens struct {
	st  *store.Store
	now func() time.Time
	log *slog.Logger

	mu      sync.Mutex
	touched map[string]time.Time // token name → when its use was last recorded
}

// NewTokens serves the tokens of st.
func NewTokens(st *store.Store, log *slog.Logger) *Tokens {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Tokens{st: st, now: time.Now, log: log, touched: map[string]time.Time{}}
}

// TokenRefused is a bearer token that does not work: Reason says why
// (unknown, revoked, expired).
type TokenRefused struct{ Reason string }

func (e *TokenRefused) Error() string { return e.Reason }

// Authenticate finds who a bearer token's secret is. It records the
// token's use (at most once a minute per token).
func (t *Tokens) Authenticate(ctx context.Context, secret string) (Principal, error) {
	secret = strings.TrimSpace(secret)
	if secret == "" {
		return Principal{}, &TokenRefused{Reason: "missing bearer token"}
	}
	rec, err := t.st.TokenRecord(ctx, HashToken(secret))
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, &TokenRefused{Reason: "invalid token"}
	}
	if err != nil {
		return Principal{}, fmt.Errorf("check token: %w", err)
	}
	if why := rec.Refusal(t.now()); why != "" {
		return Principal{}, &TokenRefused{Reason: why}
	}
	t.touch(ctx, rec.Name)
	role := rec.Role
	if role != RoleParticipant {
		role = RoleAdmin
	}
	return Principal{Name: rec.Name, Role: role, Scopes: rec.Scopes, User: rec.User, Via: "token"}, nil
}

func (t *Tokens) touch(ctx context.Context, name string) {
	t.mu.Lock()
	now := t.now()
	if now.Sub(t.touched[name]) < time.Minute {
		t.mu.Unlock()
		return
	}
	t.touched[name] = now
	t.mu.Unlock()
	if err := t.st.TouchToken(context.WithoutCancel(ctx), name); err != nil {
		t.log.Warn("record token use", "token", name, "err", err)
	}
}

// TokenRequest describes a new API token.
type TokenRequest struct {
	Name      string
	Scopes    []string
	ExpiresIn time.Duration // 0: never
	User      string        // a participant's token
}

// Create makes a token; its secret is returned this once, only its hash is
// kept.
func (t *Tokens) Create(ctx context.Context, actor string, req TokenRequest) (secret string, rec store.Token, err error) {
	if err := config.ValidName("token", req.Name); err != nil {
		return "", store.Token{}, err
	}
	scopes, err := ParseScopes(strings.Join(req.Scopes, ","))
	if err != nil {
		return "", store.Token{}, config.Problem{Msg: err.Error()}
	}
	if req.ExpiresIn < 0 {
		return "", store.Token{}, config.Problem{Msg: "a token's lifetime must be positive (or none, for a token that does not expire)"}
	}
	tok := store.Token{Name: req.Name, Role: RoleAdmin, Scopes: scopes}
	if req.ExpiresIn > 0 {
		tok.Expires = t.now().Add(req.ExpiresIn).UTC()
	}
	if req.User != "" {
		if _, err := t.st.User(ctx, req.User); err != nil {
			return "", store.Token{}, err
		}
		tok.Role, tok.User = RoleParticipant, req.User
	}
	secret, tok.Hash = NewToken()
	if err := t.st.CreateToken(ctx, tok); err != nil {
		return "", store.Token{}, err
	}
	t.audit(ctx, actor, "token.create", tok.Name, "scopes="+strings.Join(scopes, ",")+" role="+tok.Role)
	rec, err = t.st.TokenRecord(ctx, tok.Hash)
	return secret, rec, err
}

// Revoke makes a token stop working at once.
func (t *Tokens) Revoke(ctx context.Context, actor, name string) error {
	if err := config.ValidName("token", name); err != nil {
		return err
	}
	if err := t.st.RevokeToken(ctx, name); err != nil {
		return err
	}
	t.audit(ctx, actor, "token.revoke", name, "")
	return nil
}

// TokenInfo is a token's record (never its secret) and its state now:
// active, revoked or expired.
type TokenInfo struct {
	store.Token
	State string `json:"state"`
}

// List is every token with its state.
func (t *Tokens) List(ctx context.Context) ([]TokenInfo, error) {
	list, err := t.st.Tokens(ctx)
	if err != nil {
		return nil, err
	}
	now := t.now()
	out := make([]TokenInfo, len(list))
	for i, tok := range list {
		out[i] = TokenInfo{Token: tok, State: tok.State(now)}
	}
	return out, nil
}

func (t *Tokens) audit(ctx context.Context, actor, action, target, detail string) {
	if _, err := t.st.AddEvent(context.WithoutCancel(ctx), actor, action, target, detail); err != nil {
		t.log.Warn("audit log", "action", action, "err", err)
	}
}
