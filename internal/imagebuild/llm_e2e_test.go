package imagebuild

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/llm/testmodel"
)

// TestOfflineLLMImageBuild builds THON's LLM server image (Debian mirror
// only), or finds it cached, checks its contract, and runs llama-server in it
// the way THON does, with THON's test model: on the CPU, and on ggml's Vulkan
// backend through Mesa's software driver (lavapipe), which this machine has
// without a GPU. Opt-in: it needs root, the engine and, the first time,
// about a minute and 110 MB of downloads.
//
//	sudo THON_E2E_IMAGE=1 go test ./internal/imagebuild -run TestOfflineLLMImageBuild -v
//
// THON_TEST_LLM_IMAGE (default thon/llm:latest) and THON_TEST_LLM_IMAGE_CACHE
// (default /var/cache/thon-llm-image) choose the image and the cache, as for
// testenv.LLMImage; THON_E2E_IMAGE_REBUILD=1 first rebuilds from the cached
// packages.
func TestOfflineLLMImageBuild(t *testing.T) {
	if os.Getenv("THON_E2E_IMAGE") != "1" {
		t.Skip("builds the LLM server image offline; enable with THON_E2E_IMAGE=1 (as root, with Docker running)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	opts := LLMOptions{
		Tag:      cmpOr(os.Getenv("THON_TEST_LLM_IMAGE"), DefaultLLMTag),
		CacheDir: cmpOr(os.Getenv("THON_TEST_LLM_IMAGE_CACHE"), DefaultLLMCacheDir),
	}
	t0 := time.Now()
	progress := func(step string, done, total int) {
		t.Logf("%6s [%d/%d] %s", time.Since(t0).Round(time.Second), done, total, step)
	}
	if os.Getenv("THON_E2E_IMAGE_REBUILD") == "1" {
		o := opts
		o.Rebuild = true
		res, err := BuildLLM(ctx, o, progress)
		if err != nil {
			t.Fatalf("rebuild: %v", err)
		}
		t.Logf("rebuild (Rebuild: true) took %s", res.Took.Round(time.Second))
	}

	res, err := BuildLLM(ctx, opts, progress)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	t.Logf("image %s (%s): %.0f MB, llama-server %s, cached=%v, took %s",
		res.Image, res.ID, float64(res.Size)/1e6, res.LLMVersion, res.Cached, res.Took.Round(time.Second))
	if res.Size > 600e6 {
		t.Errorf("image is %.0f MB; the goal is under 600 MB", float64(res.Size)/1e6)
	}
	again, err := BuildLLM(ctx, opts, progress)
	if err != nil {
		t.Fatalf("second build: %v", err)
	}
	if !again.Cached || again.ID != res.ID || again.LLMVersion != res.LLMVersion {
		t.Errorf("second build: %+v, want the cached image %s", again, res.ID)
	}
	t.Logf("second build took %s", again.Took)

	eng, err := connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	left, err := eng.cli.ImageList(ctx, client.ImageListOptions{
		Filters: make(client.Filters).Add("dangling", "true").Add("label", LabelKey)})
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range left.Items {
		t.Errorf("image %s (%s) was left behind", im.ID, im.Labels[LabelKey])
	}

	// The contract THON runs the image by.
	ins, err := eng.cli.ImageInspect(ctx, opts.Tag)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ins.Config
	if !slices.Equal(cfg.Entrypoint, []string{LLMEntrypoint}) || len(cfg.Cmd) != 0 {
		t.Errorf("entrypoint %q, cmd %q: want [%s] and no cmd", cfg.Entrypoint, cfg.Cmd, LLMEntrypoint)
	}
	if cfg.User != LLMUser || cfg.WorkingDir != "/tmp" {
		t.Errorf("user %q, workdir %q: want %s in /tmp", cfg.User, cfg.WorkingDir, LLMUser)
	}
	if _, ok := cfg.ExposedPorts[fmt.Sprintf("%d/tcp", LLMPort)]; !ok || len(cfg.ExposedPorts) != 1 {
		t.Errorf("exposed ports %v, want %d/tcp", cfg.ExposedPorts, LLMPort)
	}
	wantKey := llmImage(opts.withDefaults()).key
	for k, want := range map[string]string{
		LabelKey:     wantKey,
		LabelBuild:   ModeOffline,
		LabelVersion: "dev",
	} {
		if cfg.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, cfg.Labels[k], want)
		}
	}
	version := cfg.Labels[LabelLLMVersion]
	if !regexp.MustCompile(`^\d+\.\d+\.\d+ \(build \d+\)$`).MatchString(version) || version != res.LLMVersion {
		t.Errorf("label %s = %q (result %q), want e.g. 0.7.0 (build 11669)", LabelLLMVersion, version, res.LLMVersion)
	}

	t.Run("version", func(t *testing.T) {
		out, code := runToEnd(ctx, t, eng, opts.Tag, nil, []string{"--version"}, nil)
		num, build, _ := strings.Cut(strings.TrimSuffix(version, ")"), " (")
		if code != 0 || !strings.Contains(out, "version: "+num+" ("+build) {
			t.Errorf("llama-server --version: exit %d\n%s\nwant version %s", code, out, version)
		}
	})
	t.Run("contents", func(t *testing.T) {
		script := `set -e
echo "id $(id -u):$(id -g) $(id -un)"
touch /tmp/written && echo "tmp writable"
echo "apt lists $(ls /var/lib/apt/lists | grep -vc '^\(lock\|partial\|auxfiles\)$' || true)"
echo "man $(find /usr/share/man -type f | wc -l)"
echo "docs $(find /usr/share/doc -type f ! -name copyright | wc -l)"
echo "locales $(ls /usr/share/locale | grep -vc '^locale.alias$' || true)"
echo "vulkan $(ls /usr/share/vulkan/icd.d | tr '\n' ' ')"
ls /usr/lib/*/ggml/backends0/libggml-vulkan.so /usr/lib/*/ggml/backends0/libggml-cpu-x64.so >/dev/null && echo "backends ok"`
		out, code := runToEnd(ctx, t, eng, opts.Tag, []string{"/bin/sh", "-c"}, []string{script}, nil)
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		for _, want := range []string{"id 10001:10001 llm", "tmp writable", "apt lists 0", "man 0", "docs 0", "locales 0", "backends ok", "radeon_icd", "intel_icd"} {
			if !strings.Contains(out, want) {
				t.Errorf("lacks %q:\n%s", want, out)
			}
		}
	})

	// THON's test model, readable by llm (uid 10001) only through a
	// read-only mount.
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("thon-llm-e2e-%d", os.Getpid()))
	t.Cleanup(func() { os.RemoveAll(dir) })
	models, etc := filepath.Join(dir, "models"), filepath.Join(dir, "etc")
	for _, d := range []string{dir, models, etc} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chmod(d, 0o755)
	}
	if err := testmodel.WriteFile(filepath.Join(models, "thon-test.gguf")); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(models, "thon-test.gguf"), 0o644)
	const key = "thon-e2e-key"
	os.WriteFile(filepath.Join(etc, "models.ini"), []byte("[thon-test]\nmodel = /models/thon-test.gguf\nctx-size = 4096\n"), 0o644)
	os.WriteFile(filepath.Join(etc, "api-keys"), []byte(key+"\n"), 0o644)
	mounts := []mount.Mount{
		{Type: mount.TypeBind, Source: models, Target: "/models", ReadOnly: true},
		{Type: mount.TypeBind, Source: etc, Target: "/etc/thon/llm", ReadOnly: true},
	}

	t.Run("server", func(t *testing.T) {
		// As THON runs it: every argument passed, models from a preset
		// (router mode: llama-server starts one child per model), a key.
		base, _ := serveLLM(ctx, t, eng, opts.Tag, nil, mounts, "--models-preset", "/etc/thon/llm/models.ini",
			"--host", "0.0.0.0", "--port", "8080", "--api-key-file", "/etc/thon/llm/api-keys", "--metrics", "--no-webui")
		if code, _ := post(t, base+"/v1/chat/completions", "", chatRequest); code != http.StatusUnauthorized {
			t.Errorf("a chat without the key: %d, want 401", code)
		}
		code, body := post(t, base+"/v1/chat/completions", key, chatRequest)
		if got := answer(t, code, body); got != testmodel.Answer {
			t.Errorf("answer %q, want %q", got, testmodel.Answer)
		}
	})
	t.Run("vulkan", func(t *testing.T) {
		// ggml's Vulkan backend on Mesa's lavapipe (a Vulkan driver on the
		// CPU, which ggml only uses when asked to): the path a GPU takes.
		env := []string{"GGML_VK_VISIBLE_DEVICES=0"}
		out, _ := runToEnd(ctx, t, eng, opts.Tag, nil, []string{"--list-devices"}, env)
		if !strings.Contains(out, "Vulkan0: llvmpipe") {
			t.Fatalf("llama-server --list-devices with GGML_VK_VISIBLE_DEVICES=0 shows no Vulkan device:\n%s", out)
		}
		base, id := serveLLM(ctx, t, eng, opts.Tag, env, mounts, "-m", "/models/thon-test.gguf", "--device", "Vulkan0",
			"-ngl", "99", "-c", "4096", "-lv", "4", "--host", "0.0.0.0", "--port", "8080", "--no-webui")
		code, body := post(t, base+"/v1/chat/completions", "", chatRequest)
		if got := answer(t, code, body); got != testmodel.Answer {
			t.Errorf("answer %q, want %q", got, testmodel.Answer)
		}
		if log := containerLogs(ctx, t, eng, id); !strings.Contains(log, "offloaded 2/2 layers to GPU") || !strings.Contains(log, "Vulkan0 model buffer size") {
			t.Errorf("the model was not loaded on the Vulkan device; llama-server's log:\n%s", log)
		}
	})
}

