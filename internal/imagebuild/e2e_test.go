package imagebuild

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// TestOfflineImageBuild builds the participant image offline (Debian mirror +
// npm only), or finds it cached, and checks a container of it the way THON
// runs one, the tools in it without network, and an image with an extension
// baked in. Opt-in: it needs root, the engine and, the first time, half an
// hour or more and about 1.2 GB of downloads.
//
//	sudo THON_E2E_IMAGE=1 go test ./internal/imagebuild -run TestOfflineImageBuild -v
//
// THON_E2E_IMAGE_TAG (default thon/sandbox:latest) and THON_E2E_IMAGE_CACHE
// (default /var/cache/thon-image) choose the image and the cache;
// THON_E2E_IMAGE_REBUILD=1 first rebuilds from the cached packages.
func TestOfflineImageBuild(t *testing.T) {
	if os.Getenv("THON_E2E_IMAGE") != "1" {
		t.Skip("builds the participant image offline; enable with THON_E2E_IMAGE=1 (as root, with Docker running)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	opts := Options{
		Tag:      cmpOr(os.Getenv("THON_E2E_IMAGE_TAG"), DefaultTag),
		CacheDir: cmpOr(os.Getenv("THON_E2E_IMAGE_CACHE"), DefaultCacheDir),
		Offline:  true,
	}
	t0 := time.Now()
	progress := func(step string, done, total int) {
		t.Logf("%6s [%d/%d] %s", time.Since(t0).Round(time.Second), done, total, step)
	}
	if os.Getenv("THON_E2E_IMAGE_REBUILD") == "1" {
		// Provision again, with the cached packages: the warm build time.
		o := opts
		o.Rebuild = true
		res, err := Build(ctx, o, progress)
		if err != nil {
			t.Fatalf("rebuild: %v", err)
		}
		t.Logf("rebuild (Rebuild: true) took %s", res.Took.Round(time.Second))
	}

	res, err := Build(ctx, opts, progress)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	t.Logf("image %s (%s): %.0f MB, code-server %s, cached=%v, took %s",
		res.Image, res.ID, float64(res.Size)/1e6, res.CodeServerVersion, res.Cached, res.Took.Round(time.Second))
	if res.Mode != ModeOffline || res.CodeServerVersion != DefaultCodeServerVersion {
		t.Errorf("result %+v: want the offline build of code-server %s", res, DefaultCodeServerVersion)
	}
	// What each part costs is in deploy/sandbox/README.md; this catches a
	// part growing unnoticed.
	if res.Size > 3.0e9 {
		t.Errorf("image is %.0f MB; it was 2.9 GB with every part (deploy/sandbox/README.md)", float64(res.Size)/1e6)
	}

	again, err := Build(ctx, opts, progress)
	if err != nil {
		t.Fatalf("second build: %v", err)
	}
	if !again.Cached || again.ID != res.ID {
		t.Errorf("second build: cached=%v id=%s, want the cached image %s", again.Cached, again.ID, res.ID)
	}
	t.Logf("second build took %s", again.Took)

	// Without Offline the registry is tried first; where none answers (as
	// on a machine with only the Debian mirror and npm) the offline image
	// stands.
	auto, err := Build(ctx, Options{Tag: opts.Tag, CacheDir: opts.CacheDir}, progress)
	if err != nil {
		t.Fatalf("build without Offline: %v", err)
	}
	if auto.Mode == ModeOffline && (!auto.Cached || auto.ID != res.ID) {
		t.Errorf("build without Offline and no registry: %+v, want the cached offline image", auto)
	}
	t.Logf("build without Offline: mode %s, cached=%v", auto.Mode, auto.Cached)

	eng, err := connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	// Rebuilds leave no stray 500 MB images behind.
	left, err := eng.cli.ImageList(ctx, client.ImageListOptions{
		Filters: make(client.Filters).Add("dangling", "true").Add("label", LabelKey)})
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range left.Items {
		t.Errorf("image %s (%s) was left behind", im.ID, im.Labels[LabelKey])
	}

	info, _, err := eng.inspect(ctx, opts.Tag)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		LabelCodeServerVersion: DefaultCodeServerVersion,
		LabelVersion:           "dev",
		LabelBuild:             ModeOffline,
	} {
		if info.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, info.Labels[k], want)
		}
	}

	t.Run("participant", func(t *testing.T) { checkParticipant(ctx, t, eng, opts.Tag) })
	t.Run("default settings", func(t *testing.T) { checkDefaultSettings(ctx, t, eng, opts.Tag) })
	t.Run("tools offline", func(t *testing.T) { checkTools(ctx, t, eng, opts.Tag) })
	t.Run("baked extension", func(t *testing.T) { checkBakedExtension(ctx, t, eng, opts) })
}

