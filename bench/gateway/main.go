// Command gateway measures THON's AI gateway against nginx proxy_pass and
// against the model server reached directly, all in front of the same
// OpenAI-compatible upstream test server, in one run on this machine:
//
//	A. added latency over direct at a fixed 2,000 requests/s (open loop):
//	   p50 and p99 of each path and what each adds to direct
//	   (goals: added p50 < 200 µs, added p99 < 1 ms);
//	B. maximum throughput (closed loop, N connections): gateway/nginx
//	   (goal ≥ 0.7×);
//
// for non-streaming and for streaming (SSE) chat completions, with the
// gateway's counters in memory and in Redis. The gateway runs with
// authentication (a few hundred keys), every limit on (set too high to
// refuse anything), usage accounting into a counting sink, and Prometheus
// metrics, served as the daemon serves it. -paths adds a reference, a bare
// Go net/http forwarder, to tell the gateway's own cost from net/http's.
//
// The load generator (this process), the upstream, nginx, each gateway and
// redis-server are separate processes: the upstream and the gateways are
// this executable started again with a hidden flag. Everything runs on
// loopback. It is a report: it exits 0 whether the goals are met or not,
// and non-zero only when something failed to run. Every process and
// temporary directory it made is removed at the end, after an error and on
// Ctrl-C too.
//
//	go run ./bench/gateway
//	go run ./bench/gateway -rounds 1 -rate-duration 2s -duration 2s   # quicker
//	go run ./bench/gateway -paths direct,nginx,forwarder,memory -cpuprofile /tmp/prof
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/thon-dev/thon/bench/internal/benchkit"
	"github.com/thon-dev/thon/internal/gateway"
)

// Goals.
const (
	goalAddedP50   = 200 * time.Microsecond
	goalAddedP99   = time.Millisecond
	goalThroughput = 0.7
)

// progress receives the running commentary; the report goes to stdout.
var progress io.Writer = os.Stderr

type options struct {
	rate                     float64
	rateConns                int
	rateWarmup, rateDuration time.Duration
	conns                    int
	warmup, duration         time.Duration
	rounds                   int
	keys                     int
	promptTokens, tokens     int
	modelLimits              bool
	paths                    [numPaths]bool
	profileDir               string
	timeout                  time.Duration
	verbose                  bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == serveFlag {
		serveMain(os.Args[2:])
		return
	}
	var o options
	flag.Float64Var(&o.rate, "rate", 2000, "A: fixed request rate (requests/s) of the latency runs")
	flag.IntVar(&o.rateConns, "rate-conns", 50, "A: keep-alive connections the fixed rate is spread over")
	flag.DurationVar(&o.rateWarmup, "rate-warmup", time.Second, "A: untimed load before each latency run")
	flag.DurationVar(&o.rateDuration, "rate-duration", 5*time.Second, "A: timed length of each latency run")
	flag.IntVar(&o.conns, "conns", 32, "B: concurrent keep-alive connections of the throughput runs")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "B: untimed load before each throughput run")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "B: timed length of each throughput run")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each measures every path, the order reversed every other round")
	flag.IntVar(&o.keys, "keys", 300, "gateway keys; requests go round-robin over them")
	flag.IntVar(&o.promptTokens, "prompt-tokens", 24, "prompt tokens the upstream reports per request")
	flag.IntVar(&o.tokens, "tokens", 5, "completion tokens per request (a stream carries one event per token, plus the role, stop and [DONE] events)")
	flag.BoolVar(&o.modelLimits, "model-limits", true, "also give the gateway per-model limits for the model used (more counters per request)")
	pathList := flag.String("paths", "direct,nginx,memory,redis", "paths to measure: direct, nginx, memory (the gateway with in-memory counters), redis (with Redis counters; needs redis-server),\n"+
		"forwarder (a reference, not measured by default: a bare Go net/http server + http.Client forwarding requests, the gateway's plumbing without its logic)")
	flag.StringVar(&o.profileDir, "cpuprofile", "", "write a CPU profile of each gateway's first-round throughput runs into this directory (go tool pprof -top FILE)")
	flag.DurationVar(&o.timeout, "timeout", 20*time.Minute, "give up after this long")
	flag.BoolVar(&o.verbose, "v", false, "also print every round's figures")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./bench/gateway [flags]\n\n"+
			"Compares THON's AI gateway (auth, limits, usage; counters in memory and in Redis)\n"+
			"with nginx proxy_pass and with direct requests, in front of the same OpenAI-compatible\n"+
			"test upstream: added latency at a fixed rate and maximum throughput, for JSON and\n"+
			"streaming chat completions. Needs nginx and redis-server (apt-get install -y nginx redis-server).\n"+
			"Goals: added p50 < %s, added p99 < %s at the fixed rate; throughput >= %.1f× nginx.\n\nFlags:\n",
			goalAddedP50, goalAddedP99, goalThroughput)
		flag.PrintDefaults()
	}
	flag.Parse()
	for _, name := range strings.Split(*pathList, ",") {
		i := slices.Index(pathFlags[:], strings.TrimSpace(name))
		if i < 0 {
			fmt.Fprintf(os.Stderr, "gateway: -paths: unknown path %q (want some of %s)\n", name, strings.Join(pathFlags[:], ", "))
			os.Exit(2)
		}
		o.paths[i] = true
	}
	if o.rate <= 0 || o.rateConns < 1 || o.rateWarmup < 0 || o.rateDuration <= 0 || o.conns < 1 || o.warmup < 0 ||
		o.duration <= 0 || o.rounds < 1 || o.keys < 1 || o.tokens < 1 || o.promptTokens < 1 || o.timeout <= 0 {
		fmt.Fprintln(os.Stderr, "gateway: -rate, -rate-conns, -rate-duration, -conns, -duration, -rounds, -keys, -tokens, -prompt-tokens and -timeout must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := runBench(ctx, o); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted or timed out (%w); every process it started was stopped and its files removed", err)
		}
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

