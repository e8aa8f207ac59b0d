package store

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"testing"
	"time"
)

// These tests go through every query of access.go, gateway.go and
// dashboard.go on both backends, where SQLite and PostgreSQL could differ:
// constraint errors, integer and text columns, ordering, upserts, sums.

// Names sort byte by byte on both backends, whatever the server's locale.
func TestOrderIsBytewise(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		names := []string{"teamb", "team-b", "team1", "team", "a-z", "az", "a0"}
		var users []ImportUser
		for _, n := range names {
			users = append(users, ImportUser{Name: "u-" + n, Group: n})
			users = append(users, ImportUser{Name: "u" + n, Group: n})
		}
		if _, err := s.Import(ctx, importGroups(names...), users); err != nil {
			t.Fatal(err)
		}
		groups, err := s.Groups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, g := range groups {
			got = append(got, g.Name)
			if len(g.Users) != 2 || g.Users[0] != "u-"+g.Name || g.Users[1] != "u"+g.Name {
				t.Fatalf("group %s users %v", g.Name, g.Users)
			}
		}
		want := append([]string(nil), names...)
		sort.Strings(want)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("groups in order %v, want %v", got, want)
		}
	})
}

func TestAccess(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		s.SetClock(func() time.Time { return now })
		if _, err := s.Import(ctx, importGroups("alpha"), []ImportUser{{Name: "alice", Group: "alpha"}, {Name: "bob", Group: "alpha"}}); err != nil {
			t.Fatal(err)
		}

		// One-time tokens: used once, only by their user, not past expiry.
		if err := s.PutAccessToken(ctx, "t1", "alice", now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.PutAccessToken(ctx, "t1", "alice", now.Add(time.Hour)); !errors.Is(err, ErrConflict) {
			t.Fatalf("duplicate token: %v", err)
		}
		if err := s.PutAccessToken(ctx, "t9", "ghost", now.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("token of an unknown user: %v", err)
		}
		if err := s.UseAccessToken(ctx, "t1", "bob"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("another user's token: %v", err)
		}
		if err := s.UseAccessToken(ctx, "t1", "alice"); err != nil {
			t.Fatal(err)
		}
		if err := s.UseAccessToken(ctx, "t1", "alice"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("token used twice: %v", err)
		}
		s.PutAccessToken(ctx, "t2", "alice", now.Add(time.Second))
		now = now.Add(2 * time.Second)
		if err := s.UseAccessToken(ctx, "t2", "alice"); !errors.Is(err, ErrExpired) {
			t.Fatalf("expired token: %v", err)
		}
		if err := s.UseAccessToken(ctx, "t2", "alice"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired token was kept: %v", err)
		}

		// Sessions, expiry by text comparison of the timestamps, revocation.
		exp := now.Add(90 * time.Minute)
		if err := s.PutSession(ctx, "s1", "alice", exp); err != nil {
			t.Fatal(err)
		}
		if user, e, err := s.Session(ctx, "s1"); err != nil || user != "alice" || !e.Equal(exp) {
			t.Fatalf("session: %s %v %v", user, e, err)
		}
		s.PutSession(ctx, "s2", "alice", now.Add(500*time.Millisecond))
		s.PutSession(ctx, "s3", "bob", now.Add(time.Hour))
		s.PutAccessToken(ctx, "t3", "alice", now.Add(time.Hour))
		now = now.Add(time.Second)
		if _, _, err := s.Session(ctx, "s2"); !errors.Is(err, ErrExpired) {
			t.Fatalf("expired session: %v", err)
		}
		if err := s.DeleteExpired(ctx); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Session(ctx, "s2"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired session kept: %v", err)
		}
		if tokens, sessions, err := s.RevokeAccess(ctx, "alice"); err != nil || tokens != 1 || sessions != 1 {
			t.Fatalf("revoke: %d tokens, %d sessions, %v", tokens, sessions, err)
		}
		if err := s.DeleteSession(ctx, "s3"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Session(ctx, "s3"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted session: %v", err)
		}

		// Passwords: upsert and delete.
		if err := s.SetPassword(ctx, "alice", "h1"); err != nil {
			t.Fatal(err)
		}
		s.SetPassword(ctx, "alice", "h2")
		if h, err := s.PasswordHash(ctx, "alice"); err != nil || h != "h2" {
			t.Fatalf("password: %q %v", h, err)
		}
		s.SetPassword(ctx, "alice", "")
		if _, err := s.PasswordHash(ctx, "alice"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted password: %v", err)
		}
		if err := s.SetPassword(ctx, "ghost", "h"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("password of an unknown user: %v", err)
		}

		// Ports: the lowest free ones, oldest user first, in the range.
		s.SetClock(func() time.Time { return now.Add(time.Minute) })
		s.CreateUser(ctx, "carol", "alpha")
		full, err := s.AssignPorts(ctx, 9000, 9002, map[int]bool{9000: true})
		if err != nil || !reflect.DeepEqual(full, []string{"carol"}) {
			t.Fatalf("assign: full %v, %v", full, err)
		}
		ports, err := s.Ports(ctx)
		if err != nil || !reflect.DeepEqual(ports, map[string]int{"alice": 9001, "bob": 9002}) {
			t.Fatalf("ports: %v %v", ports, err)
		}
		if err := s.MovePort(ctx, "alice", 9002); !errors.Is(err, ErrConflict) {
			t.Fatalf("port taken twice: %v", err)
		}
		if err := s.MovePort(ctx, "alice", 9005); err != nil {
			t.Fatal(err)
		}
		if full, err := s.AssignPorts(ctx, 9000, 9002, nil); err != nil || len(full) != 0 {
			t.Fatalf("second assign: %v %v", full, err)
		}
		if ports, _ := s.Ports(ctx); ports["carol"] != 9000 {
			t.Fatalf("ports: %v", ports)
		}
	})
}

