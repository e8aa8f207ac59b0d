package store

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestGroupsAndUsers(t *testing.T) { eachBackend(t, testGroupsAndUsers) }

func testGroupsAndUsers(t *testing.T, dsn string) {
	ctx := context.Background()
	s := open(t, dsn)
	if err := s.CreateGroup(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateGroup(ctx, "alpha"); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate group: %v", err)
	}
	if err := s.CreateUser(ctx, "alice", "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("user in a missing group: %v", err)
	}
	if err := s.CreateUser(ctx, "alice", "alpha"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, "alice", "alpha"); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate user: %v", err)
	}
	if err := s.DeleteGroup(ctx, "alpha"); !errors.Is(err, ErrConflict) {
		t.Fatalf("deleting a group with users: %v", err)
	}
	s.CreateGroup(ctx, "beta")
	if err := s.MoveUser(ctx, "alice", "beta"); err != nil {
		t.Fatal(err)
	}
	u, err := s.User(ctx, "alice")
	if err != nil || u.Group != "beta" {
		t.Fatalf("after move: %+v %v", u, err)
	}
	g, err := s.Group(ctx, "beta")
	if err != nil || !reflect.DeepEqual(g.Users, []string{"alice"}) {
		t.Fatalf("group beta: %+v %v", g, err)
	}
	if err := s.DeleteGroup(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.User(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted user: %v", err)
	}
}

func TestImportUpsertsAndNeverDeletes(t *testing.T) { eachBackend(t, testImportUpsertsAndNeverDeletes) }

