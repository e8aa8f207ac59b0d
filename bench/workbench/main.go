// Command workbench measures THON with the real participant image —
// code-server, VS Code in the browser — for the figures of the participant
// image issue:
//
//  1. the image: its size (goal < 1500 MB) and the offline build
//     (internal/imagebuild, what `thon setup image --offline` runs): warm,
//     the image up to date (Rebuild false: it is found cached), and, only
//     with -cold, cold: a fresh cache directory, so debootstrap, apt and npm
//     fetch everything again (about 6 minutes on 2 quiet cores, ~1.2 GB of downloads; into a
//     throwaway tag, removed afterwards);
//  2. bringing N participants up (10): the time from `thon run` (the real
//     CLI; `thon serve` started beforehand) to each participant's workbench
//     answering — code-server's /healthz 200 at the sandbox's endpoint, then
//     GET / there following code-server's redirect to ?folder=… is the VS
//     Code workbench page — and the same page through the front door with
//     the participant's own session (an access link opened by a client that
//     trusts only THON's CA); per participant, p50/p95/max and the last one;
//     and the daemon's peak memory meanwhile;
//  3. the baseline, measured in the same run before THON: the same N
//     containers started directly on the Engine API, same concurrency,
//     limits, volume and network settings, timed to the same workbench page
//     at the same poll interval.
//
// It is a report: it exits 0 whether the image size goal is met or not, and
// non-zero only when something failed to run. Everything it creates on the
// engine carries a unique name prefix (tbw…) and is removed at the end, also
// after an error or Ctrl-C.
//
//	go run ./bench/workbench                # 10 participants, the warm build
//	go run ./bench/workbench -cold          # and the cold build (minutes)
//	go run ./bench/workbench -n 4 -baseline=false
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
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
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
	thonclient "github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/daemon"
	"github.com/thon-dev/thon/internal/imagebuild"
	"github.com/thon-dev/thon/internal/testenv"
)

// Goals.
const goalImageMB = 1500.0 // image size, MB of 10^6 bytes as the engine counts

// What code-server's workbench page holds (GET / after its redirect to
// ?folder=…): the web configuration VS Code boots from, and its script.
var workbenchMarkers = []string{`id="vscode-workbench-web-configuration"`, "workbench.js"}

const (
	groups     = 2
	port       = 8080
	healthPath = "/healthz"
	iccOption  = "com.docker.network.bridge.enable_icc"
)

type options struct {
	n, concurrency int
	image          string
	cold, baseline bool
	cpu            float64
	memoryMiB      int
	pids           int
	poll, timeout  time.Duration
	verbose        bool

	settle      time.Duration // idle time before memory and status are read
	statusRuns  int           // `thon status` runs timed
	wake        int           // participants put to sleep and woken at once
	storm       int           // clients of the login storm (0: none)
	stormRounds int
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 10, "participants")
	flag.IntVar(&o.concurrency, "concurrency", 8, "sandboxes started at a time (sandbox.concurrency; THON's default is 8)")
	flag.StringVar(&o.image, "image", imagebuild.DefaultTag, "the participant image; built offline first unless up to date")
	flag.BoolVar(&o.cold, "cold", false, "also time a cold offline build: a fresh cache directory, everything downloaded again (about 6 minutes on 2 quiet cores, ~1.2 GB), into a throwaway tag")
	flag.BoolVar(&o.baseline, "baseline", true, "also start the same containers directly on the engine, as the baseline")
	flag.Float64Var(&o.cpu, "cpu", 1, "sandbox CPU limit (cores)")
	flag.IntVar(&o.memoryMiB, "memory", 1024, "sandbox memory limit (MiB)")
	flag.IntVar(&o.pids, "pids", 512, "sandbox process limit")
	flag.DurationVar(&o.poll, "poll", 100*time.Millisecond, "interval between two probes of one workbench (both sides alike)")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "longest wait for one workbench (sandbox.startup_timeout)")
	flag.BoolVar(&o.verbose, "v", false, "show the image build's steps and thon run's output")
	flag.DurationVar(&o.settle, "settle", 30*time.Second, "after every workbench answered: idle time before the memory per participant and `thon status` are measured")
	flag.IntVar(&o.statusRuns, "status-runs", 5, "`thon status -o wide` runs timed once everyone is up (0: none)")
	flag.IntVar(&o.wake, "wake", 0, "the last W participants form a group with idle_timeout 5m (THON's least): once asleep, all are visited at once and timed to their IDE; the baseline stops and starts the same containers (takes 5-6 minutes more)")
	flag.IntVar(&o.storm, "storm", 0, "login storm: this many clients (one per participant, cycling) load the real workbench at once — the page, every asset Chromium fetched for it, over HTTP/2, and its WebSocket — through THON and through nginx in front of the same sandboxes (needs chromium and nginx)")
	flag.IntVar(&o.stormRounds, "storm-rounds", 2, "login storm rounds; THON and nginx take turns at going first")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./bench/workbench [flags]\n\n"+
			"Builds (or finds) the participant image, brings N participants up with\n"+
			"`thon run` and times each workbench (code-server's page) answering, directly\n"+
			"and through the front door, against the same containers started on the\n"+
			"engine. Goal: image < %.0f MB.\n\nFlags:\n", goalImageMB)
		flag.PrintDefaults()
	}
	flag.Parse()
	if o.n < 1 || o.concurrency < 1 || o.poll <= 0 || o.timeout <= 0 || o.cpu <= 0 || o.memoryMiB < 64 || o.pids < 16 {
		fmt.Fprintln(os.Stderr, "workbench: -n, -concurrency, -poll, -timeout and -cpu must be positive, -memory >= 64, -pids >= 16")
		os.Exit(2)
	}
	if o.wake < 0 || o.wake > o.n || o.storm < 0 || o.stormRounds < 1 || o.statusRuns < 0 || o.settle < 0 {
		fmt.Fprintln(os.Stderr, "workbench: -wake must be within 0..-n; -storm, -status-runs and -settle must not be negative, -storm-rounds positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted (%w); everything it created was removed", err)
		}
		fmt.Fprintln(os.Stderr, "workbench:", err)
		os.Exit(1)
	}
}

