// Command spawn measures what THON costs on top of the container engine when
// it brings an event up: N sandboxes with `thon run` (the real CLI and
// daemon) against the same N containers started directly on the Engine API
// with the same concurrency, in one run, alternating the two each round.
//
// It reports, per round, both wall times and their ratio, plus the daemon's
// peak resident memory during `thon run`; then the median ratio (goal
// <= 1.15) and the largest peak (goal < 100 MiB). It is a report: it exits 0
// whether the goals are met or not, and non-zero only when something failed
// to run. Everything it creates on the engine carries a unique name prefix
// and is removed at the end, also after an error or Ctrl-C.
//
//	go run ./bench/spawn                 # 50 sandboxes, 8 at a time, 3 rounds
//	go run ./bench/spawn -n 20 -rounds 1 # quicker
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/bench/internal/benchkit"
	"github.com/thon-dev/thon/internal/testenv"
)

// Goals.
const (
	goalRatio  = 1.15
	goalRSSMiB = 100.0
)

// The sandbox settings both sides use (thon.yaml and the baseline alike).
const (
	groups      = 5
	port        = 8080
	healthPath  = "/healthz"
	cpu         = 0.5
	memoryBytes = 128 << 20
	pids        = 64
	iccOption   = "com.docker.network.bridge.enable_icc"
)

type options struct {
	n, concurrency, rounds int
	image                  string
	poll                   time.Duration
	timeout                time.Duration
	verbose                bool
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 50, "sandboxes per run")
	flag.IntVar(&o.concurrency, "concurrency", 8, "sandboxes started at a time (sandbox.concurrency for THON)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each runs the baseline and THON, alternating which goes first")
	flag.StringVar(&o.image, "image", "", "sandbox image (default: build the test IDE image from test/sandboxd, as the tests do)")
	flag.DurationVar(&o.poll, "poll", 10*time.Millisecond, "baseline: interval between health checks of one container (tight, so the baseline is the best one can do by hand)")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Minute, "longest wait for one sandbox to answer its health check")
	flag.BoolVar(&o.verbose, "v", false, "also show where the time goes: the baseline's mean time per step, and thon run's output")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./bench/spawn [flags]\n\n"+
			"Starts N sandboxes with `thon run` and the same N containers directly on the\n"+
			"engine, alternating, and reports the ratio of wall times and the daemon's\n"+
			"peak memory. Goals: median ratio <= %.2f, peak RSS < %.0f MiB.\n\nFlags:\n", goalRatio, goalRSSMiB)
		flag.PrintDefaults()
	}
	flag.Parse()
	if o.n < 1 || o.concurrency < 1 || o.rounds < 1 || o.poll <= 0 || o.timeout <= 0 {
		fmt.Fprintln(os.Stderr, "spawn: -n, -concurrency, -rounds, -poll and -timeout must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted (%w); everything it created was removed", err)
		}
		fmt.Fprintln(os.Stderr, "spawn:", err)
		os.Exit(1)
	}
}

type round struct {
	baseline, thon time.Duration
	idleKiB        int64 // daemon RSS before `thon run`
	sampledKiB     int64 // largest VmRSS seen every 50ms during `thon run`
	hwmKiB         int64 // the daemon's VmHWM after `thon run`
}

func (r round) ratio() float64 { return r.thon.Seconds() / r.baseline.Seconds() }
func (r round) peakKiB() int64 { return max(r.sampledKiB, r.hwmKiB) }

