// Command llm measures THON's AI path against a real llama.cpp llama-server
// with THON's test model, in one run:
//
//   - the gateway's cost: time to first token and whole-answer latency of
//     streamed chats, straight to llama-server and through the gateway
//     (auth, limits, usage), alternating request by request so both see the
//     same machine; goal: the gateway adds < 1 ms to TTFT at p50;
//
//   - the cold start of the server THON runs: from the supervisor starting
//     the container to the first token through it.
//
//     go run ./bench/llm                 # -n 300 -image thon/llm:latest
//     go run ./bench/llm -cold 5
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/bench/internal/benchkit"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/gateway"
	"github.com/thon-dev/thon/internal/llm"
	"github.com/thon-dev/thon/internal/llm/testmodel"
	"github.com/thon-dev/thon/internal/sandbox/docker"
)

func main() {
	image := flag.String("image", config.DefaultLLMImage, "the LLM server image (sudo thon setup llm builds it)")
	n := flag.Int("n", 300, "streamed chats each way")
	cold := flag.Int("cold", 3, "cold starts of the server THON runs")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *image, *n, *cold); err != nil {
		fmt.Fprintln(os.Stderr, "bench/llm:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, image string, n, cold int) error {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return err
	}
	defer cli.Close()
	if _, err := cli.ImageInspect(ctx, image); err != nil {
		return fmt.Errorf("image %s: %w (build it with: sudo thon setup llm)", image, err)
	}
	prefix := "tbl" + benchkit.RandHex(3)
	defer benchkit.CleanupPrefix(context.Background(), cli, prefix)
	dir, err := os.MkdirTemp("", "thon-bench-llm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	if err := testmodel.WriteFile(filepath.Join(dir, "thon-test.gguf")); err != nil {
		return err
	}

	fmt.Printf("llama-server (%s) with THON's test model, 4 slots; %d streamed chats each way\n\n", image, n)
	direct, err := startLlama(ctx, cli, image, prefix+"-llama", dir)
	if err != nil {
		return err
	}
	gw, secret, err := startGateway(direct + "/v1")
	if err != nil {
		return err
	}
	defer gw.Close()
	// Warm both paths (connections, the server's caches).
	for range 10 {
		if _, _, err := streamChat(ctx, direct+"/v1", ""); err != nil {
			return fmt.Errorf("warm-up straight to the server: %w", err)
		}
		if _, _, err := streamChat(ctx, gw.url, secret); err != nil {
			return fmt.Errorf("warm-up through the gateway: %w", err)
		}
	}
	var dTTFT, gTTFT, dAll, gAll []time.Duration
	for i := range 2 * n {
		viaGateway := i%2 == 1
		url, key := direct+"/v1", ""
		if viaGateway {
			url, key = gw.url, secret
		}
		ttft, all, err := streamChat(ctx, url, key)
		if err != nil {
			return err
		}
		if viaGateway {
			gTTFT, gAll = append(gTTFT, ttft), append(gAll, all)
		} else {
			dTTFT, dAll = append(dTTFT, ttft), append(dAll, all)
		}
	}
	p := benchkit.Percentile
	fmt.Println("                     p50 direct  p50 gateway  added    p99 direct  p99 gateway  added")
	row := func(what string, d, g []time.Duration) time.Duration {
		added50 := p(g, 50) - p(d, 50)
		fmt.Printf("%-20s %8s ms  %8s ms  %6s ms  %8s ms  %8s ms  %6s ms\n", what,
			msf(p(d, 50)), msf(p(g, 50)), msf(added50), msf(p(d, 99)), msf(p(g, 99)), msf(p(g, 99)-p(d, 99)))
		return added50
	}
	added := row("time to first token", dTTFT, gTTFT)
	row("whole answer", dAll, gAll)
	fmt.Printf("\ngoal: the gateway adds < 1 ms to the time to first token at p50: %s (%s ms)\n\n", benchkit.Verdict(added < time.Millisecond), msf(added))

	if cold > 0 {
		if err := coldStarts(ctx, image, prefix, cold); err != nil {
			return err
		}
	}
	return nil
}