// path indexes the targets.
type path int

const (
	pDirect path = iota
	pNginx
	pForwarder
	pGwMem
	pGwRedis
	numPaths
)

var pathNames = [numPaths]string{"direct", "nginx", "Go forwarder", "gateway, memory", "gateway, Redis"}

var pathFlags = [numPaths]string{"direct", "nginx", "forwarder", "memory", "redis"}

// env is everything started for the run.
type env struct {
	upstream     *server
	nginx        *server
	fwd          *server
	gwMem        *server
	gwRedis      *server
	redis        *server
	targets      []*target // by path; nil when not measured
	want         [numKinds]expect
	nginxVersion string
	nginxWorkers int
	redisVersion string
	sent         [numPaths]int // successful requests, warm-ups included
}

func runBench(ctx context.Context, o options) (err error) {
	var nginxBin, nginxVersion, redisBin string
	if o.paths[pNginx] {
		if nginxBin, nginxVersion, err = benchkit.FindNginx("this benchmark compares the gateway with it"); err != nil {
			return err
		}
	}
	if o.paths[pGwRedis] {
		if redisBin, err = exec.LookPath("redis-server"); err != nil {
			return errors.New(redisMissing)
		}
	}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
	}

	tmp, err := os.MkdirTemp("", "thon-bench-gateway-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// nginx's workers run as nobody when this runs as root.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}

	e := &env{nginxVersion: nginxVersion, targets: make([]*target, numPaths)}
	defer e.stopAll()
	e.want[kindStream].events = o.tokens + 3 // role, tokens, stop, [DONE]

	// Keys: written for the gateways, which keep only their hashes.
	secrets := make([]string, o.keys)
	for i := range secrets {
		secrets[i], _ = gateway.NewKey()
	}
	keysFile := filepath.Join(tmp, "keys")
	if err := os.WriteFile(keysFile, []byte(strings.Join(secrets, "\n")+"\n"), 0o600); err != nil {
		return err
	}

	fmt.Fprintln(progress, "Starting the upstream test server...")
	if e.upstream, err = startSelf(ctx, tmp, "upstream", "-prompt-tokens", fmt.Sprint(o.promptTokens), "-completion-tokens", fmt.Sprint(o.tokens)); err != nil {
		return err
	}
	upURL := "http://" + e.upstream.addr + "/v1"

	if o.paths[pNginx] {
		fmt.Fprintf(progress, "Starting nginx %s...\n", nginxVersion)
		if e.nginx, e.nginxWorkers, err = startNginx(ctx, nginxBin, filepath.Join(tmp, "nginx"), e.upstream.addr); err != nil {
			return err
		}
	}
	gwArgs := []string{"-upstream", upURL, "-keys-file", keysFile, fmt.Sprintf("-model-limits=%t", o.modelLimits)}
	if o.paths[pForwarder] {
		fmt.Fprintln(progress, "Starting the Go forwarder...")
		if e.fwd, err = startSelf(ctx, tmp, "forwarder", "-upstream", upURL); err != nil {
			return err
		}
	}
	if o.paths[pGwMem] {
		fmt.Fprintln(progress, "Starting the gateway (memory counters)...")
		if e.gwMem, err = startSelf(ctx, tmp, "gateway", gwArgs...); err != nil {
			return err
		}
	}
	if o.paths[pGwRedis] {
		e.redisVersion = redisVersion(redisBin)
		fmt.Fprintf(progress, "Starting redis-server %s and the gateway (Redis counters)...\n", e.redisVersion)
		if e.redis, err = startRedis(ctx, redisBin, filepath.Join(tmp, "redis")); err != nil {
			return err
		}
		dir := filepath.Join(tmp, "gw-redis")
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
		if e.gwRedis, err = startSelf(ctx, dir, "gateway", append(gwArgs, "-redis", "redis://"+e.redis.addr+"/0")...); err != nil {
			return err
		}
	}

	self := func(s *server) func() []int { return func() []int { return []int{s.PID()} } }
	mk := func(p path, addr string, proxy, side func() []int) {
		e.targets[p] = &target{name: pathNames[p], addr: addr, proxy: proxy, side: side, reqs: buildRequests(addr, secrets)}
	}
	if o.paths[pDirect] {
		mk(pDirect, e.upstream.addr, nil, nil)
	}
	if e.nginx != nil {
		mk(pNginx, e.nginx.addr, e.nginx.withChildren, nil)
	}
	if e.fwd != nil {
		mk(pForwarder, e.fwd.addr, self(e.fwd), nil)
	}
	if e.gwMem != nil {
		mk(pGwMem, e.gwMem.addr, self(e.gwMem), nil)
	}
	if e.gwRedis != nil {
		mk(pGwRedis, e.gwRedis.addr, self(e.gwRedis), self(e.redis))
	}
	if err := e.checks(ctx, secrets[0]); err != nil {
		return err
	}

	// Warm-up: every path and kind under the closed-loop load, untimed
	// (connection pools, key caches, Redis scripts, heap sizes).
	fmt.Fprintln(progress, "Warming up every path...")
	for _, p := range e.paths() {
		for k := range numKinds {
			if _, err := e.measure(ctx, o, p, k, 0, 0, time.Second); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
		}
	}

	var rounds []roundResult
	for r := 1; r <= o.rounds; r++ {
		rd, err := e.round(ctx, o, r)
		if err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		rounds = append(rounds, rd)
	}
	for _, s := range e.servers() {
		if s.Exited() {
			return fmt.Errorf("%s exited during the benchmark (%v):\n%s", s.Name, s.Err(), s.LogTail(20))
		}
	}
	usage, err := e.usage(ctx, o)
	if err != nil {
		return err
	}
	report(os.Stdout, o, e, rounds, usage)
	return nil
}

