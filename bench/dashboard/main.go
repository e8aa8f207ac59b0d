// Command dashboard measures how fast the organizers' dashboard renders each
// page with 500 participants (goal: every page under 300 ms at p95), with
// what a busy event has: every sandbox recorded as running, an hour of AI
// gateway usage for every participant, and a long audit log. As a baseline
// measured in the same run it times GET /api/v1/sandboxes, the same data as
// JSON without a page around it.
//
// The daemon runs in this process against the Docker engine (no container is
// started: the store is filled directly), over real TLS.
//
//	go run ./bench/dashboard
//	go run ./bench/dashboard -users 1000 -runs 50
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/thon-dev/thon/bench/internal/benchkit"
	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/daemon"
	"github.com/thon-dev/thon/internal/sandbox/docker"
	"github.com/thon-dev/thon/internal/store"
)

const goal = 300 * time.Millisecond

func main() {
	users := flag.Int("users", 500, "participants")
	groups := flag.Int("groups", 20, "groups")
	runs := flag.Int("runs", 30, "timed requests per page")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *users, *groups, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, users, groups, runs int) error {
	tmp, err := os.MkdirTemp("", "thon-bench-dashboard-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	https, err := benchkit.FreePort()
	if err != nil {
		return err
	}
	gw, err := benchkit.FreePort()
	if err != nil {
		return err
	}
	cfg := config.Default()
	cfg.Server.DataDir = tmp
	cfg.Access.ExternalIP, cfg.Access.HTTPSPort, cfg.Access.HTTPPort = "127.0.0.1", https, 0
	cfg.Access.PortRange = "20000-20999"
	cfg.Gateway.Listen = fmt.Sprintf("127.0.0.1:%d", gw)
	cfg.LLM.URL = "http://127.0.0.1:1" // no LLM server: the page says so, quickly
	cfg.Auth.AdminPassword = "bench password"
	per := (users + groups - 1) / groups
	for g := 0; g*per < users; g++ {
		grp := config.Group{Name: fmt.Sprintf("group-%02d", g+1)}
		for i := g * per; i < min((g+1)*per, users); i++ {
			grp.Users = append(grp.Users, fmt.Sprintf("user-%04d", i+1))
		}
		cfg.Groups = append(cfg.Groups, grp)
	}
	inst := "tbd" + benchkit.RandHex(4)
	rt, err := docker.New(docker.Options{NamePrefix: inst, Network: inst})
	if err != nil {
		return err
	}
	defer rt.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	d, err := daemon.Start(ctx, daemon.Options{Config: cfg, Version: "bench", Runtime: rt, Listener: ln,
		Logger: slog.New(slog.DiscardHandler), ResyncInterval: time.Hour})
	if err != nil {
		return err
	}
	defer d.Shutdown(context.Background())
	c := client.New(d.URL, d.Token)
	if _, err := c.Import(ctx, cfg); err != nil {
		return err
	}

	// A busy event: everyone running, an hour of traffic, a long audit log.
	now := time.Now().UTC()
	var rows []store.UsageRow
	for g, grp := range cfg.Groups {
		for i, u := range grp.Users {
			if err := d.Store.PutSandbox(ctx, store.Sandbox{User: u, InstanceID: "bench-" + u, State: "running", SpecHash: d.Orch.Spec(u, grp.Name).Hash(),
				Endpoint: fmt.Sprintf("172.18.%d.%d:8080", g, i+2), Image: cfg.Sandbox.Image, CreatedAt: now.Add(-time.Hour)}); err != nil {
				return err
			}
			for m := 0; m < 60; m += 3 {
				rows = append(rows, store.UsageRow{KeyID: "user:" + u, Model: "gemma-4-31b-it", Minute: now.Add(-time.Duration(m) * time.Minute).Truncate(time.Minute),
					Requests: 2, PromptTokens: int64(300 + i), CompletionTokens: int64(100 + m), Rejections: int64(m % 7 / 6)})
			}
		}
	}
	if err := d.Store.AddUsage(ctx, rows); err != nil {
		return err
	}
	for i := range 2000 {
		d.Store.AddEvent(ctx, "admin", "start", fmt.Sprintf("user-%04d", i%users+1), "bench")
	}

	base := d.FrontDoor.DashboardURL()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: d.CA.CAPool()}}}
	resp, err := hc.PostForm(base+"login", url.Values{"password": {cfg.Auth.AdminPassword}})
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Request.URL.Path != "/" {
		return fmt.Errorf("sign-in ended at %s", resp.Request.URL)
	}
	pages := []string{"", "instances", "instances?size=500", "groups", "llm", "gateway", "gateway?minutes=1440", "settings", "api/v1/sandboxes"}
	want := regexp.MustCompile(`user-0001`)
	times := make([][]time.Duration, len(pages))
	size := make([]int, len(pages))
	for i := range runs + 3 {
		for j, p := range pages { // interleaved: machine noise hits them alike
			start := time.Now()
			resp, err := hc.Get(base + p)
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			el := time.Since(start)
			if resp.StatusCode != 200 {
				return fmt.Errorf("%s: %s", p, resp.Status)
			}
			if (p == "instances" || p == "groups" || p == "gateway") && !want.Match(b) {
				return fmt.Errorf("%s does not show user-0001", p)
			}
			if i >= 3 {
				times[j] = append(times[j], el)
				size[j] = len(b)
			}
		}
	}
	fmt.Printf("dashboard: %d participants in %d groups, all running, %d usage rows, 2000 audit events; %d requests per page over TLS (HTTP/2)\n\n", users, len(cfg.Groups), len(rows), runs)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "page\tKiB\tp50 ms\tp95 ms\tmax ms\tp50 / API\tgoal\t")
	api50 := benchkit.Percentile(times[len(pages)-1], 50)
	allOK := true
	for j, p := range pages {
		p95 := benchkit.Percentile(times[j], 95)
		ok := p95 < goal
		verdict := benchkit.Verdict(ok)
		if strings.HasPrefix(p, "api/") {
			verdict = "(baseline)"
		} else {
			allOK = allOK && ok
		}
		fmt.Fprintf(tw, "/%s\t%d\t%s\t%s\t%s\t%.2f\t%s\t\n", p, size[j]/1024, benchkit.Ms(benchkit.Percentile(times[j], 50)), benchkit.Ms(p95),
			benchkit.Ms(benchkit.Percentile(times[j], 100)), float64(benchkit.Percentile(times[j], 50))/float64(api50), verdict)
	}
	tw.Flush()
	fmt.Printf("\nevery page p95 < %d ms: %s\n", goal.Milliseconds(), benchkit.Verdict(allOK))
	return nil
}