// times is when each participant's workbench answered, since the start.
type times map[string]time.Duration

type report struct {
	image              imagebuild.Result
	built              *imagebuild.Result // a build this run had to make (the image was out of date)
	warm               imagebuild.Result
	cold               *imagebuild.Result
	users              []string
	baseline           times
	baselineAll        time.Duration
	endpoint, front    times
	thonRun            time.Duration
	idleKiB, peakKiB   int64
	hwmKiB             int64
	frontDoor, created string

	idle        idleFigures
	wakeBase    times // the baseline's wake storm: stopped containers started again
	wakeBaseAll time.Duration
	wake        wakeFigures
	storm       []stormRound
	stormAssets capture
}

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
	if o.storm > 0 { // before minutes of set-up, not after
		if _, err := chromiumPath(); err != nil {
			return err
		}
		if _, _, err := findStormNginx(); err != nil {
			return err
		}
	}
	tmp, err := os.MkdirTemp("", "thon-bench-workbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	prefix := "tbw" + benchkit.RandHex(4)
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

	var r report
	// 1. The image.
	if err := images(ctx, cli, o, prefix, tmp, &r); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "Building thon...")
	bin, err := benchkit.BuildThon(ctx, root, tmp)
	if err != nil {
		return err
	}
	r.users = userNames(o.n)

	// An untimed warm-up: one workbench started directly, so neither side
	// pays alone for cold caches (the image's files, the first bridge).
	fmt.Fprintln(os.Stderr, "warm-up: one workbench on the engine, not timed...")
	if _, err := runBaseline(ctx, cli, o, prefix+"-w", r.users[:1], false); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	// 3. The baseline.
	if o.baseline {
		fmt.Fprintf(os.Stderr, "baseline: %d workbenches straight on the Engine API...\n", o.n)
		b, err := runBaseline(ctx, cli, o, prefix+"-b", r.users, true)
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		r.baseline, r.baselineAll, r.wakeBase, r.wakeBaseAll = b.up, b.upAll, b.woken, b.wakeAll
	}
	// 2. THON.
	fmt.Fprintf(os.Stderr, "thon run: %d participants...\n", o.n)
	err = runThon(ctx, cli, o, bin, filepath.Join(tmp, "event"), prefix+"-t", &r)
	if err == nil || len(r.front) == len(r.users) {
		// Everyone came up: what was measured is reported, also when a
		// later phase failed.
		printReport(os.Stdout, o, prefix, &r)
	}
	return err
}

// --- the image ---

