package imagebuild

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	sandboximage "github.com/thon-dev/thon/deploy/sandbox"
	"github.com/thon-dev/thon/internal/sandbox"
)

// Extensions baked into the participant image: installed into code-server's
// extensions directory (/home/coder/.local/share/code-server/extensions)
// when the image is built, so that a sandbox starts with them at once and
// without a marketplace. They come from deploy/sandbox/extensions (embedded),
// Options.ExtensionsDir (every .vsix in it) and Options.ExtensionsList
// (downloaded from an Open VSX server once, at build time, and kept in the
// cache directory).

// DefaultMarketplace is the Open VSX server Options.ExtensionsList is
// downloaded from when neither Options.Marketplace nor code-server's own
// EXTENSIONS_GALLERY variable names one: the public Open VSX, which
// code-server itself uses.
const DefaultMarketplace = "https://open-vsx.org"

// extension is one .vsix file to bake in.
type extension struct {
	ID      string // publisher.name, as its package.json says
	Version string
	File    string // the file's base name, e.g. kilocode.kilo-code-4.1.0.vsix
	From    string // where it came from, for messages: a path or a URL
	Data    []byte
}

// extensionRef is one line of an extensions list: publisher.name[@version].
type extensionRef struct {
	Namespace, Name, Version string
	Line                     int
}

func (r extensionRef) String() string {
	s := r.Namespace + "." + r.Name
	if r.Version != "" {
		s += "@" + r.Version
	}
	return s
}

