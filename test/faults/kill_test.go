package faults

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/daemon"
	"github.com/thon-dev/thon/internal/sandbox/docker"
	"github.com/thon-dev/thon/internal/testenv"
	"github.com/thon-dev/thon/internal/thontest"
)

var (
	buildOnce sync.Once
	thonPath  string
	buildErr  error
)

// thonBinary builds cmd/thon once for the tests that run it as organizers do.
func thonBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "thon-faults-bin")
		if err != nil {
			buildErr = err
			return
		}
		thonPath = filepath.Join(dir, "thon")
		out, err := exec.Command("go", "build", "-o", thonPath, filepath.Join(testenv.ModuleRoot(t), "cmd", "thon")).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build thon: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return thonPath
}

// organizer is a working directory with a thon.yaml, and the thon binary.
type organizer struct {
	t        *testing.T
	dir, bin string
	instance string
	env      []string
}

func newOrganizer(t *testing.T, database string, users int) *organizer {
	t.Helper()
	o := &organizer{t: t, dir: t.TempDir(), bin: thonBinary(t), instance: testenv.Prefix(t)}
	o.env = append(os.Environ(), "THON_INSTANCE="+o.instance, "HOME="+o.dir)
	a := thontest.Access(t)
	var groups strings.Builder
	for g := range 3 {
		fmt.Fprintf(&groups, "  team%d: [", g)
		for u := g; u < users; u += 3 {
			if u > g {
				groups.WriteString(", ")
			}
			fmt.Fprintf(&groups, "p%02d", u)
		}
		groups.WriteString("]\n")
	}
	db := ""
	if database != "" {
		db = "  database: " + database + "\n"
	}
	cfg := fmt.Sprintf(`server:
  data_dir: %s
  listen: 127.0.0.1:%d
%saccess:
  external_ip: 127.0.0.1
  https_port: %d
  http_port: 0
  port_range: %s
gateway:
  listen: 0.0.0.0:%d
sandbox:
  image: %s
  startup_timeout: 90s
  concurrency: 3
  limits: {cpu: 0.5, memory: 128Mi, pids: 64}
groups:
%s`, o.data(), thontest.FreePort(t), db, a.HTTPSPort, a.PortRange, thontest.FreePort(t), testenv.SandboxImage(t), groups.String())
	if err := os.WriteFile(filepath.Join(o.dir, "thon.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		o.cmd(context.Background(), "down").Run()
		testenv.Cleanup(t, o.instance)
	})
	return o
}

func (o *organizer) data() string { return filepath.Join(o.dir, "data") }

func (o *organizer) cmd(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, o.bin, args...)
	c.Dir, c.Env = o.dir, o.env
	return c
}

// daemonPid is the pid in the data directory's lock file (0: none yet).
func (o *organizer) daemonPid() int {
	b, _ := os.ReadFile(filepath.Join(o.data(), daemon.LockFile))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

type container struct{ id, user, state string }

// containers are this event's sandboxes on the engine.
func (o *organizer) containers(cli *client.Client) []container {
	o.t.Helper()
	res, err := cli.ContainerList(context.Background(), client.ContainerListOptions{
		All: true, Filters: make(client.Filters).Add("label", docker.LabelInstance+"="+o.instance),
	})
	if err != nil {
		o.t.Fatal(err)
	}
	var out []container
	for _, c := range res.Items {
		if c.Labels["io.thon.user"] == "" {
			continue // a helper, not a sandbox
		}
		out = append(out, container{c.ID, c.Labels["io.thon.user"], string(c.State)})
	}
	return out
}

// TestDaemonKilledMidRun kills the daemon (SIGKILL) while `thon run` brings
// 30 sandboxes up on the real Docker engine, then runs `thon run` again:
// exactly 30 sandboxes, one per participant, those already running at the
// kill kept (not recreated), every participant in the store, an audit log
// without a duplicate creation, and a store that passes its integrity check
// (SQLite's PRAGMA integrity_check; on PostgreSQL amcheck's B-tree checks).
func TestDaemonKilledMidRun(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { killMidRun(t, "") })
	t.Run("postgres", func(t *testing.T) { killMidRun(t, testenv.Postgres(t)) })
}

const participants = 30

