package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/thon-dev/thon/bench/internal/benchkit"
	thonclient "github.com/thon-dev/thon/client"
)

// What happens once every workbench answered: the memory per idle
// participant and `thon status` with live figures (measureIdle), the wake
// storm (wakeStorm), the login storm (storm.go).

// idleFigures is what the machine and THON said about idle participants.
type idleFigures struct {
	settled time.Duration
	// The machine's MemAvailable before `thon run` less after the settle,
	// per participant: what each costs the machine, THON included.
	machinePerKiB int64
	// What THON's sample (Docker's stats API) says each sandbox uses, and
	// how many sandboxes had a figure.
	perSandbox []int64
	measured   int
	// The containers' own anonymous memory (heap, stacks; no page cache),
	// read by the benchmark from the engine's stats.
	anon []int64
	// `thon status -o wide` as a process, and its rows.
	statusWide []time.Duration
	statusRows int
}

// memAvailableKiB reads MemAvailable from /proc/meminfo.
func memAvailableKiB() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("/proc/meminfo has no MemAvailable")
}

// measureIdle lets everyone sit idle for o.settle, then reads the memory
// per participant (the machine's and THON's figures) and times `thon
// status -o wide`, whose rows must carry a memory figure each.
func measureIdle(ctx context.Context, cli *client.Client, inst string, o options, run benchkit.Runner, cfgPath string, api *thonclient.Client, beforeKiB int64, r *report) error {
	fmt.Fprintf(os.Stderr, "idle: %s with every workbench up and no one using it...\n", o.settle)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.settle):
	}
	var f idleFigures
	f.settled = o.settle
	after, err := memAvailableKiB()
	if err != nil {
		return err
	}
	f.machinePerKiB = (beforeKiB - after) / int64(len(r.users))
	// THON samples usage every 15 s: wait for a sample of everyone.
	deadline := time.Now().Add(time.Minute)
	for {
		list, err := api.Sandboxes(ctx, nil, nil)
		if err != nil {
			return err
		}
		f.perSandbox = f.perSandbox[:0]
		for _, s := range list.Items {
			if s.Memory != nil {
				f.perSandbox = append(f.perSandbox, *s.Memory)
			}
		}
		if f.measured = len(f.perSandbox); f.measured == len(r.users) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if f.anon, err = anonMemory(ctx, cli, inst); err != nil {
		return err
	}
	for range o.statusRuns {
		res, err := run.OK(ctx, "status", "-o", "wide", "--config", cfgPath)
		if err != nil {
			return err
		}
		f.statusWide = append(f.statusWide, res.Elapsed)
		f.statusRows = 0
		for line := range strings.SplitSeq(res.Stdout, "\n") {
			if fs := strings.Fields(line); len(fs) > 0 && slices.Contains(r.users, fs[0]) && strings.Contains(line, "MiB") {
				f.statusRows++
			}
		}
	}
	r.idle = f
	return nil
}

// anonMemory reads, from the engine's stats, the anonymous memory of every
// running container whose name starts with prefix: "anon" on cgroup v2,
// "total_rss" on v1.
func anonMemory(ctx context.Context, cli *client.Client, prefix string) ([]int64, error) {
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{Filters: make(client.Filters).Add("name", prefix+"-")})
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, c := range list.Items {
		res, err := cli.ContainerStats(ctx, c.ID, client.ContainerStatsOptions{})
		if err != nil {
			return nil, err
		}
		var st container.StatsResponse
		err = json.NewDecoder(res.Body).Decode(&st)
		res.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("stats of %s: %w", c.ID, err)
		}
		if v, ok := st.MemoryStats.Stats["anon"]; ok {
			out = append(out, int64(v))
		} else if v, ok := st.MemoryStats.Stats["total_rss"]; ok {
			out = append(out, int64(v))
		}
	}
	return out, nil
}

// wakeFigures is the wake storm through THON.
type wakeFigures struct {
	asleepAfter time.Duration // from `thon run` until the last sleeper was shown asleep
	woken       times         // from the storm's start to each IDE
	all         time.Duration
	maxQueue    int // the longest line a waiting page showed
}

