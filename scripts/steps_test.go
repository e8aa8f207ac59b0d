// Package scripts holds the tests of the shell scripts beside it.
package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A module whose go test output has every kind of failure the summary names:
// a failing test, failing subtests (one of them a level deeper), a test that
// fails only in some of its runs, one that hangs until the timeout, a package
// that does not build, and packages that pass.
var module = map[string]string{
	"go.mod": "module example.com/m\n\ngo 1.21\n",
	"pass/pass_test.go": `package pass
import "testing"
func TestFine(t *testing.T) {}
`,
	"fail/fail_test.go": `package fail
import (
	"sync/atomic"
	"testing"
)
func TestTop(t *testing.T) { t.Fatal("boom") }
func TestParent(t *testing.T) {
	t.Run("ok", func(t *testing.T) {})
	t.Run("bad", func(t *testing.T) { t.Error("bad") })
	t.Run("deep", func(t *testing.T) {
		t.Run("er", func(t *testing.T) { t.Error("deeper") })
	})
}
var runs atomic.Int32
func TestEveryOther(t *testing.T) {
	if runs.Add(1)%2 == 1 {
		t.Error("odd run")
	}
}
func TestGood(t *testing.T) {}
`,
	"hang/hang_test.go": `package hang
import "testing"
func TestHangs(t *testing.T) { select {} }
`,
	"broken/broken_test.go": `package broken
import "testing"
func TestNot(t *testing.T) { undefined() }
`,
}

// TestStepsKeepGoing runs steps the way scripts/test does: a go test with
// failures, then a step that passes, then one that fails without a test.
// Every step runs, the run exits 1, and the summary names each failure once.
func TestStepsKeepGoing(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("go is not on PATH: %v", err)
	}
	dir := t.TempDir()
	for name, text := range module {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lib, err := filepath.Abs("steps.bash")
	if err != nil {
		t.Fatal(err)
	}
	script := `set -euo pipefail
source "$1"
step tests go test -count=2 -timeout 5s ./...
step after echo the step after a failure ran
step plain false
step last echo the last step ran
steps_finish
echo not reached`
	cmd := exec.Command("bash", "-c", script, "bash", lib)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=", "GOTOOLCHAIN=local", "TMPDIR="+t.TempDir())
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("exit status %d (%v), want 1\nstdout:\n%s\nstderr:\n%s", code, err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"the step after a failure ran", "the last step ran", "--- FAIL: TestTop"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "not reached") {
		t.Errorf("steps_finish returned after a failure:\n%s", out)
	}

	// The summary: the failed steps, then one line per failure.
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, "==> failed: tests plain") })
	if i < 0 {
		t.Fatalf("no summary naming the failed steps tests and plain:\n%s", stderr.String())
	}
	got := lines[i+1:]
	want := []string{
		"  example.com/m/broken (no test failed: a build error, or a panic outside a test; see the log)",
		"  example.com/m/fail TestTop (2 runs)",
		"  example.com/m/fail TestParent/bad (2 runs)",
		"  example.com/m/fail TestParent/deep/er (2 runs)",
		"  example.com/m/fail TestEveryOther",
		"  example.com/m/hang TestHangs (still running at the timeout)",
		"  plain failed (see ",
	}
	if len(got) != len(want) {
		t.Fatalf("summary:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for k := range want {
		if !strings.HasPrefix(got[k], want[k]) || (k < len(want)-1 && got[k] != want[k]) {
			t.Errorf("summary line %d: %q, want %q\nsummary:\n%s", k+1, got[k], want[k], strings.Join(got, "\n"))
		}
	}
	// A log per step, named after it.
	logs := strings.TrimSuffix(strings.TrimPrefix(got[len(got)-1], "  plain failed (see "), ")")
	if b, err := os.ReadFile(logs); err != nil || len(b) != 0 {
		t.Errorf("the plain step's log %s: %q, %v", logs, b, err)
	}
}