// checkParticipant runs a container as THON does (engine init, no new
// privileges, a workspace below /workspace, files THON injects) and checks
// code-server, the terminal, ripgrep, the user and the extensions.
func checkParticipant(ctx context.Context, t *testing.T, eng *engine, image string) {
	etc := t.TempDir()
	os.WriteFile(filepath.Join(etc, "extensions.txt"),
		[]byte("# THON: extensions\n\n  thon-e2e.does-not-exist  \n/nonexistent/missing.vsix\r\n"), 0o644)
	os.MkdirAll(filepath.Join(etc, "extensions"), 0o755)
	os.WriteFile(filepath.Join(etc, "extensions", "hello.vsix"), vsix(t, "thon-e2e", "hello"), 0o644)

	const ws = "/workspace/g1/alice"
	id, base := runContainer(ctx, t, eng, image, []string{"THON_WORKSPACE=" + ws, "THON_EXTENSION_TIMEOUT=60", "THON_USER=alice"},
		[]mount.Mount{{Type: mount.TypeBind, Source: etc, Target: "/etc/thon", ReadOnly: true}},
		map[string]string{
			// As THON writes it: before the start, owned by root.
			"/home/coder/.local/share/code-server/User/settings.json": `{"editor.fontSize": 17}`,
		})

	// The workbench.
	body := get(t, base+"/")
	if !strings.Contains(body, "<html") || !strings.Contains(body, "workbench") {
		t.Errorf("GET / is not the VS Code workbench:\n%.400s", body)
	}

	// The terminal: node-pty spawns a shell on a pseudo terminal.
	pty := `const pty = require('/usr/local/lib/node_modules/code-server/lib/vscode/node_modules/node-pty');
const p = pty.spawn('/bin/bash', ['-c', 'echo pty-$((40+2)); tty'], {});
let out = ''; p.onData(d => out += d);
p.onExit(e => { console.log(out.trim()); process.exit(e.exitCode); });`
	if out := mustExec(ctx, t, eng, id, "coder", "node", "-e", pty); !strings.Contains(out, "pty-42") || !strings.Contains(out, "/dev/pts/") {
		t.Errorf("node-pty: %q, want pty-42 on a /dev/pts terminal", out)
	}
	// ripgrep: Debian's, where VS Code's search looks for it too.
	for _, rg := range []string{"rg", "/usr/local/lib/node_modules/code-server/lib/vscode/node_modules/@vscode/ripgrep-universal/bin/linux-x64/rg"} {
		if out := mustExec(ctx, t, eng, id, "coder", rg, "--version"); !strings.HasPrefix(out, "ripgrep ") {
			t.Errorf("%s --version: %q", rg, out)
		}
	}
	for _, tool := range [][]string{{"git", "--version"}, {"curl", "--version"}, {"nano", "--version"}, {"npm", "--version"}, {"python3", "--version"}} {
		mustExec(ctx, t, eng, id, "coder", tool...)
	}

	// Nobody but the engine's init runs as root; code-server runs as coder.
	ps := mustExec(ctx, t, eng, id, "coder", "ps", "-eo", "uid=,comm=,args=")
	sawServer := false
	for _, line := range strings.Split(strings.TrimSpace(ps), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		if f[0] != "1000" && f[1] != "docker-init" {
			t.Errorf("process %s runs as uid %s:\n%s", f[1], f[0], ps)
		}
		// Node.js 24 names its main thread MainThread: look at the command line.
		sawServer = sawServer || (strings.Contains(line, "node") && strings.Contains(line, "code-server"))
	}
	if !sawServer {
		t.Errorf("no code-server (node) process:\n%s", ps)
	}
	if out := mustExec(ctx, t, eng, id, "coder", "id", "-un"); out != "coder" {
		t.Errorf("id -un = %q", out)
	}
	if out := mustExec(ctx, t, eng, id, "", "stat", "-c", "%u:%g", ws, "/workspace/g1"); out != "1000:1000\n0:0" {
		t.Errorf("workspace owners = %q, want only the workspace itself handed to 1000:1000", out)
	}
	// THON's settings are kept (and handed to coder).
	settings := "/home/coder/.local/share/code-server/User/settings.json"
	if out := mustExec(ctx, t, eng, id, "", "sh", "-c", "stat -c %u "+settings+"; cat "+settings); out != "1000\n{\"editor.fontSize\": 17}" {
		t.Errorf("THON's settings.json was changed: %q", out)
	}

	// Who commits: THON_USER, and the default address for it.
	if out := mustExec(ctx, t, eng, id, "coder", "sh", "-c", "cd "+ws+" && git config user.name && git config user.email"); out != "alice\nalice@thon.invalid" {
		t.Errorf("git identity = %q, want alice <alice@thon.invalid>", out)
	}

	// Extensions: the local .vsix gets installed, the unreachable ones are
	// logged, and code-server keeps serving meanwhile.
	deadline := time.Now().Add(2 * time.Minute)
	var log string
	for {
		log, _, _ = execIn(ctx, eng, id, "coder", "cat", "/tmp/thon-extensions.log")
		if strings.Contains(log, "installed extension /etc/thon/extensions/hello.vsix") &&
			strings.Contains(log, "installing extension thon-e2e.does-not-exist failed") &&
			strings.Contains(log, "installing extension /nonexistent/missing.vsix failed") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("extensions not processed in time; /tmp/thon-extensions.log:\n%s", log)
		}
		time.Sleep(time.Second)
	}
	if out := mustExec(ctx, t, eng, id, "coder", "code-server", "--list-extensions"); !strings.Contains(out, "thon-e2e.hello") {
		t.Errorf("installed extensions: %q, want thon-e2e.hello", out)
	}
	if body := get(t, base+"/healthz"); !strings.Contains(body, "status") {
		t.Errorf("/healthz after the extensions: %q", body)
	}
	logs := containerLogs(ctx, t, eng, id)
	if !strings.Contains(logs, "thon-entrypoint: installing extension thon-e2e.does-not-exist failed") {
		t.Errorf("the failure is not on the container's stderr:\n%s", logs)
	}
}