var queueRE = regexp.MustCompile(`id="queue">(\d+)<`)

// wakeStorm waits for the napGroup's sandboxes to be shown asleep, then
// opens an access link for each of them at once, as participants back
// from lunch would, and polls each IDE through the front door until it is
// the workbench again.
func wakeStorm(ctx context.Context, o options, api *thonclient.Client, pool *x509.CertPool, start time.Time, r *report) error {
	sleepers := r.users[len(r.users)-o.wake:]
	fmt.Fprintf(os.Stderr, "wake: waiting for %d sandboxes to fall asleep (idle_timeout 5m; THON looks every 30 s)...\n", len(sleepers))
	deadline := time.Now().Add(8 * time.Minute)
	for {
		list, err := api.Sandboxes(ctx, []string{napGroup}, nil)
		if err != nil {
			return err
		}
		asleep := 0
		for _, s := range list.Items {
			if s.State == "asleep" {
				asleep++
			}
		}
		if asleep == len(sleepers) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after 8 minutes %d of %d sandboxes of group %s are asleep", asleep, len(sleepers), napGroup)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	var f wakeFigures
	f.asleepAfter = time.Since(start)
	type visitor struct {
		user, link, ide string
		hc              *http.Client
	}
	vs := make([]visitor, len(sleepers))
	for i, u := range sleepers {
		l, err := api.IssueLink(ctx, u)
		if err != nil {
			return fmt.Errorf("an access link for %s: %w", u, err)
		}
		jar, _ := cookiejar.New(nil)
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		defer tr.CloseIdleConnections()
		vs[i] = visitor{user: u, link: l.Link, ide: l.URL, hc: &http.Client{Jar: jar, Transport: tr, Timeout: 10 * time.Second}}
	}
	fmt.Fprintf(os.Stderr, "wake: %d participants open their links at once...\n", len(vs))
	p := newProber(o)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	f.woken = times{}
	t0 := time.Now()
	for _, v := range vs {
		wg.Go(func() {
			wctx, cancel := context.WithTimeout(ctx, o.timeout)
			defer cancel()
			p.get(wctx, v.hc, v.link) // the link signs in and lands on the IDE's address: the visit
			var last string
			err := p.until(wctx, func() bool {
				code, body := p.get(wctx, v.hc, v.ide)
				if m := queueRE.FindStringSubmatch(body); m != nil {
					q, _ := strconv.Atoi(m[1])
					mu.Lock()
					f.maxQueue = max(f.maxQueue, q)
					mu.Unlock()
				}
				last = fmt.Sprintf("%d %.200q", code, body)
				return code == http.StatusOK && isWorkbench(body)
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %s never was the workbench again (last: %s): %w", v.user, v.ide, last, err))
				return
			}
			f.woken[v.user] = time.Since(t0)
		})
	}
	wg.Wait()
	f.all = time.Since(t0)
	r.wake = f
	return errors.Join(errs...)
}

// spread is p50, p95 and max of times, in seconds ("-" for none).
func spread(t times) (p50, p95, top string) {
	if len(t) == 0 {
		return "-", "-", "-"
	}
	var ds []time.Duration
	for _, d := range t {
		ds = append(ds, d)
	}
	slices.Sort(ds)
	s := func(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }
	return s(benchkit.Percentile(ds, 50)), s(benchkit.Percentile(ds, 95)), s(ds[len(ds)-1])
}

// printPhases reports what happened once everyone was up.
func printPhases(w io.Writer, o options, r *report) {
	f := r.idle
	if len(f.perSandbox) > 0 {
		sum := int64(0)
		for _, b := range f.perSandbox {
			sum += b
		}
		sorted := slices.Sorted(slices.Values(f.perSandbox))
		fmt.Fprintf(w, "memory per idle participant:   %.0f MiB mean, %.0f MiB p50, %.0f MiB max by THON's sample of Docker's stats (%d of %d measured, after %s idle; page cache counted)\n",
			float64(sum)/float64(len(sorted))/(1<<20), float64(sorted[len(sorted)/2])/(1<<20), float64(sorted[len(sorted)-1])/(1<<20),
			f.measured, len(r.users), f.settled)
		anon := int64(0)
		for _, b := range f.anon {
			anon += b
		}
		if len(f.anon) > 0 {
			anon /= int64(len(f.anon))
		}
		fmt.Fprintf(w, "                               %.0f MiB mean anonymous memory (the engine's stats, %d containers); the machine's MemAvailable fell %.0f MiB per participant\n",
			float64(anon)/(1<<20), len(f.anon), float64(f.machinePerKiB)/1024)
	}
	if len(f.statusWide) > 0 {
		ds := slices.Sorted(slices.Values(f.statusWide))
		fmt.Fprintf(w, "`thon status -o wide`:         p50 %s ms, max %s ms over %d runs; %d rows with live CPU and memory\n",
			benchkit.Ms(benchkit.Percentile(ds, 50)), benchkit.Ms(ds[len(ds)-1]), len(ds), f.statusRows)
	}
	if len(r.wake.woken) > 0 {
		p50, p95, top := spread(r.wake.woken)
		fmt.Fprintf(w, "wake storm, %d at once:        THON p50 %s s, p95 %s s, last IDE %s s (longest line shown on a waiting page: %d; all asleep %.0f s after thon run)\n",
			o.wake, p50, p95, top, r.wake.maxQueue, r.wake.asleepAfter.Seconds())
		if len(r.wakeBase) > 0 {
			b50, b95, btop := spread(r.wakeBase)
			fmt.Fprintf(w, "                               engine alone (docker start, concurrency %d) p50 %s s, p95 %s s, last %s s: ratio %.2f\n",
				o.concurrency, b50, b95, btop, r.wake.all.Seconds()/r.wakeBaseAll.Seconds())
		}
	}
	if len(r.storm) > 0 {
		c := r.stormAssets
		fmt.Fprintf(w, "\nlogin storm: %d clients at once, each loading the workbench as Chromium did — the page, %d assets over HTTP/2 (%.1f MB as Chromium received them) and %d WebSockets\n",
			o.storm, len(c.assets), float64(c.bytes)/1e6, len(c.sockets))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "round\tfirst\tTHON p50 s\tTHON last s\tnginx p50 s\tnginx last s\tratio last\tratio p50\tTHON CPU s\tnginx CPU s\t")
		var ratios, cpus []float64
		for i, rd := range r.storm {
			t, b := rd.thon, rd.base
			ratio := t.last().Seconds() / b.last().Seconds()
			ratios = append(ratios, ratio)
			fmt.Fprintf(tw, "%d\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.3f\t%.3f\t%.2f\t%.2f\t\n", i+1, rd.first,
				t.p50().Seconds(), t.last().Seconds(), b.p50().Seconds(), b.last().Seconds(), ratio, t.p50().Seconds()/b.p50().Seconds(),
				t.cpu.Seconds(), b.cpu.Seconds())
			if t.cpu > 0 && b.cpu > 0 { // 0: a process's /proc could not be read
				cpus = append(cpus, t.cpu.Seconds()/b.cpu.Seconds())
			}
		}
		tw.Flush()
		m := benchkit.Median(ratios)
		fmt.Fprintf(w, "time to the last complete load, THON / nginx: median %.3f (goal <= %.1f)  %s; %.0f MB read per side per round\n",
			m, goalStorm, benchkit.Verdict(m <= goalStorm), float64(r.storm[0].thon.bytes)/1e6)
		if len(cpus) > 0 {
			fmt.Fprintf(w, "the proxy's own CPU time per storm (THON's daemon; nginx's master and workers), THON / nginx: median %.2f\n", benchkit.Median(cpus))
		}
	}
}

const goalStorm = 1.1 // the login storm's last load through THON ≤ 1.1 × through nginx

func (s stormSide) p50() time.Duration  { return benchkit.Percentile(s.loads, 50) }
func (s stormSide) last() time.Duration { return s.loads[len(s.loads)-1] }
