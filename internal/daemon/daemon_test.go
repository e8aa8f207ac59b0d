package daemon_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/daemon"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/testenv"
	"github.com/thon-dev/thon/internal/thontest"
)

var alphaBeta = []config.Group{{Name: "alpha", Users: []string{"alice", "bob"}}, {Name: "beta", Users: []string{"carol"}}}

func TestAPIRequiresTheAdminToken(t *testing.T) {
	h := thontest.New(t, thontest.FakeEngine())
	ctx := context.Background()

	// Only the token's hash is in the data directory's database; the token
	// file is private to the daemon's user.
	fi, err := os.Stat(filepath.Join(h.Config.Server.DataDir, daemon.TokenFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v %v", fi.Mode(), err)
	}
	db, _ := os.ReadFile(filepath.Join(h.Config.Server.DataDir, daemon.DBFile))
	if strings.Contains(string(db), h.Daemon.Token) {
		t.Fatal("the admin token is stored in clear in the database")
	}

	for _, tok := range []string{"", "thon_wrong", h.Daemon.Token + "x"} {
		_, err := client.New(h.Daemon.URL, tok).Groups(ctx)
		var e *client.Error
		if !errors.As(err, &e) || e.StatusCode != http.StatusUnauthorized {
			t.Fatalf("token %q: %v", tok, err)
		}
	}
	if err := client.New(h.Daemon.URL, "").Health(ctx); err != nil {
		t.Fatalf("health needs no token: %v", err)
	}
	// The token survives a restart: the CLI keeps working.
	h.Stop()
	h.Start()
	if _, err := h.Client.Groups(ctx); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

func TestNamesAreValidatedAtTheEdge(t *testing.T) {
	h := thontest.New(t, thontest.Groups(alphaBeta...), thontest.FakeEngine())
	ctx := context.Background()
	for _, bad := range []string{"Alice", "al_ice", "-x", strings.Repeat("a", 64), "a/b"} {
		_, err := h.Client.CreateUser(ctx, bad, "alpha")
		var e *client.Error
		if !errors.As(err, &e) || e.StatusCode != http.StatusBadRequest {
			t.Errorf("user %q: %v", bad, err)
		}
	}
	if _, err := h.Client.CreateUser(ctx, "dave", "nope"); !client.IsNotFound(err) {
		t.Errorf("user in a missing group: %v", err)
	}
	if _, err := h.Client.CreateUser(ctx, "alice", "beta"); err == nil || !strings.Contains(err.Error(), "conflict") {
		t.Errorf("duplicate user: %v", err)
	}
	// A bad import is refused whole, with every problem, and changes nothing.
	cfg := config.Default()
	cfg.Sandbox.Port = 0
	cfg.Groups = config.Groups{{Name: "gamma", Users: []string{"Eve"}}}
	_, err := h.Client.Import(ctx, cfg)
	var e *client.Error
	if !errors.As(err, &e) || e.StatusCode != http.StatusUnprocessableEntity || len(e.Problems) < 2 {
		t.Fatalf("bad import: %v", err)
	}
	if gs, _ := h.Client.Groups(ctx); len(gs) != 2 {
		t.Fatalf("a refused import changed groups: %+v", gs)
	}
}

func TestBulkStartStreamsProgressAndIsIdempotent(t *testing.T) {
	h := thontest.New(t, thontest.Groups(alphaBeta...), thontest.FakeEngine())
	ctx := context.Background()
	var done []string
	phases := map[string]bool{}
	sum, err := h.Client.Bulk(ctx, client.BulkRequest{Action: "start"}, func(p client.Progress) {
		phases[p.Phase] = true
		if p.Phase == "done" {
			done = append(done, p.User)
			if p.Total != 3 || p.Done != len(done) {
				t.Errorf("progress %d/%d after %d done", p.Done, p.Total, len(done))
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Total != 3 || sum.Counts["created"] != 3 || sum.Failed != 0 || len(done) != 3 {
		t.Fatalf("summary %+v, done %v", sum, done)
	}
	for _, ph := range []string{"creating", "starting", "waiting", "done"} {
		if !phases[ph] {
			t.Errorf("no %q progress", ph)
		}
	}
	list, err := h.Client.Sandboxes(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list.Items {
		if s.State != "running" || s.Endpoint == "" || s.Outdated {
			t.Fatalf("%s: %+v", s.User, s)
		}
		resp, err := http.Get("http://" + s.Endpoint + "/healthz")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s's IDE does not answer at %s: %v", s.User, s.Endpoint, err)
		}
		resp.Body.Close()
	}
	sum, err = h.Client.Bulk(ctx, client.BulkRequest{Action: "start"}, nil)
	if err != nil || sum.Counts["unchanged"] != 3 {
		t.Fatalf("second start: %+v %v", sum, err)
	}
	// Unknown groups are refused before anything runs.
	if _, err := h.Client.Bulk(ctx, client.BulkRequest{Action: "stop", Groups: []string{"nope"}}, nil); !client.IsNotFound(err) {
		t.Fatalf("bulk on an unknown group: %v", err)
	}
	// Stop one group only.
	sum, err = h.Client.Bulk(ctx, client.BulkRequest{Action: "stop", Groups: []string{"beta"}}, nil)
	if err != nil || sum.Total != 1 || sum.Counts["stopped"] != 1 {
		t.Fatalf("stop beta: %+v %v", sum, err)
	}
	if s, _ := h.Client.Sandbox(ctx, "alice"); s.State != "running" {
		t.Fatalf("alice was touched by a beta action: %+v", s)
	}
}

func TestRestartAdoptsRunningSandboxesAndReportsOrphans(t *testing.T) {
	h := thontest.New(t, thontest.Groups(alphaBeta...), thontest.FakeEngine())
	ctx := context.Background()
	if _, err := h.Client.Bulk(ctx, client.BulkRequest{Action: "start"}, nil); err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for _, u := range []string{"alice", "bob", "carol"} {
		inst, err := h.Runtime.Inspect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		before[u] = inst.ID
	}
	// A sandbox THON manages but whose user the store does not know.
	spec := h.Daemon.Orch.Spec("mallory", "alpha")
	if _, err := h.Runtime.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}

	h.Stop()
	// While the daemon is down, bob's sandbox is stopped behind its back.
	if err := h.Runtime.Stop(ctx, "bob", 0); err != nil {
		t.Fatal(err)
	}
	h.Start()

	list, err := h.Client.Sandboxes(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, s := range list.Items {
		states[s.User] = s.State
	}
	if states["alice"] != "running" || states["carol"] != "running" || states["bob"] != "stopped" {
		t.Fatalf("states after restart: %v", states)
	}
	if len(list.Orphans) != 1 || list.Orphans[0].User != "mallory" {
		t.Fatalf("orphans: %+v", list.Orphans)
	}
	sum, err := h.Client.Bulk(ctx, client.BulkRequest{Action: "start"}, nil)
	if err != nil || sum.Counts["unchanged"] != 2 || sum.Counts["started"] != 1 {
		t.Fatalf("start after restart: %+v %v", sum, err)
	}
	for u, id := range before {
		if inst, _ := h.Runtime.Inspect(ctx, u); inst.ID != id {
			t.Fatalf("%s's sandbox was recreated instead of adopted", u)
		}
	}
	res, err := h.Client.RemoveOrphans(ctx, true)
	if err != nil || len(res) != 1 || res[0].Outcome != "removed" {
		t.Fatalf("remove orphans: %+v %v", res, err)
	}
	if _, err := h.Runtime.Inspect(ctx, "mallory"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("orphan still there: %v", err)
	}
}

func TestActionsAuditAndLogs(t *testing.T) {
	h := thontest.New(t, thontest.Groups(alphaBeta...), thontest.FakeEngine())
	ctx := context.Background()
	if _, err := h.Client.Action(ctx, "alice", "start"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Client.Action(ctx, "alice", "explode"); err == nil {
		t.Fatal("unknown action accepted")
	}
	if _, err := h.Client.Action(ctx, "bob", "pause"); err == nil || !strings.Contains(err.Error(), "start it first") {
		t.Fatalf("pausing a sandbox that does not exist: %v", err)
	}
	for _, a := range []string{"pause", "resume", "stop", "start"} {
		r, err := h.Client.Action(ctx, "alice", a)
		if err != nil || r.Outcome == "failed" {
			t.Fatalf("%s: %+v %v", a, r, err)
		}
	}
	rc, err := h.Client.Logs(ctx, "alice", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.Contains(string(b), "listening") {
		t.Fatalf("logs: %q", b)
	}
	if _, err := h.Client.Logs(ctx, "bob", 0, false); !client.IsNotFound(err) {
		t.Fatalf("logs of a user without a sandbox: %v", err)
	}
	evs, err := h.Client.Events(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, e := range evs {
		if e.Target == "alice" {
			seen = append(seen, e.Action)
		}
		if e.Actor == "" {
			t.Errorf("event without an actor: %+v", e)
		}
	}
	want := "sandbox.start sandbox.pause sandbox.resume sandbox.stop sandbox.start"
	if got := strings.Join(seen, " "); got != want {
		t.Fatalf("audit log for alice:\n got %s\nwant %s", got, want)
	}
	// Deleting a user removes the sandbox; with purge, the volume too.
	if err := h.Client.DeleteUser(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Runtime.Inspect(ctx, "alice"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("alice's sandbox after delete: %v", err)
	}
}

func TestFailureIsKeptUntilTheSandboxRuns(t *testing.T) {
	h := thontest.New(t, thontest.Groups(alphaBeta...), thontest.FakeEngine())
	ctx := context.Background()
	h.Config.Sandbox.Env = map[string]string{"FAIL_USERS": "bob"}
	if _, err := h.Client.Import(ctx, h.Config); err != nil {
		t.Fatal(err)
	}
	sum, err := h.Client.Bulk(ctx, client.BulkRequest{Action: "start", Groups: []string{"alpha"}}, nil)
	if err != nil || sum.Failed != 1 || sum.Counts["created"] != 1 {
		t.Fatalf("start: %+v %v", sum, err)
	}
	// The crash-looping sandbox was stopped, and a resync keeps the failure.
	if inst, err := h.Runtime.Inspect(ctx, "bob"); err != nil || inst.State != sandbox.StateStopped {
		t.Fatalf("bob's sandbox should be stopped, not crash-looping: %+v %v", inst, err)
	}
	if _, err := h.Daemon.Orch.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	s, _ := h.Client.Sandbox(ctx, "bob")
	if s.State != "failed" || !strings.Contains(s.Error, "exited with code 3") {
		t.Fatalf("bob after resync: %+v", s)
	}
	// With the settings fixed, a recreate brings it up and clears the failure.
	h.Config.Sandbox.Env = nil
	h.Client.Import(ctx, h.Config)
	if r, err := h.Client.Action(ctx, "bob", "recreate"); err != nil || r.State != "running" {
		t.Fatalf("recreate bob: %+v %v", r, err)
	}
	if s, _ := h.Client.Sandbox(ctx, "bob"); s.State != "running" || s.Error != "" {
		t.Fatalf("bob after recreate: %+v", s)
	}
}

// With server.database a daemon keeps its state in PostgreSQL: a second
// daemon on another data directory sees the same participants and events.
func TestDaemonOnPostgres(t *testing.T) {
	dsn := testenv.Postgres(t)
	h := thontest.New(t, thontest.FakeEngine())
	h.Stop()
	h.Config.Server.Database = dsn
	h.Config.Groups = alphaBeta
	h.Start()
	ctx := context.Background()
	if _, err := h.Client.Import(ctx, h.Config); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Client.Action(ctx, "alice", "start"); err != nil {
		t.Fatal(err)
	}
	h.Stop()
	h.Config.Server.DataDir = t.TempDir() // a replica elsewhere, same database
	h.Start()
	users, err := h.Client.Users(ctx)
	if err != nil || len(users) != 3 {
		t.Fatalf("users on the second daemon: %+v %v", users, err)
	}
	if s, err := h.Client.Sandbox(ctx, "alice"); err != nil || s.State != "running" {
		t.Fatalf("alice on the second daemon: %+v %v", s, err)
	}
	evs, _ := h.Client.Events(ctx, 0, 100)
	if len(evs) == 0 {
		t.Fatal("no audit events in PostgreSQL")
	}
}
