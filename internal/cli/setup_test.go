package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/thon-dev/thon/internal/imagebuild"
	"github.com/thon-dev/thon/internal/testenv"
)

func findCmd(t *testing.T, root *cobra.Command, args ...string) *cobra.Command {
	t.Helper()
	c, _, err := root.Find(args)
	if err != nil || c.Name() != args[len(args)-1] {
		t.Fatalf("no command %v: %v", args, err)
	}
	return c
}

func TestSetupLLMFlags(t *testing.T) {
	root := NewRoot("dev", &IO{In: strings.NewReader(""), Out: &bytes.Buffer{}, Err: &bytes.Buffer{}})
	c := findCmd(t, root, "setup", "llm")
	for name, def := range map[string]string{
		"tag":       imagebuild.DefaultLLMTag,
		"mirror":    "",
		"rebuild":   "false",
		"cache-dir": imagebuild.DefaultLLMCacheDir,
		"output":    "text",
	} {
		f := c.Flags().Lookup(name)
		if f == nil {
			t.Errorf("thon setup llm has no --%s", name)
			continue
		}
		if f.DefValue != def {
			t.Errorf("--%s defaults to %q, want %q", name, f.DefValue, def)
		}
	}
	if !strings.Contains(c.Example, "sudo thon setup llm") || !strings.Contains(c.Long, imagebuild.DefaultLLMTag) {
		t.Errorf("help: example %q", c.Example)
	}
	// Next to thon setup image.
	findCmd(t, root, "setup", "image")
}

// runCLI runs thon with args and returns the exit status and what it wrote.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Execute(context.Background(), "dev", args, &IO{In: strings.NewReader(""), Out: &out, Err: &errb,
		Getenv: func(string) (string, bool) { return "", false }})
	return code, out.String(), errb.String()
}

// The flags reach the build: bad values are refused, all at once, before
// the engine is asked (so these never build anything).
func TestSetupLLMRefusesBadFlags(t *testing.T) {
	code, _, stderr := runCLI(t, "setup", "llm", "--tag", "Bad Tag", "--mirror", "ftp://mirror.example/debian", "--cache-dir", "rel")
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{`invalid image tag "Bad Tag"`, `invalid Debian mirror "ftp://mirror.example/debian"`, `cache directory "rel" is not absolute`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	code, _, stderr = runCLI(t, "setup", "llm", "-o", "yaml")
	if code != 1 || !strings.Contains(stderr, `--output "yaml": use text or json`) {
		t.Errorf("-o yaml: exit %d:\n%s", code, stderr)
	}
	code, _, stderr = runCLI(t, "setup", "llm", "extra")
	if code != 1 || !strings.Contains(stderr, "unknown command") && !strings.Contains(stderr, "accepts 0 arg") {
		t.Errorf("an argument: exit %d:\n%s", code, stderr)
	}
}

func TestStepProgressOnATerminal(t *testing.T) {
	var out bytes.Buffer
	p := newStepProgress(&env{io: &IO{Err: &out, IsTTY: true}})
	p.step("check the image thon/llm:latest", 0, 7)
	p.step("check the image thon/llm:latest", 0, 7) // the same step again: no new line
	p.step("debootstrap Debian sid", 1, 7)
	p.step("built thon/llm:latest", 7, 7)
	p.finish(true)
	s := out.String()
	// Each finished step on a line of its own with a check mark; the
	// current one redrawn in place.
	if n := strings.Count(s, "\n"); n != 3 {
		t.Fatalf("want 3 lines (one per step), got %d:\n%q", n, s)
	}
	for _, want := range []string{"✓ [0/7] check the image thon/llm:latest (", "✓ [1/7] debootstrap Debian sid (", "✓ [7/7] built thon/llm:latest (", "\r\033[2K", "… [1/7] debootstrap Debian sid · "} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%q", want, s)
		}
	}

	out.Reset()
	p = newStepProgress(&env{io: &IO{Err: &out, IsTTY: true}})
	p.step("install llama.cpp", 2, 7)
	p.finish(false)
	if s := out.String(); !strings.HasSuffix(s, "\n") || !strings.Contains(s, "✗ [2/7] install llama.cpp (") || strings.Contains(s, "✓") {
		t.Errorf("a failed build's last step:\n%q", s)
	}
}

