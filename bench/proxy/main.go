// Command proxy measures THON's HTTPS front door against nginx configured as
// the seed ran it (TLS termination and a WebSocket-capable reverse proxy),
// both in front of the same sandbox, in one run on this machine:
//
//  1. small HTTPS responses (GET /healthz) over keep-alive connections:
//     requests/s and latency, THON/nginx ratios (goals: throughput >= 0.8×,
//     p99 <= 1.3×), THON and nginx taking turns over several rounds;
//  2. the round trip of a WebSocket echo through each, p50 and p99;
//  3. 500 WebSockets held open through THON for a minute, each echoing a
//     message every 5s: errors (goal 0) and the daemon's peak memory
//     (goal < 200 MiB).
//
// It starts its own `thon serve` (a fresh data directory, unique instance,
// free ports, port mode), one participant with a running test IDE, a
// session cookie from a real access link, and its own nginx (a temporary
// prefix, config, pid and logs). The load comes from a Go client in this
// process, over loopback. It is a report: it exits 0 whether the goals are
// met or not, and non-zero only when something failed to run. Everything it
// started is stopped and removed at the end, after an error or Ctrl-C too.
//
//	go run ./bench/proxy
//	go run ./bench/proxy -hold 10s -duration 3s -rounds 1   # quicker
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/bench/internal/benchkit"
	thonclient "github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/daemon"
	"github.com/thon-dev/thon/internal/testenv"
)

// Goals.
const (
	goalThroughput = 0.8   // THON req/s ≥ 0.8 × nginx
	goalP99        = 1.3   // THON p99 ≤ 1.3 × nginx
	goalRSSMiB     = 200.0 // daemon peak RSS with the WebSockets held
)

const (
	user  = "u1"
	group = "bench"
	// The sandbox's memory limit (its CPU limit is -sandbox-cpu).
	sandboxMemoryMiB = 512
	// holdMsgSize is the size of the messages of the held WebSockets.
	holdMsgSize = 64
)

// progress receives the running commentary; the report goes to stdout.
var progress io.Writer = os.Stderr

type options struct {
	conns            int
	duration, warmup time.Duration
	rounds           int
	echoes, echoWarm int
	echoSize         int
	ws, dialConc     int
	hold, interval   time.Duration
	image, thonBin   string
	direct           bool
	sandboxCPU       float64
	verbose          bool
}

func main() {
	var o options
	flag.IntVar(&o.conns, "conns", 32, "1: concurrent keep-alive connections")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "1: timed length of each run")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "1: untimed load before each run")
	flag.IntVar(&o.rounds, "rounds", 3, "1, 2: rounds; each runs nginx and THON, taking turns at going first")
	flag.IntVar(&o.echoes, "echoes", 2000, "2: timed sequential echoes on one WebSocket, per side and round")
	flag.IntVar(&o.echoWarm, "echo-warmup", 200, "2: untimed echoes first")
	flag.IntVar(&o.echoSize, "echo-size", 32, "2: message size in bytes")
	flag.IntVar(&o.ws, "ws", 500, "3: WebSockets held open through THON")
	flag.IntVar(&o.dialConc, "dial-concurrency", 16, "3: WebSockets opened at a time")
	flag.DurationVar(&o.hold, "hold", 60*time.Second, "3: how long they are held")
	flag.DurationVar(&o.interval, "interval", 5*time.Second, "3: each WebSocket sends a 64-byte message this often and checks the echo")
	flag.StringVar(&o.image, "image", "", "sandbox image (default: build the test IDE image from test/sandboxd, as the tests do)")
	flag.StringVar(&o.thonBin, "thon", "", "use this thon binary instead of building ./cmd/thon (e.g. a build with profiling)")
	flag.BoolVar(&o.direct, "direct", true, "1, 2: also measure straight to the sandbox (plain HTTP, no proxy) once, as a reference")
	flag.Float64Var(&o.sandboxCPU, "sandbox-cpu", float64(runtime.NumCPU()), "the sandbox's CPU limit (default: every core, so the backend is not what is measured)")
	flag.BoolVar(&o.verbose, "v", false, "also show thon run's output")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./bench/proxy [flags]\n\n"+
			"Compares THON's HTTPS front door with nginx in front of the same sandbox:\n"+
			"keep-alive HTTPS throughput and latency, WebSocket echo round trips, and\n"+
			"many WebSockets held through THON. Needs Docker and nginx (apt-get install -y nginx).\n"+
			"Goals: throughput >= %.1f× nginx, p99 <= %.1f× nginx, 0 errors, daemon RSS < %.0f MiB.\n\nFlags:\n",
			goalThroughput, goalP99, goalRSSMiB)
		flag.PrintDefaults()
	}
	flag.Parse()
	if o.conns < 1 || o.duration <= 0 || o.warmup < 0 || o.rounds < 1 || o.echoes < 1 || o.echoWarm < 0 ||
		o.echoSize < 8 || o.ws < 1 || o.dialConc < 1 || o.hold <= 0 || o.interval <= 0 || o.sandboxCPU <= 0 {
		fmt.Fprintln(os.Stderr, "proxy: -conns, -duration, -rounds, -echoes, -ws, -dial-concurrency, -hold, -interval and -sandbox-cpu must be positive; -echo-size at least 8")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted (%w); everything it started was stopped and removed", err)
		}
		fmt.Fprintln(os.Stderr, "proxy:", err)
		os.Exit(1)
	}
}

