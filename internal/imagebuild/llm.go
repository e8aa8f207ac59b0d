package imagebuild

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"runtime"
	"strings"
	"time"

	llmimage "github.com/thon-dev/thon/deploy/llm"
	"github.com/thon-dev/thon/internal/sandbox"
)

// Defaults for LLMOptions.
const (
	DefaultLLMTag      = "thon/llm:latest"
	DefaultLLMCacheDir = "/var/cache/thon-llm-image"
	// DefaultLLMSuite is Debian unstable: the only suite that has
	// llama.cpp's llama-server (llama.cpp-tools) and ggml's Vulkan backend.
	DefaultLLMSuite = "sid"
	// LLMBaseRepository names the LLM image's imported root file systems
	// (LLMBaseRepository:<key>), the FROM of its finishing build.
	LLMBaseRepository = "thon/llm-base"
)

// LabelLLMVersion is the llama-server version of the LLM server image, as
// `llama-server --version` says it, e.g. "0.7.0 (build 11669)".
const LabelLLMVersion = "io.thon.llm.version"

// The LLM server image's contract: what THON runs it by (deploy/llm,
// docs/llm.md). The image has no CMD: THON passes every argument.
const (
	LLMEntrypoint = "/usr/bin/llama-server"
	LLMUser       = "10001:10001" // the user llm; its HOME and working directory are /tmp
	LLMPort       = 8080          // EXPOSEd; llama-server listens where --port says
)

// LLMOptions configures BuildLLM. The zero value builds DefaultLLMTag from
// this host's Debian mirror.
type LLMOptions struct {
	// Tag is the image to build; default DefaultLLMTag.
	Tag string
	// CacheDir keeps the root file system tarball and the downloaded
	// packages between builds; default DefaultLLMCacheDir.
	CacheDir string
	// Mirror is the Debian mirror; default the one this host's apt uses
	// (HostMirror), else debootstrap's own default.
	Mirror string
	// Suite is the Debian release; default DefaultLLMSuite.
	Suite string
	// ThonVersion goes into the io.thon.version label; default "dev".
	ThonVersion string
	// Rebuild ignores the cached image and root file system and builds
	// again, with the suite's current packages (downloaded ones are reused).
	Rebuild bool
	// DockerHost is the engine address; "" uses DOCKER_HOST or the default
	// socket.
	DockerHost string
	// Log receives the full output of every step (debootstrap, apt,
	// docker); nil discards it. It is also written to CacheDir/build.log.
	Log io.Writer
}

// LLMResult describes the built (or already present) LLM server image.
type LLMResult struct {
	Image      string        // the tag, e.g. thon/llm:latest
	ID         string        // image ID (sha256:…)
	Size       int64         // bytes, as the engine reports it
	LLMVersion string        // llama-server's version, e.g. "0.7.0 (build 11669)"
	Cached     bool          // the image was up to date: nothing built
	Took       time.Duration // wall time of BuildLLM
}

