// Command fairness measures how THON's gateway shares one LLM server among
// participants when some run coding agents in a loop, on a real llama.cpp
// llama-server with THON's test model (-np 4 by default), in one run:
//
//   - "agent" clients stream long completions (hundreds of tokens,
//     ignore_eos) back to back, and "question" clients send a short chat
//     every second; every client has its own gateway key (one participant
//     each);
//
//   - the question clients' time to first token with no agents at all,
//     with the agents straight to the server (its own first-come queue),
//     through THON's gateway, and through two gateway replicas sharing
//     Redis; against the bound a scheduler that cannot interrupt a
//     generation can reach: the mean agent generation time ÷ slots;
//
//   - total tokens/s through THON ÷ straight to the server, the slots'
//     utilisation while requests wait (the server's /slots, sampled), and
//     Jain's fairness index of the tokens each agent got.
//
//     go run ./bench/fairness                   # 16 agents, 4 questions, 4 slots, 4 rounds of 5 runs of 25 s
//     go run ./bench/fairness -duration 10s     # quicker
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/thon-dev/thon/bench/internal/benchkit"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/gateway"
	"github.com/thon-dev/thon/internal/llm/testmodel"
)

type options struct {
	image              string
	slots              int
	agents, questions  int
	agentMin, agentMax int
	questionTokens     int
	warmup, duration   time.Duration
	rounds             int
	shortShare         float64
	shortTokens        int
	threads            int
	only               string
	timings            bool
}

func main() {
	var o options
	flag.StringVar(&o.image, "image", config.DefaultLLMImage, "the LLM server image (sudo thon setup llm builds it)")
	flag.IntVar(&o.slots, "slots", 4, "the server's parallel slots (-np)")
	flag.IntVar(&o.agents, "agents", 16, "agent clients (long streams back to back)")
	flag.IntVar(&o.questions, "questions", 4, "question clients (a short chat every second)")
	flag.IntVar(&o.agentMin, "agent-min", 300, "fewest tokens an agent asks for (above -short-tokens: an agent's request is long)")
	flag.IntVar(&o.agentMax, "agent-max", 600, "most tokens an agent asks for")
	flag.IntVar(&o.questionTokens, "question-tokens", 16, "max_tokens of a question")
	flag.DurationVar(&o.warmup, "warmup", 5*time.Second, "load before measuring, each run")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "measured time, each run")
	flag.IntVar(&o.rounds, "rounds", 4, "rounds (each runs every configuration once)")
	// One thread: llama.cpp's threads meet at every layer, so on a machine
	// whose cores are busy with other work one descheduled thread stalls
	// the rest (measured here under a load average of 30: 96 tokens/s with
	// its default of 2 threads, 2,208 with 1), and the figures would be the
	// machine's, not the scheduler's.
	flag.IntVar(&o.threads, "threads", 1, "llama-server --threads (0: its default, one per core)")
	d := config.Default().Gateway.ShortRequests
	flag.Float64Var(&o.shortShare, "short-share", d.Share, "the share of each model's slots the gateway keeps for short requests (gateway.short_requests.share; 0: none)")
	flag.IntVar(&o.shortTokens, "short-tokens", d.MaxTokens, "the most tokens a short request asks for (gateway.short_requests.max_tokens)")
	flag.StringVar(&o.only, "only", "", "run only these configurations, e.g. 0ab (0: no agents, B: (b′))")
	flag.BoolVar(&o.timings, "timings", true, "the gateway asks llama-server for per-token timings, as THON does for llama.cpp")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/fairness:", err)
		os.Exit(1)
	}
}

const model = "thon-test"