const chatRequest = `{"model": "thon-test", "messages": [{"role": "user", "content": "Is the event LLM there?"}], "max_tokens": 64}`

// llmHostConfig is how THON runs the LLM server: no capabilities, no new
// privileges, a read-only root file system with a tmpfs /tmp.
func llmHostConfig(mounts []mount.Mount) *container.HostConfig {
	return &container.HostConfig{
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges:true"},
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/tmp": "rw,nosuid,nodev,size=64m"},
		Mounts:         mounts,
	}
}

// runToEnd runs a container of image (entrypoint overridden when given) to
// its end, without network, and returns its output and exit code.
func runToEnd(ctx context.Context, t *testing.T, eng *engine, image string, entrypoint, args, env []string) (string, int) {
	t.Helper()
	hc := llmHostConfig(nil)
	hc.NetworkMode = "none"
	res, err := eng.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: image, Entrypoint: entrypoint, Cmd: args, Env: env}, HostConfig: hc})
	if err != nil {
		t.Fatalf("create a container of %s: %v", image, err)
	}
	defer eng.cli.ContainerRemove(context.Background(), res.ID, client.ContainerRemoveOptions{Force: true})
	wait := eng.cli.ContainerWait(ctx, res.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := eng.cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	code := -1
	select {
	case r := <-wait.Result:
		code = int(r.StatusCode)
	case err := <-wait.Error:
		t.Fatalf("wait: %v", err)
	}
	return containerLogs(ctx, t, eng, res.ID), code
}