func killMidRun(t *testing.T, database string) {
	cli := testenv.Docker(t)
	o := newOrganizer(t, database, participants)
	ctx := context.Background()

	// The first run, killed once a third of the sandboxes exist.
	first := o.cmd(ctx, "run")
	var out bytes.Buffer
	first.Stdout, first.Stderr = &out, &out
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = first.Wait(); close(exited) }()
	deadline := time.Now().Add(3 * time.Minute)
	for len(o.containers(cli)) < participants/3 {
		select {
		case <-exited:
			t.Fatalf("`thon run` ended before the kill:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			first.Process.Kill()
			t.Fatalf("no %d sandboxes after 3 minutes:\n%s", participants/3, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	pid := o.daemonPid()
	if pid == 0 {
		t.Fatalf("no daemon pid in %s", daemon.LockFile)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-exited
	err := waitErr
	atKill := o.containers(cli)
	running := map[string]string{} // user → container running when the daemon died
	for _, c := range atKill {
		if c.state == "running" {
			running[c.user] = c.id
		}
	}
	t.Logf("killed daemon %d with %d sandboxes on the engine (%d running); the interrupted run: %v", pid, len(atKill), len(running), err)
	if err == nil {
		t.Fatalf("the interrupted `thon run` exited 0:\n%s", out.String())
	}
	if database == "" {
		checkSQLite(t, filepath.Join(o.data(), daemon.DBFile), "after the kill")
	}

	// The second run starts a new daemon and brings everyone up.
	second := o.cmd(ctx, "run")
	res, err := second.CombinedOutput()
	if err != nil {
		t.Fatalf("second `thon run`: %v\n%s", err, res)
	}
	t.Logf("all %d sandboxes up %.1fs after the kill (the second run took that long, a new daemon included)", participants, time.Since(killed).Seconds())

	after := o.containers(cli)
	byUser := map[string][]container{}
	for _, c := range after {
		byUser[c.user] = append(byUser[c.user], c)
	}
	if len(after) != participants || len(byUser) != participants {
		t.Fatalf("%d containers for %d participants after the second run, want %d each", len(after), len(byUser), participants)
	}
	for u, cs := range byUser {
		if len(cs) != 1 || cs[0].state != "running" {
			t.Errorf("%s: %+v, want one running sandbox", u, cs)
		}
		if id, ok := running[u]; ok && cs[0].id != id {
			t.Errorf("%s's sandbox was running at the kill and was recreated (%s → %s)", u, id[:12], cs[0].id[:12])
		}
	}

	// The store: everyone, each sandbox its container, the audit log whole.
	db := openDB(t, o, database)
	var users int
	db.QueryRow(`SELECT count(*) FROM users`).Scan(&users)
	if users != participants {
		t.Errorf("%d users in the store, want %d", users, participants)
	}
	rows, err := db.Query(`SELECT user_name, instance_id, state FROM sandboxes`)
	if err != nil {
		t.Fatal(err)
	}
	recorded := 0
	for rows.Next() {
		var u, id, state string
		rows.Scan(&u, &id, &state)
		recorded++
		if cs := byUser[u]; len(cs) != 1 || cs[0].id != id || state != "running" {
			t.Errorf("store: %s's sandbox is %s %s, the engine has %+v", u, state, id, cs)
		}
	}
	rows.Close()
	if recorded != participants {
		t.Errorf("%d sandboxes in the store, want %d", recorded, participants)
	}
	created := map[string]int{}
	audited := map[string]bool{}
	rows, err = db.Query(`SELECT id, time, actor, action, target, detail FROM events ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	events := 0
	for rows.Next() {
		var id int64
		var tm, actor, action, target, detail string
		rows.Scan(&id, &tm, &actor, &action, &target, &detail)
		events++
		if id <= last || tm == "" || actor == "" || action == "" {
			t.Errorf("audit event %d after %d is not whole: %q %q %q", id, last, tm, actor, action)
		}
		last = id
		if strings.HasPrefix(action, "sandbox.") {
			audited[target] = true
			if detail == "created" {
				created[target]++
			}
		}
	}
	rows.Close()
	unaudited := 0
	for u := range byUser {
		if created[u] > 1 {
			t.Errorf("the audit log has %s's sandbox created %d times", u, created[u])
		}
		if !audited[u] {
			unaudited++
		}
	}
	t.Logf("audit: %d events; %d sandboxes created on record; %d participants without a sandbox event", events, len(created), unaudited)
	if unaudited > 0 {
		t.Errorf("%d participants' sandboxes run without an audit event saying so", unaudited)
	}
	if database == "" {
		checkSQLite(t, filepath.Join(o.data(), daemon.DBFile), "after the second run")
	} else {
		checkPostgres(t, db)
	}
}

func openDB(t *testing.T, o *organizer, database string) *sql.DB {
	t.Helper()
	var db *sql.DB
	var err error
	if database == "" {
		db, err = sql.Open("sqlite", "file:"+filepath.Join(o.data(), daemon.DBFile)+"?mode=ro&_pragma=busy_timeout(5000)")
	} else {
		db, err = sql.Open("pgx", database)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// checkSQLite runs SQLite's own integrity check and foreign key check.
func checkSQLite(t *testing.T, path, when string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&res); err != nil || res != "ok" {
		t.Fatalf("SQLite integrity_check %s: %q %v", when, res, err)
	}
	rows, err := db.Query(`PRAGMA foreign_key_check`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if rows.Next() {
		t.Fatalf("SQLite foreign_key_check %s: a row points nowhere", when)
	}
	t.Logf("SQLite %s: integrity_check ok, foreign_key_check clean", when)
}

// checkPostgres checks every B-tree index of the store against its table
// (amcheck, shipped with PostgreSQL) and every foreign key.
func checkPostgres(t *testing.T, db *sql.DB) {
	t.Helper()
	if _, err := db.Exec(`CREATE EXTENSION IF NOT EXISTS amcheck`); err != nil {
		t.Fatalf("amcheck: %v", err)
	}
	rows, err := db.Query(`SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am a ON a.oid = c.relam
		WHERE n.nspname = current_schema() AND a.amname = 'btree'`)
	if err != nil {
		t.Fatal(err)
	}
	var idx []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		idx = append(idx, n)
	}
	rows.Close()
	for _, n := range idx {
		if _, err := db.Exec(`SELECT bt_index_check($1::regclass, true)`, n); err != nil {
			t.Errorf("amcheck %s: %v", n, err)
		}
	}
	var orphans int
	db.QueryRow(`SELECT count(*) FROM sandboxes s LEFT JOIN users u ON u.name = s.user_name WHERE u.name IS NULL`).Scan(&orphans)
	if orphans > 0 {
		t.Errorf("%d sandboxes of no user", orphans)
	}
	t.Logf("PostgreSQL: bt_index_check(heapallindexed) ok on %d indexes", len(idx))
}
