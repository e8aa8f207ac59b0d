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
	"syscall"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/thon-dev/thon/internal/config"
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
	Current bool     // the drop-in and config.json already say this: nothing to do
	// ConfigJSON is Lemonade's config.json ("" when it is not found) and
	// Settings what THON sets in it (key path → value).
	ConfigJSON string
	Settings   [][2]any
	configOld  []byte
	configNew  []byte
}

// Lemonade's config.json, where its packages keep it (Debian's, Fedora's).
var lemonadeConfigs = []string{"/var/lib/lemonade/.cache/lemonade/config.json", "/opt/var/lib/lemonade/.cache/lemonade/config.json"}

// systemLlamaServer is where Debian's llama.cpp package installs
// llama-server; with it, Lemonade is told to prefer it over its bundled one.
var systemLlamaServer = []string{"/usr/bin/llama-server", "/usr/local/bin/llama-server"}

// LemonadeSettings are the config.json settings THON manages, from
// thon.yaml's llm section: the llama.cpp backend (llm.gpu), the llama.cpp
// binary (the system's llama-server when there is one) and how many models
// of a kind may be loaded at once (every chat model THON configures).
func (s LemonadeSetup) LemonadeSettings(l config.LLM) [][2]any {
	backend := map[string]string{"none": "cpu", "amd": "vulkan", "intel": "vulkan", "nvidia": "cuda"}[l.GPU]
	if backend == "" {
		backend = "auto"
	}
	chat := 1 + len(l.ChatModels)
	if l.SmallModel.Name != "" {
		chat++
	}
	system := false
	for _, p := range systemLlamaServer {
		if _, err := os.Stat(filepath.Join(s.root(), p)); err == nil {
			system = true
		}
	}
	return [][2]any{{"llamacpp.backend", backend}, {"llamacpp.prefer_system", system}, {"max_loaded_models", chat}}
}

// Plan finds Lemonade's unit and config.json and says what installing
// the keys (llm.api_key and llm.admin_api_key, both set) and THON's
// settings takes.
func (s LemonadeSetup) Plan(l config.LLM) (SetupPlan, error) {
	apiKey, adminKey := l.APIKey, l.AdminAPIKey
	if apiKey == "" || adminKey == "" {
		return SetupPlan{}, fmt.Errorf("set llm.api_key and llm.admin_api_key in thon.yaml first (two different random values, e.g. from: openssl rand -hex 24), or let sudo thon setup make them; THON then installs them for Lemonade")
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
	dropInCurrent := false
	if old, err := os.ReadFile(filepath.Join(s.root(), p.DropIn)); err == nil && bytes.Equal(old, p.Content) {
		dropInCurrent = true
	}
	if !dropInCurrent {
		p.Steps = append(p.Steps, fmt.Sprintf("write %s (owner root, mode 0600) setting LEMONADE_API_KEY=%s and LEMONADE_ADMIN_API_KEY=%s", p.DropIn, redact(apiKey), redact(adminKey)))
	}
	p.Settings = s.LemonadeSettings(l)
	var words []string
	for _, kv := range p.Settings {
		words = append(words, fmt.Sprintf("%s: %v", kv[0], kv[1]))
	}
	for _, c := range lemonadeConfigs {
		if b, err := os.ReadFile(filepath.Join(s.root(), c)); err == nil {
			p.ConfigJSON, p.configOld = c, b
			break
		}
	}
	if p.ConfigJSON == "" {
		for _, c := range lemonadeConfigs { // Lemonade makes it at its first start; THON can make it first
			if fi, err := os.Stat(filepath.Join(s.root(), filepath.Dir(filepath.Dir(filepath.Dir(c))))); err == nil && fi.IsDir() {
				p.ConfigJSON, p.configOld = c, []byte("{}\n")
				break
			}
		}
	}
	if p.ConfigJSON != "" {
		if !gjson.ValidBytes(p.configOld) {
			return SetupPlan{}, fmt.Errorf("%s is not valid JSON: fix or remove it (Lemonade makes a new one at its start); nothing was changed", p.ConfigJSON)
		}
		out := p.configOld
		for _, kv := range p.Settings {
			var err error
			if out, err = sjson.SetBytesOptions(out, kv[0].(string), kv[1], &sjson.Options{Optimistic: true}); err != nil {
				return SetupPlan{}, fmt.Errorf("%s: %w", p.ConfigJSON, err)
			}
		}
		current := true
		for _, kv := range p.Settings {
			if v := gjson.GetBytes(p.configOld, kv[0].(string)); !v.Exists() || v.Value() != jsonValue(kv[1]) {
				current = false
			}
		}
		if !current {
			p.configNew = out
			p.Steps = append(p.Steps, "set "+strings.Join(words, ", ")+" in "+p.ConfigJSON)
		}
	} else {
		p.Steps = append(p.Steps, "(Lemonade's config.json is not there yet: run this again after Lemonade's first start to set "+strings.Join(words, ", ")+")")
	}
	if dropInCurrent && p.configNew == nil {
		p.Current = true
		p.Steps = nil
		return p, nil
	}
	p.Steps = append(p.Steps,
		"systemctl daemon-reload",
		"systemctl restart "+unit+" (loaded models unload; requests in flight fail)",
	)
	return p, nil
}

// jsonValue is v as gjson reads it back (numbers are float64).
func jsonValue(v any) any {
	if n, ok := v.(int); ok {
		return float64(n)
	}
	return v
}

// Apply carries out p.
func (s LemonadeSetup) Apply(ctx context.Context, p SetupPlan) error {
	if p.Current {
		return nil
	}
	if p.configNew != nil {
		if err := writeKeepingOwner(filepath.Join(s.root(), p.ConfigJSON), p.configNew); err != nil {
			return setupErr(err)
		}
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

// writeKeepingOwner replaces path with data, keeping its owner and mode
// (Lemonade runs as its own user); a new file gets its directory's owner.
func writeKeepingOwner(path string, data []byte) error {
	mode, uid, gid := os.FileMode(0o644), -1, -1
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	} else if fi, err := os.Stat(filepath.Dir(path)); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".thon-tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if uid >= 0 {
		os.Lchown(tmp, uid, gid)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
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
