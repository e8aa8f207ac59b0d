// Package testenv gives tests the real parts this machine can run: a Docker
// engine, a sandbox image built from test/sandboxd (a tiny stand-in for
// code-server), THON's real LLM server image (LLMImage: llama-server), with
// helpers to keep parallel test packages apart.
//
// Tests that need the engine fail (they do not skip) when it is unreachable,
// and so do tests that need an image that cannot be built: a green run must
// mean the engine code was exercised. Only -short, which asks for the fast
// tier, skips them (and the Kubernetes control plane's) on purpose.
package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
)

// SandboxRepo is the repository of the test sandbox image; the tag is a hash
// of its sources.
const SandboxRepo = "thon-test/sandboxd"

// Docker connects to the engine named by the environment (DOCKER_HOST, or the
// default socket) with API version negotiation, and fails the test when the
// engine does not answer. With -short (the fast tier: tests on the fake
// engine and without parts to start) it skips the test instead.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	skipShort(t)
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatalf("Docker is not reachable: start it (dockerd &) or run scripts/test: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		t.Fatalf("Docker is not reachable: start it (dockerd &) or run scripts/test: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// skipShort skips a test that needs the Docker engine when -short asks for
// the fast tier.
func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: the fast tier runs without Docker; run the tests without -short for the engine (scripts/test does)")
	}
}

// ModuleRoot is the directory holding go.mod, found by walking up from the
// working directory.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	root, err := FindModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// FindModuleRoot is ModuleRoot for programs that are not tests (benchmarks).
func FindModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory: run from inside the THON module")
		}
		dir = parent
	}
}

// Prefix returns a short name prefix unique to this test run, such as
// "tt3f9a1c", for containers, volumes and networks the test creates. It is
// DNS-label safe and leaves room for the rest of a name.
func Prefix(t testing.TB) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "tt" + hex.EncodeToString(b[:])
}

var sandboxImage struct {
	once sync.Once
	ref  string
	err  error
}

// SandboxImage returns the reference of a FROM scratch image holding the
// static test/sandboxd binary as its entrypoint (/sandboxd), tagged
// thon-test/sandboxd:<hash of its sources>. The image is built once per
// process, and only when the engine does not have that tag yet; a concurrent
// build of the same tag by another test process is harmless.
func SandboxImage(t testing.TB) string {
	t.Helper()
	cli := Docker(t)
	sandboxImage.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		sandboxImage.ref, sandboxImage.err = BuildSandboxImage(ctx, cli)
	})
	if sandboxImage.err != nil {
		t.Fatalf("build the test sandbox image: %v", sandboxImage.err)
	}
	return sandboxImage.ref
}

// BuildSandboxImage is SandboxImage for programs that have no testing.TB
// (the benchmarks under bench/): it builds the test sandbox image on cli's
// engine unless the engine has that tag already, and returns its reference.
// The working directory must be inside the module (it finds test/sandboxd
// from there).
func BuildSandboxImage(ctx context.Context, cli *client.Client) (string, error) {
	return ensureSandboxImage(ctx, cli)
}

func ensureSandboxImage(ctx context.Context, cli *client.Client) (string, error) {
	root, err := FindModuleRoot()
	if err != nil {
		return "", err
	}
	hash, err := sourceHash(root)
	if err != nil {
		return "", err
	}
	ref := SandboxRepo + ":" + hash
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	}

	bin, err := buildSandboxd(ctx, root)
	if err != nil {
		return "", err
	}
	buildCtx, err := contextTar(sandboxDockerfile, bin)
	if err != nil {
		return "", err
	}
	if err := buildImage(ctx, cli, ref, buildCtx); err != nil {
		return "", err
	}
	return ref, nil
}

var nonRootImage struct {
	once sync.Once
	ref  string
	err  error
}

// SandboxImageNonRoot is SandboxImage running as uid and gid 1000, like the
// code-server image, to prove workspaces are writable for a non-root IDE.
func SandboxImageNonRoot(t testing.TB) string {
	t.Helper()
	base := SandboxImage(t)
	cli := Docker(t)
	nonRootImage.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		ref := base + "-nonroot"
		if _, err := cli.ImageInspect(ctx, ref); err == nil {
			nonRootImage.ref = ref
			return
		}
		buildCtx, err := contextTar("FROM "+base+"\nUSER 1000:1000\n", nil)
		if err == nil {
			err = buildImage(ctx, cli, ref, buildCtx)
		}
		nonRootImage.ref, nonRootImage.err = ref, err
	})
	if nonRootImage.err != nil {
		t.Fatalf("build the non-root test sandbox image: %v", nonRootImage.err)
	}
	return nonRootImage.ref
}

