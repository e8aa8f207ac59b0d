package sandboxtest

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/sandbox"
)

// readArchive reads rt.Archive of user into name → content, checking that
// every entry is under {user}/ and the first is that directory.
func readArchive(t *testing.T, ctx context.Context, rt sandbox.Runtime, user string) map[string][]byte {
	t.Helper()
	rc, err := rt.Archive(ctx, user)
	if err != nil {
		t.Fatalf("Archive of %s: %v", user, err)
	}
	defer rc.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for i := 0; ; i++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if i == 0 {
				t.Fatalf("Archive of %s: an empty tar", user)
			}
			return files
		}
		if err != nil {
			t.Fatalf("Archive of %s: entry %d: %v", user, i, err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if i == 0 && (name != user || h.Typeflag != tar.TypeDir) {
			t.Errorf("Archive of %s: first entry %q (type %c), want the directory %s/", user, h.Name, h.Typeflag, user)
		}
		if name != user && !strings.HasPrefix(name, user+"/") {
			t.Errorf("Archive of %s: entry %q is not under %s/", user, h.Name, user)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("Archive of %s: %s: %v", user, h.Name, err)
			}
			files[strings.TrimPrefix(name, user+"/")] = b
		}
	}
}

// testArchive: Archive streams the workspace of a running sandbox, a paused
// one, and a stopped one with StoppedArchive (a UserError without), in its
// new group after a move; closing it early is fine.
func (s *suite) testArchive(t *testing.T) {
	rt := s.open(t)
	ctx := testCtx(t)
	caps := rt.Capabilities()
	if !caps.StoppedArchive {
		// Where processes run or not: a stopped sandbox cannot be read.
		s.up(t, ctx, rt, s.spec("lou", "g1"))
		if err := rt.Stop(ctx, "lou", 2*time.Second); err != nil {
			t.Fatal(err)
		}
		wait(t, ctx, rt, "lou", "stopped", func(i sandbox.Instance) bool { return i.State == sandbox.StateStopped })
		s.refusedStopped(t, ctx, rt, "lou")
	}
	if !s.procs(t, "the workspace's files in its archive (Archive reads them through a process where the engine needs one)") {
		return
	}
	spec := s.spec("hana", "g1")
	inst := s.up(t, ctx, rt, spec)
	big := make([]byte, 300<<10) // more than one read of any engine's stream
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	putFile(t, inst.Endpoint, "hello.txt", "hi from hana")
	putFile(t, inst.Endpoint, "big.bin", string(big))
	check := func(when string) {
		t.Helper()
		files := readArchive(t, ctx, rt, "hana")
		if got := string(files["hello.txt"]); got != "hi from hana" {
			t.Errorf("%s: hello.txt in the archive: %q", when, got)
		}
		if sha256.Sum256(files["big.bin"]) != sha256.Sum256(big) {
			t.Errorf("%s: big.bin in the archive: %d bytes, not the %d written", when, len(files["big.bin"]), len(big))
		}
	}
	check("running")

	// Closing at once ends the transfer; the next one works.
	rc, err := rt.Archive(ctx, "hana")
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Errorf("closing an unread archive: %v", err)
	}
	check("after an archive closed early")

	if err := rt.Pause(ctx, "hana"); err != nil {
		t.Fatal(err)
	}
	if !caps.PauseIsStop {
		check("paused")
		if err := rt.Stop(ctx, "hana", 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if caps.StoppedArchive {
		check("stopped")
	} else {
		s.refusedStopped(t, ctx, rt, "hana")
	}

	// After a move to another group the workspace is archived from its
	// new path, under the same name.
	if err := rt.Remove(ctx, "hana", false); err != nil {
		t.Fatal(err)
	}
	s.up(t, ctx, rt, s.spec("hana", "g2"))
	check("after a move to g2")
}

// refusedStopped: without StoppedArchive, Archive of user's stopped
// sandbox is a UserError with a hint.
func (s *suite) refusedStopped(t *testing.T, ctx context.Context, rt sandbox.Runtime, user string) {
	t.Helper()
	rc, err := rt.Archive(ctx, user)
	switch {
	case err == nil:
		rc.Close()
		t.Error("Archive of a stopped sandbox succeeded, yet the engine says it cannot (no StoppedArchive)")
	case errors.Is(err, sandbox.ErrNotFound):
		t.Errorf("Archive of a stopped sandbox: %v, want a UserError, not ErrNotFound", err)
	default:
		if ue := userError(t, "Archive of a stopped sandbox", err); ue.Hint == "" {
			t.Errorf("Archive of a stopped sandbox: %v, want a hint", ue)
		}
	}
}

// testUsage: Usage lists every running (and paused) sandbox once, sorted,
// with its ID; what it measures is plausible or Unknown; the disk is
// measured only when asked, and only with DiskUsage.
func (s *suite) testUsage(t *testing.T) {
	rt := s.open(t)
	ctx := testCtx(t)
	caps := rt.Capabilities()
	rep, err := rt.Usage(ctx, sandbox.UsageOptions{Disk: true})
	if err != nil {
		t.Fatalf("Usage without sandboxes: %v", err)
	}
	if len(rep.Sandboxes) != 0 {
		t.Errorf("Usage without sandboxes: %+v", rep.Sandboxes)
	}
	if m := rep.Machine; (m.CPUs != sandbox.Unknown && m.CPUs <= 0) || (m.Memory != sandbox.Unknown && m.Memory <= 0) {
		t.Errorf("Machine %+v: each is Unknown (-1) or positive", m)
	}
	t.Logf("%s: machine %+v", rt.Name(), rep.Machine)

	ivy := s.up(t, ctx, rt, s.spec("ivy", "g1"))
	jon := s.up(t, ctx, rt, s.spec("jon", "g1"))
	s.up(t, ctx, rt, s.spec("kim", "g1"))
	if err := rt.Stop(ctx, "kim", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	const size = 1 << 20
	if s.procs(t, "the disk use of a workspace with a file in it") {
		putFile(t, ivy.Endpoint, "data.bin", strings.Repeat("x", size))
		waitHealthy(t, jon.Endpoint)
	}
	plausible := func(what string, u sandbox.Use) {
		t.Helper()
		if u.Memory != sandbox.Unknown && (u.Memory <= 0 || (u.MemoryLimit > 0 && u.Memory > u.MemoryLimit)) {
			t.Errorf("%s: memory %d (limit %d): Unknown, or more than 0 and within the limit", what, u.Memory, u.MemoryLimit)
		}
		if u.MemoryLimit != sandbox.Unknown && u.MemoryLimit != 0 && u.MemoryLimit != 128<<20 {
			t.Errorf("%s: memory limit %d, want the spec's 128Mi (or 0 / Unknown)", what, u.MemoryLimit)
		}
		if u.CPUTime < sandbox.Unknown || u.CPU < sandbox.Unknown || (u.CPU != sandbox.Unknown && u.CPU > 64) {
			t.Errorf("%s: CPU time %v, CPU %v: Unknown or plausible", what, u.CPUTime, u.CPU)
		}
	}
	sample := func(disk bool) map[string]sandbox.Use {
		t.Helper()
		rep, err := rt.Usage(ctx, sandbox.UsageOptions{Disk: disk})
		if err != nil {
			t.Fatalf("Usage: %v", err)
		}
		byUser := map[string]sandbox.Use{}
		var users []string
		for _, u := range rep.Sandboxes {
			users = append(users, u.User)
			byUser[u.User] = u
		}
		if fmt.Sprint(users) != "[ivy jon]" {
			t.Fatalf("Usage lists %v, want [ivy jon] (kim is stopped)", users)
		}
		return byUser
	}
	first := sample(true)
	for _, u := range first {
		t.Logf("%s: %+v", u.User, u)
		plausible(u.User, u)
		inst, err := rt.Inspect(ctx, u.User)
		if err != nil || inst.ID != u.ID {
			t.Errorf("%s: usage ID %q, Inspect %+v %v", u.User, u.ID, inst, err)
		}
	}
	switch d := first["ivy"].Disk; {
	case !caps.DiskUsage && d != sandbox.Unknown:
		t.Errorf("ivy's disk use %d without DiskUsage: want Unknown", d)
	case caps.DiskUsage && s.noProc == "" && d < size:
		t.Errorf("ivy's disk use %d, want at least the %d bytes written", d, size)
	case caps.DiskUsage && d < 0:
		t.Errorf("ivy's disk use %d with DiskUsage: want it measured", d)
	}
	if s.procs(t, "CPU time grows with the IDE's work") {
		for range 20 {
			get(jon.Endpoint, "/env", 2*time.Second)
		}
	}
	second := sample(false)
	for user, u := range second {
		plausible(user, u)
		if u.Disk != sandbox.Unknown {
			t.Errorf("%s: disk %d when not asked, want Unknown", user, u.Disk)
		}
		if a, b := first[user].CPUTime, u.CPUTime; a != sandbox.Unknown && b != sandbox.Unknown && b < a {
			t.Errorf("%s: CPU time went back from %v to %v", user, a, b)
		}
	}

	// A paused sandbox holds its memory: it is listed, unless pausing is
	// stopping.
	if err := rt.Pause(ctx, "jon"); err != nil {
		t.Fatal(err)
	}
	rep, err = rt.Usage(ctx, sandbox.UsageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	for _, u := range rep.Sandboxes {
		users = append(users, u.User)
	}
	want := "[ivy jon]"
	if caps.PauseIsStop {
		want = "[ivy]"
	}
	if fmt.Sprint(users) != want {
		t.Errorf("with jon paused, Usage lists %v, want %s", users, want)
	}
}