// images finds the image up to date (or builds it), measures the warm
// build, and with -cold the cold one.
func images(ctx context.Context, cli *client.Client, o options, prefix, tmp string, r *report) error {
	progress := func(step string, done, total int) {
		if o.verbose {
			fmt.Fprintf(os.Stderr, "  image [%d/%d] %s\n", done, total, step)
		}
	}
	fmt.Fprintf(os.Stderr, "image %s: offline build, or the image as it is when up to date...\n", o.image)
	res, err := imagebuild.Build(ctx, imagebuild.Options{Tag: o.image, Offline: true}, progress)
	if err != nil {
		return fmt.Errorf("build the participant image: %w", err)
	}
	if !res.Cached {
		fmt.Fprintf(os.Stderr, "  the image was out of date: built in %s\n", res.Took.Round(time.Second))
		r.built = &res
	}
	// Warm: what a second `thon setup image` costs.
	if r.warm, err = imagebuild.Build(ctx, imagebuild.Options{Tag: o.image, Offline: true}, progress); err != nil {
		return fmt.Errorf("build the participant image again: %w", err)
	}
	if !r.warm.Cached {
		return fmt.Errorf("the second build of %s was not found cached: %+v", o.image, r.warm)
	}
	r.image = r.warm
	if o.cold {
		c, err := coldBuild(ctx, cli, o, prefix, tmp)
		if err != nil {
			return fmt.Errorf("cold build: %w", err)
		}
		r.cold = &c
	}
	return nil
}

// coldBuild builds the image offline from nothing: a fresh cache directory
// (no root file system, no .deb or npm cache) and Rebuild, into a throwaway
// tag. Afterwards the tag is removed and the imported base, which the
// build re-imports under the same name, is put back as it was, so the
// engine holds what it held before.
func coldBuild(ctx context.Context, cli *client.Client, o options, prefix, tmp string) (imagebuild.Result, error) {
	cache, err := os.MkdirTemp("/var/tmp", "thon-bench-cold-")
	if err != nil {
		return imagebuild.Result{}, err
	}
	defer os.RemoveAll(cache)
	bases, err := baseImages(ctx, cli)
	if err != nil {
		return imagebuild.Result{}, err
	}
	logPath := filepath.Join(tmp, "cold-build.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return imagebuild.Result{}, err
	}
	defer logf.Close()
	tag := "thon/sandbox-bench:" + prefix
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		restoreBases(cctx, cli, tag, bases)
	}()
	fmt.Fprintf(os.Stderr, "cold build into %s with the fresh cache %s (log %s)...\n", tag, cache, logPath)
	t0 := time.Now()
	return imagebuild.Build(ctx, imagebuild.Options{Tag: tag, CacheDir: cache, Offline: true, Rebuild: true, Log: logf},
		func(step string, done, total int) {
			fmt.Fprintf(os.Stderr, "  %6s [%d/%d] %s\n", time.Since(t0).Round(time.Second), done, total, step)
		})
}

// baseImages maps each tag of an imported base to its image ID.
func baseImages(ctx context.Context, cli *client.Client) (map[string]string, error) {
	list, err := cli.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("reference", imagebuild.BaseRepository)})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := map[string]string{}
	for _, im := range list.Items {
		for _, t := range im.RepoTags {
			out[t] = im.ID
		}
	}
	return out, nil
}

// restoreBases removes the cold build's image, points each base tag back
// at the image it named before (the build re-imports its own base under
// the same name, and untags other bases), and removes the base images the
// cold build imported.
func restoreBases(ctx context.Context, cli *client.Client, tag string, before map[string]string) {
	if _, err := cli.ImageRemove(ctx, tag, client.ImageRemoveOptions{PruneChildren: true}); err != nil {
		fmt.Fprintf(os.Stderr, "cleanup: remove %s: %v\n", tag, err)
	}
	now, err := baseImages(ctx, cli)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cleanup: %v\n", err)
		return
	}
	kept := map[string]bool{}
	for t, id := range before {
		kept[id] = true
		if now[t] == id {
			continue
		}
		if _, err := cli.ImageTag(ctx, client.ImageTagOptions{Source: id, Target: t}); err != nil {
			fmt.Fprintf(os.Stderr, "cleanup: tag %s as %s again: %v\n", id, t, err)
		}
	}
	for t, id := range now {
		if kept[id] {
			continue
		}
		if _, err := cli.ImageRemove(ctx, id, client.ImageRemoveOptions{PruneChildren: true}); err != nil {
			fmt.Fprintf(os.Stderr, "cleanup: remove the cold build's base %s (%s): %v\n", t, id, err)
		}
	}
}