func run(ctx context.Context, o options) error {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return err
	}
	defer cli.Close()
	if _, err := cli.ImageInspect(ctx, o.image); err != nil {
		return fmt.Errorf("image %s: %w (build it with: sudo thon setup llm)", o.image, err)
	}
	redisBin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server is not on PATH; install it: apt-get install -y redis-server")
	}
	prefix := "tbf" + benchkit.RandHex(3)
	defer benchkit.CleanupPrefix(context.Background(), cli, prefix)
	dir, err := os.MkdirTemp("", "thon-bench-fairness-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	if err := testmodel.WriteFile(filepath.Join(dir, "thon-test.gguf")); err != nil {
		return err
	}
	server, err := startLlama(ctx, cli, o, prefix+"-llama", dir)
	if err != nil {
		return err
	}
	redisURL, stopRedis, err := startRedis(ctx, redisBin, filepath.Join(dir, "redis"))
	if err != nil {
		return err
	}
	defer stopRedis()

	keys := newKeyStore()
	agentKeys := make([]string, o.agents)
	for i := range agentKeys {
		agentKeys[i] = keys.add(gateway.Key{ID: fmt.Sprintf("user:agent%02d", i), Owner: fmt.Sprintf("agent%02d", i), Group: "agents", Scale: 1})
	}
	questionKeys := make([]string, o.questions)
	for i := range questionKeys {
		questionKeys[i] = keys.add(gateway.Key{ID: fmt.Sprintf("user:person%02d", i), Owner: fmt.Sprintf("person%02d", i), Group: "people", Scale: 1})
	}
	one, err := startGateway(server+"/v1", keys, o, o.shortShare, "")
	if err != nil {
		return err
	}
	defer one.Close()
	// The other design: no slot kept for short requests (the fair queue alone).
	other := 0.0
	if o.shortShare == 0 {
		other = config.Default().Gateway.ShortRequests.Share
	}
	alt, err := startGateway(server+"/v1", keys, o, other, "")
	if err != nil {
		return err
	}
	defer alt.Close()
	r1, err := startGateway(server+"/v1", keys, o, o.shortShare, redisURL)
	if err != nil {
		return err
	}
	defer r1.Close()
	r2, err := startGateway(server+"/v1", keys, o, o.shortShare, redisURL)
	if err != nil {
		return err
	}
	defer r2.Close()

	fmt.Printf("llama-server (%s) with THON's test model, %d slots; %d agents streaming %d–%d tokens back to back, %d question clients asking %d tokens every second; every client its own key\n",
		o.image, o.slots, o.agents, o.agentMin, o.agentMax, o.questions, o.questionTokens)
	if o.agentMin <= o.shortTokens {
		fmt.Printf("note: agents asking %d–%d tokens send short requests too (at most %d tokens: -short-tokens), which may take the slots kept for questions\n",
			o.agentMin, o.agentMax, o.shortTokens)
	}
	fmt.Printf("%d rounds, each running every configuration for %s of load, then %s measured\n\n", o.rounds, o.warmup, o.duration)

	direct := []endpoint{{base: server + "/v1"}}
	altName := "(b′) agents, through THON, no slot kept for short requests"
	if other > 0 {
		altName = fmt.Sprintf("(b′) agents, through THON, %g of the slots for short requests", other)
	}
	runs := []struct {
		name   string
		agents bool
		eps    []endpoint
		gws    []*gatewaySrv
	}{
		{"no agents, straight to the server", false, direct, nil},
		{"(a) agents, straight to the server", true, direct, nil},
		{"(b) agents, through THON's gateway", true, []endpoint{{base: one.url, gw: one}}, []*gatewaySrv{one}},
		{altName, true, []endpoint{{base: alt.url, gw: alt}}, []*gatewaySrv{alt}},
		{"(c) agents, through two gateway replicas on Redis", true, []endpoint{{base: r1.url, gw: r1}, {base: r2.url, gw: r2}}, []*gatewaySrv{r1, r2}},
	}
	// Rounds: every run once per round, in a rotated order, so that the
	// machine's other load falls on all of them alike.
	results := make([]*result, len(runs))
	for round := range o.rounds {
		for k := range runs {
			i := (k + round) % len(runs)
			rn := runs[i]
			if o.only != "" && !strings.Contains(o.only, string("0abBc"[i])) {
				if results[i] == nil {
					results[i] = &result{name: rn.name, skipped: true, window: time.Second, agentTokens: make([]int64, len(agentKeys))}
				}
				continue
			}
			fmt.Fprintf(os.Stderr, "round %d/%d: %s…\n", round+1, o.rounds, rn.name)
			res, err := measure(ctx, o, server, rn.eps, rn.agents, agentKeys, questionKeys)
			if err != nil {
				return fmt.Errorf("%s: %w", rn.name, err)
			}
			res.name = rn.name
			res.timedOut = 0
			for _, g := range rn.gws {
				res.timedOut += g.timedOut() // the gateways' counters: cumulative over rounds
				// How long each group waited in the gateway's queue, this run.
				for _, st := range g.QueueStats() {
					for _, gs := range st.Groups {
						res.queueP95 = append(res.queueP95, groupWait{gs.Group, time.Duration(gs.WaitP50 * 1e9), time.Duration(gs.WaitP95 * 1e9)})
					}
				}
			}
			if err := waitIdle(ctx, server, o.slots); err != nil {
				return err
			}
			if results[i] == nil {
				results[i] = res
			} else {
				results[i].merge(res)
			}
			results[i].perRound = append(results[i].perRound, res.tokensPerSecond())
		}
	}
	report(o, results, []float64{o.shortShare, other, o.shortShare})
	return nil
}

