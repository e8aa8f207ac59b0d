package imagebuild

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/thon-dev/thon/internal/sandbox"
)

func TestParseExtensionsList(t *testing.T) {
	refs, err := parseExtensionsList([]byte("# the assistants\n\nkilocode.kilo-code@4.1.0\r\n  Continue.continue  \nsaoudrizwan.claude-dev@3.17.0-beta.1\n"), "list.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := []extensionRef{
		{"kilocode", "kilo-code", "4.1.0", 3},
		{"Continue", "continue", "", 4},
		{"saoudrizwan", "claude-dev", "3.17.0-beta.1", 5},
	}
	if !slices.Equal(refs, want) {
		t.Errorf("refs = %+v, want %+v", refs, want)
	}
	if refs[0].String() != "kilocode.kilo-code@4.1.0" || refs[1].String() != "Continue.continue" {
		t.Errorf("String() = %s, %s", refs[0], refs[1])
	}

	// Every bad line at once, each with its line number and a hint.
	_, err = parseExtensionsList([]byte("kilocode\nkilocode.kilo-code@latest\n./x.vsix\nContinue.continue\ncontinue.CONTINUE@1.0.0\nok.one\n"), "list.txt")
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{
		`list.txt:1: "kilocode" is not publisher.name[@version]`,
		`list.txt:2: "kilocode.kilo-code@latest" has an invalid version`,
		`list.txt:3: "./x.vsix" is not publisher.name[@version]`,
		`list.txt:5: continue.CONTINUE is listed again (first at line 4)`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 4 {
		t.Errorf("want 4 problems, got %d:\n%v", n, err)
	}
	var ue *sandbox.UserError
	if !errors.As(err, &ue) || ue.Hint == "" {
		t.Errorf("no hint: %v", err)
	}
}

func TestReadVSIX(t *testing.T) {
	x, err := readVSIX("k.vsix", "/vsix/k.vsix", makeVSIX(t, "kilocode", "kilo-code", "4.1.0"))
	if err != nil {
		t.Fatal(err)
	}
	if x.ID != "kilocode.kilo-code" || x.Version != "4.1.0" || x.File != "k.vsix" || x.From != "/vsix/k.vsix" {
		t.Errorf("read %+v", x)
	}
	for name, data := range map[string][]byte{
		"not a zip":       []byte("<html>404</html>"),
		"no package.json": zipOf(t, map[string]string{"extension.vsixmanifest": "<x/>"}),
		"no publisher":    zipOf(t, map[string]string{"extension/package.json": `{"name":"a","version":"1.0.0"}`}),
	} {
		if _, err := readVSIX("x.vsix", name, data); err == nil || !strings.Contains(err.Error(), "is not a VS Code extension package") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func zipOf(t *testing.T, files map[string]string) []byte {
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	for name, content := range files {
		w, _ := z.Create(name)
		io.WriteString(w, content)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDirExtensions(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "kilo.vsix"), makeVSIX(t, "kilocode", "kilo-code", "4.1.0"), 0o644)
	os.WriteFile(filepath.Join(dir, "Continue.VSIX"), makeVSIX(t, "Continue", "continue", "1.2.3"), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not an extension"), 0o644)
	os.Mkdir(filepath.Join(dir, "old.vsix"), 0o755) // a directory, skipped
	exts, err := dirExtensions(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, x := range exts {
		ids = append(ids, x.ID+"@"+x.Version)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"Continue.continue@1.2.3", "kilocode.kilo-code@4.1.0"}) {
		t.Errorf("ids %v", ids)
	}
	os.WriteFile(filepath.Join(dir, "broken.vsix"), []byte("truncated"), 0o644)
	if _, err := dirExtensions(dir); err == nil || !strings.Contains(err.Error(), "broken.vsix is not a VS Code extension package") {
		t.Errorf("a broken .vsix: %v", err)
	}
	if _, err := dirExtensions(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "cannot read the extensions directory") {
		t.Errorf("a missing directory: %v", err)
	}
}

// fakeOpenVSX speaks Open VSX's REST API for the extensions it holds:
// GET /api/{namespace}/{name}[/{targetPlatform}][/{version}] answers the
// metadata JSON, whose files.download and files.sha256 point at
// /api/{namespace}/{name}/{targetPlatform}/{version}/file/…; unknown ones
// get 404 with {"error": …}, as Open VSX answers.
type fakeOpenVSX struct {
	*httptest.Server
	mu       sync.Mutex
	exts     []fakeExt
	requests []string
	badSum   bool // files.sha256 does not match
}

type fakeExt struct {
	ns, name, version, platform string // platform "universal" or e.g. linux-x64
	data                        []byte
}

var knownPlatforms = []string{"universal", "linux-x64", "linux-arm64", "linux-armhf", "win32-x64", "darwin-arm64", "alpine-x64", "web"}

func newFakeOpenVSX(t *testing.T, exts ...fakeExt) *fakeOpenVSX {
	f := &fakeOpenVSX{exts: exts}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeOpenVSX) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.URL.Path)
	f.mu.Unlock()
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/"), "/")
	if !strings.HasPrefix(r.URL.Path, "/api/") || len(parts) < 2 {
		http.NotFound(w, r)
		return
	}
	ns, name, rest := parts[0], parts[1], parts[2:]
	platform, version := "", ""
	if len(rest) > 0 && slices.Contains(knownPlatforms, rest[0]) {
		platform, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 && rest[0] != "file" {
		version, rest = rest[0], rest[1:]
	}
	var found *fakeExt
	for i := range f.exts {
		e := &f.exts[i]
		if !strings.EqualFold(e.ns, ns) || !strings.EqualFold(e.name, name) ||
			(platform != "" && e.platform != platform) || (version != "" && e.version != version) {
			continue
		}
		if found == nil || compareVersions(e.version, found.version) > 0 {
			found = e
		}
	}
	if found == nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]string{"error": "Extension not found: " + ns + "." + name})
		return
	}
	base := f.URL + "/api/" + found.ns + "/" + found.name + "/" + found.platform + "/" + found.version + "/file/" + found.ns + "." + found.name + "-" + found.version
	if len(rest) == 2 && rest[0] == "file" {
		switch {
		case strings.HasSuffix(rest[1], ".vsix"):
			w.Write(found.data)
		case strings.HasSuffix(rest[1], ".sha256"):
			sum := sha256.Sum256(found.data)
			if f.badSum {
				sum[0] ^= 0xff
			}
			io.WriteString(w, hex.EncodeToString(sum[:])+"  "+found.name+".vsix\n")
		default:
			http.NotFound(w, r)
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"namespace": found.ns, "name": found.name, "version": found.version, "targetPlatform": found.platform,
		"files": map[string]string{"download": base + ".vsix", "sha256": base + ".sha256"},
	})
}