// env is what the measurements need: the two front doors and the sandbox.
type env struct {
	daemonPID    int
	thonHTTP     *target
	nginxHTTP    *target
	directHTTP   *target
	thonWS       *wsTarget
	nginxWS      *wsTarget
	directWS     *wsTarget
	endpoint     string
	image        string
	nginxVersion string
	nginxWorkers int
	thonURL      string
	nginxURL     string
	cookieName   string
	noFileSelf   uint64
	noFileDaemon uint64
}

func run(ctx context.Context, o options) (err error) {
	nginxBin, nginxVersion, err := benchkit.FindNginx("this benchmark compares THON's front door with it")
	if err != nil {
		return err
	}
	root, err := testenv.FindModuleRoot()
	if err != nil {
		return err
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return fmt.Errorf("Docker is not reachable (start it, or set DOCKER_HOST): %w", err)
	}

	// Open files: this process holds -ws WebSockets and -conns connections;
	// the daemon holds each WebSocket twice (the browser's side and its
	// own connection to the sandbox), and the load test's connections twice.
	var e env
	e.nginxVersion = nginxVersion
	if e.noFileSelf, err = raiseNoFile(uint64(o.ws + o.conns + 1024)); err != nil {
		return err
	}
	needDaemon := uint64(2*o.ws + 2*o.conns + 1024)

	tmp, err := os.MkdirTemp("", "thon-bench-proxy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// Everything this run makes on the engine starts with inst.
	inst := "tbp" + benchkit.RandHex(4)
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		left, cerr := benchkit.CleanupPrefix(cctx, cli, inst)
		if !left.Empty() {
			fmt.Fprintf(progress, "cleanup: removed leftovers of %s*: %s\n", inst, left)
		}
		if cerr != nil {
			fmt.Fprintf(progress, "cleanup of %s*: %v\n", inst, cerr)
			err = cmp.Or(err, cerr)
		}
	}()

	e.image = o.image
	if e.image == "" {
		fmt.Fprintln(progress, "Building the test IDE image (test/sandboxd) unless the engine has it...")
		bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		e.image, err = testenv.BuildSandboxImage(bctx, cli)
		cancel()
		if err != nil {
			return fmt.Errorf("build the test IDE image: %w", err)
		}
	} else if _, err := cli.ImageInspect(ctx, e.image); err != nil {
		return fmt.Errorf("image %s: %w (it must be on the engine: nothing is pulled)", e.image, err)
	}
	bin := o.thonBin
	if bin == "" {
		fmt.Fprintln(progress, "Building thon...")
		if bin, err = benchkit.BuildThon(ctx, root, tmp); err != nil {
			return err
		}
	}

	// --- THON: daemon, one participant, a running sandbox, a session ---
	dir := filepath.Join(tmp, "daemon")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfgPath, listen, err := writeConfig(dir, e.image, o)
	if err != nil {
		return err
	}
	r := benchkit.Runner{Bin: bin, Dir: dir, Env: append(os.Environ(), "THON_INSTANCE="+inst, "HOME="+dir)}
	fmt.Fprintln(progress, "Starting thon serve...")
	d, err := benchkit.StartDaemon(ctx, r, cfgPath, listen)
	if err != nil {
		return err
	}
	defer func() {
		if terr := teardown(r, d, cli, cfgPath, inst); terr != nil {
			err = cmp.Or(err, terr)
		}
	}()
	e.daemonPID = d.PID
	if e.noFileDaemon, err = ensureNoFile(d.PID, needDaemon); err != nil {
		return err
	}
	if e.noFileDaemon < needDaemon {
		return fmt.Errorf("the daemon may open %d files, it needs %d for %d WebSockets", e.noFileDaemon, needDaemon, o.ws)
	}
	fmt.Fprintln(progress, "thon run: starting the participant's sandbox...")
	if res, err := r.OK(ctx, "run", "--config", cfgPath); err != nil {
		return fmt.Errorf("%w (daemon log %s)", err, d.Log)
	} else if o.verbose {
		fmt.Fprint(progress, res.Stderr)
	}
	if err := e.thonSide(ctx, d, filepath.Join(dir, "data")); err != nil {
		return err
	}

	// --- nginx in front of the same sandbox ---
	fmt.Fprintf(progress, "Starting nginx %s in front of %s...\n", nginxVersion, e.endpoint)
	n, err := startNginx(ctx, nginxBin, nginxVersion, filepath.Join(tmp, "nginx"), e.endpoint)
	if err != nil {
		return err
	}
	defer n.stop()
	e.nginxSide(n)

	// --- 1 and 2, in rounds ---
	var rounds []round
	for i := 1; i <= o.rounds; i++ {
		rd, err := runRound(ctx, o, &e, i)
		if err != nil {
			return fmt.Errorf("round %d: %w", i, err)
		}
		rounds = append(rounds, rd)
	}
	var direct *round
	if o.direct {
		fmt.Fprintln(progress, "reference: straight to the sandbox (plain HTTP, no proxy)...")
		var rd round
		if rd.direct, err = runLoad(ctx, e.directHTTP, o.conns, o.warmup, o.duration); err != nil {
			return fmt.Errorf("direct: %w", err)
		}
		if rd.directEcho, err = echoRTT(ctx, e.directWS, o.echoWarm, o.echoes, o.echoSize); err != nil {
			return fmt.Errorf("direct: %w", err)
		}
		direct = &rd
	}
	if n.Exited() {
		return fmt.Errorf("nginx exited during the benchmark:\n%s", n.logTail())
	}

	// --- 3 ---
	fmt.Fprintf(progress, "3: %d WebSockets through THON for %s...\n", o.ws, o.hold)
	h, err := hold(ctx, e.thonWS, e.daemonPID, o.ws, o.dialConc, o.hold, o.interval)
	if err != nil {
		return fmt.Errorf("WebSockets held: %w", err)
	}
	if d.Exited() {
		return fmt.Errorf("the daemon exited during the benchmark (log %s)", d.Log)
	}

	report(os.Stdout, o, &e, rounds, direct, h)
	return nil
}

