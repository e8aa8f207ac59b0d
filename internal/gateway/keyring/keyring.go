// Package keyring issues the AI gateway's keys and keeps their records and
// usage in THON's store: the gateway's KeyStore and UsageSink.
//
// A key is derived from a secret in the data directory, the key's id
// ("user:alice" or "group:alpha") and its generation, so THON can hand the
// same key to a recreated sandbox without storing it: the store holds only
// SHA-256 hashes. Rotating bumps the generation; the old key stops working.
package keyring

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/gateway"
	"github.com/thon-dev/thon/internal/store"
)

// SecretFile holds the key-derivation secret in the data directory (0600).
const SecretFile = "gateway.secret"

// Keyring is the store-backed side of the gateway.
type Keyring struct {
	st        *store.Store
	secret    []byte
	mode      string // config.GatewayPerUser or config.GatewayPerGroup
	tokenKind string // total | prompt | completion: what a budget counts
	// OnChange runs after a key was rotated or revoked (the gateway forgets
	// its cached keys; sandboxes with the old key are outdated).
	OnChange func()
}

// Open loads (or creates) the secret in dataDir.
func Open(dataDir string, st *store.Store, mode, tokenKind string) (*Keyring, error) {
	path := filepath.Join(dataDir, SecretFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		raw := make([]byte, 32)
		rand.Read(raw)
		b = []byte(hex.EncodeToString(raw))
		if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(secret) < 32 {
		return nil, fmt.Errorf("%s is damaged: move it away to make a new one (every gateway key then changes: recreate the sandboxes)", path)
	}
	return &Keyring{st: st, secret: secret, mode: mode, tokenKind: tokenKind}, nil
}

// ID is the key a participant's sandbox uses: their own, or their group's.
func (k *Keyring) ID(user, group string) string {
	if k.mode == config.GatewayPerGroup {
		return gateway.KeyID(gateway.KindGroup, group)
	}
	return gateway.KeyID(gateway.KindUser, user)
}

func (k *Keyring) derive(id string, generation int) string {
	m := hmac.New(sha256.New, k.secret)
	m.Write([]byte(id + "#" + strconv.Itoa(generation)))
	return gateway.KeyPrefix + hex.EncodeToString(m.Sum(nil))
}

// KeyFor returns the key for a participant's sandbox, creating its record
// on first use; "" when the key was revoked (the sandbox then gets none).
func (k *Keyring) KeyFor(ctx context.Context, user, group string) (string, error) {
	id := k.ID(user, group)
	rec, err := k.st.GatewayKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		kind, owner, _ := gateway.ParseKeyID(id)
		secret := k.derive(id, 1)
		rec = store.GatewayKey{ID: id, Kind: kind, Owner: owner, Generation: 1, Hash: gateway.HashKey(secret)}
		if err := k.st.PutGatewayKey(ctx, rec); err != nil {
			return "", err
		}
		return secret, nil
	}
	if err != nil {
		return "", err
	}
	if rec.Revoked {
		return "", nil
	}
	return k.derive(id, rec.Generation), nil
}

// Resolve reads a key as an organizer names it: a key id (user:alice,
// group:alpha) or a user name, which stands for the key that user's
// sandbox uses.
func (k *Keyring) Resolve(ctx context.Context, name string) (string, error) {
	kind, owner, ok := gateway.ParseKeyID(name)
	if !ok {
		if strings.Contains(name, ":") {
			return "", config.Problem{Msg: fmt.Sprintf("key id %q: use user:NAME, group:NAME or a user name", name)}
		}
		if err := config.ValidName("user", name); err != nil {
			return "", err
		}
		u, err := k.st.User(ctx, name)
		if err != nil {
			return "", err
		}
		return k.ID(u.Name, u.Group), nil
	}
	if err := config.ValidName(kind, owner); err != nil {
		return "", err
	}
	return name, nil
}