func (f *fakeOpenVSX) count(sub string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.requests {
		if strings.Contains(r, sub) {
			n++
		}
	}
	return n
}

func newClient(f *fakeOpenVSX, cache string) *openVSX {
	return &openVSX{base: f.URL, cacheDir: cache, platform: "linux-x64", client: f.Client(), log: io.Discard}
}

func TestOpenVSXDownload(t *testing.T) {
	kilo1 := makeVSIX(t, "kilocode", "kilo-code", "4.0.0")
	kilo2 := makeVSIX(t, "kilocode", "kilo-code", "4.1.0")
	contLinux := makeVSIX(t, "Continue", "continue", "1.2.3")
	contWin := makeVSIX(t, "Continue", "continue", "1.2.3")
	f := newFakeOpenVSX(t,
		fakeExt{"kilocode", "kilo-code", "4.0.0", "universal", kilo1},
		fakeExt{"kilocode", "kilo-code", "4.1.0", "universal", kilo2},
		fakeExt{"Continue", "continue", "1.2.3", "win32-x64", contWin},
		fakeExt{"Continue", "continue", "1.2.3", "linux-x64", contLinux},
	)
	cache := filepath.Join(t.TempDir(), "extensions")
	ctx := context.Background()
	refs, err := parseExtensionsList([]byte("kilocode.kilo-code\nContinue.continue@1.2.3\n"), "list")
	if err != nil {
		t.Fatal(err)
	}
	exts, err := newClient(f, cache).get(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	if len(exts) != 2 || exts[0].Version != "4.1.0" || !bytes.Equal(exts[0].Data, kilo2) {
		t.Fatalf("kilo: %+v, want the newest, 4.1.0", exts)
	}
	if exts[1].ID != "Continue.continue" || !bytes.Equal(exts[1].Data, contLinux) {
		t.Errorf("continue: %+v, want the linux-x64 package", exts[1])
	}
	for _, want := range []string{"kilocode.kilo-code-4.1.0@universal.vsix", "Continue.continue-1.2.3@linux-x64.vsix"} {
		if _, err := os.Stat(filepath.Join(cache, want)); err != nil {
			t.Errorf("not cached as %s: %v", want, err)
		}
	}
	if f.count("/api/Continue/continue/linux-x64/1.2.3") == 0 || f.count(".sha256") != 2 {
		t.Errorf("requests %v: want the linux-x64 metadata asked first and both checksums checked", f.requests)
	}
	// The universal one was asked for linux-x64 first (404), then universally.
	if f.count("/api/kilocode/kilo-code/linux-x64") != 1 || f.count("/api/kilocode/kilo-code") < 2 {
		t.Errorf("requests %v", f.requests)
	}

	// A pinned version in the cache needs no marketplace at all; the
	// newest cached one stands in for an unpinned one when it is not
	// reachable. Once downloaded, never again.
	f.Close()
	exts, err = newClient(f, cache).get(ctx, refs)
	if err != nil {
		t.Fatalf("from the cache, marketplace gone: %v", err)
	}
	if exts[0].Version != "4.1.0" || !bytes.Equal(exts[1].Data, contLinux) {
		t.Errorf("from the cache: %+v", exts)
	}

	// Not cached, not reachable: what to do at a venue without internet.
	_, err = newClient(f, t.TempDir()).get(ctx, refs[:1])
	if err == nil || !strings.Contains(err.Error(), "cannot download kilocode.kilo-code") || !strings.Contains(err.Error(), "--extensions") {
		t.Errorf("unreachable: %v", err)
	}
}

func TestOpenVSXRefusals(t *testing.T) {
	ctx := context.Background()
	good := makeVSIX(t, "p", "ok", "1.0.0")
	f := newFakeOpenVSX(t,
		fakeExt{"p", "ok", "1.0.0", "universal", good},
		fakeExt{"p", "winonly", "1.0.0", "win32-x64", makeVSIX(t, "p", "winonly", "1.0.0")},
		fakeExt{"p", "liar", "1.0.0", "universal", makeVSIX(t, "p", "other", "1.0.0")},
		fakeExt{"p", "html", "1.0.0", "universal", []byte("<html>login</html>")},
	)
	for line, want := range map[string]string{
		"p.missing":   "has no p.missing for linux-x64",
		"p.ok@2.0.0":  "has no p.ok 2.0.0 for linux-x64",
		"p.winonly":   "has no p.winonly for linux-x64",
		"p.liar":      "the download of p.liar is p.other 1.0.0",
		"p.html":      "is not a VS Code extension package",
		"p.ok@1.0.0 ": "",
	} {
		refs, err := parseExtensionsList([]byte(line), "list")
		if err != nil {
			t.Fatal(err)
		}
		_, err = newClient(f, t.TempDir()).get(ctx, refs)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", line, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: %v, want %q", line, err, want)
		}
	}
	f.badSum = true
	refs, _ := parseExtensionsList([]byte("p.ok"), "list")
	cache := t.TempDir()
	if _, err := newClient(f, cache).get(ctx, refs); err == nil || !strings.Contains(err.Error(), "does not match its SHA-256") {
		t.Errorf("a bad checksum: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(cache, "*")); len(left) != 0 {
		t.Errorf("a download that failed its checksum was cached: %v", left)
	}

	// Not an Open VSX server.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>hello</html>") }))
	defer other.Close()
	o := &openVSX{base: other.URL, cacheDir: t.TempDir(), platform: "linux-x64", client: other.Client(), log: io.Discard}
	if _, err := o.get(ctx, refs); err == nil || !strings.Contains(err.Error(), "does not answer Open VSX's JSON") {
		t.Errorf("not Open VSX: %v", err)
	}
}