// checkDefaultSettings: without THON's settings the entrypoint writes the
// telemetry-off defaults; THON_USER_EMAIL is the committer's address, and a
// participant's own git identity is kept across a restart.
func checkDefaultSettings(ctx context.Context, t *testing.T, eng *engine, image string) {
	id, _ := runContainer(ctx, t, eng, image, []string{"THON_USER=bob", "THON_USER_EMAIL=bob@example.org"}, nil, nil)
	if out := mustExec(ctx, t, eng, id, "coder", "sh", "-c", "git config --global user.name; git config --global user.email"); out != "bob\nbob@example.org" {
		t.Errorf("git identity = %q, want bob <bob@example.org>", out)
	}
	mustExec(ctx, t, eng, id, "coder", "git", "config", "--global", "user.name", "Bob Builder")
	if _, err := eng.cli.ContainerRestart(ctx, id, client.ContainerRestartOptions{}); err != nil {
		t.Fatalf("restart: %v", err)
	}
	waitHealthy(ctx, t, eng, id)
	if out := mustExec(ctx, t, eng, id, "coder", "sh", "-c", "git config --global user.name; git config --global user.email"); out != "Bob Builder\nbob@example.org" {
		t.Errorf("after a restart, git identity = %q, want the participant's own name kept", out)
	}
	out := mustExec(ctx, t, eng, id, "coder", "cat", "/home/coder/.local/share/code-server/User/settings.json")
	var s map[string]any
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("default settings.json is not JSON: %v\n%s", err, out)
	}
	if s["telemetry.telemetryLevel"] != "off" || s["update.mode"] != "none" {
		t.Errorf("default settings: %v", s)
	}
	if out := mustExec(ctx, t, eng, id, "", "stat", "-c", "%U", "/workspace"); out != "coder" {
		t.Errorf("/workspace is owned by %q", out)
	}
}

// runContainer starts image like THON's Docker runtime does, with files
// (path below /home/coder → content, owned by root) copied in before the start, and waits
// for /healthz. It returns the container ID and the base URL.
func runContainer(ctx context.Context, t *testing.T, eng *engine, image string, env []string,
	mounts []mount.Mount, files map[string]string) (string, string) {
	t.Helper()
	port, _ := network.PortFrom(8080, network.TCP)
	useInit := true
	res, err := eng.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: image, Env: env, ExposedPorts: network.PortSet{port: {}}},
		HostConfig: &container.HostConfig{
			Init:         &useInit,
			SecurityOpt:  []string{"no-new-privileges:true"},
			CapDrop:      []string{"NET_RAW"},
			Mounts:       mounts,
			PortBindings: network.PortMap{port: {{HostIP: netip.MustParseAddr("127.0.0.1")}}},
		},
	})
	if err != nil {
		t.Fatalf("create a container of %s: %v", image, err)
	}
	id := res.ID
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("container log:\n%s", containerLogs(context.Background(), t, eng, id))
		}
		eng.cli.ContainerRemove(context.Background(), id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	})
	if len(files) > 0 {
		// As THON writes them into /home/coder: owned by root, directories
		// included (the entrypoint hands them to coder).
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		dirs := map[string]bool{}
		for _, p := range slices.Sorted(maps.Keys(files)) {
			for d := parentDir(strings.TrimPrefix(p, "/home/coder/")); d != "" && !dirs[d]; d = parentDir(d) {
				dirs[d] = true
			}
		}
		for _, d := range slices.Sorted(maps.Keys(dirs)) {
			tw.WriteHeader(&tar.Header{Name: d + "/", Mode: 0o755, Typeflag: tar.TypeDir})
		}
		for _, p := range slices.Sorted(maps.Keys(files)) {
			tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(p, "/home/coder/"), Mode: 0o644, Size: int64(len(files[p])), Typeflag: tar.TypeReg})
			tw.Write([]byte(files[p]))
		}
		tw.Close()
		if _, err := eng.cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{
			DestinationPath: "/home/coder", Content: &buf, CopyUIDGID: true}); err != nil {
			t.Fatalf("copy files into the container: %v", err)
		}
	}
	if _, err := eng.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	return id, waitHealthy(ctx, t, eng, id)
}