// endpoint is where a client sends: the server (gw nil) or a gateway.
type endpoint struct {
	base string
	gw   *gatewaySrv
}

type result struct {
	name                string
	skipped             bool            // not run (-only)
	ttft                []time.Duration // questions' time to first token
	questionErrors      int
	unanswered          int // questions asked in the window without a first token 2 minutes after it
	agentErrors         int
	genTimes            []time.Duration // agents: first token to the end
	agentTokens         []int64         // per agent, in the window
	tokens              int64           // every client's tokens in the window
	window              time.Duration
	utilSum             float64 // busy ÷ slots, summed over samples with requests waiting
	openSum             float64 // busy ÷ the slots the waiters may take
	utilN               int
	samples             int
	timedOut            float64
	maxBusy, maxWaiting int
	perRound            []float64   // tokens/s of each round
	queueP95            []groupWait // each run's waits in the gateway's queue, per group
}

type groupWait struct {
	group    string
	p50, p95 time.Duration
}

// merge adds another round's figures.
func (r *result) merge(x *result) {
	r.ttft = append(r.ttft, x.ttft...)
	r.questionErrors += x.questionErrors
	r.unanswered += x.unanswered
	r.agentErrors += x.agentErrors
	r.genTimes = append(r.genTimes, x.genTimes...)
	for i := range r.agentTokens {
		r.agentTokens[i] += x.agentTokens[i]
	}
	r.tokens += x.tokens
	r.window += x.window
	r.utilSum += x.utilSum
	r.openSum += x.openSum
	r.utilN += x.utilN
	r.samples += x.samples
	r.timedOut = max(r.timedOut, x.timedOut)
	r.queueP95 = append(r.queueP95, x.queueP95...)
	r.maxBusy = max(r.maxBusy, x.maxBusy)
	r.maxWaiting = max(r.maxWaiting, x.maxWaiting)
}

func (r *result) tokensPerSecond() float64 { return float64(r.tokens) / r.window.Seconds() }

func (r *result) utilisation() float64 {
	if r.utilN == 0 {
		return math.NaN()
	}
	return r.utilSum / float64(r.utilN)
}

func (r *result) openUtilisation() float64 {
	if r.utilN == 0 {
		return math.NaN()
	}
	return r.openSum / float64(r.utilN)
}

func (r *result) meanGen() time.Duration {
	if len(r.genTimes) == 0 {
		return 0
	}
	var s time.Duration
	for _, d := range r.genTimes {
		s += d
	}
	return s / time.Duration(len(r.genTimes))
}