// writeConfig writes thon.yaml: a private data directory and API port, the
// front door on a free port in port mode with a random window of
// participant ports below the ephemeral range, one participant.
func writeConfig(dir, image string, o options) (cfgPath, listen string, err error) {
	apiPort, err := benchkit.FreePort()
	if err != nil {
		return "", "", err
	}
	httpsPort, err := benchkit.FreePort()
	if err != nil {
		return "", "", err
	}
	// 20 participant ports somewhere in 20000-31999, below the kernel's
	// ephemeral ports (32768 and up), so the load's own connections never
	// hold one of them.
	first := 20000 + rand.IntN(600)*20
	last := first + 19
	listen = fmt.Sprintf("127.0.0.1:%d", apiPort)
	y := fmt.Sprintf(`server:
  data_dir: %s
  listen: %s
access:
  external_ip: 127.0.0.1
  https_port: %d
  http_port: 0
  mode: port
  port_range: %d-%d
sandbox:
  image: %s
  limits: {cpu: %g, memory: %dMi, pids: 512}
groups:
  %s: [%s]
`, filepath.Join(dir, "data"), listen, httpsPort, first, last, image, o.sandboxCPU, sandboxMemoryMiB, group, user)
	cfgPath = filepath.Join(dir, "thon.yaml")
	return cfgPath, listen, os.WriteFile(cfgPath, []byte(y), 0o644)
}