func TestStepProgressElsewhereWritesPlainLines(t *testing.T) {
	var out bytes.Buffer
	p := newStepProgress(&env{io: &IO{Err: &out}})
	p.step("check the image thon/llm:latest", 0, 7)
	p.step("check the image thon/llm:latest", 0, 7)
	p.step("image thon/llm:latest is up to date", 7, 7)
	p.finish(true)
	want := "[0/7] check the image thon/llm:latest\n[7/7] image thon/llm:latest is up to date\n"
	if out.String() != want {
		t.Errorf("plain output:\n got %q\nwant %q", out.String(), want)
	}
}

func TestSetupImageFlags(t *testing.T) {
	root := NewRoot("dev", &IO{In: strings.NewReader(""), Out: &bytes.Buffer{}, Err: &bytes.Buffer{}})
	c := findCmd(t, root, "setup", "image")
	for name, def := range map[string]string{
		"tag":             "",
		"mirror":          "",
		"npm-registry":    "",
		"code-server":     imagebuild.DefaultCodeServerVersion,
		"cache-dir":       imagebuild.DefaultCacheDir,
		"extensions":      "",
		"extensions-list": "",
		"marketplace":     "",
		"output":          "text",
	} {
		f := c.Flags().Lookup(name)
		if f == nil {
			t.Errorf("thon setup image has no --%s", name)
			continue
		}
		if f.DefValue != def {
			t.Errorf("--%s defaults to %q, want %q", name, f.DefValue, def)
		}
	}
	for _, want := range []string{"--extensions ./vsix", "--extensions-list"} {
		if !strings.Contains(c.Example, want) {
			t.Errorf("the examples lack %s", want)
		}
	}
}

// The extensions to bake in reach the build from the flags and from
// thon.yaml's sandbox.extensions_dir; they are read before the engine is
// asked (so these never build anything).
func TestSetupImageExtensions(t *testing.T) {
	dir := t.TempDir()
	vsix := filepath.Join(dir, "vsix")
	os.Mkdir(vsix, 0o755)
	os.WriteFile(filepath.Join(vsix, "broken.vsix"), []byte("not a zip"), 0o644)
	cfg := filepath.Join(dir, "thon.yaml")
	os.WriteFile(cfg, []byte("sandbox:\n  image: thon/sandbox:event\n  extensions_dir: vsix\n"), 0o644)

	code, _, stderr := runCLI(t, "--config", cfg, "setup", "image", "--cache-dir", filepath.Join(dir, "cache"))
	if code != 1 || !strings.Contains(stderr, filepath.Join(vsix, "broken.vsix")+" is not a VS Code extension package") {
		t.Errorf("sandbox.extensions_dir: exit %d:\n%s", code, stderr)
	}
	other := t.TempDir()
	code, _, stderr = runCLI(t, "--config", cfg, "setup", "image", "--extensions", filepath.Join(other, "missing"))
	if code != 1 || !strings.Contains(stderr, "cannot read the extensions directory "+filepath.Join(other, "missing")) {
		t.Errorf("--extensions overrides thon.yaml: exit %d:\n%s", code, stderr)
	}
	list := filepath.Join(dir, "list.txt")
	os.WriteFile(list, []byte("not-an-id\n"), 0o644)
	code, _, stderr = runCLI(t, "setup", "image", "--tag", "t:1", "--extensions", "", "--extensions-list", list)
	if code != 1 || !strings.Contains(stderr, list+`:1: "not-an-id" is not publisher.name[@version]`) {
		t.Errorf("--extensions-list: exit %d:\n%s", code, stderr)
	}
	// A thon.yaml that does not load stops the build: its image and
	// extensions are not guessed.
	os.WriteFile(cfg, []byte("sandbox:\n  extensions_dir: nowhere\n"), 0o644)
	code, _, stderr = runCLI(t, "--config", cfg, "setup", "image")
	if code != 1 || !strings.Contains(stderr, "sandbox.extensions_dir") {
		t.Errorf("a bad thon.yaml: exit %d:\n%s", code, stderr)
	}
	code, _, stderr = runCLI(t, "setup", "image", "-o", "yaml")
	if code != 1 || !strings.Contains(stderr, `--output "yaml": use text or json`) {
		t.Errorf("-o yaml: exit %d:\n%s", code, stderr)
	}
}

