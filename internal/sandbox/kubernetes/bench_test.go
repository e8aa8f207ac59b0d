package kubernetes

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/sandbox"
)

// BenchmarkSpawn creates THON_K8S_SPAWN (default 200) sandboxes at once, 32
// at a time like the orchestrator's spawn queue, and reports the time until
// all are Ready and the API requests per participant (creates plus what
// waiting for Ready costs: nothing, the informer pushes it). THON_K8S_QPS
// sets Options.QPS (Burst twice that); the default 50 bounds the rate.
//
//	go test -run '^$' -bench Spawn -benchtime 1x ./internal/sandbox/kubernetes/
func BenchmarkSpawn(b *testing.B) {
	n := 200
	if s := os.Getenv("THON_K8S_SPAWN"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	var qps float32
	if s := os.Getenv("THON_K8S_QPS"); s != "" {
		f, _ := strconv.ParseFloat(s, 32)
		qps = float32(f)
	}
	for i := 0; i < b.N; i++ {
		e := newEnv(b, func(o *Options) { o.QPS, o.Burst = qps, int(2*qps) })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		if err := e.rt.Prepare(ctx, e.spec("u0", "g")); err != nil {
			b.Fatal(err)
		}
		if _, err := e.rt.List(ctx); err != nil { // informers synced, as in a running daemon
			b.Fatal(err)
		}
		base := e.count.get()
		start := time.Now()
		work := make(chan int)
		var wg sync.WaitGroup
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range work {
					if _, err := e.rt.Create(ctx, e.spec(fmt.Sprintf("u%d", j), "g")); err != nil {
						b.Error(err)
					}
				}
			}()
		}
		for j := range n {
			work <- j
		}
		close(work)
		wg.Wait()
		created := time.Since(start)
		for {
			list, err := e.rt.List(ctx)
			if err != nil {
				b.Fatal(err)
			}
			ready := 0
			for _, inst := range list {
				if inst.State == sandbox.StateRunning {
					ready++
				}
			}
			if ready == n {
				break
			}
			if ctx.Err() != nil {
				b.Fatalf("%d of %d ready", ready, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
		all := time.Since(start)
		cancel()
		after := e.count.get()
		reqs := 0
		for k, v := range after {
			reqs += v - base[k]
		}
		b.ReportMetric(all.Seconds(), "s-to-all-ready")
		b.ReportMetric(created.Seconds(), "s-creating")
		b.ReportMetric(float64(reqs)/float64(n), "requests/participant")
		b.Logf("%d participants: created in %s, all Ready after %s; %.2f requests per participant (%s)",
			n, created.Round(time.Millisecond), all.Round(time.Millisecond), float64(reqs)/float64(n), fmtCounts(after))
	}
}