// serveLLM starts llama-server in a container of image with args, its port
// 8080 published on loopback, and waits until /health answers 200 (the
// model is loaded). It returns the base URL and the container's ID.
func serveLLM(ctx context.Context, t *testing.T, eng *engine, image string, env []string, mounts []mount.Mount, args ...string) (string, string) {
	t.Helper()
	port, _ := network.PortFrom(LLMPort, network.TCP)
	hc := llmHostConfig(mounts)
	hc.PortBindings = network.PortMap{port: {{HostIP: netip.MustParseAddr("127.0.0.1")}}}
	res, err := eng.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config:     &container.Config{Image: image, Cmd: args, Env: env, ExposedPorts: network.PortSet{port: {}}},
		HostConfig: hc,
	})
	if err != nil {
		t.Fatalf("create a container of %s: %v", image, err)
	}
	id := res.ID
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("llama-server's log:\n%s", containerLogs(context.Background(), t, eng, id))
		}
		eng.cli.ContainerRemove(context.Background(), id, client.ContainerRemoveOptions{Force: true})
	})
	if _, err := eng.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	ins, err := eng.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bs := ins.Container.NetworkSettings.Ports[port]
	if len(bs) == 0 {
		t.Fatalf("port 8080 is not published")
	}
	base := "http://127.0.0.1:" + bs[0].HostPort
	start := time.Now()
	// A generous bound that only ends a hung start (lavapipe compiles
	// its shaders on the CPU first); nothing is asserted on the time.
	deadline := start.Add(5 * time.Minute)
	for {
		resp, err := http.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if st, ierr := eng.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{}); ierr == nil && !st.Container.State.Running {
			t.Fatalf("llama-server exited (%d)", st.Container.State.ExitCode)
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health did not answer 200 (last error %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("llama-server %.12s answers /health after %s", id, time.Since(start).Round(10*time.Millisecond))
	return base, id
}

// post sends a JSON body with the key (when not "") and returns the status
// and body.
func post(t *testing.T, url, key, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// answer is the assistant's message of a chat completion.
func answer(t *testing.T, code int, body []byte) string {
	t.Helper()
	if code != http.StatusOK {
		t.Fatalf("chat completion: %d\n%s", code, body)
	}
	var r struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&r); err != nil || len(r.Choices) == 0 {
		t.Fatalf("chat completion: %v\n%s", err, body)
	}
	return r.Choices[0].Message.Content
}
