package imagebuild

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	sandboximage "github.com/thon-dev/thon/deploy/sandbox"
	"github.com/thon-dev/thon/internal/sandbox"
)

// Where tests say packages come from: no real mirror or registry (see
// TestNoMirrorOrRegistryNamed).
const (
	testMirror   = "http://mirror.example/debian"
	testRegistry = "https://npm.example/"
)

// testOptions are the defaults with the test mirror and registry (so that
// nothing asks this machine's apt and npm).
func testOptions() Options {
	return Options{Mirror: testMirror, NPMRegistry: testRegistry}.withDefaults()
}

func TestValidate(t *testing.T) {
	good := testOptions()
	if err := good.validate(); err != nil {
		t.Fatalf("defaults are invalid: %v", err)
	}
	// No mirror and no registry on this machine: debootstrap's and npm's own.
	none := good
	none.Mirror, none.NPMRegistry = "", ""
	if err := none.validate(); err != nil {
		t.Errorf("no mirror and no registry: %v", err)
	}
	cases := []struct {
		name string
		edit func(*Options)
		want string // in the message
	}{
		{"tag upper case", func(o *Options) { o.Tag = "THON/Sandbox" }, `invalid image tag "THON/Sandbox"`},
		{"tag with space", func(o *Options) { o.Tag = "thon/sandbox latest" }, "invalid image tag"},
		{"tag is the base repository", func(o *Options) { o.Tag = BaseRepository + ":x" }, "holds the imported root file systems"},
		{"relative cache", func(o *Options) { o.CacheDir = "cache" }, `cache directory "cache" is not absolute`},
		{"mirror not a URL", func(o *Options) { o.Mirror = "mirror.example/debian" }, "invalid Debian mirror"},
		{"mirror ftp", func(o *Options) { o.Mirror = "ftp://mirror.example/debian" }, "invalid Debian mirror"},
		{"registry", func(o *Options) { o.NPMRegistry = "npm.example" }, "invalid npm registry"},
		{"suite", func(o *Options) { o.Suite = "Trixie!" }, `invalid Debian suite "Trixie!"`},
		{"version range", func(o *Options) { o.CodeServerVersion = "^4.100.0" }, "invalid code-server version"},
		{"version latest", func(o *Options) { o.CodeServerVersion = "latest" }, "invalid code-server version"},
		{"version too old", func(o *Options) { o.CodeServerVersion = "4.99.4" }, "code-server 4.99.4 is too old"},
		{"version v3", func(o *Options) { o.CodeServerVersion = "3.12.0" }, "too old"},
		{"thon version", func(o *Options) { o.ThonVersion = "1.0 beta" }, "invalid THON version"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := good
			c.edit(&o)
			err := o.validate()
			if err == nil {
				t.Fatalf("no error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			var ue *sandbox.UserError
			if !errors.As(err, &ue) || ue.Hint == "" {
				t.Errorf("error %q carries no hint", err)
			}
		})
	}
	for _, v := range []string{"4.100.0", "4.100.3", "4.139.1", "5.0.0"} {
		o := good
		o.CodeServerVersion = v
		if err := o.validate(); err != nil {
			t.Errorf("version %s: %v", v, err)
		}
	}
	for _, tag := range []string{"thon/sandbox:latest", "sandbox", "localhost:5000/thon/sandbox:4.100.3-1", "reg.example/a_b/c-d:X_1"} {
		o := good
		o.Tag = tag
		if err := o.validate(); err != nil {
			t.Errorf("tag %s: %v", tag, err)
		}
	}

	// All problems at once.
	o := good
	o.Tag, o.Suite, o.CacheDir = "A B", "?", "rel"
	err := o.validate()
	if n := strings.Count(err.Error(), "\n") + 1; n != 3 {
		t.Errorf("want 3 errors at once, got %d: %v", n, err)
	}
}

func TestBuildRejectsBadOptionsBeforeDocker(t *testing.T) {
	// An unreachable engine: validation must fail first.
	_, err := Build(context.Background(), Options{Tag: "Bad Tag", DockerHost: "unix:///nonexistent/docker.sock"}, nil)
	if err == nil || !strings.Contains(err.Error(), "invalid image tag") {
		t.Fatalf("err = %v, want the invalid tag", err)
	}
}

func TestRootfsKey(t *testing.T) {
	base := testOptions()
	script := embedded("offline/provision.sh")
	k := rootfsKey(base, script)
	if len(k) != 16 || !regexp.MustCompile(`^[0-9a-f]+$`).MatchString(k) {
		t.Fatalf("key %q: want 16 hex digits (it is a Docker tag)", k)
	}
	if rootfsKey(base, script) != k {
		t.Fatal("key is not stable")
	}
	same := base
	same.Mirror, same.NPMRegistry, same.CAFile = "http://other-mirror.example/debian", "", "/x.pem"
	same.Tag, same.ThonVersion, same.Rebuild = "other:tag", "v9", true
	same.ExtensionsDir, same.ExtensionsList, same.Marketplace = "/vsix", "/list.txt", "http://ovsx.example"
	if rootfsKey(same, script) != k {
		t.Error("where packages come from (mirror, registry, CA), the extensions or the final tag changed the root file system key")
	}
	changes := map[string]func(*Options, *[]byte){
		"code-server version": func(o *Options, _ *[]byte) { o.CodeServerVersion = "4.100.0" },
		"suite":               func(o *Options, _ *[]byte) { o.Suite = "forky" },
		"provision script":    func(_ *Options, s *[]byte) { *s = append([]byte("# edited\n"), *s...) },
	}
	for name, change := range changes {
		o, s := base, append([]byte(nil), script...)
		change(&o, &s)
		if rootfsKey(o, s) == k {
			t.Errorf("changing the %s kept the root file system key", name)
		}
	}
	// A tool's version goes into the root file system.
	saved := slices.Clone(Tools)
	t.Cleanup(func() { Tools = saved })
	Tools[0].Version = "0.0.1"
	if rootfsKey(base, script) == k {
		t.Errorf("another %s kept the root file system key", Tools[0].Package)
	}
}

func TestFinishKey(t *testing.T) {
	files := finishContext()
	k := finishKey("r1", "", files, "v1")
	if finishKey("r1", "", files, "v1") != k {
		t.Fatal("key is not stable (map order?)")
	}
	if finishKey("r2", "", files, "v1") == k {
		t.Error("another root file system kept the key")
	}
	if finishKey("r1", "", files, "v2") == k {
		t.Error("another THON version kept the key (the label would be stale)")
	}
	if finishKey("r1", "x1", files, "v1") == k {
		t.Error("baked-in extensions kept the key")
	}
	edited := map[string][]byte{}
	for n, b := range files {
		edited[n] = b
	}
	edited["thon-entrypoint.sh"] = append([]byte("#\n"), files["thon-entrypoint.sh"]...)
	if finishKey("r1", "", edited, "v1") == k {
		t.Error("editing the entrypoint kept the key")
	}
	// File names count, not only contents.
	a := finishKey("r", "", map[string][]byte{"a": []byte("x"), "b": nil}, "v")
	b := finishKey("r", "", map[string][]byte{"a": nil, "b": []byte("x")}, "v")
	if a == b {
		t.Error("moving content between files kept the key")
	}
	if onlineKey(onlineContext(nil), "v1") == k {
		t.Error("online and offline keys collide")
	}
	// The online image carries its extensions in its context.
	x := extension{ID: "p.n", Version: "1.0.0", File: "p.n-1.0.0.vsix", Data: []byte("zip")}
	if onlineKey(onlineContext([]extension{x}), "v1") == onlineKey(onlineContext(nil), "v1") {
		t.Error("a baked-in extension kept the online key")
	}
}

func TestExtensionsKey(t *testing.T) {
	a := extension{ID: "p.a", Version: "1.0.0", File: "a.vsix", Data: []byte("A")}
	b := extension{ID: "p.b", Version: "1.0.0", File: "b.vsix", Data: []byte("B")}
	if extensionsKey(nil) != "" {
		t.Error("no extensions have a key")
	}
	k := extensionsKey([]extension{a, b})
	if len(k) != 16 || k != extensionsKey([]extension{a, b}) {
		t.Fatalf("key %q is not 16 stable hex digits", k)
	}
	b2 := b
	b2.Data = []byte("B2")
	if extensionsKey([]extension{a, b2}) == k || extensionsKey([]extension{a}) == k {
		t.Error("another extension set kept the key")
	}
}

// The online Dockerfile and the offline build must give the same code-server,
// Node.js, npm and tools.
func TestPinnedVersionMatchesDefault(t *testing.T) {
	if got := pinnedVersion(); got != DefaultCodeServerVersion {
		t.Errorf("deploy/sandbox/Dockerfile builds FROM codercom/code-server:%s, DefaultCodeServerVersion is %s: keep them the same",
			got, DefaultCodeServerVersion)
	}
	df := string(embedded("Dockerfile"))
	if !strings.Contains(df, `io.thon.code-server.version="`+DefaultCodeServerVersion+`"`) {
		t.Errorf("deploy/sandbox/Dockerfile labels another code-server version than %s", DefaultCodeServerVersion)
	}
	for arg, want := range map[string]string{
		"NODE_VERSION":    DefaultNodeVersion,
		"NPM_VERSION":     DefaultNPMVersion,
		"TOOLS":           `"` + toolSpecs() + `"`,
		"LANCEDB_VERSION": LanceDBVersion,
	} {
		m := regexp.MustCompile(`(?m)^ARG ` + arg + `=(.*)$`).FindStringSubmatch(df)
		if m == nil || m[1] != want {
			t.Errorf("deploy/sandbox/Dockerfile: ARG %s=%v, want %s (imagebuild's)", arg, m, want)
		}
	}
}

func TestToolsArePinned(t *testing.T) {
	commands := map[string]bool{}
	for _, tool := range Tools {
		if _, ok := parseVersion(tool.Version); !ok {
			t.Errorf("%s@%s: not an exact version", tool.Package, tool.Version)
		}
		commands[tool.Command] = true
	}
	for _, c := range []string{"kilo", "cn", "cline", "opencode", "pnpm"} {
		if !commands[c] {
			t.Errorf("no tool gives the command %s", c)
		}
	}
	if got := toolSpecs(); !strings.Contains(got, "@kilocode/cli@7.7.7") || strings.Count(got, "@") < len(Tools) {
		t.Errorf("toolSpecs() = %q", got)
	}
	for _, v := range []string{DefaultNodeVersion, DefaultNPMVersion, LanceDBVersion} {
		if _, ok := parseVersion(v); !ok {
			t.Errorf("%q is not an exact version", v)
		}
	}
}

// Both Dockerfiles set up the container the same way.
func TestDockerfilesAgree(t *testing.T) {
	online, offline := string(embedded("Dockerfile")), string(embedded("offline/Dockerfile.finish"))
	for _, line := range []string{
		`ENTRYPOINT ["/usr/local/bin/thon-entrypoint.sh"]`,
		"COPY thon-entrypoint.sh /usr/local/bin/thon-entrypoint.sh",
		"EXPOSE 8080",
		"WORKDIR /workspace",
		"USER root",
		`CMD curl -fsS "http://127.0.0.1:${PORT}/healthz" || exit 1`,
		"ENV KILO_LANCEDB_PATH=/usr/local/lib/kilo-lancedb/node_modules/@lancedb/lancedb/dist/index.js",
		"KILO_DISABLE_AUTOUPDATE=1",
		"OPENCODE_DISABLE_AUTOUPDATE=1",
		"CLINE_NO_AUTO_UPDATE=1",
		"PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH=/usr/bin/chromium",
		"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1",
	} {
		if !strings.Contains(online, line) {
			t.Errorf("Dockerfile lacks %q", line)
		}
		if !strings.Contains(offline, line) {
			t.Errorf("offline/Dockerfile.finish lacks %q", line)
		}
	}
	for _, label := range []string{LabelVersion, LabelCodeServerVersion, LabelBuild} {
		if !strings.Contains(online, label+"=") || !strings.Contains(offline, label+"=") {
			t.Errorf("label %s missing from one of the Dockerfiles", label)
		}
	}
	if !strings.Contains(offline, LabelKey+`="${IMAGE_KEY}"`) {
		t.Errorf("offline/Dockerfile.finish does not set %s from IMAGE_KEY", LabelKey)
	}
	// The same provisioning and the same extension installer in both.
	for _, line := range []string{
		"COPY offline/provision.sh /tmp/thon-provision.sh",
		"CODE_SERVER_VERSION=base",
		"COPY extensions/ /opt/thon/extensions/",
		"RUN sh /usr/local/lib/thon/install-extensions.sh /opt/thon/extensions",
	} {
		if !strings.Contains(online, line) {
			t.Errorf("Dockerfile lacks %q", line)
		}
	}
	// The offline image gets its extensions installed before this build,
	// never as .vsix files in a layer.
	if strings.Contains(offline, "COPY extensions/") {
		t.Error("offline/Dockerfile.finish copies the .vsix files into the image")
	}
}

func TestEmbeddedFiles(t *testing.T) {
	for _, name := range []string{"Dockerfile", "thon-entrypoint.sh", "install-extensions.sh", "offline/provision.sh", "offline/Dockerfile.finish", "extensions/README.md"} {
		if _, err := fs.Stat(sandboximage.Files, name); err != nil {
			t.Errorf("%s is not embedded: %v", name, err)
		}
	}
	online := onlineContext(nil)
	for _, name := range []string{"Dockerfile", "thon-entrypoint.sh", "install-extensions.sh", "offline/provision.sh", "extensions/README.md"} {
		if _, ok := online[name]; !ok {
			t.Errorf("the online build context lacks %s (the Dockerfile copies it)", name)
		}
	}
	files := finishContext()
	if !strings.HasPrefix(string(files["Dockerfile"]), "# THON participant image, offline build") {
		t.Error("the offline context's Dockerfile is not Dockerfile.finish")
	}
}

// The scripts are POSIX sh, as the images run them.
func TestScriptsParse(t *testing.T) {
	for _, name := range []string{"thon-entrypoint.sh", "install-extensions.sh", "offline/provision.sh"} {
		out, err := exec.Command("sh", "-n", "-c", string(embedded(name))).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
	}
}

func TestProvisionEnv(t *testing.T) {
	env := provisionEnv(testOptions())
	for _, want := range []string{
		"CODE_SERVER_VERSION=" + DefaultCodeServerVersion,
		"NODE_VERSION=" + DefaultNodeVersion,
		"NPM_VERSION=" + DefaultNPMVersion,
		"TOOLS=" + toolSpecs(),
		"LANCEDB_VERSION=" + LanceDBVersion,
		"NPM_REGISTRY=" + testRegistry,
	} {
		if !slices.Contains(env, want) {
			t.Errorf("the script's environment %v lacks %s", env, want)
		}
	}
	// No registry on this machine: none is passed, and npm uses its own.
	o := testOptions()
	o.NPMRegistry = ""
	for _, kv := range provisionEnv(o) {
		if strings.HasPrefix(kv, "NPM_REGISTRY=") {
			t.Errorf("%s passed without a registry", kv)
		}
	}
	script := string(embedded("offline/provision.sh"))
	for _, want := range []string{`if [ -n "${NPM_REGISTRY:-}" ]; then`, `"node-linux-$node_arch@$NODE_VERSION"`, `"npm@$NPM_VERSION"`, `"@lancedb/lancedb@$LANCEDB_VERSION"`} {
		if !strings.Contains(script, want) {
			t.Errorf("provision.sh lacks %s", want)
		}
	}
}

func TestMirrorFrom(t *testing.T) {
	cases := []struct {
		name string
		text []string
		want string
	}{
		{"one-line", []string{"# x\ndeb http://mirror.example/debian/ bookworm main\n"}, "http://mirror.example/debian"},
		{"one-line options", []string{"deb [arch=amd64 signed-by=/k.gpg] https://mirror.example/debian bookworm main"}, "https://mirror.example/debian"},
		{"security first", []string{"deb http://security.example/debian-security bookworm-security main\ndeb http://mirror.example/debian bookworm main"}, "http://mirror.example/debian"},
		{"deb822", []string{"Types: deb\n# http://snapshot.example/archive/debian/20250520T000000Z\nURIs: http://mirror.example/debian\nSuites: bookworm\n"}, "http://mirror.example/debian"},
		{"other archives only", []string{"deb https://deb.nodesource.example/node_20.x nodistro main\ndeb-src http://mirror.example/debian bookworm main"}, ""},
		{"second file", []string{"URIs: https://deb.nodesource.example/node_20.x", "URIs: http://local.mirror:3142/debian"}, "http://local.mirror:3142/debian"},
	}
	for _, c := range cases {
		if got := mirrorFrom(c.text...); got != c.want {
			t.Errorf("%s: mirrorFrom = %q, want %q", c.name, got, c.want)
		}
	}
	if m := HostMirror(); m != "" && !isHTTPURL(m) {
		t.Errorf("HostMirror() = %q", m)
	}
}

// The mirror is the one of this machine's apt sources, read from its files;
// without one, none (debootstrap's own default).
func TestMirrorIn(t *testing.T) {
	dir := t.TempDir()
	if got := mirrorIn(dir); got != "" {
		t.Errorf("no sources: %q, want none", got)
	}
	os.MkdirAll(filepath.Join(dir, "sources.list.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "sources.list.d", "cloud.list"), []byte("deb https://packages.example/apt cloud main\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "sources.list.d", "debian.sources.bak"), []byte("URIs: http://ignored.example/debian\n"), 0o644)
	if got := mirrorIn(dir); got != "" {
		t.Errorf("no Debian archive: %q, want none", got)
	}
	os.WriteFile(filepath.Join(dir, "sources.list.d", "debian.sources"),
		[]byte("Types: deb\nURIs: http://apt-cache.example:3142/debian\nSuites: trixie\nComponents: main\n"), 0o644)
	if got := mirrorIn(dir); got != "http://apt-cache.example:3142/debian" {
		t.Errorf("deb822 sources: %q", got)
	}
	os.WriteFile(filepath.Join(dir, "sources.list"), []byte("deb http://mirror.example/debian/ trixie main\n"), 0o644)
	if got := mirrorIn(dir); got != "http://mirror.example/debian" {
		t.Errorf("sources.list first: %q", got)
	}
}

// The npm registry is what this machine's npm says (npm config get
// registry), else NPM_CONFIG_REGISTRY, else none (npm's own default).
func TestNPMRegistry(t *testing.T) {
	dir := t.TempDir()
	npm := filepath.Join(dir, "npm")
	os.WriteFile(npm, []byte("#!/bin/sh\n[ \"$*\" = \"config get registry\" ] || exit 3\necho https://npm-mirror.example/repo/\n"), 0o755)
	found := func(string) (string, error) { return npm, nil }
	missing := func(string) (string, error) { return "", exec.ErrNotFound }
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	if got := npmRegistry(found, env(nil)); got != "https://npm-mirror.example/repo/" {
		t.Errorf("from npm config: %q", got)
	}
	if got := npmRegistry(missing, env(map[string]string{"NPM_CONFIG_REGISTRY": " http://verdaccio.example:4873/ "})); got != "http://verdaccio.example:4873/" {
		t.Errorf("from NPM_CONFIG_REGISTRY: %q", got)
	}
	if got := npmRegistry(missing, env(map[string]string{"npm_config_registry": "http://verdaccio.example:4873/"})); got != "http://verdaccio.example:4873/" {
		t.Errorf("from npm_config_registry: %q", got)
	}
	if got := npmRegistry(missing, env(nil)); got != "" {
		t.Errorf("no npm, no variable: %q, want none", got)
	}
	// An npm that fails or prints nonsense says nothing.
	os.WriteFile(npm, []byte("#!/bin/sh\necho undefined\n"), 0o755)
	if got := npmRegistry(found, env(map[string]string{"NPM_CONFIG_REGISTRY": "http://verdaccio.example:4873/"})); got != "http://verdaccio.example:4873/" {
		t.Errorf("npm printing undefined: %q", got)
	}
	if got := HostNPMRegistry(); got != "" && !isHTTPURL(got) {
		t.Errorf("HostNPMRegistry() = %q", got)
	}
}

// No Debian mirror or npm registry is named in the code, the defaults or the
// docs: the builds take this machine's (TestMirrorIn, TestNPMRegistry), else
// debootstrap's and npm's own defaults. The names are in testdata.
func TestNoMirrorOrRegistryNamed(t *testing.T) {
	b, err := os.ReadFile("testdata/forbidden-hosts.txt")
	if err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			hosts = append(hosts, line)
		}
	}
	if len(hosts) == 0 {
		t.Fatal("testdata/forbidden-hosts.txt names no host")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("%s is not the repository: %v", root, err)
	}
	checked := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "node_modules", "bin", "demo":
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil || bytes.IndexByte(data, 0) >= 0 { // unreadable or binary
			return nil
		}
		checked++
		for _, h := range hosts {
			if i := bytes.Index(data, []byte(h)); i >= 0 {
				line := bytes.Count(data[:i], []byte("\n")) + 1
				rel, _ := filepath.Rel(root, p)
				t.Errorf("%s:%d names %s: take the machine's own mirror or registry instead", rel, line, h)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Errorf("only %d files checked", checked)
	}
}

func TestTailWriter(t *testing.T) {
	w := &tailWriter{max: 2}
	w.Write([]byte("one\ntwo\nth"))
	w.Write([]byte("ree\nfour"))
	if got, want := w.String(), "  three\n  four"; got != want {
		t.Errorf("tail = %q, want %q", got, want)
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/var/cache/my\040dir/work`); got != "/var/cache/my dir/work" {
		t.Errorf("unescape = %q", got)
	}
	if got := unescapeMount(`/a\\b`); got != `/a\\b` {
		t.Errorf("unescape kept %q", got)
	}
}

func TestMountsBelowProc(t *testing.T) {
	// /proc is mounted on every Linux host this runs on: below "/" it shows.
	mps, err := mountsBelow("/")
	if err != nil {
		t.Skipf("no /proc/self/mountinfo: %v", err)
	}
	found := false
	for _, mp := range mps {
		found = found || mp == "/proc"
	}
	if !found {
		t.Errorf("mountsBelow(/) = %v, lacks /proc", mps)
	}
	if mps, _ := mountsBelow(t.TempDir()); len(mps) != 0 {
		t.Errorf("mounts below a fresh temp dir: %v", mps)
	}
}

func TestWriteInRootReplacesSymlink(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	host := filepath.Join(outside, "resolv.conf")
	os.WriteFile(host, []byte("host\n"), 0o644)
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	if err := os.Symlink(host, filepath.Join(root, "etc", "resolv.conf")); err != nil {
		t.Fatal(err)
	}
	if err := writeInRoot(root, "/etc/resolv.conf", []byte("chroot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(host); string(b) != "host\n" {
		t.Errorf("the write followed the link out of the root: host file is %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc", "resolv.conf")); string(b) != "chroot\n" {
		t.Errorf("root file is %q", b)
	}
}

// The participant image's recipe for the shared offline pipeline.
func TestParticipantImageRecipe(t *testing.T) {
	opts := testOptions()
	img := participantImage(opts, nil)
	provision := embedded("offline/provision.sh")
	files := finishContext()
	if img.rootKey != rootfsKey(opts, provision) || img.key != finishKey(img.rootKey, "", files, opts.ThonVersion) {
		t.Errorf("keys %s/%s changed", img.rootKey, img.key)
	}
	if img.baseRepo != BaseRepository || img.tarPrefix != "rootfs-" || img.tag != DefaultTag || img.cacheDir != DefaultCacheDir || img.suite != DefaultSuite {
		t.Errorf("names: %+v", img)
	}
	if len(img.caches) != 1 || img.caches[0] != (cacheMount{dir: "npm", target: "/root/.npm"}) {
		t.Errorf("cache mounts %v, want npm's at /root/.npm", img.caches)
	}
	if !slices.Equal(img.env, provisionEnv(opts)) {
		t.Errorf("the script's environment %v", img.env)
	}
	if !slices.Contains(img.importChanges, `CMD ["/bin/bash"]`) || !slices.Equal(img.exec, []string{"thon-entrypoint.sh"}) {
		t.Errorf("import changes %v, executables %v", img.importChanges, img.exec)
	}
	if img.args["CODE_SERVER_VERSION"] != DefaultCodeServerVersion || img.args["THON_VERSION"] != "dev" {
		t.Errorf("build args %v", img.args)
	}
	if img.baseArgs != nil {
		t.Error("the participant image reads nothing from its base")
	}
	if len(img.extensions) != 0 {
		t.Errorf("extensions %v without any", img.extensions)
	}
	if !strings.Contains(img.installHint, testMirror) || !strings.Contains(img.installHint, testRegistry) {
		t.Errorf("hint %q does not name the mirror and the registry", img.installHint)
	}
	none := opts
	none.Mirror, none.NPMRegistry = "", ""
	if h := participantImage(none, nil).installHint; !strings.Contains(h, "debootstrap's default mirror") || !strings.Contains(h, "npm's default registry") {
		t.Errorf("hint without mirror and registry: %q", h)
	}

	// Extensions: installed on top of the base, as coder, and in the key.
	x := extension{ID: "p.n", Version: "1.0.0", File: "p.n.vsix", Data: []byte("zip")}
	withExt := participantImage(opts, []extension{x})
	if withExt.key == img.key || withExt.key != finishKey(img.rootKey, extensionsKey([]extension{x}), files, opts.ThonVersion) {
		t.Errorf("key with an extension %s, without %s", withExt.key, img.key)
	}
	if withExt.rootKey != img.rootKey {
		t.Error("an extension changed the root file system key (it would provision again)")
	}
	if withExt.bakeUser != "1000:1000" || !bytes.Equal(withExt.bakeScript, embedded("install-extensions.sh")) || len(withExt.extensions) != 1 {
		t.Errorf("bake as %q with %d extensions", withExt.bakeUser, len(withExt.extensions))
	}

	// The CA bundle goes into the root for npm, and its path into the script's environment.
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "tmp"), 0o755)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, []byte("PEM"), 0o644)
	o := opts
	o.CAFile = ca
	env, err := participantImage(o, nil).prepare(root)
	if err != nil || !slices.Equal(env, []string{"BUILD_CA_FILE=" + chrootCA}) {
		t.Fatalf("prepare: %v, %v", env, err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, chrootCA)); string(b) != "PEM" {
		t.Errorf("CA in the root: %q", b)
	}
	o.CAFile = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := participantImage(o, nil).prepare(root); err == nil || !strings.Contains(err.Error(), "cannot read the CA bundle") {
		t.Errorf("a missing CA bundle: %v", err)
	}
}

func TestMissingExtensions(t *testing.T) {
	exts := []extension{{ID: "KiloCode.Kilo-Code", Version: "4.1.0"}, {ID: "p.n", Version: "1.0.0"}}
	out := "==> install /tmp/x.vsix\nExtension 'x.vsix' was successfully installed.\n==> installed extensions\nkilocode.kilo-code@4.1.0\nother.one@2.0.0\n"
	if got := missingExtensions(out, exts); !slices.Equal(got, []string{"p.n@1.0.0"}) {
		t.Errorf("missing = %v", got)
	}
}
