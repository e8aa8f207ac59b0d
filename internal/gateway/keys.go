package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/thon-dev/thon/internal/auth"
)

// ErrUnknownKey is what a KeyStore returns for a hash it does not hold.
var ErrUnknownKey = errors.New("unknown gateway key")

// Key is what the store knows about one gateway key.
type Key struct {
	// ID is stable across rotations, e.g. "user:alice" or "group:alpha";
	// counters and usage belong to it.
	ID    string
	Owner string
	Group string
	// Scale multiplies every limit: the group's size in per-group mode, 1
	// otherwise (0 counts as 1).
	Scale   int
	Revoked bool
	// BudgetUsed is the tokens already charged against the budget according
	// to the store (e.g. the sum of the usage table). The gateway's budget
	// counter is raised to it when lower, so a restart does not reset a
	// budget kept in memory. 0 when unknown.
	BudgetUsed int64
}

// Key kinds: the first part of a Key.ID.
const (
	KindUser  = "user"
	KindGroup = "group"
)

// KeyID is the ID of the key of a user or group: "user:alice", "group:alpha".
func KeyID(kind, owner string) string { return kind + ":" + owner }

// ParseKeyID splits "kind:owner"; ok is false for anything else.
func ParseKeyID(id string) (kind, owner string, ok bool) {
	kind, owner, ok = strings.Cut(id, ":")
	if !ok || owner == "" || (kind != KindUser && kind != KindGroup) {
		return "", "", false
	}
	return kind, owner, true
}

// BelongsTo reports whether the key is user's own, or their group's.
func (k *Key) BelongsTo(user, group string) bool {
	kind, owner, ok := ParseKeyID(k.ID)
	switch {
	case !ok:
		return false
	case kind == KindUser:
		return owner == user
	default:
		return owner == group
	}
}

// KeyStore finds keys by the hash of their secret (HashKey).
type KeyStore interface {
	// KeyByHash returns ErrUnknownKey (possibly wrapped) when absent.
	KeyByHash(ctx context.Context, hash string) (Key, error)
}

// KeyPrefix starts every gateway key.
const KeyPrefix = auth.TokenPrefix

// NewKey returns a fresh 256-bit key ("thon_…", shown once) and the hash to
// store.
func NewKey() (secret, hash string) { return auth.NewToken() }

// HashKey is the stored form of a key: SHA-256, hex, as auth.HashToken.
func HashKey(secret string) string { return auth.HashToken(secret) }

// otherKeyHeaders are headers other APIs use for keys; a key found there is
// refused with a message saying where to put it.
var otherKeyHeaders = [...]string{"Api-Key", "X-Api-Key", "Openai-Api-Key", "X-Goog-Api-Key"}

var (
	errMissingKey = apiError{http.StatusUnauthorized, typeInvalidRequest, "missing_api_key",
		"You didn't provide an API key. Send your THON key as 'Authorization: Bearer thon_…' (it is in OPENAI_API_KEY inside your workspace)."}
	errInvalidKey = apiError{http.StatusUnauthorized, typeInvalidRequest, "invalid_api_key",
		"Incorrect API key provided. Use the THON key in OPENAI_API_KEY inside your workspace, or ask the organizer for a new one."}
	errRevokedKey = apiError{http.StatusUnauthorized, typeInvalidRequest, "revoked_api_key",
		"This API key was revoked. Ask the organizer for your new key (recreating your workspace also installs it)."}
	errOthersKey = apiError{http.StatusUnauthorized, typeInvalidRequest, "key_of_another_participant",
		"This API key belongs to another participant. Use your own THON key: it is in OPENAI_API_KEY inside your workspace."}
	errKeyStore = apiError{http.StatusServiceUnavailable, typeServer, "key_store_unavailable",
		"The gateway cannot check API keys right now. Try again shortly; if it persists, tell the organizer."}
)