func run(ctx context.Context, o options) (err error) {
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
	tmp, err := os.MkdirTemp("", "thon-bench-spawn-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// Everything this run creates on the engine starts with prefix; whatever
	// happens, it is all removed on the way out.
	prefix := "tbs" + benchkit.RandHex(4)
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		left, cerr := benchkit.CleanupPrefix(cctx, cli, prefix)
		if !left.Empty() {
			fmt.Fprintf(os.Stderr, "cleanup: removed leftovers of %s*: %s\n", prefix, left)
		}
		if cerr != nil {
			fmt.Fprintf(os.Stderr, "cleanup of %s*: %v\n", prefix, cerr)
			err = cmp.Or(err, cerr)
		}
	}()

	image := o.image
	if image == "" {
		fmt.Fprintln(os.Stderr, "Building the test IDE image (test/sandboxd) unless the engine has it...")
		bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		image, err = testenv.BuildSandboxImage(bctx, cli)
		cancel()
		if err != nil {
			return fmt.Errorf("build the test IDE image: %w", err)
		}
	} else if _, err := cli.ImageInspect(ctx, image); err != nil {
		return fmt.Errorf("image %s: %w (it must be on the engine: nothing is pulled)", image, err)
	}
	fmt.Fprintln(os.Stderr, "Building thon...")
	bin, err := benchkit.BuildThon(ctx, root, tmp)
	if err != nil {
		return err
	}
	users := userNames(o.n)

	fmt.Printf("spawn: %d sandboxes, concurrency %d, %d rounds, image %s\n", o.n, o.concurrency, o.rounds, image)
	fmt.Printf("limits: cpu %.1f, memory %dMi, pids %d; workspace: a named volume each; network: bridge, ICC off; prefix %s\n\n", cpu, memoryBytes>>20, pids, prefix)
	// An untimed warm-up, so the first round does not pay for the engine's
	// cold caches (image layers, the first bridge) alone.
	fmt.Fprintln(os.Stderr, "warm-up: a few containers on the engine, not timed...")
	if _, err := runBaseline(ctx, cli, o, image, prefix+"-w", users[:min(len(users), o.concurrency)]); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	var rounds []round
	for i := 1; i <= o.rounds; i++ {
		var r round
		baseline := func() error {
			fmt.Fprintf(os.Stderr, "round %d: baseline (Engine API directly)...\n", i)
			d, err := runBaseline(ctx, cli, o, image, fmt.Sprintf("%s-b%d", prefix, i), users)
			r.baseline = d
			return err
		}
		thon := func() error {
			fmt.Fprintf(os.Stderr, "round %d: thon run...\n", i)
			return runThon(ctx, cli, o, bin, image, filepath.Join(tmp, fmt.Sprintf("round%d", i)), fmt.Sprintf("%s-t%d", prefix, i), users, &r)
		}
		first, second := baseline, thon
		if i%2 == 0 {
			first, second = thon, baseline
		}
		if err := first(); err != nil {
			return fmt.Errorf("round %d: %w", i, err)
		}
		if err := second(); err != nil {
			return fmt.Errorf("round %d: %w", i, err)
		}
		order := "baseline first"
		if i%2 == 0 {
			order = "thon first"
		}
		fmt.Fprintf(os.Stderr, "round %d (%s): baseline %.2fs, thon %.2fs, ratio %.3f, daemon peak RSS %s MiB\n",
			i, order, r.baseline.Seconds(), r.thon.Seconds(), r.ratio(), benchkit.MiB(r.peakKiB()))
		rounds = append(rounds, r)
	}
	report(os.Stdout, o, rounds)
	return nil
}

func userNames(n int) []string {
	w := len(strconv.Itoa(n))
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("u%0*d", w, i+1)
	}
	return out
}

// groupOf spreads users over the groups in contiguous blocks, as an organizer
// would list them.
func groupOf(i, n int) string {
	per := (n + groups - 1) / groups
	return fmt.Sprintf("g%d", i/per+1)
}

func report(w io.Writer, o options, rounds []round) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tfirst\tbaseline s\tthon s\tratio\tdaemon idle MiB\tdaemon peak MiB\t")
	var ratios []float64
	var peak int64
	for i, r := range rounds {
		first := "baseline"
		if (i+1)%2 == 0 {
			first = "thon"
		}
		fmt.Fprintf(tw, "%d\t%s\t%.2f\t%.2f\t%.3f\t%s\t%s\t\n", i+1, first, r.baseline.Seconds(), r.thon.Seconds(), r.ratio(), benchkit.MiB(r.idleKiB), benchkit.MiB(r.peakKiB()))
		ratios = append(ratios, r.ratio())
		peak = max(peak, r.peakKiB())
	}
	tw.Flush()
	med := benchkit.Median(ratios)
	peakMiB := float64(peak) / 1024
	fmt.Fprintln(w)
	fmt.Fprintf(w, "median ratio thon/baseline: %.3f  (goal <= %.2f)  %s\n", med, goalRatio, benchkit.Verdict(med <= goalRatio))
	fmt.Fprintf(w, "max daemon peak RSS:        %.1f MiB  (goal < %.0f MiB)  %s\n", peakMiB, goalRSSMiB, benchkit.Verdict(peakMiB < goalRSSMiB))
}

// --- baseline: the same containers, straight on the Engine API ---