// extensionIDRE: a marketplace id, publisher.name (Open VSX's namespace and
// extension name).
var extensionIDRE = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9_-]*)\.([A-Za-z0-9][A-Za-z0-9._-]*)$`)

// extensionVersionRE: an extension version (semver, maybe with a suffix).
var extensionVersionRE = regexp.MustCompile(`^\d+\.\d+\.\d+([-+][0-9A-Za-z.+-]+)?$`)

// parseExtensionsList reads an extensions list: one publisher.name or
// publisher.name@version per line; blank lines and lines starting with #
// are skipped. Every bad line is reported at once.
func parseExtensionsList(data []byte, file string) ([]extensionRef, error) {
	var refs []extensionRef
	var errs []error
	seen := map[string]int{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, version, _ := strings.Cut(line, "@")
		m := extensionIDRE.FindStringSubmatch(id)
		switch {
		case m == nil:
			errs = append(errs, sandbox.Hintf(nil, "write a marketplace id such as kilocode.kilo-code or kilocode.kilo-code@4.1.0",
				"%s:%d: %q is not publisher.name[@version]", file, i+1, line))
			continue
		case strings.Contains(line, "@") && !extensionVersionRE.MatchString(version):
			errs = append(errs, sandbox.Hintf(nil, "write an exact version, such as @1.2.3, or none for the newest",
				"%s:%d: %q has an invalid version", file, i+1, line))
			continue
		}
		key := strings.ToLower(id)
		if first, dup := seen[key]; dup {
			errs = append(errs, sandbox.Hintf(nil, "keep one line per extension",
				"%s:%d: %s is listed again (first at line %d)", file, i+1, id, first))
			continue
		}
		seen[key] = i + 1
		refs = append(refs, extensionRef{Namespace: m[1], Name: m[2], Version: version, Line: i + 1})
	}
	return refs, errors.Join(errs...)
}

// readVSIX checks that data is a VS Code extension package and reads its
// id and version from extension/package.json.
func readVSIX(file, from string, data []byte) (extension, error) {
	bad := func(format string, args ...any) (extension, error) {
		return extension{}, sandbox.Hintf(nil, "use the .vsix file of the extension as its marketplace page or release offers it",
			"%s is not a VS Code extension package: "+format, append([]any{from}, args...)...)
	}
	z, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return bad("%v", err)
	}
	f, err := z.Open("extension/package.json")
	if err != nil {
		return bad("it has no extension/package.json")
	}
	defer f.Close()
	var pkg struct {
		Name, Publisher, Version string
	}
	if err := json.NewDecoder(io.LimitReader(f, 16<<20)).Decode(&pkg); err != nil {
		return bad("extension/package.json: %v", err)
	}
	if pkg.Name == "" || pkg.Publisher == "" || pkg.Version == "" {
		return bad("extension/package.json lacks its name, publisher or version")
	}
	return extension{ID: pkg.Publisher + "." + pkg.Name, Version: pkg.Version, File: file, From: from, Data: data}, nil
}

// embeddedExtensions are the .vsix files of deploy/sandbox/extensions.
func embeddedExtensions() ([]extension, error) {
	var out []extension
	err := fs.WalkDir(sandboximage.Files, "extensions", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(strings.ToLower(p), ".vsix") {
			return err
		}
		data, err := fs.ReadFile(sandboximage.Files, p)
		if err != nil {
			return err
		}
		x, err := readVSIX(path.Base(p), "deploy/sandbox/"+p, data)
		if err != nil {
			return err
		}
		out = append(out, x)
		return nil
	})
	return out, err
}

// dirExtensions reads every .vsix file in dir (not below it).
func dirExtensions(dir string) ([]extension, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, sandbox.Hintf(err, "point it at a directory of .vsix files",
			"cannot read the extensions directory %s: %v", dir, unwrapPathError(err))
	}
	var out []extension
	var errs []error
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(strings.ToLower(e.Name()), ".vsix") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", p, err))
			continue
		}
		x, err := readVSIX(e.Name(), p, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, x)
	}
	return out, errors.Join(errs...)
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// targetPlatform is this machine's platform as VS Code names it.
func targetPlatform() string {
	switch runtime.GOARCH {
	case "arm64":
		return "linux-arm64"
	case "arm":
		return "linux-armhf"
	}
	return "linux-x64"
}

// marketplaceURL is the Open VSX server to download from: the option,
// else code-server's EXTENSIONS_GALLERY when it names an Open VSX server
// ({"serviceUrl": "https://…/vscode/gallery", …}), else DefaultMarketplace.
func marketplaceURL(option string, getenv func(string) string) string {
	if option != "" {
		return strings.TrimSuffix(option, "/")
	}
	var gallery struct {
		ServiceURL string `json:"serviceUrl"`
	}
	if g := getenv("EXTENSIONS_GALLERY"); g != "" && json.Unmarshal([]byte(g), &gallery) == nil {
		if base, ok := strings.CutSuffix(strings.TrimSuffix(gallery.ServiceURL, "/"), "/vscode/gallery"); ok && isHTTPURL(base) {
			return base
		}
	}
	return DefaultMarketplace
}

// openVSX downloads extensions from an Open VSX server with its REST API:
// GET {base}/api/{namespace}/{name}[/{targetPlatform}][/{version}] answers
// the extension's metadata, whose files.download is the .vsix and
// files.sha256 its checksum.
type openVSX struct {
	base     string // e.g. https://open-vsx.org
	cacheDir string // downloaded .vsix files: <ns>.<name>-<version>@<platform>.vsix
	platform string // linux-x64
	client   *http.Client
	log      io.Writer
}

// ovsxMetadata is the part of Open VSX's extension JSON used here.
type ovsxMetadata struct {
	Namespace      string            `json:"namespace"`
	Name           string            `json:"name"`
	Version        string            `json:"version"`
	TargetPlatform string            `json:"targetPlatform"`
	Files          map[string]string `json:"files"`
	Error          string            `json:"error"`
}

// cacheName is where a download is kept.
func (o *openVSX) cacheName(ns, name, version, platform string) string {
	return filepath.Join(o.cacheDir, fmt.Sprintf("%s.%s-%s@%s.vsix", ns, name, version, platform))
}

// get fetches refs, each from the cache when it is there (pinned versions)
// or from the server.
func (o *openVSX) get(ctx context.Context, refs []extensionRef) ([]extension, error) {
	if err := os.MkdirAll(o.cacheDir, 0o755); err != nil {
		return nil, sandbox.Hintf(err, "run it as root, or pick a writable cache directory",
			"cannot create the extension cache %s: %v", o.cacheDir, unwrapPathError(err))
	}
	var out []extension
	var errs []error
	for _, r := range refs {
		x, err := o.one(ctx, r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, x)
	}
	return out, errors.Join(errs...)
}

func (o *openVSX) one(ctx context.Context, r extensionRef) (extension, error) {
	if r.Version != "" {
		for _, p := range []string{o.platform, "universal"} {
			if x, ok := o.cached(o.cacheName(r.Namespace, r.Name, r.Version, p), r); ok {
				fmt.Fprintf(o.log, "extension %s: cached %s\n", r, x.From)
				return x, nil
			}
		}
	}
	meta, err := o.metadata(ctx, r)
	if err != nil {
		if r.Version == "" {
			// Offline now, but downloaded before: the newest cached one.
			if x, ok := o.newestCached(r); ok {
				fmt.Fprintf(o.log, "extension %s: %v; using the one downloaded before, %s\n", r, err, x.From)
				return x, nil
			}
		}
		return extension{}, err
	}
	platform := cmpOr(meta.TargetPlatform, "universal")
	dest := o.cacheName(r.Namespace, r.Name, meta.Version, platform)
	if x, ok := o.cached(dest, r); ok {
		fmt.Fprintf(o.log, "extension %s: %s %s, cached %s\n", r, meta.Version, platform, x.From)
		return x, nil
	}
	dl := meta.Files["download"]
	if dl == "" {
		return extension{}, sandbox.Hintf(nil, "download its .vsix by hand into the --extensions directory",
			"%s answers no download for %s %s", o.base, r, meta.Version)
	}
	data, err := o.fetch(ctx, dl, 1<<30)
	if err != nil {
		return extension{}, o.unreachable(err, r)
	}
	if sum := meta.Files["sha256"]; sum != "" {
		text, err := o.fetch(ctx, sum, 4096)
		if err != nil {
			return extension{}, o.unreachable(err, r)
		}
		want := strings.ToLower(strings.Fields(string(text) + " ")[0])
		got := sha256.Sum256(data)
		if hex.EncodeToString(got[:]) != want {
			return extension{}, sandbox.Hintf(nil, "run again; if it persists, the server or a proxy alters the download",
				"the download of %s %s does not match its SHA-256 (%s)", r, meta.Version, sum)
		}
	}
	x, err := readVSIX(filepath.Base(dest), dl, data)
	if err != nil {
		return extension{}, err
	}
	if !strings.EqualFold(x.ID, r.Namespace+"."+r.Name) || x.Version != meta.Version {
		return extension{}, fmt.Errorf("the download of %s is %s %s, not %s.%s %s", r, x.ID, x.Version, r.Namespace, r.Name, meta.Version)
	}
	part := dest + ".part"
	if err := os.WriteFile(part, data, 0o644); err != nil {
		return extension{}, fmt.Errorf("cache %s: %w", dest, err)
	}
	if err := os.Rename(part, dest); err != nil {
		return extension{}, fmt.Errorf("cache %s: %w", dest, err)
	}
	x.From = dest
	fmt.Fprintf(o.log, "extension %s: downloaded %s %s (%d KB) from %s\n", r, meta.Version, platform, len(data)>>10, dl)
	return x, nil
}

// cached reads a cached download of r, if there is a good one.
func (o *openVSX) cached(p string, r extensionRef) (extension, bool) {
	data, err := os.ReadFile(p)
	if err != nil {
		return extension{}, false
	}
	x, err := readVSIX(filepath.Base(p), p, data)
	if err != nil || !strings.EqualFold(x.ID, r.Namespace+"."+r.Name) {
		return extension{}, false
	}
	return x, true
}

// newestCached is the cached download of r with the highest version.
func (o *openVSX) newestCached(r extensionRef) (extension, bool) {
	files, _ := filepath.Glob(filepath.Join(o.cacheDir, r.Namespace+"."+r.Name+"-*@*.vsix"))
	var best extension
	for _, f := range files {
		if x, ok := o.cached(f, r); ok && (best.ID == "" || compareVersions(x.Version, best.Version) > 0) {
			best = x
		}
	}
	return best, best.ID != ""
}

// compareVersions orders dotted versions numerically, field by field.
func compareVersions(a, b string) int {
	fa, fb := strings.FieldsFunc(a, notDigit), strings.FieldsFunc(b, notDigit)
	for i := 0; i < len(fa) || i < len(fb); i++ {
		var x, y int
		if i < len(fa) {
			fmt.Sscan(fa[i], &x)
		}
		if i < len(fb) {
			fmt.Sscan(fb[i], &y)
		}
		if x != y {
			return x - y
		}
	}
	return 0
}

func notDigit(r rune) bool { return r < '0' || r > '9' }

// metadata asks the server about r: for this platform first, then the
// universal package (most extensions have only that).
func (o *openVSX) metadata(ctx context.Context, r extensionRef) (ovsxMetadata, error) {
	base := o.base + "/api/" + url.PathEscape(r.Namespace) + "/" + url.PathEscape(r.Name)
	for _, platform := range []string{o.platform, ""} {
		u := base
		if platform != "" {
			u += "/" + platform
		}
		if r.Version != "" {
			u += "/" + url.PathEscape(r.Version)
		}
		body, status, err := o.request(ctx, u, 16<<20)
		if err != nil {
			return ovsxMetadata{}, o.unreachable(err, r)
		}
		if status == http.StatusNotFound {
			continue
		}
		var m ovsxMetadata
		if status != http.StatusOK {
			return ovsxMetadata{}, sandbox.Hintf(nil, "check the marketplace URL; or download the .vsix by hand into the --extensions directory",
				"%s answers %d for %s", u, status, r)
		}
		if err := json.Unmarshal(body, &m); err != nil {
			return ovsxMetadata{}, sandbox.Hintf(err, "point the marketplace option at an Open VSX server (its base URL, without /api)",
				"%s does not answer Open VSX's JSON for %s: %v", u, r, err)
		}
		if m.Error != "" || m.Version == "" {
			continue
		}
		if p := cmpOr(m.TargetPlatform, "universal"); p != "universal" && p != o.platform {
			continue
		}
		return m, nil
	}
	what := r.Namespace + "." + r.Name
	if r.Version != "" {
		what += " " + r.Version
	}
	return ovsxMetadata{}, sandbox.Hintf(nil, "check the id on the extension's marketplace page (publisher.name) and the version",
		"%s has no %s for %s", o.base, what, o.platform)
}

// unreachable wraps a network error with what to do at a venue without
// internet.
func (o *openVSX) unreachable(err error, r extensionRef) error {
	return sandbox.Hintf(err, "with no marketplace reachable, download the .vsix files elsewhere and pass their directory with --extensions (see deploy/sandbox/README.md)",
		"cannot download %s from %s: %v", r, o.base, err)
}

// fetch GETs u (relative to the server) and fails unless it answers 200.
func (o *openVSX) fetch(ctx context.Context, u string, limit int64) ([]byte, error) {
	body, status, err := o.request(ctx, u, limit)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", u, status)
	}
	return body, nil
}

func (o *openVSX) request(ctx context.Context, u string, limit int64) ([]byte, int, error) {
	ref, err := url.Parse(u)
	if err != nil {
		return nil, 0, err
	}
	base, err := url.Parse(o.base + "/")
	if err != nil {
		return nil, 0, err
	}
	full := base.ResolveReference(ref).String()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, full, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := o.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("GET %s: %w", full, err)
	}
	if int64(len(body)) > limit {
		return nil, resp.StatusCode, fmt.Errorf("GET %s: more than %d bytes", full, limit)
	}
	return body, resp.StatusCode, nil
}

// bakedExtensions collects what opts bakes in: deploy/sandbox/extensions,
// ExtensionsDir and ExtensionsList (downloaded), sorted by id. The same
// extension twice is refused.
func bakedExtensions(ctx context.Context, opts Options) ([]extension, error) {
	all, err := embeddedExtensions()
	if err != nil {
		return nil, err
	}
	if opts.ExtensionsDir != "" {
		more, err := dirExtensions(opts.ExtensionsDir)
		if err != nil {
			return nil, err
		}
		if len(more) == 0 {
			fmt.Fprintf(opts.Log, "no .vsix files in %s: no extensions from there\n", opts.ExtensionsDir)
		}
		all = append(all, more...)
	}
	if opts.ExtensionsList != "" {
		data, err := os.ReadFile(opts.ExtensionsList)
		if err != nil {
			return nil, sandbox.Hintf(err, "point it at a file with one publisher.name[@version] per line",
				"cannot read the extensions list %s: %v", opts.ExtensionsList, unwrapPathError(err))
		}
		refs, err := parseExtensionsList(data, opts.ExtensionsList)
		if err != nil {
			return nil, err
		}
		ovsx := &openVSX{
			base:     marketplaceURL(opts.Marketplace, os.Getenv),
			cacheDir: filepath.Join(opts.CacheDir, "extensions"),
			platform: targetPlatform(),
			client:   &http.Client{Timeout: 10 * time.Minute},
			log:      opts.Log,
		}
		more, err := ovsx.get(ctx, refs)
		if err != nil {
			return nil, err
		}
		all = append(all, more...)
	}
	slices.SortFunc(all, func(a, b extension) int { return strings.Compare(strings.ToLower(a.ID), strings.ToLower(b.ID)) })
	var errs []error
	for i := 1; i < len(all); i++ {
		if strings.EqualFold(all[i].ID, all[i-1].ID) {
			errs = append(errs, sandbox.Hintf(nil, "keep one of them",
				"extension %s comes twice: %s (%s) and %s (%s)", all[i].ID, all[i-1].From, all[i-1].Version, all[i].From, all[i].Version))
		}
	}
	return all, errors.Join(errs...)
}

// extensionsKey identifies a set of baked extensions ("" for none).
func extensionsKey(exts []extension) string {
	if len(exts) == 0 {
		return ""
	}
	parts := []string{keySchema, "extensions"}
	for _, x := range exts {
		sum := sha256.Sum256(x.Data)
		parts = append(parts, x.File, hex.EncodeToString(sum[:]))
	}
	return hashOf(parts...)
}
