package keyring

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/gateway"
	"github.com/thon-dev/thon/internal/store"
)

func open(t *testing.T, mode string) (*Keyring, *store.Store) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "thon.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, g := range []string{"alpha", "beta"} {
		if err := st.CreateGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	for u, g := range map[string]string{"alice": "alpha", "bob": "alpha", "carol": "beta"} {
		if err := st.CreateUser(ctx, u, g); err != nil {
			t.Fatal(err)
		}
	}
	k, err := Open(dir, st, mode, "total")
	if err != nil {
		t.Fatal(err)
	}
	return k, st
}

func TestSummary(t *testing.T) {
	ctx := context.Background()
	k, st := open(t, config.GatewayPerUser)
	now := time.Date(2026, 12, 1, 10, 30, 20, 0, time.UTC)
	minute := now.Truncate(time.Minute)
	rows := []store.UsageRow{
		{KeyID: "user:alice", Model: "qwen", Minute: minute, Requests: 2, PromptTokens: 100, CompletionTokens: 20},
		{KeyID: "user:alice", Model: "small", Minute: minute.Add(-2 * time.Minute), Requests: 1, PromptTokens: 10, CompletionTokens: 5},
		{KeyID: "user:bob", Model: "qwen", Minute: minute.Add(-time.Minute), Requests: 1, PromptTokens: 300, CompletionTokens: 30, Rejections: 4},
		{KeyID: "user:carol", Model: "qwen", Minute: minute.Add(-time.Hour), Requests: 7, PromptTokens: 1000, CompletionTokens: 1},
		{KeyID: "group:beta", Model: "qwen", Minute: minute, Requests: 1, PromptTokens: 1, CompletionTokens: 1},
	}
	if err := st.AddUsage(ctx, rows); err != nil {
		t.Fatal(err)
	}

	// The last five minutes: carol's hour-old traffic is out.
	sum, err := k.Summary(ctx, UsageQuery{Minutes: 5, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sum.Total.Tokens(), int64(120+15+330+2); got != want {
		t.Errorf("total tokens = %d, want %d", got, want)
	}
	if sum.Total.Requests != 5 || sum.Total.Rejections != 4 {
		t.Errorf("total = %+v, want 5 requests and 4 rejections", sum.Total)
	}
	if got := sum.Total.PerMinute; len(got) != 5 || got[4] != 122 || got[3] != 330 || got[2] != 15 || got[0] != 0 {
		t.Errorf("per minute = %v, want [0 0 15 330 122]", got)
	}
	if sum.LastMinute.Requests != 3 || sum.LastMinute.Tokens() != 122 {
		t.Errorf("last minute = %+v, want 3 requests and 122 tokens", sum.LastMinute)
	}
	if len(sum.Keys) != 3 || sum.Keys[0].Key != "user:bob" || sum.Keys[1].Key != "user:alice" {
		t.Errorf("keys = %+v, want bob first (most tokens), then alice and group:beta", sum.Keys)
	}
	if len(sum.ByModel) != 4 || sum.ByModel[0].Key != "group:beta" || sum.ByModel[1].Model != "qwen" || sum.ByModel[2].Model != "small" {
		t.Errorf("by model = %+v, want group:beta/qwen, alice/qwen, alice/small, bob/qwen", sum.ByModel)
	}
	// alpha is alice's and bob's; beta is its group key's (carol is out of the window).
	if len(sum.Groups) != 2 || sum.Groups[0].Group != "alpha" || sum.Groups[0].Tokens() != 465 || sum.Groups[1].Tokens() != 2 {
		t.Errorf("groups = %+v, want alpha 465, beta 2", sum.Groups)
	}

	// The whole event, one group: beta's key and carol's.
	sum, err = k.Summary(ctx, UsageQuery{Groups: []string{"beta"}})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Total.Tokens() != 1003 || len(sum.Keys) != 2 || sum.Total.PerMinute != nil {
		t.Errorf("beta's summary = %+v, want 1003 tokens over two keys and no window", sum)
	}

	// One user who never used the gateway: nothing, and no error.
	if err := st.CreateUser(ctx, "dave", "beta"); err != nil {
		t.Fatal(err)
	}
	sum, err = k.Summary(ctx, UsageQuery{Users: []string{"dave"}})
	if err != nil || sum.Total.Requests != 0 || len(sum.Keys) != 0 {
		t.Errorf("dave's summary = %+v, %v; want empty", sum, err)
	}
	if _, err := k.Summary(ctx, UsageQuery{Users: []string{"nobody"}}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an unknown user: err = %v, want not found", err)
	}
}

func TestKeysOfPerGroup(t *testing.T) {
	ctx := context.Background()
	k, _ := open(t, config.GatewayPerGroup)
	ids, err := k.KeysOf(ctx, []string{"alice"}, []string{"alpha"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 || ids[0] != "group:alpha" {
		t.Errorf("per-group keys of alice and alpha = %v, want [group:alpha]", ids)
	}
	id, err := k.Resolve(ctx, "carol")
	if err != nil || id != "group:beta" {
		t.Errorf("Resolve(carol) = %q, %v; want group:beta", id, err)
	}
	var p config.Problem
	if _, err := k.Resolve(ctx, "robot:x"); !errors.As(err, &p) {
		t.Errorf("Resolve(robot:x) = %v, want a config.Problem", err)
	}
}

func TestRotateAndRevoke(t *testing.T) {
	ctx := context.Background()
	k, st := open(t, config.GatewayPerUser)
	changes := 0
	k.OnChange = func() { changes++ }
	old, err := k.KeyFor(ctx, "alice", "alpha")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := k.KeyFor(ctx, "alice", "alpha"); again != old {
		t.Fatal("a second KeyFor gave another key: a recreated sandbox would lose its key")
	}
	fresh, err := k.Rotate(ctx, "admin", "user:alice")
	if err != nil || fresh == old {
		t.Fatalf("Rotate = %q, %v; want a new key", fresh, err)
	}
	if _, err := k.KeyByHash(ctx, gateway.HashKey(old)); !errors.Is(err, gateway.ErrUnknownKey) {
		t.Errorf("the old key after a rotation: %v, want unknown", err)
	}
	if key, err := k.KeyByHash(ctx, gateway.HashKey(fresh)); err != nil || key.ID != "user:alice" {
		t.Errorf("the new key: %+v, %v", key, err)
	}
	if err := k.Revoke(ctx, "admin", "user:alice"); err != nil {
		t.Fatal(err)
	}
	if s, _ := k.KeyFor(ctx, "alice", "alpha"); s != "" {
		t.Error("a revoked key still handed to a sandbox")
	}
	if changes != 2 {
		t.Errorf("OnChange ran %d times, want 2", changes)
	}
	evs, err := st.Events(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range evs {
		actions = append(actions, e.Action+" "+e.Target+" by "+e.Actor)
	}
	if len(actions) != 2 || actions[0] != "gateway.key.rotate user:alice by admin" || actions[1] != "gateway.key.revoke user:alice by admin" {
		t.Errorf("audit = %q, want a rotation and a revocation by admin", actions)
	}
	if _, err := k.Rotate(ctx, "admin", "user:nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rotating an unknown key: %v, want not found", err)
	}
}
