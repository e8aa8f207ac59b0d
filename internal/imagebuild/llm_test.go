package imagebuild

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	llmimage "github.com/thon-dev/thon/deploy/llm"
	"github.com/thon-dev/thon/internal/sandbox"
)

func TestLLMValidate(t *testing.T) {
	good := LLMOptions{Mirror: testMirror}.withDefaults()
	if err := good.validate(); err != nil {
		t.Fatalf("defaults are invalid: %v", err)
	}
	if good.Tag != DefaultLLMTag || good.Suite != DefaultLLMSuite || good.CacheDir != DefaultLLMCacheDir || good.ThonVersion != "dev" {
		t.Errorf("defaults: %+v", good)
	}
	if DefaultLLMCacheDir == DefaultCacheDir {
		t.Error("the LLM image shares the participant image's cache directory")
	}
	cases := []struct {
		name string
		edit func(*LLMOptions)
		want string
	}{
		{"tag upper case", func(o *LLMOptions) { o.Tag = "THON/LLM" }, `invalid image tag "THON/LLM"`},
		{"tag is the LLM base repository", func(o *LLMOptions) { o.Tag = LLMBaseRepository + ":x" }, LLMBaseRepository + " holds the imported root file systems"},
		{"tag is the participant base repository", func(o *LLMOptions) { o.Tag = BaseRepository + ":x" }, BaseRepository + " holds the imported root file systems"},
		{"relative cache", func(o *LLMOptions) { o.CacheDir = "cache" }, `cache directory "cache" is not absolute`},
		{"mirror not a URL", func(o *LLMOptions) { o.Mirror = "mirror.example/debian" }, "invalid Debian mirror"},
		{"suite", func(o *LLMOptions) { o.Suite = "Sid!" }, `invalid Debian suite "Sid!"`},
		{"thon version", func(o *LLMOptions) { o.ThonVersion = "1.0 beta" }, "invalid THON version"},
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
	// The participant image refuses the LLM base repository too.
	po := Options{Mirror: testMirror, Tag: LLMBaseRepository + ":x"}.withDefaults()
	if err := po.validate(); err == nil || !strings.Contains(err.Error(), "holds the imported root file systems") {
		t.Errorf("participant tag %s: %v", po.Tag, err)
	}
	o := good
	o.Tag, o.Suite, o.CacheDir = "A B", "?", "rel"
	if err := o.validate(); err == nil || strings.Count(err.Error(), "\n")+1 != 3 {
		t.Errorf("want 3 errors at once, got: %v", err)
	}
}

func TestBuildLLMRejectsBadOptionsBeforeDocker(t *testing.T) {
	_, err := BuildLLM(context.Background(), LLMOptions{Tag: "Bad Tag", DockerHost: "unix:///nonexistent/docker.sock"}, nil)
	if err == nil || !strings.Contains(err.Error(), "invalid image tag") {
		t.Fatalf("err = %v, want the invalid tag", err)
	}
	// Valid options and no engine: the engine's error, with what to do.
	_, err = BuildLLM(context.Background(), LLMOptions{DockerHost: "unix:///nonexistent/docker.sock"}, nil)
	var ue *sandbox.UserError
	if err == nil || !strings.Contains(err.Error(), "Docker is not reachable") || !errors.As(err, &ue) || ue.Hint == "" {
		t.Fatalf("err = %v, want Docker is not reachable with a hint", err)
	}
}

func TestLLMKeys(t *testing.T) {
	base := LLMOptions{Mirror: testMirror}.withDefaults()
	script := llmEmbedded("provision.sh")
	rk := llmRootfsKey(base, script)
	if len(rk) != 16 || !regexp.MustCompile(`^[0-9a-f]+$`).MatchString(rk) {
		t.Fatalf("key %q: want 16 hex digits (it is a Docker tag)", rk)
	}
	if llmRootfsKey(base, script) != rk {
		t.Fatal("key is not stable")
	}
	same := base
	same.Mirror, same.Tag, same.ThonVersion, same.Rebuild, same.CacheDir = "http://other-mirror.example/debian", "other:tag", "v9", true, "/elsewhere"
	if llmRootfsKey(same, script) != rk {
		t.Error("where packages come from, the tag or the cache changed the root file system key")
	}
	if o := base; true {
		o.Suite = "forky"
		if llmRootfsKey(o, script) == rk {
			t.Error("another suite kept the root file system key")
		}
	}
	if llmRootfsKey(base, append([]byte("# edited\n"), script...)) == rk {
		t.Error("editing provision.sh kept the root file system key")
	}
	if rootfsKey(Options{Mirror: testMirror, Suite: base.Suite}.withDefaults(), script) == rk {
		t.Error("the participant and LLM root file system keys collide for the same script and suite")
	}

	files := llmContextFiles()
	k := llmKey(rk, files, "v1")
	if llmKey(rk, files, "v1") != k {
		t.Fatal("image key is not stable")
	}
	if llmKey("other", files, "v1") == k {
		t.Error("another root file system kept the image key")
	}
	if llmKey(rk, files, "v2") == k {
		t.Error("another THON version kept the image key (the label would be stale)")
	}
	edited := map[string][]byte{"Dockerfile": append(slices.Clone(files["Dockerfile"]), "\n# edited\n"...)}
	if llmKey(rk, edited, "v1") == k {
		t.Error("editing Dockerfile.finish kept the image key")
	}
	if finishKey(rk, "", files, "v1") == k {
		t.Error("participant and LLM image keys collide")
	}

	// The whole recipe: the keys it carries are these.
	img := llmImage(base)
	if img.rootKey != rk || img.key != llmKey(rk, files, base.ThonVersion) {
		t.Errorf("llmImage keys %s/%s, want %s/%s", img.rootKey, img.key, rk, llmKey(rk, files, base.ThonVersion))
	}
	other := base
	other.Suite = "forky"
	if llmImage(other).key == img.key {
		t.Error("another suite kept the image key")
	}
}

// The LLM image and the participant image can share nothing that one
// build's clean-up would take from the other.
func TestLLMAndParticipantImagesApart(t *testing.T) {
	l, p := llmImage(LLMOptions{Mirror: testMirror}.withDefaults()), participantImage(Options{Mirror: testMirror, NPMRegistry: testRegistry}.withDefaults(), nil)
	if l.baseRepo == p.baseRepo || l.tarPrefix == p.tarPrefix || l.cacheDir == p.cacheDir || l.tag == p.tag {
		t.Fatalf("shared: base %s/%s, tarballs %s/%s, cache %s/%s, tag %s/%s",
			l.baseRepo, p.baseRepo, l.tarPrefix, p.tarPrefix, l.cacheDir, p.cacheDir, l.tag, p.tag)
	}
	// Even in one cache directory, each build removes only its own older tarballs.
	dir := t.TempDir()
	lc, pc := cache{dir: dir, prefix: l.tarPrefix}, cache{dir: dir, prefix: p.tarPrefix}
	for _, f := range []string{lc.tarball("old1"), lc.tarball("new1"), pc.tarball("old2"), pc.tarball("new2"), lc.tmpTarball("part")} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	removeOlderTarballs(lc, "new1", io.Discard)
	removeOlderTarballs(pc, "new2", io.Discard)
	var left []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		left = append(left, e.Name())
	}
	want := []string{"llm-rootfs-new1.tar", "llm-rootfs-part.tar.part", "rootfs-new2.tar"}
	if !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
	// The participant's tarball keeps its name, so existing caches stay valid.
	if got := filepath.Base(pc.tarball("k")); got != "rootfs-k.tar" {
		t.Errorf("participant tarball %s", got)
	}
}

