package imagebuild

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	sandboximage "github.com/thon-dev/thon/deploy/sandbox"
	"github.com/thon-dev/thon/internal/sandbox"
)

func TestValidate(t *testing.T) {
	good := Options{Mirror: DefaultMirror}.withDefaults()
	if err := good.validate(); err != nil {
		t.Fatalf("defaults are invalid: %v", err)
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
		{"mirror not a URL", func(o *Options) { o.Mirror = "deb.debian.org/debian" }, "invalid Debian mirror"},
		{"mirror ftp", func(o *Options) { o.Mirror = "ftp://deb.debian.org/debian" }, "invalid Debian mirror"},
		{"registry", func(o *Options) { o.NPMRegistry = "registry.npmjs.org" }, "invalid npm registry"},
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
	base := Options{Mirror: DefaultMirror}.withDefaults()
	script := embedded("offline/provision.sh")
	k := rootfsKey(base, script)
	if len(k) != 16 || !regexp.MustCompile(`^[0-9a-f]+$`).MatchString(k) {
		t.Fatalf("key %q: want 16 hex digits (it is a Docker tag)", k)
	}
	if rootfsKey(base, script) != k {
		t.Fatal("key is not stable")
	}
	same := base
	same.Mirror, same.NPMRegistry, same.CAFile = "http://ftp.de.debian.org/debian", "https://npm.example/", "/x.pem"
	same.Tag, same.ThonVersion, same.Rebuild = "other:tag", "v9", true
	if rootfsKey(same, script) != k {
		t.Error("where packages come from (mirror, registry, CA) or the final tag changed the root file system key")
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
}

func TestFinishKey(t *testing.T) {
	files := contextFiles("offline/Dockerfile.finish")
	k := finishKey("r1", files, "v1")
	if finishKey("r1", files, "v1") != k {
		t.Fatal("key is not stable (map order?)")
	}
	if finishKey("r2", files, "v1") == k {
		t.Error("another root file system kept the key")
	}
	if finishKey("r1", files, "v2") == k {
		t.Error("another THON version kept the key (the label would be stale)")
	}
	edited := map[string][]byte{}
	for n, b := range files {
		edited[n] = b
	}
	edited["thon-entrypoint.sh"] = append([]byte("#\n"), files["thon-entrypoint.sh"]...)
	if finishKey("r1", edited, "v1") == k {
		t.Error("editing the entrypoint kept the key")
	}
	edited = map[string][]byte{"extensions/x.vsix": []byte("x")}
	for n, b := range files {
		edited[n] = b
	}
	if finishKey("r1", edited, "v1") == k {
		t.Error("a new baked-in extension kept the key")
	}
	// File names count, not only contents.
	a := finishKey("r", map[string][]byte{"a": []byte("x"), "b": nil}, "v")
	b := finishKey("r", map[string][]byte{"a": nil, "b": []byte("x")}, "v")
	if a == b {
		t.Error("moving content between files kept the key")
	}
	if onlineKey(contextFiles("Dockerfile"), "v1") == k {
		t.Error("online and offline keys collide")
	}
}

// The online Dockerfile and the offline build must give the same code-server.
func TestPinnedVersionMatchesDefault(t *testing.T) {
	if got := pinnedVersion(); got != DefaultCodeServerVersion {
		t.Errorf("deploy/sandbox/Dockerfile builds FROM codercom/code-server:%s, DefaultCodeServerVersion is %s: keep them the same",
			got, DefaultCodeServerVersion)
	}
	df := string(embedded("Dockerfile"))
	if !strings.Contains(df, `io.thon.code-server.version="`+DefaultCodeServerVersion+`"`) {
		t.Errorf("deploy/sandbox/Dockerfile labels another code-server version than %s", DefaultCodeServerVersion)
	}
}

// Both Dockerfiles set up the container the same way.
func TestDockerfilesAgree(t *testing.T) {
	online, offline := string(embedded("Dockerfile")), string(embedded("offline/Dockerfile.finish"))
	for _, line := range []string{
		`ENTRYPOINT ["/usr/local/bin/thon-entrypoint.sh"]`,
		"COPY thon-entrypoint.sh /usr/local/bin/thon-entrypoint.sh",
		"COPY extensions/ /opt/thon/extensions/",
		"EXPOSE 8080",
		"WORKDIR /workspace",
		"USER root",
		`CMD curl -fsS "http://127.0.0.1:${PORT}/healthz" || exit 1`,
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
}

func TestEmbeddedFiles(t *testing.T) {
	for _, name := range []string{"Dockerfile", "thon-entrypoint.sh", "offline/provision.sh", "offline/Dockerfile.finish", "extensions/README.md"} {
		if _, err := fs.Stat(sandboximage.Files, name); err != nil {
			t.Errorf("%s is not embedded: %v", name, err)
		}
	}
	files := contextFiles("offline/Dockerfile.finish")
	if _, ok := files["extensions/README.md"]; !ok {
		t.Error("the build context lacks the extensions folder")
	}
	if !strings.HasPrefix(string(files["Dockerfile"]), "# THON participant image, offline build") {
		t.Error("the offline context's Dockerfile is not Dockerfile.finish")
	}
}

func TestMirrorFrom(t *testing.T) {
	cases := []struct {
		name string
		text []string
		want string
	}{
		{"one-line", []string{"# x\ndeb http://ftp.de.debian.org/debian/ bookworm main\n"}, "http://ftp.de.debian.org/debian"},
		{"one-line options", []string{"deb [arch=amd64 signed-by=/k.gpg] https://mirror.example/debian bookworm main"}, "https://mirror.example/debian"},
		{"security first", []string{"deb http://security.debian.org/debian-security bookworm-security main\ndeb http://deb.debian.org/debian bookworm main"}, "http://deb.debian.org/debian"},
		{"deb822", []string{"Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n"}, "http://deb.debian.org/debian"},
		{"other archives only", []string{"deb https://deb.nodesource.com/node_20.x nodistro main\ndeb-src http://deb.debian.org/debian bookworm main"}, ""},
		{"second file", []string{"URIs: https://deb.nodesource.com/node_20.x", "URIs: http://local.mirror:3142/debian"}, "http://local.mirror:3142/debian"},
	}
	for _, c := range cases {
		if got := mirrorFrom(c.text...); got != c.want {
			t.Errorf("%s: mirrorFrom = %q, want %q", c.name, got, c.want)
		}
	}
	if m := HostMirror(); !strings.HasPrefix(m, "http") {
		t.Errorf("HostMirror() = %q", m)
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

// The participant image's recipe for the shared offline pipeline keeps the
// keys, names and mounts it had before the pipeline was shared, so existing
// caches and images stay valid.
func TestParticipantImageRecipe(t *testing.T) {
	opts := Options{Mirror: DefaultMirror}.withDefaults()
	img := participantImage(opts)
	provision := embedded("offline/provision.sh")
	files := contextFiles("offline/Dockerfile.finish")
	if img.rootKey != rootfsKey(opts, provision) || img.key != finishKey(img.rootKey, files, opts.ThonVersion) {
		t.Errorf("keys %s/%s changed", img.rootKey, img.key)
	}
	if img.baseRepo != BaseRepository || img.tarPrefix != "rootfs-" || img.tag != DefaultTag || img.cacheDir != DefaultCacheDir || img.suite != DefaultSuite {
		t.Errorf("names: %+v", img)
	}
	if len(img.caches) != 1 || img.caches[0] != (cacheMount{dir: "npm", target: "/root/.npm"}) {
		t.Errorf("cache mounts %v, want npm's at /root/.npm", img.caches)
	}
	for _, want := range []string{"CODE_SERVER_VERSION=" + DefaultCodeServerVersion, "NPM_VERSION=" + DefaultNPMVersion, "NPM_REGISTRY=" + DefaultNPMRegistry} {
		if !slices.Contains(img.env, want) {
			t.Errorf("the script's environment %v lacks %s", img.env, want)
		}
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

	// The CA bundle goes into the root for npm, and its path into the script's environment.
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "tmp"), 0o755)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, []byte("PEM"), 0o644)
	o := opts
	o.CAFile = ca
	env, err := participantImage(o).prepare(root)
	if err != nil || !slices.Equal(env, []string{"BUILD_CA_FILE=" + chrootCA}) {
		t.Fatalf("prepare: %v, %v", env, err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, chrootCA)); string(b) != "PEM" {
		t.Errorf("CA in the root: %q", b)
	}
	o.CAFile = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := participantImage(o).prepare(root); err == nil || !strings.Contains(err.Error(), "cannot read the CA bundle") {
		t.Errorf("a missing CA bundle: %v", err)
	}
}