// jain is Jain's fairness index of xs: (Σx)² ÷ (n·Σx²), 1 when all equal.
func jain(xs []int64) float64 {
	var s, s2 float64
	for _, x := range xs {
		s += float64(x)
		s2 += float64(x) * float64(x)
	}
	if s2 == 0 {
		return math.NaN()
	}
	return s * s / (float64(len(xs)) * s2)
}

// measure runs the clients against eps for warmup + duration and returns
// what the window saw.
func measure(ctx context.Context, o options, server string, eps []endpoint, agents bool, agentKeys, questionKeys []string) (*result, error) {
	res := &result{window: o.duration, agentTokens: make([]int64, len(agentKeys))}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	from, to := start.Add(o.warmup), start.Add(o.warmup+o.duration)
	in := func(t time.Time) bool { return !t.Before(from) && t.Before(to) }
	var mu sync.Mutex
	var tokens atomic.Int64
	var outstanding atomic.Int64
	// Questions asked that have no first token yet: after the window the
	// load goes on until every question asked in it is answered, so that
	// the slowest ones count too (2 minutes at most).
	var pending atomic.Int64
	var wg sync.WaitGroup
	if agents {
		for i, key := range agentKeys {
			ep := eps[i%len(eps)]
			wg.Go(func() {
				for runCtx.Err() == nil { // past the window too, until the last questions are answered
					n := o.agentMin + rand.IntN(o.agentMax-o.agentMin+1)
					outstanding.Add(1)
					s, err := stream(runCtx, ep, key, n, true, func(at time.Time) {
						if in(at) {
							tokens.Add(1)
							atomic.AddInt64(&res.agentTokens[i], 1)
						}
					})
					outstanding.Add(-1)
					if runCtx.Err() != nil {
						return
					}
					mu.Lock()
					if err != nil && res.agentErrors < 3 {
						fmt.Fprintln(os.Stderr, "agent:", err)
					}
					if err != nil {
						res.agentErrors++
					} else if in(s.end) && !s.first.IsZero() {
						res.genTimes = append(res.genTimes, s.end.Sub(s.first))
					}
					mu.Unlock()
					if err != nil {
						time.Sleep(100 * time.Millisecond)
					}
				}
			})
		}
	}
	for i, key := range questionKeys {
		ep := eps[i%len(eps)]
		wg.Go(func() {
			next := start.Add(time.Duration(rand.Int64N(int64(time.Second))))
			for {
				select {
				case <-runCtx.Done():
					return
				case <-time.After(time.Until(next)):
				}
				if !time.Now().Before(to) {
					return
				}
				next = next.Add(time.Second)
				outstanding.Add(1)
				pending.Add(1)
				first := true
				s, err := stream(runCtx, ep, key, o.questionTokens, false, func(at time.Time) {
					if first {
						first = false
						pending.Add(-1)
					}
					if in(at) {
						tokens.Add(1)
					}
				})
				if first {
					pending.Add(-1)
				}
				outstanding.Add(-1)
				if runCtx.Err() != nil {
					return
				}
				mu.Lock()
				if err != nil && res.questionErrors < 3 {
					fmt.Fprintln(os.Stderr, "question:", err)
				}
				switch {
				case err != nil:
					res.questionErrors++
				case in(s.sent) && !s.first.IsZero():
					res.ttft = append(res.ttft, s.first.Sub(s.sent))
				}
				mu.Unlock()
			}
		})
	}
	// Sample the server's slots and who waits.
	wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
			}
			now := time.Now()
			if !in(now) {
				if now.After(to) {
					return
				}
				continue
			}
			busy, err := busySlots(runCtx, server)
			if err != nil {
				continue
			}
			waiting, waitingShort, reserved := 0, 0, 0
			for _, ep := range eps {
				if ep.gw != nil {
					for _, st := range ep.gw.QueueStats() {
						waiting += st.Waiting
						waitingShort += st.WaitingShort
						reserved = st.Reserved
					}
				}
			}
			if eps[0].gw == nil {
				waiting = int(outstanding.Load()) - busy // in the server's own queue
			}
			// The slots the waiting requests may take: all of them when a
			// short one waits, else those not kept for short requests.
			open := o.slots
			if waitingShort == 0 {
				open -= reserved
			}
			mu.Lock()
			res.samples++
			res.maxBusy = max(res.maxBusy, busy)
			res.maxWaiting = max(res.maxWaiting, waiting)
			if waiting > 0 {
				res.utilSum += float64(busy) / float64(o.slots)
				res.openSum += float64(min(busy, open)) / float64(open)
				res.utilN++
			}
			mu.Unlock()
		}
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Until(to)):
	}
	for deadline := time.Now().Add(2 * time.Minute); pending.Load() > 0 && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	res.unanswered = int(pending.Load())
	cancel() // agents mid-stream disconnect: through THON their generations stop
	wg.Wait()
	httpc.CloseIdleConnections()
	res.tokens = tokens.Load()
	return res, nil
}