// Rotate replaces a key: the old one stops working at once. It returns the
// new key (shown once; sandboxes get it when recreated).
func (k *Keyring) Rotate(ctx context.Context, actor, id string) (string, error) {
	rec, err := k.st.GatewayKey(ctx, id)
	if err != nil {
		return "", err
	}
	rec.Generation++
	rec.Revoked = false
	secret := k.derive(id, rec.Generation)
	rec.Hash = gateway.HashKey(secret)
	if err := k.st.PutGatewayKey(ctx, rec); err != nil {
		return "", err
	}
	k.changed(ctx, actor, "gateway.key.rotate", id)
	return secret, nil
}

// Revoke makes a key stop working until it is rotated.
func (k *Keyring) Revoke(ctx context.Context, actor, id string) error {
	rec, err := k.st.GatewayKey(ctx, id)
	if err != nil {
		return err
	}
	rec.Revoked = true
	if err := k.st.PutGatewayKey(ctx, rec); err != nil {
		return err
	}
	k.changed(ctx, actor, "gateway.key.revoke", id)
	return nil
}

func (k *Keyring) changed(ctx context.Context, actor, action, id string) {
	if k.OnChange != nil {
		k.OnChange()
	}
	k.st.AddEvent(context.WithoutCancel(ctx), actor, action, id, "")
}

// List returns every key record.
func (k *Keyring) List(ctx context.Context) ([]store.GatewayKey, error) {
	return k.st.GatewayKeys(ctx)
}

// Prune deletes the records of keys whose user or group no longer exists,
// so their keys stop working.
func (k *Keyring) Prune(ctx context.Context) error {
	keys, err := k.st.GatewayKeys(ctx)
	if err != nil {
		return err
	}
	for _, rec := range keys {
		var err error
		if rec.Kind == gateway.KindGroup {
			_, err = k.st.Group(ctx, rec.Owner)
		} else {
			_, err = k.st.User(ctx, rec.Owner)
		}
		if errors.Is(err, store.ErrNotFound) {
			if err := k.st.DeleteGatewayKey(ctx, rec.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// KeyByHash implements gateway.KeyStore.
func (k *Keyring) KeyByHash(ctx context.Context, hash string) (gateway.Key, error) {
	rec, err := k.st.GatewayKeyByHash(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return gateway.Key{}, gateway.ErrUnknownKey
	}
	if err != nil {
		return gateway.Key{}, err
	}
	key := gateway.Key{ID: rec.ID, Owner: rec.Owner, Revoked: rec.Revoked, Scale: 1}
	if rec.Kind == gateway.KindGroup {
		g, err := k.st.Group(ctx, rec.Owner)
		if err != nil {
			return gateway.Key{}, gateway.ErrUnknownKey
		}
		key.Group, key.Scale = g.Name, max(len(g.Users), 1)
	} else {
		u, err := k.st.User(ctx, rec.Owner)
		if err != nil {
			return gateway.Key{}, gateway.ErrUnknownKey
		}
		key.Group = u.Group
	}
	prompt, completion, err := k.st.UsedTokens(ctx, rec.ID)
	if err != nil {
		return gateway.Key{}, err
	}
	switch k.tokenKind {
	case "prompt":
		key.BudgetUsed = prompt
	case "completion":
		key.BudgetUsed = completion
	default:
		key.BudgetUsed = prompt + completion
	}
	return key, nil
}

// Add implements gateway.UsageSink.
func (k *Keyring) Add(ctx context.Context, u gateway.Usage) error {
	return k.st.AddUsage(ctx, []store.UsageRow{{
		KeyID: u.KeyID, Model: u.Model, Minute: u.Minute, Requests: u.Requests,
		PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, Rejections: u.Rejections,
	}})
}

// Usage returns usage rows of some keys since a time.
func (k *Keyring) Usage(ctx context.Context, ids []string, since time.Time) ([]store.UsageRow, error) {
	return k.st.Usage(ctx, store.UsageFilter{KeyIDs: ids, Since: since})
}