// thonSide finds the sandbox's endpoint, gets a session cookie the way a
// participant does (an access link opened by a client that trusts only
// THON's CA), checks that the gate is really in the way, and builds the
// targets through THON and straight to the sandbox.
func (e *env) thonSide(ctx context.Context, d *benchkit.Daemon, dataDir string) error {
	tok, err := os.ReadFile(filepath.Join(dataDir, daemon.TokenFile))
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	c := thonclient.New(d.URL, strings.TrimSpace(string(tok)))
	list, err := c.Sandboxes(ctx, nil, []string{user})
	if err != nil {
		return fmt.Errorf("list sandboxes: %w", err)
	}
	if len(list.Items) != 1 || list.Items[0].State != "running" || list.Items[0].Endpoint == "" {
		return fmt.Errorf("want %s's sandbox running with an endpoint, got %+v", user, list.Items)
	}
	e.endpoint = list.Items[0].Endpoint

	pem, err := os.ReadFile(filepath.Join(dataDir, "ca", "ca.crt"))
	if err != nil {
		return fmt.Errorf("THON's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return errors.New("THON's ca.crt holds no certificate")
	}
	link, err := c.IssueLink(ctx, user)
	if err != nil {
		return fmt.Errorf("issue an access link: %w", err)
	}
	u, err := url.Parse(link.URL)
	if err != nil {
		return fmt.Errorf("the link's URL %q: %w", link.URL, err)
	}
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Jar: jar, Transport: tr, Timeout: 15 * time.Second}
	resp, err := hc.Get(link.Link)
	if err != nil {
		return fmt.Errorf("open the access link: %w", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "sandboxd") {
		return fmt.Errorf("the access link led to %s, want the IDE's page: %.200s", resp.Status, body)
	}
	e.cookieName = "thon_" + user
	var cookie string
	for _, ck := range jar.Cookies(u) {
		if ck.Name == e.cookieName {
			cookie = ck.Name + "=" + ck.Value
		}
	}
	if cookie == "" {
		return fmt.Errorf("opening the access link set no %s cookie", e.cookieName)
	}
	e.thonURL = link.URL

	cfg := &tls.Config{RootCAs: pool, ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}, ClientSessionCache: tls.NewLRUClientSessionCache(256)}
	e.thonHTTP = &target{name: "thon", addr: u.Host, tls: cfg, host: u.Host, cookie: cookie,
		pids: []int{d.PID}}
	// The gate is in the way: without the cookie the same request is refused.
	if err := probe(ctx, u.Host, cfg); err == nil || !strings.Contains(err.Error(), "status 401") {
		return fmt.Errorf("GET /healthz through THON without a session: %v, want status 401", err)
	}
	if err := e.probe(ctx, e.thonHTTP); err != nil {
		return err
	}
	e.directHTTP = &target{name: "direct", addr: e.endpoint, host: e.endpoint, cookie: cookie}
	if err := e.probe(ctx, e.directHTTP); err != nil {
		return err
	}
	wsCfg := cfg.Clone()
	wsCfg.ClientSessionCache = tls.NewLRUClientSessionCache(1024)
	e.thonWS = newWSTarget("thon", "wss://"+u.Host+"/ws", wsCfg, cookie)
	e.directWS = newWSTarget("direct", "ws://"+e.endpoint+"/ws", nil, "")
	return nil
}

