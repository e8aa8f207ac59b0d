package faults

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/daemon"
	"github.com/thon-dev/thon/internal/thontest"
)

// TestDataDirectoryFull puts the daemon's data directory on a small tmpfs,
// fills it, and writes through the API: each write is refused with a clear
// error (not a 500), nothing is half-written, and once space returns the
// same writes work without a restart and the store passes its integrity
// check.
func TestDataDirectoryFull(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the fast tier mounts nothing; run without -short (as root, for the tmpfs)")
	}
	if os.Getuid() != 0 {
		t.Fatal("mounting the small tmpfs needs root: run as root (sudo -E scripts/test)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "thon-faults", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })

	h := thontest.New(t, thontest.Groups(event...), thontest.FakeEngine())
	h.Stop()
	h.Config.Server.DataDir = filepath.Join(dir, "data")
	h.Start()
	ctx := context.Background()
	if _, err := h.Client.Import(ctx, h.Config); err != nil {
		t.Fatal(err)
	}
	// Fill what is left.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()

	var failed []string
	for i := range 20 {
		name := fmt.Sprintf("late%02d", i)
		_, err := h.Client.CreateUser(ctx, name, "alpha")
		if err == nil {
			continue // a page had room still
		}
		var e *client.Error
		if !errors.As(err, &e) {
			t.Fatalf("create %s on a full disk: no answer: %v", name, err)
		}
		if e.StatusCode == 500 || !strings.Contains(strings.ToLower(e.Message+" "+e.Hint), "disk") {
			t.Fatalf("create %s on a full disk: %d %q %q: want a clear error about the disk", name, e.StatusCode, e.Message, e.Hint)
		}
		failed = append(failed, name)
		if len(failed) == 1 {
			t.Logf("a write on the full disk: %d %s (%s)", e.StatusCode, e.Message, e.Hint)
		}
	}
	if len(failed) == 0 {
		t.Fatal("every write succeeded on a full disk")
	}
	users, err := h.Client.Users(ctx)
	if err != nil {
		t.Fatalf("reading on a full disk: %v", err)
	}
	for _, u := range users {
		for _, f := range failed {
			if u.Name == f {
				t.Fatalf("%s was refused but is in the store", f)
			}
		}
	}

	// Space returns: the same writes work, without a restart.
	os.Remove(filler)
	for _, name := range failed {
		if _, err := h.Client.CreateUser(ctx, name, "alpha"); err != nil {
			t.Fatalf("create %s once space returned: %v", name, err)
		}
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(h.Config.Server.DataDir, daemon.DBFile)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check after the disk was full: %q %v", res, err)
	}
	t.Logf("%d of 20 writes refused on the full disk; all made once space returned; integrity_check ok", len(failed))
}