// buildImage builds the tar build context with the classic builder and tags
// the result ref.
func buildImage(ctx context.Context, cli *client.Client, ref string, buildCtx []byte) error {
	res, err := cli.ImageBuild(ctx, bytes.NewReader(buildCtx), client.ImageBuildOptions{
		Tags:        []string{ref},
		Version:     build.BuilderV1, // the classic builder: no BuildKit needed
		Remove:      true,
		ForceRemove: true,
		Labels:      map[string]string{"io.thon.test": "sandboxd"},
	})
	if err != nil {
		return fmt.Errorf("image build %s: %w", ref, err)
	}
	defer res.Body.Close()
	var out strings.Builder
	dec := json.NewDecoder(res.Body)
	for {
		var m jsonstream.Message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("image build %s: read progress: %w", ref, err)
		}
		if m.Error != nil {
			return fmt.Errorf("image build %s: %s\n%s", ref, m.Error.Message, out.String())
		}
		out.WriteString(m.Stream)
	}
	if _, err := cli.ImageInspect(ctx, ref); err != nil {
		return fmt.Errorf("image build %s finished but the image is missing: %w\n%s", ref, err, out.String())
	}
	return nil
}

// sandboxdDeps are the modules test/sandboxd imports (keep in sync).
var sandboxdDeps = []string{"github.com/coder/websocket"}

// sourceHash hashes what the sandboxd binary is built from: its sources, the
// module's dependency versions and the Go toolchain.
func sourceHash(root string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "go=%s arch=%s\n", runtime.Version(), runtime.GOARCH)
	fmt.Fprintf(h, "dockerfile=%q\n", sandboxDockerfile)
	files, err := filepath.Glob(filepath.Join(root, "test", "sandboxd", "*.go"))
	if err != nil {
		return "", err
	}
	if len(files) == 0 {
		return "", fmt.Errorf("no sources in %s", filepath.Join(root, "test", "sandboxd"))
	}
	slices.Sort(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(root, f)
		fmt.Fprintf(h, "%s %d\n", filepath.ToSlash(rel), len(b))
		h.Write(b)
	}
	// Only the versions of sandboxd's own dependencies, so that other
	// packages adding modules do not force a rebuild.
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if slices.ContainsFunc(sandboxdDeps, func(dep string) bool { return strings.Contains(line, dep+" ") }) {
				fmt.Fprintf(h, "%s: %s\n", f, strings.TrimSpace(line))
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// buildSandboxd compiles a static linux binary of test/sandboxd.
func buildSandboxd(ctx context.Context, root string) ([]byte, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("the go command is needed to build test/sandboxd: %w", err)
	}
	dir, err := os.MkdirTemp("", "thon-sandboxd-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "sandboxd")
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./test/sandboxd")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./test/sandboxd: %w\n%s", err, b)
	}
	return os.ReadFile(out)
}

const sandboxDockerfile = `FROM scratch
COPY sandboxd /sandboxd
COPY sandboxd /bin/chown
COPY workspace /workspace
ENV PORT=8080
EXPOSE 8080
ENTRYPOINT ["/sandboxd"]
`

// contextTar is a build context: the Dockerfile, the binary (when given)
// and an empty workspace directory (scratch has no shell to mkdir one).
func contextTar(dockerfile string, bin []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Unix(0, 0)
	file := func(name string, mode int64, body []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(body)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	if err := file("Dockerfile", 0o644, []byte(dockerfile)); err != nil {
		return nil, err
	}
	if bin != nil {
		if err := file("sandboxd", 0o755, bin); err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Name: "workspace/", Mode: 0o755, ModTime: now, Typeflag: tar.TypeDir}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Cleanup force-removes every container, volume and network whose name begins
// with prefix. Call it through t.Cleanup (and, if you like, before a test to
// clear leftovers of a crashed run). Errors are reported with t.Errorf, not
// fatally, so one stuck object does not hide the rest.
func Cleanup(t testing.TB, prefix string) {
	t.Helper()
	if prefix == "" {
		t.Fatal("testenv.Cleanup: empty prefix would remove everything")
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Errorf("cleanup %s: %v", prefix, err)
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("name", prefix)})
	if err != nil {
		t.Errorf("cleanup %s: list containers: %v", prefix, err)
	}
	for _, c := range cs.Items {
		if !slices.ContainsFunc(c.Names, func(n string) bool { return strings.HasPrefix(strings.TrimPrefix(n, "/"), prefix) }) {
			continue
		}
		if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !isNotFound(err) {
			t.Errorf("cleanup %s: remove container %v: %v", prefix, c.Names, err)
		}
	}

	vs, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: make(client.Filters).Add("name", prefix)})
	if err != nil {
		t.Errorf("cleanup %s: list volumes: %v", prefix, err)
	}
	for _, v := range vs.Items {
		if !strings.HasPrefix(v.Name, prefix) {
			continue
		}
		if _, err := cli.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true}); err != nil && !isNotFound(err) {
			t.Errorf("cleanup %s: remove volume %s: %v", prefix, v.Name, err)
		}
	}

	ns, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("name", prefix)})
	if err != nil {
		t.Errorf("cleanup %s: list networks: %v", prefix, err)
	}
	for _, n := range ns.Items {
		if !strings.HasPrefix(n.Name, prefix) {
			continue
		}
		if _, err := cli.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !isNotFound(err) {
			t.Errorf("cleanup %s: remove network %s: %v", prefix, n.Name, err)
		}
	}
}

func isNotFound(err error) bool { return cerrdefs.IsNotFound(err) }