// thon setup with no subcommand: the plan, step by step; with everything
// in place nothing to do; a step to do is not done without a terminal to
// ask on or --yes.
func TestSetupAll(t *testing.T) {
	image := testenv.DerivedImage(t, testenv.SandboxImage(t), "codeserver", "LABEL "+imagebuild.LabelCodeServerVersion+"="+imagebuild.DefaultCodeServerVersion)
	dir := t.TempDir()
	path := filepath.Join(dir, "thon.yaml")
	write := func(image string) {
		os.WriteFile(path, []byte("server: {data_dir: "+filepath.Join(dir, "data")+", listen: \"127.0.0.1:1\"}\nsandbox: {image: "+image+"}\nllm: {enabled: false}\ngroups: {alpha: [alice]}\n"), 0o644)
	}
	write(image)
	code, stdout, stderr := runCLI(t, "--config", path, "setup", "--dry-run", "--no-unit")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"What " + path + " needs on this machine", "1. Docker engine: Docker ", "2. Participant image " + image + ": present: code-server", "ready: nothing to do", "Everything is ready: nothing to do."} {
		if !strings.Contains(stdout, want) {
			t.Errorf("dry run lacks %q:\n%s", want, stdout)
		}
	}
	if code, stdout, _ := runCLI(t, "--config", path, "setup", "--yes", "--no-unit", "--no-doctor"); code != 0 || !strings.Contains(stdout, "This machine is set up. Next: thon doctor") || strings.Contains(stdout, "THON doctor:") {
		t.Errorf("--yes --no-doctor with everything ready: exit %d\n%s", code, stdout)
	}
	// Without --no-doctor, setup ends with the doctor's report, and its
	// verdict is setup's exit status.
	code, stdout, stderr = runCLI(t, "--config", path, "setup", "--yes", "--no-unit")
	if !strings.Contains(stdout, "THON doctor: 1 participants") || !strings.Contains(stdout, "Capacity: ") {
		t.Errorf("setup without the doctor's report: exit %d\n%s\n%s", code, stdout, stderr)
	}
	failed := strings.Contains(stdout, "\n  fail  ")
	t.Logf("setup's doctor (exit %d):\n%s", code, stdout)
	if failed != (code == 1) || (failed && !strings.Contains(stderr, "a check above fails")) || (!failed && !strings.Contains(stdout, "Next: thon run.")) {
		t.Errorf("a check failing: %v, exit %d\n%s\n%s", failed, code, stdout, stderr)
	}
	// With the unit, on a machine without systemd: the step says what to do instead.
	if code, stdout, _ := runCLI(t, "--config", path, "setup", "--dry-run"); code != 0 || !strings.Contains(stdout, "--no-unit leaves this step out") {
		t.Errorf("the unit without systemd: exit %d\n%s", code, stdout)
	}

	// An image to build: shown, then not built without --yes or a terminal.
	write("thon-test/missing:" + testenv.Prefix(t))
	code, stdout, stderr = runCLI(t, "--config", path, "setup", "--no-unit")
	if code != 1 || !strings.Contains(stdout, "not on the engine") || !strings.Contains(stdout, "   - build thon-test/missing") || !strings.Contains(stderr, "pass --yes") {
		t.Errorf("an image to build: exit %d\n%s\n%s", code, stdout, stderr)
	}
}