type streamed struct{ sent, first, end time.Time }

var (
	httpc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 4 * time.Second, DisableCompression: true}}
	// sampler asks the server for its slots on a connection of its own.
	sampler = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, IdleConnTimeout: 4 * time.Second}}
)

// stream asks for a streamed chat of n tokens and calls token for each
// content chunk.
func stream(ctx context.Context, ep endpoint, key string, n int, ignoreEOS bool, token func(time.Time)) (streamed, error) {
	body := fmt.Sprintf(`{"model":%q,"stream":true,"max_tokens":%d,"ignore_eos":%v,"messages":[{"role":"user","content":"Write the next part of the program."}]}`, model, n, ignoreEOS)
	req, _ := http.NewRequestWithContext(ctx, "POST", ep.base+"/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if ep.gw != nil {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	// Sent again on a fresh connection when the pooled one turns out
	// closed by the server (llama-server drops idle connections), as the
	// gateway does.
	req.Header["X-Idempotency-Key"] = nil
	var s streamed
	s.sent = time.Now()
	resp, err := httpc.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return s, fmt.Errorf("%d %s", resp.StatusCode, b)
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	done := false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if !done {
				return s, fmt.Errorf("stream ended without [DONE]: %w", err)
			}
			break
		}
		if bytes.Contains(line, []byte(`"content":"`)) && !bytes.Contains(line, []byte(`"content":""`)) {
			now := time.Now()
			if s.first.IsZero() {
				s.first = now
			}
			token(now)
		} else if bytes.HasPrefix(line, []byte("data: [DONE]")) {
			done = true
		}
	}
	s.end = time.Now()
	return s, nil
}