func msf(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// startLlama runs llama-server on a loopback port and waits for it.
func startLlama(ctx context.Context, cli *client.Client, image, name, dir string) (string, error) {
	port, _ := network.PortFrom(8080, network.TCP)
	res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{Image: image, User: "10001:10001", ExposedPorts: network.PortSet{port: {}},
			Cmd: []string{"-m", "/models/thon-test.gguf", "--alias", "thon-test", "-np", "4", "-c", "32768", "--host", "0.0.0.0", "--port", "8080", "--no-webui"}},
		HostConfig: &container.HostConfig{
			Mounts:       []mount.Mount{{Type: mount.TypeBind, Source: dir, Target: "/models", ReadOnly: true}},
			PortBindings: network.PortMap{port: {{HostIP: netip.MustParseAddr("127.0.0.1")}}},
		},
	})
	if err != nil {
		return "", err
	}
	if _, err := cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		return "", err
	}
	ins, err := cli.ContainerInspect(ctx, res.ID, client.ContainerInspectOptions{})
	if err != nil {
		return "", err
	}
	url := "http://127.0.0.1:" + ins.Container.NetworkSettings.Ports[port][0].HostPort
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(url + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url, nil
			}
		}
	}
	return "", fmt.Errorf("llama-server did not answer within a minute")
}

type gatewaySrv struct {
	*gateway.Gateway
	srv *http.Server
	url string
}

func (g *gatewaySrv) Close() { g.srv.Close(); g.Gateway.Close() }

type oneKey struct{ hash string }

func (k oneKey) KeyByHash(_ context.Context, hash string) (gateway.Key, error) {
	if hash != k.hash {
		return gateway.Key{}, gateway.ErrUnknownKey
	}
	return gateway.Key{ID: "user:alice", Owner: "alice", Group: "alpha"}, nil
}

type discard struct{}

func (discard) Add(context.Context, gateway.Usage) error { return nil }

// startGateway is the gateway as the daemon runs it: keys, the default
// limits, usage recorded.
func startGateway(upstream string) (*gatewaySrv, string, error) {
	secret, hash := gateway.NewKey()
	d := config.Default().Gateway.Limits
	g, err := gateway.New(gateway.Options{Upstream: upstream, Keys: oneKey{hash}, Usage: discard{},
		Limits: gateway.Limits{RequestsPerMinute: 100000, Concurrency: d.Concurrency, TokensPerMinute: 10000000, TokenKind: d.TokenKind},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: g}
	go srv.Serve(ln)
	return &gatewaySrv{Gateway: g, srv: srv, url: "http://" + ln.Addr().String() + "/v1"}, secret, nil
}

var httpc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

// streamChat asks for a streamed answer and times its first content and
// its end.
func streamChat(ctx context.Context, base, key string) (ttft, all time.Duration, err error) {
	body := `{"model":"thon-test","stream":true,"max_tokens":32,"messages":[{"role":"user","content":"Write a short greeting."}]}`
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	t0 := time.Now()
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return 0, 0, fmt.Errorf("%s: %d %s", base, resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if ttft == 0 && bytes.Contains(sc.Bytes(), []byte(`"content":"`)) {
			ttft = time.Since(t0)
		}
	}
	return ttft, time.Since(t0), sc.Err()
}

// coldStarts measures the server THON runs: from the supervisor's start to
// the first token through it.
func coldStarts(ctx context.Context, image, prefix string, rounds int) error {
	rt, err := docker.New(docker.Options{NamePrefix: prefix, Network: prefix})
	if err != nil {
		return err
	}
	defer rt.Close()
	cfg := config.Default().LLM
	cfg.Backend, cfg.Image, cfg.GPU = config.BackendLlamacpp, image, "none"
	cfg.ChatModel = config.LLMModel{Name: "thon-test", CtxPerUser: 8192}
	var times []time.Duration
	for range rounds {
		data, err := os.MkdirTemp("", "thon-bench-llm-data-")
		if err != nil {
			return err
		}
		up := make(chan string, 4)
		m, err := llm.NewManaged(llm.ManagedOptions{Runner: rt, DataDir: data, Poll: 100 * time.Millisecond,
			Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
			Upstream: func(base string) { up <- base }})
		if err != nil {
			return err
		}
		m.Configure(cfg, llm.PlanFor(cfg, 4))
		rctx, cancel := context.WithCancel(ctx)
		t0 := time.Now()
		go m.Run(rctx)
		var base string
		for base == "" {
			select {
			case base = <-up:
			case <-time.After(5 * time.Minute):
				cancel()
				return fmt.Errorf("the managed server did not start within 5 minutes")
			}
		}
		gw, secret, err := startGateway(base)
		if err != nil {
			cancel()
			return err
		}
		gw.SetUpstream(base, m.Key())
		asked := time.Since(t0)
		ttft, _, err := streamChat(ctx, gw.url, secret)
		took := asked + ttft
		gw.Close()
		cancel()
		m.Stop(context.Background())
		os.RemoveAll(data)
		if err != nil {
			return fmt.Errorf("first chat: %w", err)
		}
		times = append(times, took)
	}
	fmt.Printf("cold start of the server THON runs (container start → first token through the gateway), %d rounds: median %s ms, max %s ms\n",
		rounds, msf(benchkit.Percentile(times, 50)), msf(benchkit.Percentile(times, 100)))
	return nil
}