// --- probing a workbench ---

// prober asks code-server whether its workbench answers.
type prober struct {
	hc   *http.Client
	poll time.Duration
}

func newProber(o options) *prober {
	return &prober{poll: o.poll, hc: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
}

// waitEndpoint polls http://addr: /healthz until 200, then GET / (code-server
// redirects to ./?folder=…) until it is the workbench page.
func (p *prober) waitEndpoint(ctx context.Context, addr string) error {
	base := "http://" + addr
	if err := p.until(ctx, func() bool { code, _ := p.get(ctx, p.hc, base+healthPath); return code == http.StatusOK }); err != nil {
		return fmt.Errorf("%s%s never answered 200: %w", base, healthPath, err)
	}
	var last string
	err := p.until(ctx, func() bool {
		code, body := p.get(ctx, p.hc, base+"/")
		last = fmt.Sprintf("%d %.200q", code, body)
		return code == http.StatusOK && isWorkbench(body)
	})
	if err != nil {
		return fmt.Errorf("GET %s/ never was the workbench (last: %s): %w", base, last, err)
	}
	return nil
}

func (p *prober) until(ctx context.Context, ok func() bool) error {
	for {
		if ok() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(p.poll):
		}
	}
}

func (p *prober) get(ctx context.Context, hc *http.Client, u string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err.Error()
	}
	// A page load, as a browser asks for it (the front door wakes a
	// sleeping IDE for a page load only, not for a script's request).
	req.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

func isWorkbench(body string) bool {
	for _, m := range workbenchMarkers {
		if !strings.Contains(body, m) {
			return false
		}
	}
	return true
}

// --- the baseline: the same containers, straight on the Engine API ---

// baseline is what the engine alone did: when each workbench answered
// (since the network's creation) and the wall time, and, with -wake, the
// same for the last -wake containers stopped and started again.
type baseline struct {
	up, woken      times
	upAll, wakeAll time.Duration
}

// runBaseline makes an ICC-free bridge network, then per user (at most
// o.concurrency at a time) a named volume and a container configured like
// THON's sandbox, starts it and probes its workbench. With wake, it then
// stops the last o.wake containers (not timed) and starts them again, at
// most o.concurrency at a time, timed to their workbenches. It removes
// everything afterwards (not timed).
func runBaseline(ctx context.Context, cli *client.Client, o options, pfx string, users []string, wake bool) (baseline, error) {
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if _, err := benchkit.CleanupPrefix(cctx, cli, pfx); err != nil {
			fmt.Fprintf(os.Stderr, "baseline cleanup %s: %v\n", pfx, err)
		}
	}()
	var b baseline
	p := newProber(o)
	start := time.Now()
	nres, err := cli.NetworkCreate(ctx, pfx, client.NetworkCreateOptions{
		Driver: "bridge", Options: map[string]string{iccOption: "false"}, Labels: map[string]string{"io.thon.bench": "workbench"},
	})
	if err != nil {
		return b, fmt.Errorf("create network %s: %w", pfx, err)
	}
	ni, err := cli.NetworkInspect(ctx, nres.ID, client.NetworkInspectOptions{})
	if err != nil {
		return b, fmt.Errorf("inspect network %s: %w", pfx, err)
	}
	routable := benchkit.Routable(ni.Network.IPAM.Config)
	ids := make([]string, len(users))
	b.up, b.upAll, err = eachAtMost(ctx, start, o.concurrency, users, func(i int, u string) (err error) {
		ids[i], err = startOne(ctx, cli, p, o, pfx, u, o.group(i), routable)
		return err
	})
	if err != nil || !wake || o.wake == 0 {
		return b, err
	}
	sleepers := users[len(users)-o.wake:]
	fmt.Fprintf(os.Stderr, "baseline: %d containers stopped, then started again at once...\n", len(sleepers))
	if _, _, err := eachAtMost(ctx, time.Now(), len(sleepers), sleepers, func(i int, u string) error {
		_, err := cli.ContainerStop(ctx, ids[len(users)-o.wake+i], client.ContainerStopOptions{})
		return err
	}); err != nil {
		return b, fmt.Errorf("stop: %w", err)
	}
	b.woken, b.wakeAll, err = eachAtMost(ctx, time.Now(), o.concurrency, sleepers, func(i int, u string) error {
		id := ids[len(users)-o.wake+i]
		if _, err := cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
			return fmt.Errorf("start container: %w", err)
		}
		return waitContainer(ctx, cli, p, o, pfx, id, routable)
	})
	return b, err
}