// bearer extracts the key from the Authorization header, or says what is
// wrong with the request's credentials.
func bearer(r *http.Request) (string, *apiError) {
	if v := r.Header.Get("Authorization"); v != "" {
		scheme, tok, ok := strings.Cut(v, " ")
		tok = strings.TrimSpace(tok)
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			e := errMissingKey
			e.code = "invalid_authorization_header"
			e.message = "The Authorization header must be 'Bearer thon_…'."
			return "", &e
		}
		return tok, nil
	}
	for _, h := range otherKeyHeaders {
		if r.Header.Get(h) != "" {
			e := errMissingKey
			e.code = "wrong_auth_header"
			e.message = fmt.Sprintf("The API key was sent in the %q header; this gateway reads it only from 'Authorization: Bearer thon_…'. Configure your client as an OpenAI-compatible provider (OPENAI_API_KEY and OPENAI_BASE_URL).", strings.ToLower(h))
			return "", &e
		}
	}
	return "", &errMissingKey
}

// keyCache remembers KeyByHash answers, unknown keys included, for a short
// time so the store is not asked on every request.
type keyCache struct {
	mu      sync.RWMutex
	ttl     time.Duration
	max     int
	entries map[string]cachedKey
}

type cachedKey struct {
	key     *Key // nil: unknown
	expires time.Time
}

func newKeyCache(ttl time.Duration) *keyCache {
	return &keyCache{ttl: ttl, max: 16384, entries: make(map[string]cachedKey)}
}

func (c *keyCache) get(hash string, now time.Time) (cachedKey, bool) {
	if c.ttl <= 0 {
		return cachedKey{}, false
	}
	c.mu.RLock()
	e, ok := c.entries[hash]
	c.mu.RUnlock()
	if !ok || now.After(e.expires) {
		return cachedKey{}, false
	}
	return e, true
}

func (c *keyCache) put(hash string, k *Key, now time.Time) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	if len(c.entries) >= c.max {
		clear(c.entries) // random keys must not grow memory without bound
	}
	c.entries[hash] = cachedKey{key: k, expires: now.Add(c.ttl)}
	c.mu.Unlock()
}

func (c *keyCache) forget() {
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
}

// ForgetKeys drops cached key lookups, so a key created, rotated or revoked
// a moment ago is seen as the store has it now. Other replicas see the
// change within Options.KeyCacheTTL.
func (g *Gateway) ForgetKeys() { g.keys.forget() }

// authenticate resolves the request's key.
func (g *Gateway) authenticate(r *http.Request) (*Key, *apiError) {
	secret, aerr := bearer(r)
	if aerr != nil {
		return nil, aerr
	}
	if !strings.HasPrefix(secret, KeyPrefix) {
		return nil, &errInvalidKey
	}
	hash := HashKey(secret)
	now := g.now()
	if e, ok := g.keys.get(hash, now); ok {
		return checkKey(e.key)
	}
	k, err := g.opts.Keys.KeyByHash(r.Context(), hash)
	switch {
	case errors.Is(err, ErrUnknownKey):
		g.keys.put(hash, nil, now)
		return nil, &errInvalidKey
	case err != nil:
		if r.Context().Err() == nil {
			g.log.Error("gateway: look up key", "err", err)
		}
		return nil, &errKeyStore
	}
	if k.ID == "" {
		g.log.Error("gateway: key store returned a key without an ID")
		return nil, &errKeyStore
	}
	if k.Scale <= 0 {
		k.Scale = 1
	}
	kp := &k
	if k.BudgetUsed > 0 && !k.Revoked {
		if err := g.counters.seedBudget(r.Context(), k.ID, k.BudgetUsed); err != nil {
			g.log.Warn("gateway: seed budget counter", "key", k.ID, "err", err)
		}
	}
	g.keys.put(hash, kp, now)
	return checkKey(kp)
}

func checkKey(k *Key) (*Key, *apiError) {
	if k == nil {
		return nil, &errInvalidKey
	}
	if k.Revoked {
		return nil, &errRevokedKey
	}
	return k, nil
}