func (o LLMOptions) withDefaults() LLMOptions {
	if o.Tag == "" {
		o.Tag = DefaultLLMTag
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultLLMCacheDir
	}
	if o.Mirror == "" {
		o.Mirror = HostMirror()
	}
	if o.Suite == "" {
		o.Suite = DefaultLLMSuite
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
func (o LLMOptions) validate() error {
	return errors.Join(validateCommon(o.Tag, DefaultLLMTag, o.CacheDir, DefaultLLMCacheDir, o.Mirror,
		o.Suite, DefaultLLMSuite, o.ThonVersion)...)
}

// llmEmbedded reads one file of deploy/llm.
func llmEmbedded(name string) []byte {
	b, err := fs.ReadFile(llmimage.Files, name)
	if err != nil {
		panic(fmt.Sprintf("deploy/llm/%s is not embedded: %v", name, err))
	}
	return b
}

// llmContextFiles is the LLM image's finishing build context.
func llmContextFiles() map[string][]byte {
	return map[string][]byte{"Dockerfile": llmEmbedded("Dockerfile.finish")}
}

// llmRootfsKey identifies the LLM image's provisioned root file system: what
// goes into it, not where it is downloaded from.
func llmRootfsKey(o LLMOptions, provision []byte) string {
	return hashOf(keySchema, "llm-rootfs", runtime.GOARCH, o.Suite, string(provision))
}

// llmKey identifies the LLM image: its root file system, the finishing
// build's files and the labels.
func llmKey(rootKey string, files map[string][]byte, thonVersion string) string {
	return filesKey(files, keySchema, "llm", rootKey, thonVersion)
}

// llmImage is what the offline build makes the LLM server image from:
// Debian unstable and deploy/llm/provision.sh (llama.cpp's llama-server with
// ggml's CPU and Vulkan backends and Mesa's Vulkan drivers), finished by
// deploy/llm/Dockerfile.finish.
func llmImage(opts LLMOptions) offlineImage {
	provision := llmEmbedded("provision.sh")
	rkey := llmRootfsKey(opts, provision)
	files := llmContextFiles()
	return offlineImage{
		name:    "the LLM server image",
		command: "thon setup llm",
		tag:     opts.Tag, cacheDir: opts.CacheDir, mirror: opts.Mirror, suite: opts.Suite,
		rebuild: opts.Rebuild, log: opts.Log,

		baseRepo:    LLMBaseRepository,
		tarPrefix:   "llm-rootfs-",
		rootKey:     rkey,
		provision:   provision,
		env:         []string{"DEBIAN_SUITE=" + opts.Suite},
		installStep: "install llama.cpp (llama-server), its Vulkan backend and Mesa's Vulkan drivers (apt)",
		installHint: fmt.Sprintf("check that this host reaches the Debian mirror (%s; a proxy: set http_proxy) and that Debian %s has llama.cpp-tools and libggml0-backend-vulkan", mirrorName(opts.Mirror), opts.Suite),
		importChanges: []string{
			"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		},

		key:      llmKey(rkey, files, opts.ThonVersion),
		files:    files,
		args:     map[string]string{"THON_VERSION": opts.ThonVersion},
		baseArgs: llmVersionArg,
		describe: fmt.Sprintf("%s, llama.cpp from Debian %s from %s", opts.Tag, opts.Suite, mirrorName(opts.Mirror)),
	}
}

// llmVersionArg runs `llama-server --version` in the imported base, as the
// user llm and without network, for the LLM_VERSION build argument (the
// io.thon.llm.version label). It also proves that the binary and its
// libraries load.
func llmVersionArg(ctx context.Context, eng *engine, baseRef string, log io.Writer) (map[string]string, error) {
	out, code, err := eng.runOnce(ctx, baseRef, LLMUser, []string{LLMEntrypoint, "--version"})
	fmt.Fprintf(log, "+ llama-server --version (in %s)\n%s", baseRef, out)
	if err != nil {
		return nil, fmt.Errorf("run llama-server --version in %s: %w", baseRef, err)
	}
	v := llamaVersion(out)
	if code != 0 || v == "" {
		return nil, sandbox.Hintf(nil, "run again with --rebuild; if it persists, Debian's llama.cpp-tools may be broken right now (see the log)",
			"llama-server --version in %s exited with %d and printed no version:\n%s", baseRef, code, strings.TrimSpace(out))
	}
	return map[string]string{"LLM_VERSION": v}, nil
}

// llamaVersionRE finds llama-server's version line: "version: 0.7.0 (build
// 11669, commit Debian)" from Debian, "version: 6789 (abcdef12)" upstream.
var llamaVersionRE = regexp.MustCompile(`(?m)^version:\s*(\S+)(?:\s+\(([^)]*)\))?\s*$`)

// llamaVersion is the version `llama-server --version` prints, without the
// commit when there is a build number: "0.7.0 (build 11669)".
func llamaVersion(out string) string {
	m := llamaVersionRE.FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	if m[2] == "" {
		return m[1]
	}
	var keep []string
	for _, p := range strings.Split(m[2], ",") {
		if p = strings.TrimSpace(p); p != "" && !strings.HasPrefix(p, "commit ") {
			keep = append(keep, p)
		}
	}
	if len(keep) == 0 {
		return m[1]
	}
	return m[1] + " (" + strings.Join(keep, ", ") + ")"
}

// BuildLLM makes THON's LLM server image (llama.cpp's llama-server from
// Debian) described by opts, or finds it up to date. It needs only the Debian
// mirror: debootstrap, provisioning in a chroot, import and a finishing build,
// like the participant image's offline build, with its own cache (a root file
// system tarball keyed by the provisioning script and inputs). It reports each
// step to progress and the full output to opts.Log.
func BuildLLM(ctx context.Context, opts LLMOptions, progress Progress) (LLMResult, error) {
	start := time.Now()
	if progress == nil {
		progress = func(string, int, int) {}
	}
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return LLMResult{}, err
	}
	eng, err := connect(ctx, opts.DockerHost)
	if err != nil {
		return LLMResult{}, err
	}
	defer eng.Close()
	info, cached, err := buildOffline(ctx, eng, llmImage(opts), progress)
	if err != nil {
		return LLMResult{}, err
	}
	return LLMResult{
		Image:      opts.Tag,
		ID:         info.ID,
		Size:       info.Size,
		LLMVersion: info.Labels[LabelLLMVersion],
		Cached:     cached,
		Took:       time.Since(start),
	}, nil
}
