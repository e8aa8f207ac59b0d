// Command status measures how fast `thon status` answers with 500
// participants in the store (goal: p95 under 100 ms), and splits that time
// against two baselines measured in the same run: `thon --version` (the cost
// of starting the binary at all) and GET /api/v1/sandboxes on a kept-alive
// connection (the daemon's own share).
//
// The participants are imported through the API (POST /api/v1/import), not
// with `thon run`, so no container is started: status reads the store. It is
// a report: it exits 0 whether the goal is met or not, and non-zero only when
// something failed to run.
//
//	go run ./bench/status
//	go run ./bench/status -users 2000 -groups 20
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
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/thon-dev/thon/bench/internal/benchkit"
	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/daemon"
	"github.com/thon-dev/thon/internal/testenv"
)

// goal is the p95 latency `thon status` must stay under.
const goal = 100 * time.Millisecond

type options struct {
	users, groups, runs, warmup, requests int
}

func main() {
	var o options
	flag.IntVar(&o.users, "users", 500, "participants in the store")
	flag.IntVar(&o.groups, "groups", 10, "groups they are spread over")
	flag.IntVar(&o.runs, "runs", 30, "timed runs of each command")
	flag.IntVar(&o.warmup, "warmup", 3, "untimed runs of each command first")
	flag.IntVar(&o.requests, "requests", 200, "timed GET /api/v1/sandboxes requests on one kept-alive connection")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./bench/status [flags]\n\n"+
			"Imports participants into a fresh daemon and times `thon status` (table and\n"+
			"JSON) against `thon --version` and the bare API call. Goal: p95 < %s.\n\nFlags:\n", goal)
		flag.PrintDefaults()
	}
	flag.Parse()
	if o.users < 1 || o.groups < 1 || o.groups > o.users || o.runs < 1 || o.warmup < 0 || o.requests < 1 {
		fmt.Fprintln(os.Stderr, "status: -users, -groups, -runs and -requests must be positive (and groups <= users)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted (%w); everything it created was removed", err)
		}
		fmt.Fprintln(os.Stderr, "status:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	root, err := testenv.FindModuleRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "thon-bench-status-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintln(os.Stderr, "Building thon...")
	bin, err := benchkit.BuildThon(ctx, root, tmp)
	if err != nil {
		return err
	}

	// thon.yaml: the participants, a private data dir and port. Nothing is
	// started, so the image need not exist.
	port, err := benchkit.FreePort()
	if err != nil {
		return err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	dataDir := filepath.Join(tmp, "data")
	var y strings.Builder
	fmt.Fprintf(&y, "server:\n  data_dir: %s\n  listen: %s\nsandbox:\n  image: thon-test/sandboxd:unused\ngroups:\n", dataDir, listen)
	per := (o.users + o.groups - 1) / o.groups
	w := len(strconv.Itoa(o.users))
	for g := 0; g*per < o.users; g++ {
		var us []string
		for i := g * per; i < min((g+1)*per, o.users); i++ {
			us = append(us, fmt.Sprintf("user-%0*d", w, i+1))
		}
		fmt.Fprintf(&y, "  group-%02d: [%s]\n", g+1, strings.Join(us, ", "))
	}
	cfgPath := filepath.Join(tmp, "thon.yaml")
	if err := os.WriteFile(cfgPath, []byte(y.String()), 0o644); err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fmt.Errorf("load the generated thon.yaml: %w", err)
	}

	// A unique instance, so this daemon never sees another THON's sandboxes.
	inst := "tbt" + benchkit.RandHex(4)
	r := benchkit.Runner{Bin: bin, Dir: tmp, Env: append(os.Environ(), "THON_INSTANCE="+inst, "HOME="+tmp)}
	d, err := benchkit.StartDaemon(ctx, r, cfgPath, listen)
	if err != nil {
		return err
	}
	defer d.Stop()
	tok, err := os.ReadFile(filepath.Join(dataDir, daemon.TokenFile))
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	token := strings.TrimSpace(string(tok))
	c := client.New(d.URL, token)
	importStart := time.Now()
	imp, err := c.Import(ctx, cfg)
	importTime := time.Since(importStart)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if len(imp.UsersAdded) != o.users {
		return fmt.Errorf("import added %d participants, want %d", len(imp.UsersAdded), o.users)
	}
	if err := check(ctx, r, cfgPath, o.users); err != nil {
		return err
	}

	fmt.Printf("status: %d participants in %d groups (imported through the API in %s ms); %d runs of each command after %d warm-ups (interleaved); %d API requests\n\n",
		o.users, len(cfg.Groups), benchkit.Ms(importTime), o.runs, o.warmup, o.requests)

	// The three commands take turns, so machine noise hits them alike.
	cmds := []struct {
		name string
		args []string
	}{
		{"thon --version", []string{"--version"}},
		{"thon status", []string{"status", "--config", cfgPath}},
		{"thon status -o json", []string{"status", "--config", cfgPath, "-o", "json"}},
	}
	times := make([][]time.Duration, len(cmds))
	for i := range o.warmup + o.runs {
		for j, cmd := range cmds {
			res, err := r.OK(ctx, cmd.args...)
			if err != nil {
				return err
			}
			if i >= o.warmup {
				times[j] = append(times[j], res.Elapsed)
			}
		}
	}
	api, err := apiLatency(ctx, d.URL, token, o)
	if err != nil {
		return err
	}

	stats := func(ds []time.Duration) (p50, p95, mx time.Duration) {
		return benchkit.Percentile(ds, 50), benchkit.Percentile(ds, 95), benchkit.Percentile(ds, 100)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "what\tn\tp50 ms\tp95 ms\tmax ms\t")
	for j, cmd := range cmds {
		p50, p95, mx := stats(times[j])
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t\n", cmd.name, len(times[j]), benchkit.Ms(p50), benchkit.Ms(p95), benchkit.Ms(mx))
	}
	p50, p95, mx := stats(api)
	fmt.Fprintf(tw, "GET /api/v1/sandboxes (keep-alive)\t%d\t%s\t%s\t%s\t\n", len(api), benchkit.Ms(p50), benchkit.Ms(p95), benchkit.Ms(mx))
	tw.Flush()

	version50 := benchkit.Percentile(times[0], 50)
	api50 := benchkit.Percentile(api, 50)
	fmt.Println()
	for j := 1; j < len(cmds); j++ {
		s50 := benchkit.Percentile(times[j], 50)
		fmt.Printf("%-21s p50 %s ms = %.2f × thon --version\n", cmds[j].name+":", benchkit.Ms(s50), float64(s50)/float64(version50))
		fmt.Printf("%-21s process start %s ms (--version p50) + daemon %s ms (API p50) + the rest %s ms (config, token, health probe, new connections, rendering)\n",
			"", benchkit.Ms(version50), benchkit.Ms(api50), benchkit.Ms(max(s50-version50-api50, 0)))
	}
	for j := 1; j < len(cmds); j++ {
		s95 := benchkit.Percentile(times[j], 95)
		fmt.Printf("%-21s p95 %s ms  (goal < %d ms)  %s\n", cmds[j].name+":", benchkit.Ms(s95), goal.Milliseconds(), benchkit.Verdict(s95 < goal))
	}

	// Stop the daemon the way an organizer does.
	if _, err := r.OK(ctx, "down", "--config", cfgPath); err != nil {
		return err
	}
	if !d.Wait(15 * time.Second) {
		return fmt.Errorf("thon down returned but the daemon (pid %d) still runs after 15s", d.PID)
	}
	return nil
}