// paths lists the measured paths.
func (e *env) paths() []path {
	var ps []path
	for p := range numPaths {
		if e.targets[p] != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

func (e *env) servers() []*server {
	var out []*server
	for _, s := range []*server{e.gwRedis, e.gwMem, e.fwd, e.redis, e.nginx, e.upstream} {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// stopAll stops the gateways first (they flush usage, close Redis), then
// Redis, nginx and the upstream.
func (e *env) stopAll() {
	for _, s := range e.servers() {
		s.stop()
	}
}

// checks sends each kind once on every path with the full checks, and
// makes sure the gateways really authenticate and limit: an unknown key
// gets 401, a good one gets the X-RateLimit headers.
func (e *env) checks(ctx context.Context, secret string) error {
	for _, p := range e.paths() {
		if err := check(ctx, e.targets[p], e.want); err != nil {
			return err
		}
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	for _, p := range []path{pGwMem, pGwRedis} {
		t := e.targets[p]
		if t == nil {
			continue
		}
		for _, key := range []string{secret, gateway.KeyPrefix + "not-a-key"} {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+t.addr+"/v1/chat/completions", strings.NewReader(chatBody+"}"))
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if key == secret && (resp.StatusCode != http.StatusOK || resp.Header.Get("X-Ratelimit-Remaining-Requests") == "" ||
				resp.Header.Get("X-Ratelimit-Remaining-Tokens") == "") {
				return fmt.Errorf("%s: a request with a good key got %s and X-RateLimit headers %q / %q; want 200 with them", t.name,
					resp.Status, resp.Header.Get("X-Ratelimit-Remaining-Requests"), resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
			}
			if key != secret && resp.StatusCode != http.StatusUnauthorized {
				return fmt.Errorf("%s: a request with an unknown key got %s, want 401", t.name, resp.Status)
			}
		}
		// check's request of each kind and the one with the good key.
		e.sent[p] += int(numKinds) + 1
	}
	return nil
}

// measure runs one load on one path: open loop at rate (> 0) or closed
// loop (rate 0).
func (e *env) measure(ctx context.Context, o options, p path, k kind, rate float64, warmup, window time.Duration) (runResult, error) {
	spec := loadSpec{kind: k, want: e.want[k], conns: o.conns, warmup: warmup, window: window, upstream: e.upstream.PID()}
	if rate > 0 {
		spec.rate, spec.conns = rate, o.rateConns
	}
	res, sent, err := run(ctx, e.targets[p], spec)
	e.sent[p] += sent
	return res, err
}

// roundResult holds one round: [measurement][kind][path].
type roundResult struct {
	reversed bool
	lat      [numKinds][numPaths]*runResult // A: fixed rate
	tput     [numKinds][numPaths]*runResult // B: closed loop
}

func (e *env) round(ctx context.Context, o options, r int) (roundResult, error) {
	rd := roundResult{reversed: r%2 == 0}
	order := e.paths()
	if rd.reversed {
		slices.Reverse(order)
	}
	names := make([]string, len(order))
	for i, p := range order {
		names[i] = pathNames[p]
	}
	fmt.Fprintf(progress, "round %d of %d (%s)\n", r, o.rounds, strings.Join(names, ", "))
	for k := range numKinds {
		for _, p := range order {
			fmt.Fprintf(progress, "  A %s, %s: %.0f req/s for %s...", kindNames[k], pathNames[p], o.rate, o.rateWarmup+o.rateDuration)
			res, err := e.measure(ctx, o, p, k, o.rate, o.rateWarmup, o.rateDuration)
			if err != nil {
				fmt.Fprintln(progress)
				return rd, err
			}
			fmt.Fprintf(progress, " p50 %s, p99 %s ms\n", ms3(res.p(50)), ms3(res.p(99)))
			rd.lat[k][p] = &res
		}
		for _, p := range order {
			fmt.Fprintf(progress, "  B %s, %s: %d connections for %s...", kindNames[k], pathNames[p], o.conns, o.warmup+o.duration)
			var prof chan error
			if o.profileDir != "" && r == 1 && (p == pForwarder || p == pGwMem || p == pGwRedis) {
				prof = e.profile(ctx, o, p, k)
			}
			res, err := e.measure(ctx, o, p, k, 0, o.warmup, o.duration)
			if prof != nil {
				if perr := <-prof; perr != nil && err == nil {
					err = perr
				}
			}
			if err != nil {
				fmt.Fprintln(progress)
				return rd, err
			}
			fmt.Fprintf(progress, " %.0f req/s\n", res.rps())
			rd.tput[k][p] = &res
		}
	}
	return rd, nil
}

// profile fetches a CPU profile of a gateway over the timed window of the
// run about to start.
func (e *env) profile(ctx context.Context, o options, p path, k kind) chan error {
	s := map[path]*server{pForwarder: e.fwd, pGwMem: e.gwMem, pGwRedis: e.gwRedis}[p]
	name := fmt.Sprintf("%s-%s.pprof", map[path]string{pForwarder: "forwarder", pGwMem: "gateway-memory", pGwRedis: "gateway-redis"}[p], [numKinds]string{"chat", "stream"}[k])
	out := filepath.Join(o.profileDir, name)
	done := make(chan error, 1)
	go func() {
		sleepUntil(ctx, time.Now().Add(o.warmup+20*time.Millisecond))
		secs := max(int(o.duration.Seconds()), 1)
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", s.ctl, secs))
		if err != nil {
			done <- fmt.Errorf("CPU profile of %s: %w", pathNames[p], err)
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %.200s", resp.Status, b)
		}
		if err == nil {
			err = os.WriteFile(out, b, 0o644)
		}
		if err != nil {
			done <- fmt.Errorf("CPU profile of %s: %w", pathNames[p], err)
			return
		}
		fmt.Fprintf(progress, " [profile: %s]", out)
		done <- nil
	}()
	return done
}

// usageSeen is what a gateway's usage sink (and Redis) held at the end.
type usageSeen struct {
	sent       int
	counts     usageCounts
	redisKeys  string
	redisError error
}

// usage waits for the gateways' usage to be flushed (every second) and
// reads what their sinks counted, and how many keys Redis holds.
func (e *env) usage(ctx context.Context, o options) (map[path]usageSeen, error) {
	out := map[path]usageSeen{}
	sleepUntil(ctx, time.Now().Add(1500*time.Millisecond))
	for _, p := range []path{pGwMem, pGwRedis} {
		s := e.gwMem
		if p == pGwRedis {
			s = e.gwRedis
		}
		if s == nil {
			continue
		}
		resp, err := http.Get("http://" + s.ctl + "/usage")
		if err != nil {
			return nil, fmt.Errorf("%s: usage: %w", pathNames[p], err)
		}
		var u usageSeen
		err = json.NewDecoder(resp.Body).Decode(&u.counts)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: usage: %w", pathNames[p], err)
		}
		u.sent = e.sent[p]
		if p == pGwRedis {
			u.redisKeys, u.redisError = redisCommand(e.redis.addr, "DBSIZE")
			u.redisKeys = strings.TrimPrefix(u.redisKeys, ":")
		}
		out[p] = u
	}
	return out, ctx.Err()
}

// GOMAXPROCS of the children is the machine's: they all share it.
var numCPU = runtime.NumCPU()

func ms3(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }
