package imagebuild

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// HostMirror is the Debian mirror this host's apt uses (the first
// http(s) URI of a "…/debian" archive in /etc/apt/sources.list and
// /etc/apt/sources.list.d), or DefaultMirror.
func HostMirror() string {
	var texts []string
	files := []string{"/etc/apt/sources.list"}
	more, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	files = append(files, more...)
	for _, f := range files {
		if !strings.HasSuffix(f, ".list") && !strings.HasSuffix(f, ".sources") {
			continue
		}
		if b, err := os.ReadFile(f); err == nil {
			texts = append(texts, string(b))
		}
	}
	if m := mirrorFrom(texts...); m != "" {
		return m
	}
	return DefaultMirror
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