func TestLLMImageRecipe(t *testing.T) {
	img := llmImage(LLMOptions{Mirror: testMirror}.withDefaults())
	if img.baseArgs == nil {
		t.Fatal("no step reads llama-server's version for its label")
	}
	for _, ch := range img.importChanges {
		if strings.HasPrefix(ch, "CMD") || strings.HasPrefix(ch, "ENTRYPOINT") {
			t.Errorf("the imported base sets %q: the image must have no CMD", ch)
		}
	}
	if !slices.Contains(img.env, "DEBIAN_SUITE=sid") {
		t.Errorf("the script's environment %v lacks the suite", img.env)
	}
	if img.args["THON_VERSION"] != "dev" {
		t.Errorf("build args %v", img.args)
	}
	if img.command != "thon setup llm" || !strings.Contains(img.installHint, testMirror) {
		t.Errorf("command %q, hint %q", img.command, img.installHint)
	}
}

func TestLLMProvisionScript(t *testing.T) {
	script := string(llmEmbedded("provision.sh"))
	if out, err := exec.Command("/bin/sh", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("provision.sh does not parse: %v\n%s", err, out)
	}
	for _, want := range []string{
		"set -eu",
		// llama-server, the CPU backends come with libggml0 (a dependency), Vulkan and its drivers.
		"\tllama.cpp-tools\n", "\tlibggml0-backend-vulkan\n", "\tmesa-vulkan-drivers\n",
		`APT::Install-Recommends "false";`,
		"APT::Keep-Downloaded-Packages \"true\";",
		// An expired Release file: the check is turned off, and said so.
		"grep -q 'is expired'",
		`echo 'Acquire::Check-Valid-Until "false";' >>/etc/apt/apt.conf.d/90thon`,
		"NOTE: building with apt -o Acquire::Check-Valid-Until=false",
		// The user llm.
		"groupadd --gid 10001 llm",
		"useradd --uid 10001 --gid 10001",
		// Small: no docs, manual pages, locales, apt lists.
		"path-exclude=/usr/share/doc/*", "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/locale/*",
		"rm -rf /var/lib/apt/lists/*",
		"rm -rf /usr/share/man/*",
		// It checks what it installed.
		"llama-server --version",
		"libggml-vulkan.so libggml-cpu-x64.so",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("provision.sh lacks %q", want)
		}
	}
	if i, j := strings.Index(script, "is expired"), strings.Index(script, `Acquire::Check-Valid-Until "false"`); i < 0 || j < i {
		t.Error("the Valid-Until check is turned off before apt says the Release file is expired")
	}
	// The apt configuration (and with it the switch) is not left in the image.
	if !strings.Contains(script, "rm -rf /usr/sbin/policy-rc.d /etc/apt/apt.conf.d/90thon") {
		t.Error("the build's apt configuration is left in the image")
	}
}