// runBaseline creates an ICC-free bridge network, then for each user (at
// most o.concurrency at a time) a named volume and a container configured
// like THON's sandbox, starts it and polls its health path until it answers
// 200. It returns the wall time from the network's creation to the last
// healthy container, and removes everything afterwards (not timed).
func runBaseline(ctx context.Context, cli *client.Client, o options, image, pfx string, users []string) (time.Duration, error) {
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if _, err := benchkit.CleanupPrefix(cctx, cli, pfx); err != nil {
			fmt.Fprintf(os.Stderr, "baseline cleanup %s: %v\n", pfx, err)
		}
	}()
	hc := &http.Client{Timeout: 3 * time.Second}
	defer hc.CloseIdleConnections()

	start := time.Now()
	nres, err := cli.NetworkCreate(ctx, pfx, client.NetworkCreateOptions{
		Driver:  "bridge",
		Options: map[string]string{iccOption: "false"},
		Labels:  map[string]string{"io.thon.bench": "spawn"},
	})
	if err != nil {
		return 0, fmt.Errorf("baseline: create network %s: %w", pfx, err)
	}
	ni, err := cli.NetworkInspect(ctx, nres.ID, client.NetworkInspectOptions{})
	if err != nil {
		return 0, fmt.Errorf("baseline: inspect network %s: %w", pfx, err)
	}
	routable := benchkit.Routable(ni.Network.IPAM.Config)

	st := &steps{sum: map[string]time.Duration{}}
	sem := make(chan struct{}, o.concurrency)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i, u := range users {
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := startOne(ctx, cli, hc, o, image, pfx, u, groupOf(i, len(users)), routable, st); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", u, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if o.verbose {
		fmt.Fprintf(os.Stderr, "  baseline mean per container (container addresses routable: %v): %s\n", routable, st.String(len(users)))
	}
	if err := cmp.Or(ctx.Err(), errors.Join(errs...)); err != nil {
		return elapsed, fmt.Errorf("baseline: %w", err)
	}
	return elapsed, nil
}

// startOne makes one sandbox the way internal/sandbox/docker does (same
// name scheme, env, limits, security options, workspace volume and network)
// and waits for its IDE.
func startOne(ctx context.Context, cli *client.Client, hc *http.Client, o options, image, pfx, user, group string, routable bool, st *steps) error {
	mark := st.start()
	vol := pfx + "-ws-" + user
	if _, err := cli.VolumeCreate(ctx, client.VolumeCreateOptions{Name: vol, Driver: "local", Labels: map[string]string{"io.thon.bench": "spawn"}}); err != nil {
		return fmt.Errorf("create volume: %w", err)
	}
	mark("volume")
	ws := "/workspace/" + group + "/" + user
	env := map[string]string{"THON_USER": user, "THON_GROUP": group, "THON_WORKSPACE": ws, "PORT": strconv.Itoa(port)}
	var envList []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		envList = append(envList, k+"="+env[k])
	}
	p, _ := network.PortFrom(port, network.TCP)
	useInit := true
	pidsLimit := int64(pids)
	hostCfg := &container.HostConfig{
		NetworkMode:   container.NetworkMode(pfx),
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		Init:          &useInit,
		SecurityOpt:   []string{"no-new-privileges:true"},
		CapDrop:       []string{"NET_RAW"},
		ExtraHosts:    []string{"host.docker.internal:host-gateway"},
		Mounts:        []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: ws}},
		Resources: container.Resources{
			NanoCPUs:   int64(cpu * 1e9),
			Memory:     memoryBytes,
			MemorySwap: memoryBytes,
			PidsLimit:  &pidsLimit,
		},
	}
	if !routable {
		hostCfg.PortBindings = network.PortMap{p: {{HostIP: netip.MustParseAddr("127.0.0.1")}}}
	}
	res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: pfx + "-" + group + "-" + user,
		Config: &container.Config{
			Image:        image,
			Hostname:     user,
			Env:          envList,
			WorkingDir:   ws,
			ExposedPorts: network.PortSet{p: {}},
			Labels:       map[string]string{"io.thon.bench": "spawn", "io.thon.user": user, "io.thon.group": group},
		},
		HostConfig: hostCfg,
	})
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	mark("create")
	if _, err := cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start container: %w", err)
	}
	mark("start")
	ins, err := cli.ContainerInspect(ctx, res.ID, client.ContainerInspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect container: %w", err)
	}
	addr, err := benchkit.Endpoint(ins.Container, pfx, p, routable)
	if err != nil {
		return err
	}
	mark("inspect")
	url := "http://" + addr + healthPath
	deadline := time.Now().Add(o.timeout)
	for {
		if healthy(ctx, hc, url) {
			mark("health")
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer 200 within %s", url, o.timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(o.poll):
		}
	}
}

// steps sums the time each step of startOne takes, over all containers.
type steps struct {
	mu    sync.Mutex
	sum   map[string]time.Duration
	order []string
}

// start returns a function that records the time since its previous call
// (or since start) under a step's name.
func (s *steps) start() func(string) {
	last := time.Now()
	return func(name string) {
		now := time.Now()
		s.mu.Lock()
		if _, ok := s.sum[name]; !ok {
			s.order = append(s.order, name)
		}
		s.sum[name] += now.Sub(last)
		s.mu.Unlock()
		last = now
	}
}

func (s *steps) String(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	for _, k := range s.order {
		parts = append(parts, fmt.Sprintf("%s %s ms", k, benchkit.Ms(s.sum[k]/time.Duration(n))))
	}
	return strings.Join(parts, ", ")
}

func healthy(ctx context.Context, hc *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// --- THON: the real CLI against the real daemon ---

// runThon writes thon.yaml, starts `thon serve` (THON_INSTANCE=inst), times
// `thon run` while sampling the daemon's memory, then removes everything with
// `thon cleanup --volumes --yes`, `thon down` and the network (not timed).
func runThon(ctx context.Context, cli *client.Client, o options, bin, image, dir, inst string, users []string, r *round) (err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	listenPort, err := benchkit.FreePort()
	if err != nil {
		return err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", listenPort)
	var yaml strings.Builder
	fmt.Fprintf(&yaml, `server:
  data_dir: %s
  listen: %s
sandbox:
  image: %s
  port: %d
  health_path: %s
  startup_timeout: %s
  workspace: volume
  concurrency: %d
  limits: {cpu: %g, memory: %dMi, pids: %d}
groups:
`, filepath.Join(dir, "data"), listen, image, port, healthPath, o.timeout, o.concurrency, cpu, memoryBytes>>20, pids)
	byGroup := map[string][]string{}
	var order []string
	for i, u := range users {
		g := groupOf(i, len(users))
		if _, ok := byGroup[g]; !ok {
			order = append(order, g)
		}
		byGroup[g] = append(byGroup[g], u)
	}
	for _, g := range order {
		fmt.Fprintf(&yaml, "  %s: [%s]\n", g, strings.Join(byGroup[g], ", "))
	}
	cfgPath := filepath.Join(dir, "thon.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml.String()), 0o644); err != nil {
		return err
	}
	env := append(os.Environ(), "THON_INSTANCE="+inst, "HOME="+dir)
	run := benchkit.Runner{Bin: bin, Dir: dir, Env: env}

	d, err := benchkit.StartDaemon(ctx, run, cfgPath, listen)
	if err != nil {
		return err
	}
	defer func() {
		// Normally `thon down` has stopped it already; after an error or an
		// interrupt this stops it, and the prefix cleanup removes the rest.
		d.Stop()
		cctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		left, cerr := benchkit.CleanupPrefix(cctx, cli, inst)
		if err == nil && !left.Empty() {
			fmt.Fprintf(os.Stderr, "note: thon cleanup --volumes left %s named %s* (removed now)\n", left, inst)
		}
		if cerr != nil {
			fmt.Fprintf(os.Stderr, "cleanup %s: %v\n", inst, cerr)
		}
	}()
	if r.idleKiB, err = benchkit.ProcStatusKiB(d.PID, "VmRSS"); err != nil {
		return fmt.Errorf("daemon memory: %w", err)
	}

	stopSampling := make(chan struct{})
	sampled := make(chan int64, 1)
	go func() {
		var peak int64
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if kib, err := benchkit.ProcStatusKiB(d.PID, "VmRSS"); err == nil {
				peak = max(peak, kib)
			}
			select {
			case <-stopSampling:
				sampled <- peak
				return
			case <-t.C:
			}
		}
	}()
	res, err := run.Run(ctx, "run", "--config", cfgPath)
	close(stopSampling)
	r.sampledKiB = <-sampled
	r.thon = res.Elapsed
	if err != nil {
		return err
	}
	if res.Code != 0 {
		return fmt.Errorf("thon run failed (daemon log %s): %s", d.Log, res)
	}
	if o.verbose {
		fmt.Fprintf(os.Stderr, "  thon run stderr:\n%s", res.Stderr)
	}
	if want := fmt.Sprintf("%d created", len(users)); !strings.Contains(res.Stderr, want) {
		return fmt.Errorf("thon run did not report %q: %s", want, res)
	}
	if r.hwmKiB, err = benchkit.ProcStatusKiB(d.PID, "VmHWM"); err != nil {
		return fmt.Errorf("daemon memory: %w", err)
	}

	if _, err := run.OK(ctx, "cleanup", "--volumes", "--yes", "--config", cfgPath); err != nil {
		return err
	}
	if _, err := run.OK(ctx, "down", "--config", cfgPath); err != nil {
		return err
	}
	if !d.Wait(15 * time.Second) {
		return fmt.Errorf("thon down returned but the daemon (pid %d) still runs after 15s", d.PID)
	}
	if _, err := cli.NetworkRemove(ctx, inst, client.NetworkRemoveOptions{}); err != nil {
		return fmt.Errorf("remove THON's network %s: %w", inst, err)
	}
	return nil
}