func testImportUpsertsAndNeverDeletes(t *testing.T, dsn string) {
	ctx := context.Background()
	s := open(t, dsn)
	res, err := s.Import(ctx, importGroups("alpha", "beta"), []ImportUser{{Name: "alice", Group: "alpha"}, {Name: "bob", Group: "alpha"}, {Name: "carol", Group: "beta"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.GroupsAdded) != 2 || len(res.UsersAdded) != 3 {
		t.Fatalf("first import: %+v", res)
	}
	// bob moves, carol is no longer listed, dave is new.
	res, err = s.Import(ctx, importGroups("alpha", "beta"), []ImportUser{{Name: "alice", Group: "alpha"}, {Name: "bob", Group: "beta"}, {Name: "dave", Group: "beta"}})
	if err != nil {
		t.Fatal(err)
	}
	want := ImportResult{GroupsAdded: []string{}, UsersAdded: []string{"dave"}, UsersMoved: map[string]string{"bob": "beta"}, Unchanged: 1, NotListed: []string{"carol"}}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("second import:\n got %+v\nwant %+v", res, want)
	}
	// The state survives closing and reopening the database (migrations run once).
	s.Close()
	s2, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	users, _ := s2.Users(ctx, "beta")
	var names []string
	for _, u := range users {
		names = append(names, u.Name)
	}
	if !reflect.DeepEqual(names, []string{"bob", "carol", "dave"}) {
		t.Fatalf("beta after reopen: %v", names)
	}
}

func TestSandboxRecordsFollowUsers(t *testing.T) { eachBackend(t, testSandboxRecordsFollowUsers) }

func testSandboxRecordsFollowUsers(t *testing.T, dsn string) {
	ctx := context.Background()
	s := open(t, dsn)
	s.Import(ctx, importGroups("alpha"), []ImportUser{{Name: "alice", Group: "alpha"}})
	if err := s.PutSandbox(ctx, Sandbox{User: "alice", InstanceID: "c1", State: "running", Endpoint: "10.0.0.2:8080"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSandbox(ctx, Sandbox{User: "alice", InstanceID: "c1", State: "stopped"}); err != nil {
		t.Fatal(err)
	}
	boxes, _ := s.Sandboxes(ctx)
	if b := boxes["alice"]; b.State != "stopped" || b.Endpoint != "" || b.UpdatedAt.IsZero() {
		t.Fatalf("record: %+v", b)
	}
	if err := s.PutSandbox(ctx, Sandbox{User: "ghost", State: "running"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a sandbox record for an unknown user: %v", err)
	}
	s.DeleteUser(ctx, "alice")
	if boxes, _ := s.Sandboxes(ctx); len(boxes) != 0 {
		t.Fatalf("records outlived their user: %+v", boxes)
	}
}

func TestSandboxTimesAndActivity(t *testing.T) { eachBackend(t, testSandboxTimesAndActivity) }

func testSandboxTimesAndActivity(t *testing.T, dsn string) {
	ctx := context.Background()
	s := open(t, dsn)
	s.Import(ctx, []ImportGroup{{Name: "alpha"}}, []ImportUser{{Name: "alice", Group: "alpha"}, {Name: "bob", Group: "alpha"}})
	for _, u := range []string{"alice", "bob"} {
		if err := s.PutSandbox(ctx, Sandbox{User: u, InstanceID: "c-" + u, State: "running"}); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	expires, idle := t0.Add(12*time.Hour), SleepIdle
	if err := s.SetSandboxTimes(ctx, "alice", SandboxTimes{StartedAt: &t0, Expires: &expires, Sleep: &idle}); err != nil {
		t.Fatal(err)
	}
	// Whole seconds, then a fraction: compared as times, not as text.
	if err := s.RecordActivity(ctx, map[string]time.Time{"alice": t0.Add(time.Minute), "bob": t0.Add(time.Second + 5*time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordActivity(ctx, map[string]time.Time{"alice": t0.Add(30 * time.Second), "bob": t0.Add(2 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	// A state change keeps them.
	if err := s.PutSandbox(ctx, Sandbox{User: "alice", InstanceID: "c-alice", State: "stopped"}); err != nil {
		t.Fatal(err)
	}
	boxes, err := s.Sandboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, b := boxes["alice"], boxes["bob"]
	if !a.StartedAt.Equal(t0) || !a.Expires.Equal(expires) || a.Sleep != SleepIdle || !a.LastActive.Equal(t0.Add(time.Minute)) {
		t.Errorf("alice: %+v", a)
	}
	if !b.LastActive.Equal(t0.Add(2*time.Second)) || b.Sleep != "" || !b.StartedAt.IsZero() {
		t.Errorf("bob: %+v (activity went back, or times appeared)", b)
	}
	awake := ""
	if err := s.SetSandboxTimes(ctx, "alice", SandboxTimes{Sleep: &awake}); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Sandbox(ctx, "alice"); a.Sleep != "" || !a.Expires.Equal(expires) {
		t.Errorf("alice woken: %+v", a)
	}
}

func TestEventsAndTokens(t *testing.T) { eachBackend(t, testEventsAndTokens) }

func testEventsAndTokens(t *testing.T, dsn string) {
	ctx := context.Background()
	s := open(t, dsn)
	for i, a := range []string{"one", "two", "three"} {
		e, err := s.AddEvent(ctx, "admin", a, "alice", "")
		if err != nil || e.ID != int64(i+1) {
			t.Fatalf("event %s: %+v %v", a, e, err)
		}
	}
	evs, _ := s.Events(ctx, 0, 2)
	if len(evs) != 2 || evs[0].Action != "two" || evs[1].Action != "three" {
		t.Fatalf("newest two, oldest first: %+v", evs)
	}
	evs, _ = s.Events(ctx, 1, 10)
	if len(evs) != 2 || evs[0].ID != 2 {
		t.Fatalf("after 1: %+v", evs)
	}
	if err := s.PutToken(ctx, "admin", "h1", "admin"); err != nil {
		t.Fatal(err)
	}
	s.PutToken(ctx, "admin", "h2", "admin") // rotation replaces the hash
	if _, err := s.TokenRecord(ctx, "h1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old hash still valid: %v", err)
	}
	if tok, err := s.TokenRecord(ctx, "h2"); err != nil || tok.Name != "admin" || tok.Role != "admin" {
		t.Fatalf("new hash: %+v %v", tok, err)
	}
}

// importGroups is groups without titles, for Import.
func importGroups(names ...string) []ImportGroup {
	out := make([]ImportGroup, len(names))
	for i, n := range names {
		out[i] = ImportGroup{Name: n}
	}
	return out
}

// Titles and e-mails from thon.yaml are stored, changed when thon.yaml
// changes them, and kept when it leaves them out.
func TestImportTitlesAndEmails(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		if _, err := s.Import(ctx, []ImportGroup{{Name: "alpha", Title: "Team Alpha"}}, []ImportUser{{Name: "alice", Group: "alpha", Email: "alice@example.org"}, {Name: "bob", Group: "alpha"}}); err != nil {
			t.Fatal(err)
		}
		g, err := s.Group(ctx, "alpha")
		if err != nil || g.Title != "Team Alpha" {
			t.Fatalf("group: %+v %v", g, err)
		}
		if u, err := s.User(ctx, "alice"); err != nil || u.Email != "alice@example.org" {
			t.Fatalf("alice: %+v %v", u, err)
		}
		res, err := s.Import(ctx, []ImportGroup{{Name: "alpha", Title: "Alpha squad"}}, []ImportUser{{Name: "alice", Group: "alpha"}, {Name: "bob", Group: "alpha", Email: "bob@example.org"}})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(res.Updated, []string{"alpha", "bob"}) || res.Unchanged != 1 {
			t.Fatalf("second import: %+v", res)
		}
		gs, _ := s.Groups(ctx)
		users, _ := s.Users(ctx)
		if gs[0].Title != "Alpha squad" || users[0].Email != "alice@example.org" || users[1].Email != "bob@example.org" {
			t.Fatalf("after: %+v %+v", gs, users)
		}
		// The same again changes nothing.
		res, _ = s.Import(ctx, []ImportGroup{{Name: "alpha", Title: "Alpha squad"}}, []ImportUser{{Name: "alice", Group: "alpha"}, {Name: "bob", Group: "alpha", Email: "bob@example.org"}})
		if len(res.Updated) != 0 || res.Unchanged != 2 {
			t.Fatalf("third import: %+v", res)
		}
	})
}