// The script really turns the date check off only when apt says the Release
// file is expired, and says so: run its update step with a fake apt-get.
func TestLLMProvisionScriptExpiredRelease(t *testing.T) {
	script := string(llmEmbedded("provision.sh"))
	start := strings.Index(script, `update_log=/tmp/thon-apt-update.log`)
	end := strings.Index(script, `rm -f "$update_log"`)
	if start < 0 || end < start {
		t.Fatal("provision.sh has no apt update step to run")
	}
	step := script[start:end]
	for _, c := range []struct {
		name, fake string
		wantNote   bool
		wantFail   bool
	}{
		{"valid", "exit 0", false, false},
		{"expired", `if grep -q Check-Valid-Until "$CONF" 2>/dev/null; then exit 0; fi
echo "E: Release file for http://mirror.example/debian/dists/sid/InRelease is expired (invalid since 25d 14h). Updates for this repository will not be applied."; exit 100`, true, false},
		{"unreachable", `echo "E: Failed to fetch http://mirror.example/debian/dists/sid/InRelease  Could not resolve 'mirror.example'"; exit 100`, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			conf := filepath.Join(dir, "90thon")
			os.WriteFile(filepath.Join(dir, "apt-get"), []byte("#!/bin/sh\nCONF="+conf+"\n"+c.fake+"\n"), 0o755)
			s := strings.ReplaceAll(step, "/etc/apt/apt.conf.d/90thon", conf)
			s = strings.ReplaceAll(s, "/tmp/thon-apt-update.log", filepath.Join(dir, "update.log"))
			cmd := exec.Command("/bin/sh", "-eu", "-c", "SUITE=sid\n"+s)
			cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			if (err != nil) != c.wantFail {
				t.Fatalf("err = %v, want failure %v:\n%s", err, c.wantFail, out)
			}
			b, _ := os.ReadFile(conf)
			off := strings.Contains(string(b), `Acquire::Check-Valid-Until "false";`)
			said := strings.Contains(string(out), "NOTE: building with apt -o Acquire::Check-Valid-Until=false")
			if off != c.wantNote || said != c.wantNote {
				t.Errorf("check turned off %v, said so %v; want %v:\n%s", off, said, c.wantNote, out)
			}
			if c.wantFail && !strings.Contains(string(out), "Could not resolve") {
				t.Errorf("apt's error is not shown:\n%s", out)
			}
		})
	}
}

func TestLLMDockerfile(t *testing.T) {
	df := string(llmEmbedded("Dockerfile.finish"))
	for _, line := range []string{
		"ARG BASE=" + LLMBaseRepository + ":latest\nFROM ${BASE}",
		`ENTRYPOINT ["` + LLMEntrypoint + `"]`,
		"USER " + LLMUser,
		"EXPOSE 8080",
		"WORKDIR /tmp",
		LabelKey + `="${IMAGE_KEY}"`,
		LabelLLMVersion + `="${LLM_VERSION}"`,
		LabelVersion + `="${THON_VERSION}"`,
		LabelBuild + `="offline"`,
	} {
		if !strings.Contains(df, line) {
			t.Errorf("Dockerfile.finish lacks %q", line)
		}
	}
	for _, l := range strings.Split(df, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "CMD") {
			t.Errorf("Dockerfile.finish has %q: THON passes every argument, the image has no CMD", l)
		}
	}
	if _, err := fs.Stat(llmimage.Files, "provision.sh"); err != nil {
		t.Errorf("provision.sh is not embedded: %v", err)
	}
}

func TestLlamaVersion(t *testing.T) {
	for _, c := range []struct{ out, want string }{
		{"version: 0.7.0 (build 11669, commit Debian)\nbuilt with GNU 16.2.0 for Linux x86_64\n", "0.7.0 (build 11669)"},
		{"load_backend: loaded CPU backend from /usr/lib/x86_64-linux-gnu/ggml/backends0/libggml-cpu-haswell.so\nversion: 0.8.1 (build 12001, commit Debian)\n", "0.8.1 (build 12001)"},
		{"version: 6789 (abcdef12)\nbuilt with cc (Debian 14.2.0-19) 14.2.0 for x86_64-linux-gnu\n", "6789 (abcdef12)"},
		{"version: 0.7.0\n", "0.7.0"},
		{"version: 0.7.0 (commit Debian)\n", "0.7.0"},
		{"llama-server: error while loading shared libraries: libllama.so.0\n", ""},
		{"", ""},
	} {
		if got := llamaVersion(c.out); got != c.want {
			t.Errorf("llamaVersion(%q) = %q, want %q", c.out, got, c.want)
		}
	}
}