func TestMarketplaceURL(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "EXTENSIONS_GALLERY" {
				return v
			}
			return ""
		}
	}
	for _, c := range []struct{ option, gallery, want string }{
		{"http://ovsx.example:3000/", "", "http://ovsx.example:3000"},
		{"", `{"serviceUrl": "https://ovsx.example/vscode/gallery", "itemUrl": "https://ovsx.example/vscode/item"}`, "https://ovsx.example"},
		{"", `{"serviceUrl": "https://marketplace.example/_apis/public/gallery"}`, DefaultMarketplace}, // not Open VSX
		{"", "not json", DefaultMarketplace},
		{"", "", DefaultMarketplace},
	} {
		if got := marketplaceURL(c.option, env(c.gallery)); got != c.want {
			t.Errorf("marketplaceURL(%q, %q) = %q, want %q", c.option, c.gallery, got, c.want)
		}
	}
}

// Build collects the extensions from the directory and the list (the
// latter from the marketplace, into the cache) before anything else, and
// refuses one extension twice.
func TestBakedExtensions(t *testing.T) {
	f := newFakeOpenVSX(t, fakeExt{"kilocode", "kilo-code", "4.1.0", "universal", makeVSIX(t, "kilocode", "kilo-code", "4.1.0")})
	dir, cache := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(dir, "cont.vsix"), makeVSIX(t, "Continue", "continue", "1.2.3"), 0o644)
	list := filepath.Join(t.TempDir(), "list.txt")
	os.WriteFile(list, []byte("kilocode.kilo-code@4.1.0\n"), 0o644)
	opts := testOptions()
	opts.CacheDir, opts.ExtensionsDir, opts.ExtensionsList, opts.Marketplace = cache, dir, list, f.URL
	exts, err := bakedExtensions(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := extensionIDs(exts); got != "Continue.continue@1.2.3, kilocode.kilo-code@4.1.0" {
		t.Errorf("baked %s", got)
	}
	if _, err := os.Stat(filepath.Join(cache, "extensions", "kilocode.kilo-code-4.1.0@universal.vsix")); err != nil {
		t.Errorf("the download is not in the cache: %v", err)
	}
	// The same extension from the directory and the list.
	os.WriteFile(filepath.Join(dir, "kilo.vsix"), makeVSIX(t, "kilocode", "kilo-code", "4.0.0"), 0o644)
	if _, err := bakedExtensions(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "extension kilocode.kilo-code comes twice") {
		t.Errorf("twice: %v", err)
	}
	opts.ExtensionsList = filepath.Join(t.TempDir(), "missing.txt")
	if _, err := bakedExtensions(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "cannot read the extensions list") {
		t.Errorf("a missing list: %v", err)
	}
	// Bad options fail before any download or engine.
	_, err = Build(context.Background(), Options{ExtensionsDir: filepath.Join(dir, "missing"), DockerHost: "unix:///nonexistent/docker.sock",
		Mirror: testMirror, NPMRegistry: testRegistry}, nil)
	if err == nil || !strings.Contains(err.Error(), "cannot read the extensions directory") {
		t.Errorf("Build with a missing extensions directory: %v", err)
	}
}

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		sign int
	}{{"4.10.0", "4.9.9", 1}, {"1.0.0", "1.0.0", 0}, {"0.9", "0.10", -1}, {"2.0.0-beta.2", "2.0.0-beta.1", 1}} {
		got := compareVersions(c.a, c.b)
		if (got > 0) != (c.sign > 0) || (got < 0) != (c.sign < 0) {
			t.Errorf("compareVersions(%s, %s) = %d", c.a, c.b, got)
		}
	}
}

func TestBakedTag(t *testing.T) {
	for tag, want := range map[string]string{
		"thon/sandbox:latest":                 "thon/sandbox:latest-e2e-baked",
		"thon/sandbox":                        "thon/sandbox:latest-e2e-baked",
		"localhost:5000/thon/sandbox:image15": "localhost:5000/thon/sandbox:image15-e2e-baked",
		"localhost:5000/thon/sandbox":         "localhost:5000/thon/sandbox:latest-e2e-baked",
	} {
		if got := bakedTag(tag); got != want || !tagRE.MatchString(got) {
			t.Errorf("bakedTag(%s) = %s, want %s", tag, got, want)
		}
	}
}