func TestGatewayKeysAndUsage(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		k := GatewayKey{ID: "user:alice", Kind: "user", Owner: "alice", Generation: 1, Hash: "h1"}
		if err := s.PutGatewayKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		if err := s.PutGatewayKey(ctx, GatewayKey{ID: "user:bob", Kind: "user", Owner: "bob", Generation: 1, Hash: "h1"}); !errors.Is(err, ErrConflict) {
			t.Fatalf("two keys with one hash: %v", err)
		}
		k.Generation, k.Hash, k.Revoked = 2, "h2", true
		if err := s.PutGatewayKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		s.PutGatewayKey(ctx, GatewayKey{ID: "group:alpha", Kind: "group", Owner: "alpha", Generation: 1, Hash: "h3"})
		got, err := s.GatewayKey(ctx, "user:alice")
		if err != nil || got.Generation != 2 || got.Hash != "h2" || !got.Revoked || got.CreatedAt.IsZero() {
			t.Fatalf("key: %+v %v", got, err)
		}
		if got, err := s.GatewayKeyByHash(ctx, "h3"); err != nil || got.ID != "group:alpha" || got.Revoked {
			t.Fatalf("by hash: %+v %v", got, err)
		}
		if _, err := s.GatewayKeyByHash(ctx, "h1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("rotated hash: %v", err)
		}
		keys, err := s.GatewayKeys(ctx)
		if err != nil || len(keys) != 2 || keys[0].ID != "group:alpha" || keys[1].ID != "user:alice" {
			t.Fatalf("keys: %+v %v", keys, err)
		}
		s.DeleteGatewayKey(ctx, "group:alpha")
		if _, err := s.GatewayKey(ctx, "group:alpha"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted key: %v", err)
		}

		// Usage: counters add up per minute; sums are 64-bit.
		m := time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)
		big := int64(3) << 31 // past 32 bits
		err = s.AddUsage(ctx, []UsageRow{
			{KeyID: "user:alice", Model: "m", Minute: m, Requests: 1, PromptTokens: 10, CompletionTokens: 5},
			{KeyID: "user:alice", Model: "m", Minute: m.Add(20 * time.Second), Requests: 1, PromptTokens: big, CompletionTokens: 1, Rejections: 1},
			{KeyID: "user:alice", Model: "m", Minute: m.Add(time.Minute), Requests: 2, PromptTokens: 1},
			{KeyID: "user:bob", Model: "m", Minute: m, Requests: 1, CompletionTokens: 7},
		})
		if err != nil {
			t.Fatal(err)
		}
		rows, err := s.Usage(ctx, UsageFilter{KeyIDs: []string{"user:alice"}})
		if err != nil || len(rows) != 2 {
			t.Fatalf("usage: %+v %v", rows, err)
		}
		want := UsageRow{KeyID: "user:alice", Model: "m", Minute: m.Truncate(time.Minute), Requests: 2, PromptTokens: 10 + big, CompletionTokens: 6, Rejections: 1}
		if rows[0] != want {
			t.Fatalf("first minute:\n got %+v\nwant %+v", rows[0], want)
		}
		if rows, _ := s.Usage(ctx, UsageFilter{Since: m.Add(time.Minute).Truncate(time.Minute)}); len(rows) != 1 || rows[0].Requests != 2 {
			t.Fatalf("usage since: %+v", rows)
		}
		if rows, _ := s.Usage(ctx, UsageFilter{}); len(rows) != 3 || rows[1].KeyID != "user:bob" {
			t.Fatalf("all usage: %+v", rows)
		}
		if p, c, err := s.UsedTokens(ctx, "user:alice"); err != nil || p != 11+big || c != 6 {
			t.Fatalf("used tokens: %d %d %v", p, c, err)
		}
		if p, c, err := s.UsedTokens(ctx, "user:nobody"); err != nil || p != 0 || c != 0 {
			t.Fatalf("used tokens of nobody: %d %d %v", p, c, err)
		}
	})
}