// busySlots counts the server's slots processing now.
func busySlots(ctx context.Context, server string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", server+"/slots", nil)
	resp, err := sampler.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var slots []struct {
		IsProcessing bool `json:"is_processing"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&slots); err != nil {
		return 0, err
	}
	n := 0
	for _, s := range slots {
		if s.IsProcessing {
			n++
		}
	}
	return n, nil
}

// waitIdle waits until no slot of the server is busy (the last run's
// streams are gone).
func waitIdle(ctx context.Context, server string, slots int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if n, err := busySlots(ctx, server); err == nil && n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("the server's %d slots did not become idle within 2 minutes", slots)
}

func report(o options, rs []*result, shares []float64) {
	p := benchkit.Percentile
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond)) }
	noAgents, direct := rs[0], rs[1]
	fmt.Println("question clients' time to first token, and the bound a scheduler that cannot interrupt a generation reaches:")
	fmt.Println("the run's mean agent generation time (first token to the end) ÷ slots")
	fmt.Println("(every question asked in the measured window, answered after it too: the load goes on until the last one's first token)")
	fmt.Printf("  %-62s %7s %7s %6s %7s %7s %9s %8s\n", "", "p50 ms", "p95 ms", "n", "errors", "unansw.", "gen. ms", "bound ms")
	for _, r := range rs {
		if r.skipped {
			continue
		}
		fmt.Printf("  %-62s %7s %7s %6d %7d %7d %9s %8s\n", r.name, ms(p(r.ttft, 50)), ms(p(r.ttft, 95)), len(r.ttft), r.questionErrors,
			r.unanswered, ms(r.meanGen()), ms(r.meanGen()/time.Duration(o.slots)))
	}
	fmt.Println("  of which in the gateway's queue (its own figures, the last minute of each run; the rest is the server's):")
	for _, r := range rs[2:] {
		if r.skipped {
			continue
		}
		fmt.Printf("    %-60s", r.name)
		for _, grp := range []string{"people", "agents"} {
			var p50s, p95s []time.Duration
			for _, w := range r.queueP95 {
				if w.group == grp {
					p50s, p95s = append(p50s, w.p50), append(p95s, w.p95)
				}
			}
			fmt.Printf("  %s p50 %s ms, p95 %s ms", map[string]string{"people": "questions", "agents": "agents"}[grp], ms(p(p50s, 50)), ms(p(p95s, 50)))
		}
		fmt.Println(" (medians over rounds)")
	}
	fmt.Println()
	fmt.Printf("  %-62s %9s %6s %7s %7s %7s %6s %6s\n", "", "tokens/s", "÷ (a)", "busy", "open", "Jain", "agent", "queue")
	fmt.Printf("  %-62s %9s %6s %7s %7s %7s %6s %6s\n", "", "", "", "slots", "slots", "agents", "errors", "503s")
	for _, r := range rs[1:] {
		if r.skipped {
			continue
		}
		vsDirect := "-"
		if !direct.skipped {
			vsDirect = fmt.Sprintf("%.3f", r.tokensPerSecond()/direct.tokensPerSecond())
		}
		fmt.Printf("  %-62s %9.0f %6s %6.1f%% %6.1f%% %7.3f %6d %6.0f\n", r.name, r.tokensPerSecond(), vsDirect,
			100*r.utilisation(), 100*r.openUtilisation(), jain(r.agentTokens), r.agentErrors, r.timedOut)
	}
	fmt.Printf("  tokens/s ÷ (a), round by round: ")
	if direct.skipped {
		fmt.Print("- ((a) was not run)")
	}
	sep := ""
	for _, r := range rs[2:] {
		if r.skipped || direct.skipped {
			continue
		}
		fmt.Printf("%s%s", sep, r.name[:strings.Index(r.name, ")")+1])
		sep = "; "
		for k := range min(len(r.perRound), len(direct.perRound)) {
			fmt.Printf(" %.2f", r.perRound[k]/direct.perRound[k])
		}
	}
	fmt.Println()
	fmt.Printf("  busy slots: the server's (its /slots, every 50 ms) ÷ %d, while requests wait; open slots: ÷ those the waiting requests may take\n", o.slots)
	fmt.Printf("  (all of them when a short request waits, else those not kept for short requests); samples with waiters:")
	for _, r := range rs[1:] {
		if !r.skipped {
			fmt.Printf(" %d/%d", r.utilN, r.samples)
		}
	}
	fmt.Printf("\n  most busy slots seen at once:")
	for _, r := range rs[1:] {
		if !r.skipped {
			fmt.Printf(" %d", r.maxBusy)
		}
	}
	fmt.Printf(" (the server has %d)\n\n", o.slots)

	fmt.Println("goals")
	fmt.Printf("  %-74s %10s %10s\n", "", "measured", "target")
	goal := func(what, measured, target string, ok bool) {
		fmt.Printf("  %-74s %10s %10s %s\n", what, measured, target, benchkit.Verdict(ok))
	}
	d95 := p(direct.ttft, 95)
	n95 := p(noAgents.ttft, 95)
	for i, r := range rs[2:] {
		if r.skipped {
			continue
		}
		tag := r.name[:strings.Index(r.name, ")")+1]
		r95 := p(r.ttft, 95)
		bound := r.meanGen() / time.Duration(o.slots)
		// Goals against a configuration -only left out are not judged.
		if !direct.skipped {
			better := float64(d95) / float64(r95)
			goal(tag+" question p95 TTFT, times better than straight to the server", fmt.Sprintf("%.1f×", better), "≥ 5×", better >= 5)
		}
		if shares[i] > 0 && !noAgents.skipped {
			goal(tag+" question p95 TTFT ÷ no agents (slots kept for short requests)", fmt.Sprintf("%.2f", float64(r95)/float64(n95)), "≤ 2", float64(r95) <= 2*float64(n95))
		} else if shares[i] == 0 {
			goal(tag+" question p95 TTFT ÷ the bound", fmt.Sprintf("%.2f", float64(r95)/float64(bound)), "≤ 1.5", float64(r95) <= 1.5*float64(bound))
		}
		if !direct.skipped {
			tps := r.tokensPerSecond() / direct.tokensPerSecond()
			goal(tag+" tokens/s ÷ straight to the server", fmt.Sprintf("%.3f", tps), "≥ 0.95", tps >= 0.95)
		}
		if shares[i] > 0 {
			// Kept slots idle by design while no short request waits: what
			// counts is that no slot a waiting request may take is idle.
			goal(tag+" slot utilisation while requests wait (busy ÷ the slots they may take)", fmt.Sprintf("%.1f%%", 100*r.openUtilisation()), "≥ 95%", r.openUtilisation() >= 0.95)
		} else {
			goal(tag+" slot utilisation while requests wait (busy ÷ slots)", fmt.Sprintf("%.1f%%", 100*r.utilisation()), "≥ 95%", r.utilisation() >= 0.95)
		}
		j := jain(r.agentTokens)
		goal(tag+" Jain's fairness index of the tokens per agent", fmt.Sprintf("%.3f", j), "≥ 0.95", j >= 0.95)
	}
	one, two := rs[2], rs[4]
	if one.skipped || two.skipped {
		return
	}
	fmt.Printf("\nthe replicas' approximation: (c) ÷ (b), question TTFT p50 %.2f, p95 %.2f; Jain %.3f vs %.3f; tokens/s %.3f\n",
		float64(p(two.ttft, 50))/float64(p(one.ttft, 50)), float64(p(two.ttft, 95))/float64(p(one.ttft, 95)),
		jain(two.agentTokens), jain(one.agentTokens), two.tokensPerSecond()/one.tokensPerSecond())
}

// startLlama runs llama-server on a loopback port of the host's network
// (no Docker bridge or userland proxy between the clients and the server:
// on this machine the bridge path sometimes resets every new connection)
// and waits for it.
func startLlama(ctx context.Context, cli *client.Client, o options, name, dir string) (string, error) {
	port, err := benchkit.FreePort()
	if err != nil {
		return "", err
	}
	args := []string{"-m", "/models/thon-test.gguf", "--alias", model, "-np", strconv.Itoa(o.slots), "-c", strconv.Itoa(o.slots * 4096),
		"--host", "127.0.0.1", "--port", strconv.Itoa(port), "--no-webui", "--metrics",
		// An HTTP thread for every client: straight to the server, each
		// request then waits in llama-server's own queue.
		"--threads-http", strconv.Itoa(o.agents + o.questions + 8)}
	if o.threads > 0 {
		args = append(args, "--threads", strconv.Itoa(o.threads))
	}
	res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:   name,
		Config: &container.Config{Image: o.image, User: "10001:10001", Cmd: args},
		HostConfig: &container.HostConfig{
			NetworkMode: "host",
			Mounts:      []mount.Mount{{Type: mount.TypeBind, Source: dir, Target: "/models", ReadOnly: true}},
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
	// The server runs at this process's priority (nice -n 10 go run …
	// makes both polite to the machine's other users, alike), so that the
	// gateway and the server share the CPU as they would on their own.
	if err := matchNice(ins.Container.State.Pid); err != nil {
		fmt.Fprintln(os.Stderr, "bench/fairness: cannot give llama-server this process's priority:", err)
	}
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	// Ready once it has answered /health and then a few chats in a row:
	// for a few seconds after /health first says ok, llama-server still
	// resets some new connections.
	healthy, ok := false, 0
	var last error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if !healthy {
			if resp, err := http.Get(url + "/health"); err == nil {
				resp.Body.Close()
				healthy = resp.StatusCode == 200
			}
			continue
		}
		if _, last = stream(ctx, endpoint{base: url + "/v1"}, "", 4, false, func(time.Time) {}); last != nil {
			ok = 0
			continue
		}
		if ok++; ok == 5 {
			httpc.CloseIdleConnections()
			return url, nil
		}
	}
	if last != nil {
		return "", fmt.Errorf("llama-server did not answer chats within a minute: %w", last)
	}
	return "", fmt.Errorf("llama-server did not answer within a minute")
}

// matchNice gives every thread of process pid this process's nice value.
func matchNice(pid int) error {
	// The raw getpriority system call returns 20 - nice.
	prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		return err
	}
	nice := 20 - prio
	if nice == 0 {
		return nil
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil {
			return err
		}
	}
	return nil
}

// startRedis runs a private redis-server on a free loopback port.
func startRedis(ctx context.Context, bin, dir string) (string, func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	port, err := benchkit.FreePort()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--protected-mode", "no", "--daemonize", "no")
	p, err := benchkit.StartProc("redis-server", filepath.Join(dir, "redis.log"), cmd)
	if err != nil {
		return "", nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) || p.Exited() {
			p.Stop(time.Second)
			return "", nil, fmt.Errorf("redis-server did not start: %s", p.LogTail(20))
		}
	}
	return "redis://" + addr + "/0", func() { p.Stop(2 * time.Second) }, nil
}

// keyStore holds the clients' keys.
type keyStore struct {
	mu sync.Mutex
	m  map[string]gateway.Key
}

func newKeyStore() *keyStore { return &keyStore{m: map[string]gateway.Key{}} }

func (s *keyStore) add(k gateway.Key) string {
	secret, hash := gateway.NewKey()
	s.mu.Lock()
	s.m[hash] = k
	s.mu.Unlock()
	return secret
}

func (s *keyStore) KeyByHash(_ context.Context, hash string) (gateway.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.m[hash]
	if !ok {
		return gateway.Key{}, gateway.ErrUnknownKey
	}
	return k, nil
}

type discard struct{}

func (discard) Add(context.Context, gateway.Usage) error { return nil }

type gatewaySrv struct {
	*gateway.Gateway
	reg        *prometheus.Registry
	srv        *http.Server
	url        string
	shortShare float64
}

func (g *gatewaySrv) Close() { g.srv.Close(); g.Gateway.Close() }

// timedOut counts the requests the gateway answered model_queue_timeout.
func (g *gatewaySrv) timedOut() float64 {
	mfs, _ := g.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "thon_gateway_rejections_total" {
			continue
		}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "reason" && l.GetValue() == "model_queue_timeout" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// startGateway is the gateway as the daemon runs it in front of a
// llama-server with this many slots: keys, usage, the default concurrency
// per key, rate limits that do not bind (they are not what is measured).
func startGateway(upstream string, keys gateway.KeyStore, o options, shortShare float64, redisURL string) (*gatewaySrv, error) {
	d := config.Default().Gateway
	reg := prometheus.NewRegistry()
	g, err := gateway.New(gateway.Options{Upstream: upstream, Keys: keys, Usage: discard{}, Registerer: reg,
		Limits:        gateway.Limits{RequestsPerMinute: 100000, Concurrency: d.Limits.Concurrency, TokensPerMinute: 100000000, TokenKind: d.Limits.TokenKind},
		UpstreamSlots: o.slots, LlamaCppTimings: o.timings, ShortMaxTokens: o.shortTokens, ShortShare: shortShare, Redis: redisURL, RedisPrefix: "bench:", FailOpen: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		g.Close()
		return nil, err
	}
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return &gatewaySrv{Gateway: g, reg: reg, srv: srv, url: "http://" + ln.Addr().String() + "/v1", shortShare: shortShare}, nil
}
