package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/thontest"
)

// ownPostgres is a PostgreSQL server of the test's own (initdb into a temp
// directory, its own port), so the test may restart it: the machine's
// shared server is never touched.
type ownPostgres struct {
	t         *testing.T
	bin, data string
	port      int
}

func startOwnPostgres(t *testing.T) *ownPostgres {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: the fast tier starts no PostgreSQL server; run without -short")
	}
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		t.Fatal("PostgreSQL's initdb is not installed: apt-get install postgresql (scripts/test does)")
	}
	sort.Strings(bins)
	dir, err := os.MkdirTemp("", "thon-faults-pg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pg := &ownPostgres{t: t, bin: filepath.Dir(bins[len(bins)-1]), data: filepath.Join(dir, "data"), port: thontest.FreePort(t)}
	if os.Getuid() == 0 { // PostgreSQL refuses to run as root
		os.Chmod(dir, 0o777)
	}
	pg.run("initdb", "-D", pg.data, "-U", "thon", "--auth=trust", "-E", "UTF8")
	pg.ctl("start")
	t.Cleanup(func() { pg.ctl("stop", "-m", "immediate") })
	return pg
}

func (pg *ownPostgres) run(name string, args ...string) {
	pg.t.Helper()
	path := filepath.Join(pg.bin, name)
	var cmd *exec.Cmd
	if os.Getuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = "/"
	if out, err := cmd.CombinedOutput(); err != nil {
		pg.t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// ctl runs pg_ctl, waiting (-w) until the server is up or down.
func (pg *ownPostgres) ctl(action string, args ...string) {
	pg.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", pg.port, filepath.Dir(pg.data))
	pg.run("pg_ctl", append([]string{action, "-w", "-D", pg.data, "-o", opts, "-l", filepath.Join(filepath.Dir(pg.data), "log")}, args...)...)
}

func (pg *ownPostgres) dsn() string {
	return fmt.Sprintf("postgres://thon@127.0.0.1:%d/postgres?sslmode=disable", pg.port)
}

// TestPostgresRestarted restarts the PostgreSQL server under a daemon that
// keeps its store there, while a client reads and writes through the API:
// the daemon reconnects by itself, and every request sent once the server
// is back succeeds (requests fail only while it is down).
func TestPostgresRestarted(t *testing.T) {
	pg := startOwnPostgres(t)
	h := thontest.New(t, thontest.FakeEngine())
	h.Stop()
	h.Config.Server.Database = pg.dsn()
	h.Config.Groups = event
	h.Start()
	ctx := context.Background()
	if _, err := h.Client.Import(ctx, h.Config); err != nil {
		t.Fatal(err)
	}

	type result struct {
		sent time.Time
		err  error
	}
	var mu sync.Mutex
	var results []result
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			sent := time.Now()
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := h.Client.Users(rctx)
			if err == nil && i%5 == 0 { // a write now and then: an audited link
				_, err = h.Client.IssueLink(rctx, "alice")
			}
			cancel()
			mu.Lock()
			results = append(results, result{sent, err})
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	})
	time.Sleep(time.Second)
	down := time.Now()
	pg.ctl("restart", "-m", "fast")
	back := time.Now()
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()

	var before, during, after, failedAfter int
	var lastErr error
	var firstFail, lastFail time.Time
	for _, r := range results {
		switch {
		case r.sent.Before(down):
			before++
		case r.sent.Before(back):
			during++
		default:
			after++
		}
		if r.err != nil {
			if firstFail.IsZero() {
				firstFail = r.sent
			}
			lastFail, lastErr = r.sent, r.err
			if !r.sent.Before(back) {
				failedAfter++
				t.Errorf("a request sent %v after PostgreSQL was back failed: %v", r.sent.Sub(back), r.err)
			}
			if r.sent.Before(down) {
				t.Errorf("a request failed before the restart: %v", r.err)
			}
		}
	}
	t.Logf("PostgreSQL restart (pg_ctl restart -m fast) took %.0fms; requests: %d before, %d during, %d after; failed after it was back: %d",
		back.Sub(down).Seconds()*1000, before, during, after, failedAfter)
	if !lastFail.IsZero() {
		t.Logf("failures from %v to %v after the restart began; last: %v", firstFail.Sub(down), lastFail.Sub(down), lastErr)
	}
	if after == 0 {
		t.Fatal("no request after the restart")
	}
	if _, err := h.Client.Users(ctx); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
}