func (e *env) probe(ctx context.Context, t *target) error {
	c, br, err := t.dial(ctx)
	if err != nil {
		return fmt.Errorf("%s: connect: %w", t.name, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(t.request()); err != nil {
		return fmt.Errorf("%s: %w", t.name, err)
	}
	if _, err := readResponse(br); err != nil {
		return fmt.Errorf("%s: GET /healthz: %w", t.name, err)
	}
	return nil
}

func (e *env) nginxSide(n *nginx) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port))
	pids := n.pids()
	e.nginxWorkers = len(pids) - 1
	e.nginxURL = "https://" + addr + "/"
	cfg := &tls.Config{RootCAs: n.pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}, ClientSessionCache: tls.NewLRUClientSessionCache(256)}
	e.nginxHTTP = &target{name: "nginx", addr: addr, tls: cfg, host: addr, cookie: e.thonHTTP.cookie,
		pids: pids}
	wsCfg := cfg.Clone()
	wsCfg.ClientSessionCache = tls.NewLRUClientSessionCache(1024)
	e.nginxWS = newWSTarget("nginx", "wss://"+addr+"/ws", wsCfg, e.thonHTTP.cookie)
}

// round is one turn of 1 and 2 for both sides.
type round struct {
	nginxFirst             bool
	thon, nginx, direct    loadResult
	thonEcho, nginxEcho    []time.Duration
	directEcho             []time.Duration
	throughputRatio, p99Ra float64
}

func runRound(ctx context.Context, o options, e *env, i int) (round, error) {
	rd := round{nginxFirst: i%2 == 1}
	load := func(t *target, out *loadResult) func() error {
		return func() error {
			fmt.Fprintf(progress, "round %d: 1: %s, %d connections, %s + %s...\n", i, t.name, o.conns, o.warmup, o.duration)
			var err error
			*out, err = runLoad(ctx, t, o.conns, o.warmup, o.duration)
			return err
		}
	}
	echoes := func(t *wsTarget, out *[]time.Duration) func() error {
		return func() error {
			var err error
			*out, err = echoRTT(ctx, t, o.echoWarm, o.echoes, o.echoSize)
			return err
		}
	}
	steps := []func() error{load(e.thonHTTP, &rd.thon), load(e.nginxHTTP, &rd.nginx), echoes(e.thonWS, &rd.thonEcho), echoes(e.nginxWS, &rd.nginxEcho)}
	if rd.nginxFirst {
		steps[0], steps[1], steps[2], steps[3] = steps[1], steps[0], steps[3], steps[2]
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return rd, err
		}
	}
	rd.throughputRatio = rd.thon.rps() / rd.nginx.rps()
	rd.p99Ra = float64(benchkit.Percentile(rd.thon.lat, 99)) / float64(benchkit.Percentile(rd.nginx.lat, 99))
	fmt.Fprintf(progress, "round %d: THON %.0f req/s p99 %s ms, nginx %.0f req/s p99 %s ms: throughput ratio %.3f, p99 ratio %.3f\n",
		i, rd.thon.rps(), benchkit.Ms(benchkit.Percentile(rd.thon.lat, 99)), rd.nginx.rps(), benchkit.Ms(benchkit.Percentile(rd.nginx.lat, 99)), rd.throughputRatio, rd.p99Ra)
	return rd, nil
}

// teardown removes the sandbox the way an organizer does (thon cleanup
// --volumes --yes, thon down), then THON's network; it runs after an error
// or an interrupt too, with a fresh context.
func teardown(r benchkit.Runner, d *benchkit.Daemon, cli *client.Client, cfgPath, inst string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	fmt.Fprintln(progress, "Cleaning up: thon cleanup --volumes --yes, thon down...")
	var errs []error
	if !d.Exited() {
		if _, err := r.OK(ctx, "cleanup", "--volumes", "--yes", "--config", cfgPath); err != nil {
			errs = append(errs, err)
		}
		if _, err := r.OK(ctx, "down", "--config", cfgPath); err != nil {
			errs = append(errs, err)
		}
		if !d.Wait(15 * time.Second) {
			errs = append(errs, fmt.Errorf("thon down returned but the daemon (pid %d) still runs after 15s; stopping it", d.PID))
		}
	}
	d.Stop()
	if _, err := cli.NetworkRemove(ctx, inst, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("remove THON's network %s: %w", inst, err))
	}
	return errors.Join(errs...)
}
