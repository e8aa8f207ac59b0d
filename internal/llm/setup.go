package llm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Lemonade's systemd units: lemond.service since Lemonade 10.3, before
// that lemonade-server.service.
var lemonadeUnits = []string{"lemond.service", "lemonade-server.service"}

// unitDirs are where packages and administrators put systemd units.
var unitDirs = []string{"/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"}

// DropInName is THON's drop-in in the unit's .d directory.
const DropInName = "thon.conf"

// LemonadeSetup installs Lemonade's API keys as a systemd drop-in, so the
// server THON manages requires them. Root is the filesystem root ("/";
// tests use a directory); Systemctl runs systemctl (nil: the real one).
type LemonadeSetup struct {
	Root      string
	Systemctl func(ctx context.Context, args ...string) error
}

// SetupPlan is what LemonadeSetup would do; Steps are shown to the
// organizer before anything happens.
type SetupPlan struct {
	Unit    string   // e.g. lemond.service
	DropIn  string   // the drop-in's path
	Content []byte   // what it will hold
	Steps   []string // in words, keys redacted
	Current bool     // the drop-in already says this: nothing to do
}

// Plan finds Lemonade's unit and says what installing the keys takes.
// Both keys must be set (thon.yaml llm.api_key and llm.admin_api_key).
func (s LemonadeSetup) Plan(apiKey, adminKey string) (SetupPlan, error) {
	if apiKey == "" || adminKey == "" {
		return SetupPlan{}, fmt.Errorf("set llm.api_key and llm.admin_api_key in thon.yaml first (two different random values, e.g. from: openssl rand -hex 24); THON then installs them for Lemonade")
	}
	for _, k := range []string{apiKey, adminKey} {
		if strings.ContainsAny(k, " \t\r\n\"'\\$%") {
			return SetupPlan{}, fmt.Errorf("an LLM key contains white space, quotes, \\, $ or %%: use letters and digits (e.g. openssl rand -hex 24)")
		}
	}
	unit := ""
	for _, u := range lemonadeUnits {
		for _, d := range unitDirs {
			if _, err := os.Stat(filepath.Join(s.root(), d, u)); err == nil {
				unit = u
				break
			}
		}
		if unit != "" {
			break
		}
	}
	if unit == "" {
		return SetupPlan{}, fmt.Errorf("Lemonade's systemd unit (%s) is not installed on this machine: install Lemonade Server (https://lemonade-server.ai), or run your OpenAI-compatible server yourself with llm.backend: openai; nothing was changed", strings.Join(lemonadeUnits, " or "))
	}
	p := SetupPlan{Unit: unit, DropIn: filepath.Join("/etc/systemd/system", unit+".d", DropInName)}
	p.Content = []byte("# Written by `thon setup lemonade`: the keys of thon.yaml's llm section.\n" +
		"# Keep it private (mode 0600); run `thon setup lemonade` again after changing them.\n" +
		"[Service]\n" +
		"Environment=LEMONADE_API_KEY=" + apiKey + "\n" +
		"Environment=LEMONADE_ADMIN_API_KEY=" + adminKey + "\n")
	if old, err := os.ReadFile(filepath.Join(s.root(), p.DropIn)); err == nil && bytes.Equal(old, p.Content) {
		p.Current = true
		return p, nil
	}
	p.Steps = []string{
		fmt.Sprintf("write %s (owner root, mode 0600) setting LEMONADE_API_KEY=%s and LEMONADE_ADMIN_API_KEY=%s", p.DropIn, redact(apiKey), redact(adminKey)),
		"systemctl daemon-reload",
		"systemctl restart " + unit + " (loaded models unload; requests in flight fail)",
	}
	return p, nil
}

// Apply carries out p.
func (s LemonadeSetup) Apply(ctx context.Context, p SetupPlan) error {
	if p.Current {
		return nil
	}
	path := filepath.Join(s.root(), p.DropIn)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return setupErr(err)
	}
	// Written to a private temporary file, then renamed: the keys are never
	// readable by others, not even for a moment.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".thon-*.conf")
	if err != nil {
		return setupErr(err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return setupErr(err)
	}
	if _, err := tmp.Write(p.Content); err != nil {
		tmp.Close()
		return setupErr(err)
	}
	if err := tmp.Close(); err != nil {
		return setupErr(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return setupErr(err)
	}
	run := s.Systemctl
	if run == nil {
		run = systemctl
	}
	if err := run(ctx, "daemon-reload"); err != nil {
		return err
	}
	return run(ctx, "restart", p.Unit)
}

func (s LemonadeSetup) root() string {
	if s.Root == "" {
		return "/"
	}
	return s.Root
}

func setupErr(err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w: run it as root (sudo thon setup lemonade)", err)
	}
	return err
}

func systemctl(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "systemctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// redact shows a key's first four characters only.
func redact(k string) string {
	if len(k) <= 8 {
		return "****"
	}
	return k[:4] + "…"
}
