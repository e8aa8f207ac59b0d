package testenv

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/llm/testmodel"
)

// LlamaOptions describe a llama-server for a test.
type LlamaOptions struct {
	// Image holds /usr/bin/llama-server as its entrypoint (LLMImage).
	Image string
	// Slots and Ctx size the chat model: -np and -c (defaults 2, 16384).
	Slots, Ctx int
	// Embeddings also serves thon-embed, an embeddings model (router
	// mode, as THON runs it).
	Embeddings bool
	// Key is the server's --api-key ("" none).
	Key string
	// Port is the loopback port it is published on (0: one the engine
	// picks). A fixed one stays across a restart of the container.
	Port int
}

// Llama is a running llama-server.
type Llama struct {
	URL  string // root: http://127.0.0.1:PORT (the OpenAI API is URL+"/v1")
	Name string // the container
}

// LlamaServer runs llama.cpp's llama-server with THON's test model (as
// thon-test) in a container, published on a loopback port, and waits until
// it answers. It is removed when the test ends.
func LlamaServer(t testing.TB, o LlamaOptions) Llama {
	t.Helper()
	cli := Docker(t)
	if o.Slots == 0 {
		o.Slots = 2
	}
	if o.Ctx == 0 {
		o.Ctx = 16384
	}
	dir := t.TempDir()
	if err := testmodel.WriteFile(filepath.Join(dir, "thon-test.gguf")); err != nil {
		t.Fatal(err)
	}
	args := []string{"--host", "0.0.0.0", "--port", "8080", "--metrics", "--no-webui"}
	if o.Embeddings {
		ini := fmt.Sprintf("version = 1\n\n[thon-test]\nmodel = /models/thon-test.gguf\nctx-size = %d\nparallel = %d\nload-on-startup = true\n\n"+
			"[thon-embed]\nmodel = /models/thon-test.gguf\nctx-size = 4096\nparallel = 2\nembeddings = true\npooling = mean\nload-on-startup = true\n", o.Ctx, o.Slots)
		if err := os.WriteFile(filepath.Join(dir, "models.ini"), []byte(ini), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--models-preset", "/models/models.ini", "--models-max", "2")
	} else {
		args = append(args, "-m", "/models/thon-test.gguf", "--alias", "thon-test", "-np", fmt.Sprint(o.Slots), "-c", fmt.Sprint(o.Ctx))
	}
	if o.Key != "" {
		args = append(args, "--api-key", o.Key)
	}
	os.Chmod(dir, 0o755)
	name := Prefix(t) + "-llama"
	port, _ := network.PortFrom(8080, network.TCP)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{
			Image: o.Image, Cmd: args, User: "10001:10001",
			ExposedPorts: network.PortSet{port: {}},
		},
		HostConfig: &container.HostConfig{
			Mounts:       []mount.Mount{{Type: mount.TypeBind, Source: dir, Target: "/models", ReadOnly: true}},
			PortBindings: network.PortMap{port: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: hostPort(o.Port)}}},
		},
	})
	if err != nil {
		t.Fatalf("create llama-server: %v", err)
	}
	t.Cleanup(func() {
		cli.ContainerRemove(context.Background(), res.ID, client.ContainerRemoveOptions{Force: true})
	})
	if _, err := cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start llama-server: %v", err)
	}
	ins, err := cli.ContainerInspect(ctx, res.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := ins.Container.NetworkSettings.Ports[port]
	if len(b) == 0 {
		t.Fatal("llama-server: no published port")
	}
	l := Llama{URL: "http://127.0.0.1:" + b[0].HostPort, Name: name}
	// Ready: /health answers, and (router mode) both models have loaded.
	for {
		ok := false
		if resp, err := http.Get(l.URL + "/health"); err == nil {
			resp.Body.Close()
			ok = resp.StatusCode == 200
		}
		if ok && o.Embeddings {
			req, _ := http.NewRequest("GET", l.URL+"/models", nil)
			if o.Key != "" {
				req.Header.Set("Authorization", "Bearer "+o.Key)
			}
			if resp, err := http.DefaultClient.Do(req); err == nil {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
				resp.Body.Close()
				ok = strings.Count(string(b), `"value":"loaded"`) == 2
			}
		}
		if ok {
			return l
		}
		select {
		case <-ctx.Done():
			var tail []byte
			if logs, err := cli.ContainerLogs(context.Background(), res.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: "20"}); err == nil {
				tail, _ = io.ReadAll(io.LimitReader(logs, 16<<10))
				logs.Close()
			}
			t.Fatalf("llama-server did not answer in time; its log ends: %s", tail)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func hostPort(p int) string {
	if p == 0 {
		return ""
	}
	return fmt.Sprint(p)
}
