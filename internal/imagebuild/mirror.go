package imagebuild

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Where the offline builds download from is this machine's own choice: the
// Debian mirror its apt uses and the registry its npm uses. Nothing names a
// mirror or a registry of its own; without one on this machine, debootstrap
// and npm use their own defaults.

// HostMirror is the Debian mirror this host's apt uses: the first http(s)
// URI of a "…/debian" archive in /etc/apt/sources.list and
// /etc/apt/sources.list.d. It is "" when there is none (debootstrap then
// uses its own default).
func HostMirror() string {
	return mirrorIn("/etc/apt")
}

// mirrorIn is HostMirror for the apt configuration directory dir.
func mirrorIn(dir string) string {
	var texts []string
	files := []string{filepath.Join(dir, "sources.list")}
	more, _ := filepath.Glob(filepath.Join(dir, "sources.list.d", "*"))
	files = append(files, more...)
	for _, f := range files {
		if !strings.HasSuffix(f, ".list") && !strings.HasSuffix(f, ".sources") {
			continue
		}
		if b, err := os.ReadFile(f); err == nil {
			texts = append(texts, string(b))
		}
	}
	return mirrorFrom(texts...)
}

// mirrorFrom finds the first Debian archive URI in apt sources, in the
// one-line format ("deb [opts] URI suite comp…") or deb822 ("URIs: …").
func mirrorFrom(texts ...string) string {
	for _, text := range texts {
		for _, line := range strings.Split(text, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			var cands []string
			switch {
			case strings.HasPrefix(line, "deb "):
				rest := strings.TrimSpace(strings.TrimPrefix(line, "deb "))
				if strings.HasPrefix(rest, "[") {
					if i := strings.Index(rest, "]"); i >= 0 {
						rest = rest[i+1:]
					}
				}
				cands = strings.Fields(rest)
				if len(cands) > 0 {
					cands = cands[:1]
				}
			case strings.HasPrefix(strings.ToLower(line), "uris:"):
				cands = strings.Fields(line[len("uris:"):])
			}
			for _, c := range cands {
				u, err := url.Parse(c)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					continue
				}
				if strings.TrimSuffix(u.Path, "/") == "/debian" || strings.HasSuffix(strings.TrimSuffix(u.Path, "/"), "/debian") {
					return strings.TrimSuffix(c, "/")
				}
			}
		}
	}
	return ""
}

// HostNPMRegistry is the npm registry this host's npm uses: what
// `npm config get registry` prints when npm is installed (its user and
// global npmrc and npm_config_registry count), else NPM_CONFIG_REGISTRY or
// npm_config_registry. It is "" when neither says (npm in the image then
// uses its own default).
func HostNPMRegistry() string {
	return npmRegistry(exec.LookPath, os.LookupEnv)
}

// npmRegistry is HostNPMRegistry with the lookups it uses.
func npmRegistry(lookPath func(string) (string, error), getenv func(string) (string, bool)) string {
	if npm, err := lookPath("npm"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, "config", "get", "registry")
		cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
		if out, err := cmd.Output(); err == nil {
			if r := strings.TrimSpace(string(out)); isHTTPURL(r) {
				return r
			}
		}
	}
	for _, k := range []string{"NPM_CONFIG_REGISTRY", "npm_config_registry"} {
		if v, ok := getenv(k); ok && isHTTPURL(strings.TrimSpace(v)) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
