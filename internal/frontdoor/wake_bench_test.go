package frontdoor_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	moby "github.com/moby/moby/client"

	"github.com/thon-dev/thon/client"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/testenv"
	"github.com/thon-dev/thon/internal/thontest"
)

// BenchmarkWakeStorm: N sandboxes (30; THON_BENCH_WAKE_N) asleep after
// lunch, their N participants opening their IDEs at the same moment: the
// time from the first page load to the last IDE answering through the
// front door, the wakes bounded by sandbox.concurrency (8). The baseline,
// in the same run: the same N stopped containers started directly on the
// Engine API, 8 at a time, to each answering its health check.
//
//	go test ./internal/frontdoor -run '^$' -bench WakeStorm -benchtime 1x
func BenchmarkWakeStorm(b *testing.B) {
	n := 30
	if s := os.Getenv("THON_BENCH_WAKE_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("p%02d", i+1)
	}
	h := thontest.New(b, thontest.Groups(config.Group{Name: "room", Users: users}), thontest.Clock(clock))
	h.Stop()
	h.Config.Sandbox.IdleTimeout = config.Duration(30 * time.Minute)
	h.Config.Sandbox.Concurrency = 8
	h.Start()
	if sum, err := h.Client.Bulk(ctx, client.BulkRequest{Action: "start"}, nil); err != nil || sum.Failed > 0 {
		b.Fatalf("start %d sandboxes: %+v %v", n, sum, err)
	}
	ides := make([]string, n)
	clients := make([]*http.Client, n)
	for i, u := range users {
		clients[i], ides[i] = signedIn(b, h, u)
	}
	sleepAll := func() {
		b.Helper()
		advance(31 * time.Minute)
		if err := h.Daemon.Orch.SleepIdle(ctx); err != nil {
			b.Fatal(err)
		}
		st, err := h.Client.Sandboxes(ctx, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		asleep := 0
		for _, s := range st.Items {
			if s.State == "asleep" {
				asleep++
			}
		}
		if asleep != n {
			b.Fatalf("%d of %d asleep", asleep, n)
		}
	}

	var thon time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		sleepAll()
		b.StartTimer()
		t0 := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { errs[i] = visit(clients[i], ides[i], users[i]) })
		}
		wg.Wait()
		thon = time.Since(t0)
		for i, err := range errs {
			if err != nil {
				b.Fatalf("%s: %v", users[i], err)
			}
		}
	}
	b.StopTimer()

	// The baseline: the same containers, stopped again, started directly.
	sleepAll()
	base := startDirectly(b, h.Instance, h.Config.Sandbox.Port, 8)
	b.ReportMetric(thon.Seconds(), "s-thon-last-IDE")
	b.ReportMetric(base.Seconds(), "s-engine-last-health")
	b.ReportMetric(thon.Seconds()/base.Seconds(), "ratio")
	b.Logf("%d sleeping sandboxes visited at once: the last IDE answered through the front door after %s; the engine alone started the same %d containers to their health check in %s (%.2f×)",
		n, thon.Round(time.Millisecond), n, base.Round(time.Millisecond), thon.Seconds()/base.Seconds())
}

// visit is a participant coming back: their page load (which wakes the
// sandbox and shows the waiting page), then reloading until the IDE answers.
func visit(c *http.Client, ide, user string) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		req, _ := http.NewRequest(http.MethodGet, ide+"whoami", nil)
		req.Header.Set("Accept", "text/html")
		resp, err := c.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), user) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no IDE after 5 minutes (last: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// signedIn is a participant's browser with their session, and their IDE's URL.
func signedIn(tb testing.TB, h *thontest.Harness, user string) (*http.Client, string) {
	tb.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: h.Daemon.CA.CAPool()}, ForceAttemptHTTP2: true,
	}}
	l, err := h.Client.IssueLink(context.Background(), user)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := c.Get(l.Link)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	return c, l.URL
}

// startDirectly starts the stopped containers named prefix… on the Engine
// API, limit at a time, and times them to the last health check answered.
func startDirectly(tb testing.TB, prefix string, port, limit int) time.Duration {
	tb.Helper()
	cli := testenv.Docker(tb)
	ctx := context.Background()
	cs, err := cli.ContainerList(ctx, moby.ContainerListOptions{All: true, Filters: make(moby.Filters).Add("name", prefix)})
	if err != nil {
		tb.Fatal(err)
	}
	var ids []string
	for _, c := range cs.Items {
		if slices.ContainsFunc(c.Names, func(n string) bool { return strings.HasPrefix(strings.TrimPrefix(n, "/"), prefix) }) {
			ids = append(ids, c.ID)
		}
	}
	sem := make(chan struct{}, limit)
	errs := make([]error, len(ids))
	t0 := time.Now()
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := cli.ContainerStart(ctx, id, moby.ContainerStartOptions{}); err != nil {
				errs[i] = err
				return
			}
			ins, err := cli.ContainerInspect(ctx, id, moby.ContainerInspectOptions{})
			if err != nil {
				errs[i] = err
				return
			}
			var ip string
			for _, nw := range ins.Container.NetworkSettings.Networks {
				if nw.IPAddress.IsValid() {
					ip = nw.IPAddress.String()
				}
			}
			u := "http://" + net.JoinHostPort(ip, strconv.Itoa(port)) + "/healthz"
			for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(10 * time.Millisecond) {
				if resp, err := http.Get(u); err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						return
					}
				}
				if time.Now().After(deadline) {
					errs[i] = fmt.Errorf("%s did not answer", u)
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(t0)
	for _, err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
	if len(ids) == 0 {
		tb.Fatal("no containers to start")
	}
	return took
}