func TestAdminSessionsConfigFilesSettings(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		s.SetClock(func() time.Time { return now })
		a := AdminSession{Actor: "admin", CSRF: "c", Role: "admin", Expires: now.Add(time.Hour)}
		if err := s.PutAdminSession(ctx, "a1", a); err != nil {
			t.Fatal(err)
		}
		if err := s.PutAdminSession(ctx, "a1", a); !errors.Is(err, ErrConflict) {
			t.Fatalf("duplicate admin session: %v", err)
		}
		if got, err := s.AdminSession(ctx, "a1"); err != nil || got != a {
			t.Fatalf("admin session: %+v %v", got, err)
		}
		s.PutAdminSession(ctx, "a2", AdminSession{Actor: "admin", CSRF: "d", Expires: now.Add(time.Second)})
		now = now.Add(time.Second)
		if _, err := s.AdminSession(ctx, "a2"); !errors.Is(err, ErrExpired) {
			t.Fatalf("expired admin session: %v", err)
		}
		if _, err := s.AdminSession(ctx, "a2"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired admin session kept: %v", err)
		}
		s.DeleteAdminSession(ctx, "a1")
		if _, err := s.AdminSession(ctx, "a1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted admin session: %v", err)
		}
		s.PutAdminSession(ctx, "a3", a)
		if err := s.DeleteAdminSessions(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AdminSession(ctx, "a3"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("admin sessions survived: %v", err)
		}

		for _, f := range []ConfigFile{{Name: "b.json", Kind: "vscode", Content: "{}", UpdatedBy: "admin"}, {Name: "a.yaml", Kind: "groups", Content: "x: 1\n", UpdatedBy: "admin"}} {
			if err := s.PutConfigFile(ctx, f); err != nil {
				t.Fatal(err)
			}
		}
		s.PutConfigFile(ctx, ConfigFile{Name: "a.yaml", Kind: "groups", Content: "x: 2\n", UpdatedBy: "bob"})
		files, err := s.ConfigFiles(ctx)
		if err != nil || len(files) != 2 || files[0].Name != "a.yaml" || files[0].UpdatedBy != "bob" || files[0].Content != "" || !files[0].UpdatedAt.Equal(now) {
			t.Fatalf("config files: %+v %v", files, err)
		}
		if f, err := s.ConfigFile(ctx, "a.yaml"); err != nil || f.Content != "x: 2\n" {
			t.Fatalf("config file: %+v %v", f, err)
		}
		if err := s.DeleteConfigFile(ctx, "a.yaml"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteConfigFile(ctx, "a.yaml"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleting twice: %v", err)
		}
		if _, err := s.ConfigFile(ctx, "a.yaml"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted config file: %v", err)
		}

		if _, err := s.Setting(ctx, "sandbox"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unset setting: %v", err)
		}
		s.PutSetting(ctx, "sandbox", `{"a":1}`)
		if err := s.PutSetting(ctx, "sandbox", `{"a":2}`); err != nil {
			t.Fatal(err)
		}
		if v, err := s.Setting(ctx, "sandbox"); err != nil || v != `{"a":2}` {
			t.Fatalf("setting: %q %v", v, err)
		}
	})
}