// check makes sure both outputs list every participant before anything is
// timed, so the benchmark measures the real thing.
func check(ctx context.Context, r benchkit.Runner, cfgPath string, users int) error {
	res, err := r.OK(ctx, "status", "--config", cfgPath, "-o", "json")
	if err != nil {
		return err
	}
	var list client.SandboxList
	if err := json.Unmarshal([]byte(res.Stdout), &list); err != nil {
		return fmt.Errorf("thon status -o json: %w", err)
	}
	if len(list.Items) != users {
		return fmt.Errorf("thon status -o json lists %d participants, want %d", len(list.Items), users)
	}
	res, err = r.OK(ctx, "status", "--config", cfgPath)
	if err != nil {
		return err
	}
	if n := strings.Count(res.Stdout, "\n"); n != users+1 {
		return fmt.Errorf("thon status prints %d lines, want %d (a header and one per participant)", n, users+1)
	}
	return nil
}

// apiLatency times GET /api/v1/sandboxes on one kept-alive connection,
// reading each body in full.
func apiLatency(ctx context.Context, base, token string, o options) ([]time.Duration, error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	get := func() (time.Duration, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/sandboxes", nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = errors.New("GET /api/v1/sandboxes: " + resp.Status)
		}
		return d, err
	}
	var out []time.Duration
	for i := range o.warmup + o.requests {
		d, err := get()
		if err != nil {
			return nil, err
		}
		if i >= o.warmup {
			out = append(out, d)
		}
	}
	return out, nil
}