// eachAtMost runs do for every user, at most n at a time, and says when
// each one returned nil and when the last returned, since start.
func eachAtMost(ctx context.Context, start time.Time, n int, users []string, do func(i int, user string) error) (times, time.Duration, error) {
	got := times{}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	sem := make(chan struct{}, n)
	for i, u := range users {
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := do(i, u)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", u, err))
				return
			}
			got[u] = time.Since(start)
		}()
	}
	wg.Wait()
	return got, time.Since(start), cmp.Or(ctx.Err(), errors.Join(errs...))
}

// startOne makes one sandbox the way internal/sandbox/docker does (name
// scheme, env, limits, security options, workspace volume, network) and
// waits for its workbench.
func startOne(ctx context.Context, cli *client.Client, p *prober, o options, pfx, user, group string, routable bool) (string, error) {
	vol := pfx + "-ws-" + user
	if _, err := cli.VolumeCreate(ctx, client.VolumeCreateOptions{Name: vol, Driver: "local", Labels: map[string]string{"io.thon.bench": "workbench"}}); err != nil {
		return "", fmt.Errorf("create volume: %w", err)
	}
	ws := "/workspace/" + group + "/" + user
	env := map[string]string{"THON_USER": user, "THON_GROUP": group, "THON_WORKSPACE": ws, "PORT": strconv.Itoa(port)}
	var envList []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		envList = append(envList, k+"="+env[k])
	}
	pt, _ := network.PortFrom(port, network.TCP)
	useInit := true
	pids := int64(o.pids)
	mem := int64(o.memoryMiB) << 20
	hc := &container.HostConfig{
		NetworkMode:   container.NetworkMode(pfx),
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		Init:          &useInit,
		SecurityOpt:   []string{"no-new-privileges:true"},
		CapDrop:       []string{"NET_RAW"},
		ExtraHosts:    []string{"host.docker.internal:host-gateway"},
		Mounts:        []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: ws}},
		Resources:     container.Resources{NanoCPUs: int64(o.cpu * 1e9), Memory: mem, MemorySwap: mem, PidsLimit: &pids},
	}
	if !routable {
		hc.PortBindings = network.PortMap{pt: {{HostIP: netip.MustParseAddr("127.0.0.1")}}}
	}
	res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: pfx + "-" + group + "-" + user,
		Config: &container.Config{
			Image: o.image, Hostname: user, Env: envList, WorkingDir: ws,
			ExposedPorts: network.PortSet{pt: {}},
			Labels:       map[string]string{"io.thon.bench": "workbench", "io.thon.user": user, "io.thon.group": group},
		},
		HostConfig: hc,
	})
	if err != nil {
		return "", fmt.Errorf("create container: %w", err)
	}
	if _, err := cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		return "", fmt.Errorf("start container: %w", err)
	}
	return res.ID, waitContainer(ctx, cli, p, o, pfx, res.ID, routable)
}

// waitContainer finds a started container's endpoint and waits for its
// workbench there.
func waitContainer(ctx context.Context, cli *client.Client, p *prober, o options, pfx, id string, routable bool) error {
	ins, err := cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect container: %w", err)
	}
	pt, _ := network.PortFrom(port, network.TCP)
	addr, err := benchkit.Endpoint(ins.Container, pfx, pt, routable)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	return p.waitEndpoint(wctx, addr)
}

// --- THON: the real CLI against the real daemon ---

// runThon writes thon.yaml, starts `thon serve` (THON_INSTANCE=inst), then
// runs `thon run` while, from the same instant, it probes every
// participant's workbench at the endpoint the API reports and through the
// front door, and samples the daemon's memory. Then it removes everything
// with `thon cleanup --volumes --yes`, `thon down` and the network.
func runThon(ctx context.Context, cli *client.Client, o options, bin, dir, inst string, r *report) (err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfgPath, listen, err := writeConfig(dir, o, r.users)
	if err != nil {
		return err
	}
	run := benchkit.Runner{Bin: bin, Dir: dir, Env: append(os.Environ(), "THON_INSTANCE="+inst, "HOME="+dir)}
	d, err := benchkit.StartDaemon(ctx, run, cfgPath, listen)
	if err != nil {
		return err
	}
	defer func() {
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
	dataDir := filepath.Join(dir, "data")
	tok, err := os.ReadFile(filepath.Join(dataDir, daemon.TokenFile))
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	api := thonclient.New(d.URL, strings.TrimSpace(string(tok)))
	pem, err := os.ReadFile(filepath.Join(dataDir, "ca", "ca.crt"))
	if err != nil {
		return fmt.Errorf("THON's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return errors.New("THON's ca.crt holds no certificate")
	}
	if r.idleKiB, err = benchkit.ProcStatusKiB(d.PID, "VmRSS"); err != nil {
		return fmt.Errorf("daemon memory: %w", err)
	}

	pctx, cancel := context.WithTimeout(ctx, o.timeout+time.Minute)
	defer cancel()
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

	w := &watch{api: api, p: newProber(o), pool: pool, endpoints: map[string]string{}, users: len(r.users), start: time.Now(),
		endpoint: times{}, front: times{}}
	var probes sync.WaitGroup
	probes.Go(func() { w.pollAPI(pctx) })
	var mu sync.Mutex
	var perrs []error
	fail := func(err error) { mu.Lock(); perrs = append(perrs, err); mu.Unlock() }
	for _, u := range r.users {
		probes.Go(func() {
			if err := w.viaEndpoint(pctx, u); err != nil {
				fail(fmt.Errorf("%s, at the endpoint: %w", u, err))
			}
		})
		probes.Go(func() {
			if err := w.viaFrontDoor(pctx, u); err != nil {
				fail(fmt.Errorf("%s, through the front door: %w", u, err))
			}
		})
	}
	memBefore, err := memAvailableKiB()
	if err != nil {
		return err
	}
	res, runErr := run.Run(ctx, "run", "--config", cfgPath)
	r.thonRun = res.Elapsed
	if runErr == nil && res.Code != 0 {
		runErr = fmt.Errorf("thon run failed (daemon log %s): %s", d.Log, res)
	}
	if runErr != nil {
		cancel()
	}
	probes.Wait()
	close(stopSampling)
	r.peakKiB = <-sampled
	if runErr != nil {
		return runErr
	}
	if o.verbose {
		fmt.Fprintf(os.Stderr, "  thon run stdout:\n%s  thon run stderr:\n%s", res.Stdout, res.Stderr)
	}
	if err := errors.Join(perrs...); err != nil {
		return err
	}
	r.created = fmt.Sprintf("%d created", len(r.users))
	if !strings.Contains(res.Stderr, r.created) {
		return fmt.Errorf("thon run did not report %q: %s", r.created, res)
	}
	r.endpoint, r.front = w.endpoint, w.front
	if r.hwmKiB, err = benchkit.ProcStatusKiB(d.PID, "VmHWM"); err != nil {
		return fmt.Errorf("daemon memory: %w", err)
	}
	if info, err := api.Info(ctx); err == nil {
		r.frontDoor = info.FrontDoor
	}
	if err := measureIdle(ctx, cli, inst, o, run, cfgPath, api, memBefore, r); err != nil {
		return fmt.Errorf("idle participants: %w", err)
	}
	if o.wake > 0 {
		if err := wakeStorm(ctx, o, api, pool, w.start, r); err != nil {
			return fmt.Errorf("wake storm: %w", err)
		}
	}
	if o.storm > 0 {
		if err := runStorms(ctx, o, api, pool, dir, d.PID, r); err != nil {
			return err
		}
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

// writeConfig writes thon.yaml: a private data directory and API port, the
// front door on a free port in port mode with a random window of
// participant ports, the AI gateway on a free port, no LLM server, and
// the users in groups.
func writeConfig(dir string, o options, users []string) (cfgPath, listen string, err error) {
	var ports [3]int
	for i := range ports {
		if ports[i], err = benchkit.FreePort(); err != nil {
			return "", "", err
		}
	}
	// Participant ports somewhere in 20000-31999, below the kernel's
	// ephemeral ports (32768 and up).
	first := 20000 + rand.IntN(500)*20
	listen = fmt.Sprintf("127.0.0.1:%d", ports[0])
	var y strings.Builder
	fmt.Fprintf(&y, `server:
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
  port: %d
  health_path: %s
  startup_timeout: %s
  workspace: volume
  concurrency: %d
  limits: {cpu: %g, memory: %dMi, pids: %d}
llm:
  enabled: false
gateway:
  listen: 0.0.0.0:%d
groups:
`, filepath.Join(dir, "data"), listen, ports[1], first, first+max(19, len(users)-1), o.image, port, healthPath,
		o.timeout, o.concurrency, o.cpu, o.memoryMiB, o.pids, ports[2])
	byGroup := map[string][]string{}
	var order []string
	for i, u := range users {
		g := o.group(i)
		if _, ok := byGroup[g]; !ok {
			order = append(order, g)
		}
		byGroup[g] = append(byGroup[g], u)
	}
	for _, g := range order {
		if g == napGroup {
			// THON's shortest idle timeout; the daemon looks every 30 s.
			fmt.Fprintf(&y, "  %s:\n    idle_timeout: %s\n    users: [%s]\n", g, config.MinIdleTimeout, strings.Join(byGroup[g], ", "))
			continue
		}
		fmt.Fprintf(&y, "  %s: [%s]\n", g, strings.Join(byGroup[g], ", "))
	}
	cfgPath = filepath.Join(dir, "thon.yaml")
	return cfgPath, listen, os.WriteFile(cfgPath, []byte(y.String()), 0o644)
}

// watch probes every participant's workbench from the moment `thon run`
// starts.
type watch struct {
	api   *thonclient.Client
	p     *prober
	pool  *x509.CertPool
	start time.Time

	mu        sync.Mutex
	endpoints map[string]string // user → host:port, as the API reports it
	endpoint  times             // the workbench answered at the endpoint
	front     times             // … and through the front door
	users     int               // how many endpoints to learn
}

// pollAPI lists the sandboxes every 100ms and records their endpoints,
// until it knows every one.
func (w *watch) pollAPI(ctx context.Context) {
	for {
		if list, err := w.api.Sandboxes(ctx, nil, nil); err == nil {
			w.mu.Lock()
			for _, s := range list.Items {
				if s.State == "running" && s.Endpoint != "" {
					w.endpoints[s.User] = s.Endpoint
				}
			}
			w.mu.Unlock()
		}
		w.mu.Lock()
		all := len(w.endpoints) >= w.users
		w.mu.Unlock()
		if all {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// viaEndpoint waits for user's endpoint, then for the workbench there.
func (w *watch) viaEndpoint(ctx context.Context, user string) error {
	var addr string
	if err := w.p.until(ctx, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		addr = w.endpoints[user]
		return addr != ""
	}); err != nil {
		return fmt.Errorf("the API never reported a running sandbox with an endpoint: %w", err)
	}
	if err := w.p.waitEndpoint(ctx, addr); err != nil {
		return err
	}
	w.mu.Lock()
	w.endpoint[user] = time.Since(w.start)
	w.mu.Unlock()
	return nil
}

// viaFrontDoor signs in as user with an access link (issued again until
// the front door takes it: before `thon run` imported the user there is no
// one to issue it to) and polls the IDE's address with that session until
// it is the workbench page. Until the sandbox runs, the front door answers
// its waiting page.
func (w *watch) viaFrontDoor(ctx context.Context, user string) error {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: w.pool}, MaxIdleConnsPerHost: 4}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Jar: jar, Transport: tr, Timeout: 5 * time.Second}
	var ide string
	var last string
	slow := &prober{hc: w.p.hc, poll: max(w.p.poll, 250*time.Millisecond)} // API calls: no need to hurry
	err := slow.until(ctx, func() bool {
		l, err := w.api.IssueLink(ctx, user)
		if err != nil || l.URL == "" {
			last = fmt.Sprintf("issue a link: %v", err)
			return false
		}
		u, err := url.Parse(l.URL)
		if err != nil {
			last = err.Error()
			return false
		}
		code, _ := w.p.get(ctx, hc, l.Link)
		for _, c := range jar.Cookies(u) {
			if c.Name == "thon_"+user {
				ide = l.URL
				return true
			}
		}
		last = fmt.Sprintf("opening the link answered %d and set no session cookie", code)
		return false
	})
	if err != nil {
		return fmt.Errorf("no session (%s): %w", last, err)
	}
	err = w.p.until(ctx, func() bool {
		code, body := w.p.get(ctx, hc, ide)
		last = fmt.Sprintf("%d %.200q", code, body)
		return code == http.StatusOK && isWorkbench(body)
	})
	if err != nil {
		return fmt.Errorf("%s never was the workbench (last: %s): %w", ide, last, err)
	}
	w.mu.Lock()
	w.front[user] = time.Since(w.start)
	w.mu.Unlock()
	return nil
}

func userNames(n int) []string {
	wd := len(strconv.Itoa(n))
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("u%0*d", wd, i+1)
	}
	return out
}

// napGroup is the group of the participants -wake puts to sleep.
const napGroup = "nap"

// group is participant i's group: the first n-wake in two groups, the
// last -wake in napGroup.
func (o options) group(i int) string {
	awake := o.n - o.wake
	if i >= awake {
		return napGroup
	}
	per := (awake + groups - 1) / groups
	return fmt.Sprintf("g%d", i/per+1)
}

// --- the report ---

func printReport(w io.Writer, o options, prefix string, r *report) {
	fmt.Fprintf(w, "workbench: %d participants, concurrency %d, image %s (code-server %s, %s build)\n",
		o.n, o.concurrency, r.image.Image, r.image.CodeServerVersion, r.image.Mode)
	fmt.Fprintf(w, "limits: cpu %g, memory %dMi, pids %d; workspace: a named volume each; network: bridge, ICC off; poll %s; prefix %s\n",
		o.cpu, o.memoryMiB, o.pids, o.poll, prefix)
	fmt.Fprintf(w, "a workbench answers: /healthz 200, then GET / (after code-server's redirect) is the VS Code page; times from the start of `thon run` (baseline: of the first container)\n\n")

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "participant\tengine alone s\tthon: endpoint s\tthon: front door s\t")
	for _, u := range r.users {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", u, secs(r.baseline, u), secs(r.endpoint, u), secs(r.front, u))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "to a workbench\tp50 s\tp95 s\tmax s\t")
	row := func(name string, t times) {
		if len(t) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t\n", name)
			return
		}
		ds := slices.Collect(maps.Values(t))
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t\n", name, benchkit.Percentile(ds, 50).Seconds(), benchkit.Percentile(ds, 95).Seconds(), benchkit.Percentile(ds, 100).Seconds())
	}
	row("engine alone (baseline)", r.baseline)
	row("thon run: endpoint", r.endpoint)
	row("thon run: front door", r.front)
	tw.Flush()
	fmt.Fprintln(w)

	fmt.Fprintf(w, "`thon run` exited after:       %.2f s (%s, every IDE healthy)\n", r.thonRun.Seconds(), r.created)
	if len(r.baseline) > 0 && len(r.front) > 0 {
		lastFront := slices.Max(slices.Collect(maps.Values(r.front)))
		fmt.Fprintf(w, "all workbenches up:            engine alone %.2f s, thon (front door) %.2f s: ratio %.2f\n",
			r.baselineAll.Seconds(), lastFront.Seconds(), lastFront.Seconds()/r.baselineAll.Seconds())
	}
	fmt.Fprintf(w, "daemon RSS:                    idle %s MiB, peak %s MiB (sampled every 50ms), VmHWM %s MiB\n",
		benchkit.MiB(r.idleKiB), benchkit.MiB(r.peakKiB), benchkit.MiB(r.hwmKiB))
	printPhases(w, o, r)
	mb := float64(r.image.Size) / 1e6
	fmt.Fprintf(w, "image size:                    %.1f MB (%.1f MiB)  (goal < %.0f MB)  %s\n", mb, float64(r.image.Size)/(1<<20), goalImageMB, benchkit.Verdict(mb < goalImageMB))
	if r.built != nil {
		fmt.Fprintf(w, "offline build, image outdated: %.1f s (from the cached root file system)\n", r.built.Took.Seconds())
	}
	fmt.Fprintf(w, "offline build, warm:           %s ms (up to date: cached=%v)\n", benchkit.Ms(r.warm.Took), r.warm.Cached)
	if r.cold != nil {
		fmt.Fprintf(w, "offline build, cold:           %.1f s (fresh cache: debootstrap, apt, npm and native modules; %.1f MB)\n", r.cold.Took.Seconds(), float64(r.cold.Size)/1e6)
	} else {
		fmt.Fprintf(w, "offline build, cold:           not measured (-cold: about 6 minutes on 2 quiet cores, ~1.2 GB of downloads)\n")
	}
}

func secs(t times, u string) string {
	d, ok := t[u]
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.2f", d.Seconds())
}