// waitHealthy waits for the started container id to answer /healthz on its
// published port 8080 and returns its base URL.
func waitHealthy(ctx context.Context, t *testing.T, eng *engine, id string) string {
	t.Helper()
	start := time.Now()
	port, _ := network.PortFrom(8080, network.TCP)
	ins, err := eng.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bs := ins.Container.NetworkSettings.Ports[port]
	if len(bs) == 0 {
		t.Fatalf("port 8080 is not published")
	}
	base := "http://127.0.0.1:" + bs[0].HostPort
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Since(start) > 90*time.Second {
			t.Fatalf("/healthz did not answer within 90s (last error %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("container %.12s: /healthz answers after %s", id, time.Since(start).Round(10*time.Millisecond))
	return base
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%.300s", url, resp.Status, b)
	}
	return string(b)
}

func execIn(ctx context.Context, eng *engine, id, user string, cmd ...string) (string, int, error) {
	ec, err := eng.cli.ExecCreate(ctx, id, client.ExecCreateOptions{User: user, AttachStdout: true, AttachStderr: true, Cmd: cmd})
	if err != nil {
		return "", -1, err
	}
	att, err := eng.cli.ExecAttach(ctx, ec.ID, client.ExecAttachOptions{})
	if err != nil {
		return "", -1, err
	}
	defer att.Close()
	var buf bytes.Buffer
	if _, err := stdcopy.StdCopy(&buf, &buf, att.Reader); err != nil {
		return buf.String(), -1, err
	}
	for {
		ins, err := eng.cli.ExecInspect(ctx, ec.ID, client.ExecInspectOptions{})
		if err != nil {
			return buf.String(), -1, err
		}
		if !ins.Running {
			return strings.TrimSpace(buf.String()), ins.ExitCode, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustExec(ctx context.Context, t *testing.T, eng *engine, id, user string, cmd ...string) string {
	t.Helper()
	out, code, err := execIn(ctx, eng, id, user, cmd...)
	if err != nil || code != 0 {
		t.Errorf("%v as %q: exit %d, %v:\n%s", cmd, user, code, err, out)
	}
	return out
}

func containerLogs(ctx context.Context, t *testing.T, eng *engine, id string) string {
	r, err := eng.cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return fmt.Sprintf("(no logs: %v)", err)
	}
	defer r.Close()
	var buf bytes.Buffer
	stdcopy.StdCopy(&buf, &buf, r)
	return buf.String()
}

// vsix makes a minimal VS Code extension package publisher.name 0.0.1.
func vsix(t *testing.T, publisher, name string) []byte {
	return makeVSIX(t, publisher, name, "0.0.1")
}

// makeVSIX makes a minimal VS Code extension package publisher.name at version.
func makeVSIX(t testing.TB, publisher, name, version string) []byte {
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	w, _ := z.Create("extension.vsixmanifest")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="utf-8"?>
<PackageManifest Version="2.0.0" xmlns="http://schemas.microsoft.com/developer/vsx-schema/2011">
  <Metadata><Identity Language="en-US" Id="%[2]s" Version="%[3]s" Publisher="%[1]s"/><DisplayName>%[2]s</DisplayName></Metadata>
  <Installation><InstallationTarget Id="Microsoft.VisualStudio.Code"/></Installation>
  <Dependencies/>
  <Assets><Asset Type="Microsoft.VisualStudio.Code.Manifest" Path="extension/package.json" Addressable="true"/></Assets>
</PackageManifest>`, publisher, name, version)
	w, _ = z.Create("extension/package.json")
	json.NewEncoder(w).Encode(map[string]any{
		"name": name, "publisher": publisher, "version": version, "engines": map[string]string{"vscode": "^1.60.0"},
	})
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
