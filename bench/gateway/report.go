package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/thon-dev/thon/bench/internal/benchkit"
)

func us(d float64) string { return fmt.Sprintf("%.0f", d) }

// durUS is a duration in microseconds.
func durUS(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// medianOf is the median over rounds of f(run).
func medianOf(rounds []roundResult, lat bool, k kind, p path, f func(*runResult) float64) float64 {
	var xs []float64
	for i := range rounds {
		r := rounds[i].tput[k][p]
		if lat {
			r = rounds[i].lat[k][p]
		}
		if r != nil {
			xs = append(xs, f(r))
		}
	}
	return benchkit.Median(xs)
}

// added is the median over rounds of (path − direct) of a percentile, in µs.
func added(rounds []roundResult, k kind, p path, f func(*runResult) time.Duration) float64 {
	var xs []float64
	for i := range rounds {
		r, d := rounds[i].lat[k][p], rounds[i].lat[k][pDirect]
		if r != nil && d != nil {
			xs = append(xs, durUS(f(r)-f(d)))
		}
	}
	return benchkit.Median(xs)
}

// tputRatios are gateway/nginx requests/s per round.
func tputRatios(rounds []roundResult, k kind, p path) []float64 {
	var xs []float64
	for i := range rounds {
		g, n := rounds[i].tput[k][p], rounds[i].tput[k][pNginx]
		if g != nil && n != nil {
			xs = append(xs, g.rps()/n.rps())
		}
	}
	return xs
}

func list(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(s, ", ")
}

func p50(r *runResult) time.Duration     { return r.p(50) }
func p99(r *runResult) time.Duration     { return r.p(99) }
func first50(r *runResult) time.Duration { return r.firstP(50) }
func msf(d time.Duration) float64        { return float64(d) / float64(time.Millisecond) }
func asMs(f func(*runResult) time.Duration) func(*runResult) float64 {
	return func(r *runResult) float64 { return msf(f(r)) }
}

// cpuCell is the proxy's CPU per request (and redis-server's beside it).
func cpuCell(r *runResult, p path) string {
	switch p {
	case pDirect:
		return "-"
	case pGwRedis:
		return fmt.Sprintf("%.1f + redis %.1f", r.perReq(r.proxyCPU), r.perReq(r.sideCPU))
	}
	return fmt.Sprintf("%.1f", r.perReq(r.proxyCPU))
}

func report(w io.Writer, o options, e *env, rounds []roundResult, usage map[path]usageSeen) {
	fmt.Fprintf(w, "gateway: THON's AI gateway vs nginx proxy_pass vs direct, in front of the same upstream test server; %d CPUs, loopback\n", numCPU)
	fmt.Fprintf(w, "upstream: internal/gateway/upstreamtest in its own process at %s; %d prompt + %d completion tokens per request; a stream is %d events (role, %d tokens, stop, [DONE]), no delays\n",
		e.upstream.addr, o.promptTokens, o.tokens, e.want[kindStream].events, o.tokens)
	if e.nginx != nil {
		fmt.Fprintf(w, "nginx:    %s, %d workers (auto), HTTP/1.1 to the upstream with keepalive 64, proxy_buffering off, keepalive_requests 1000000, access_log off\n", e.nginxVersion, e.nginxWorkers)
	}
	ml := ""
	if o.modelLimits {
		ml = " + per-model concurrency and tokens/min"
	}
	fmt.Fprintf(w, "gateway:  one process per counter store, served as the daemon serves it; auth (%d keys, Bearer, requests round-robin over them),\n"+
		"          limits on and never reached (requests/min, concurrency, tokens/min, budget%s), usage into a counting sink, Prometheus metrics\n", o.keys, ml)
	if e.redis != nil {
		fmt.Fprintf(w, "Redis:    redis-server %s at %s (--save \"\" --appendonly no), shared counters with fail-open\n", e.redisVersion, e.redis.addr)
	}
	if e.fwd != nil {
		fmt.Fprintln(w, "Go forwarder: a reference, the gateway's HTTP plumbing without its logic: net/http server, http.Client tuned as the gateway's,\n"+
			"          body read and sent upstream, answer copied back with a pooled 32 KiB buffer (flushed after each read for streams)")
	}
	fmt.Fprintf(w, "load:     this process, HTTP/1.1 written and parsed by hand over keep-alive connections; every answer checked; %d rounds, path order reversed every other round;\n"+
		"          figures are medians over rounds\n\n", len(rounds))

	paths := e.paths()
	med := func(lat bool, k kind, p path, f func(*runResult) float64) float64 {
		return medianOf(rounds, lat, k, p, f)
	}

	fmt.Fprintf(w, "A. Latency at a fixed %.0f requests/s (open loop over %d connections, each on its own schedule; %s warm-up + %s timed per run)\n",
		o.rate, o.rateConns, o.rateWarmup, o.rateDuration)
	fmt.Fprintln(w, "   latency: request written → answer read in full; added: the path's percentile minus direct's in the same round;")
	fmt.Fprintln(w, "   send lag: how long after its due time a request went out (timer wake-ups of this process; not in the latency)")
	for k := range numKinds {
		fmt.Fprintf(w, "\n   %s\n", kindNames[k])
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		hdr := "path\tp50 ms\tp99 ms\tadded p50 µs\tadded p99 µs\t"
		if k == kindStream {
			hdr += "first event p50 ms\tadded first p50 µs\t"
		}
		fmt.Fprintln(tw, hdr+"proxy CPU µs/req\tsend lag p50/p99 ms\t")
		for _, p := range paths {
			a50, a99, af := "-", "-", "-"
			if p != pDirect && e.targets[pDirect] != nil {
				a50, a99, af = us(added(rounds, k, p, p50)), us(added(rounds, k, p, p99)), us(added(rounds, k, p, first50))
			}
			fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%s\t%s\t", pathNames[p], med(true, k, p, asMs(p50)), med(true, k, p, asMs(p99)), a50, a99)
			if k == kindStream {
				fmt.Fprintf(tw, "%.3f\t%s\t", med(true, k, p, asMs(first50)), af)
			}
			cpu := "-"
			if p != pDirect {
				cpu = fmt.Sprintf("%.1f", med(true, k, p, func(r *runResult) float64 { return r.perReq(r.proxyCPU) }))
				if p == pGwRedis {
					cpu += fmt.Sprintf(" + redis %.1f", med(true, k, p, func(r *runResult) float64 { return r.perReq(r.sideCPU) }))
				}
			}
			fmt.Fprintf(tw, "%s\t%.3f / %.3f\t\n", cpu, med(true, k, p, func(r *runResult) float64 { return msf(benchkit.Percentile(r.lag, 50)) }),
				med(true, k, p, func(r *runResult) float64 { return msf(benchkit.Percentile(r.lag, 99)) }))
		}
		tw.Flush()
		if o.verbose {
			verboseLat(w, rounds, k, paths)
		}
	}

	fmt.Fprintf(w, "\nB. Maximum throughput (closed loop: %d connections, each sending as soon as its previous answer is in; %s warm-up + %s timed per run)\n",
		o.conns, o.warmup, o.duration)
	for k := range numKinds {
		fmt.Fprintf(w, "\n   %s\n", kindNames[k])
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "path\treq/s\tp50 ms\tp99 ms\tproxy CPU µs/req\tproxy reads+writes/req\tupstream CPU µs/req\tload CPU µs/req\thost busy\t÷ nginx, per round\t")
		for _, p := range paths {
			cpu := "-"
			if p != pDirect {
				cpu = fmt.Sprintf("%.1f", med(false, k, p, func(r *runResult) float64 { return r.perReq(r.proxyCPU) }))
				if p == pGwRedis {
					cpu += fmt.Sprintf(" + redis %.1f", med(false, k, p, func(r *runResult) float64 { return r.perReq(r.sideCPU) }))
				}
			}
			ratio, sys := "-", "-"
			if p != pNginx {
				ratio = list(tputRatios(rounds, k, p))
			}
			if p != pDirect {
				sys = fmt.Sprintf("%.2f+%.2f", med(false, k, p, func(r *runResult) float64 { return float64(r.proxyReads) / float64(r.requests) }),
					med(false, k, p, func(r *runResult) float64 { return float64(r.proxyWrites) / float64(r.requests) }))
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%.3f\t%.3f\t%s\t%s\t%.1f\t%.1f\t%.0f%%\t%s\t\n", pathNames[p],
				med(false, k, p, (*runResult).rps), med(false, k, p, asMs(p50)), med(false, k, p, asMs(p99)), cpu, sys,
				med(false, k, p, func(r *runResult) float64 { return r.perReq(r.upstreamCPU) }),
				med(false, k, p, func(r *runResult) float64 { return r.perReq(r.loadCPU) }),
				100*med(false, k, p, func(r *runResult) float64 { return r.hostBusy }), ratio)
		}
		tw.Flush()
		if o.verbose {
			verboseTput(w, rounds, k, paths)
		}
	}
	fmt.Fprintln(w, "\n   (CPU µs/req: CPU time of the processes in the timed window ÷ requests; proxy: nginx's master and workers, or the gateway process,")
	fmt.Fprintln(w, "    plus redis-server's beside it. reads+writes: the proxy's read and write system calls (/proc/PID/io) ÷ requests.")
	fmt.Fprintln(w, "    load: this process. host busy: the whole machine, all of it shared by the load, upstream and proxy.)")

	fmt.Fprintln(w, "\nUsage accounted by the gateways (flushed to the sink every second):")
	for _, p := range []path{pGwMem, pGwRedis} {
		u, ok := usage[p]
		if !ok {
			continue
		}
		c := u.counts
		verdict := "all accounted"
		if c.Requests != int64(u.sent) || c.Prompt != c.Requests*int64(o.promptTokens) || c.Completion != c.Requests*int64(o.tokens) {
			verdict = fmt.Sprintf("MISMATCH: want %d requests, %d prompt and %d completion tokens",
				u.sent, u.sent*o.promptTokens, u.sent*o.tokens)
		}
		fmt.Fprintf(w, "   %-16s %d requests served, the sink got %d requests, %d prompt + %d completion tokens, %d rejections in %d records: %s\n",
			pathNames[p]+":", u.sent, c.Requests, c.Prompt, c.Completion, c.Rejections, c.Records, verdict)
		if p == pGwRedis {
			if u.redisError != nil {
				fmt.Fprintf(w, "   %-16s DBSIZE: %v\n", "", u.redisError)
			} else {
				fmt.Fprintf(w, "   %-16s Redis holds %s keys (counters of the %d keys)\n", "", u.redisKeys, o.keys)
			}
		}
	}

	fmt.Fprintln(w, "\nGoals")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "goal\tmeasured\ttarget")
	for k := range numKinds {
		short := [numKinds]string{"JSON", "SSE"}[k]
		for _, p := range []path{pGwMem, pGwRedis} {
			if e.targets[p] == nil {
				continue
			}
			if e.targets[pDirect] != nil {
				a50, a99 := added(rounds, k, p, p50), added(rounds, k, p, p99)
				fmt.Fprintf(tw, "%s, %s: added p50 at %.0f req/s\t%.0f µs\t< %.0f µs\t%s\n", short, pathNames[p], o.rate, a50, durUS(goalAddedP50), benchkit.Verdict(a50 < durUS(goalAddedP50)))
				fmt.Fprintf(tw, "%s, %s: added p99 at %.0f req/s\t%.0f µs\t< %.0f µs\t%s\n", short, pathNames[p], o.rate, a99, durUS(goalAddedP99), benchkit.Verdict(a99 < durUS(goalAddedP99)))
			}
			if e.targets[pNginx] != nil {
				ratio := benchkit.Median(tputRatios(rounds, k, p))
				fmt.Fprintf(tw, "%s, %s: throughput ÷ nginx\t%.2f\t>= %.2f\t%s\n", short, pathNames[p], ratio, goalThroughput, benchkit.Verdict(ratio >= goalThroughput))
			}
		}
	}
	tw.Flush()
}

func verboseLat(w io.Writer, rounds []roundResult, k kind, paths []path) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tpath\trequests\tp50 ms\tp99 ms\tmax ms\tfirst p50 ms\tlag p99 ms\tproxy CPU µs/req\thost busy\t")
	for i, rd := range rounds {
		for _, p := range paths {
			r := rd.lat[k][p]
			fp := "-"
			if k == kindStream {
				fp = ms3(r.firstP(50))
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f%%\t\n", i+1, pathNames[p], r.requests, ms3(r.p(50)), ms3(r.p(99)), ms3(r.p(100)),
				fp, ms3(benchkit.Percentile(r.lag, 99)), cpuCell(r, p), 100*r.hostBusy)
		}
	}
	tw.Flush()
}

func verboseTput(w io.Writer, rounds []roundResult, k kind, paths []path) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tpath\treq/s\tp50 ms\tp99 ms\tmax ms\terrors\tproxy CPU µs/req\thost busy\t")
	for i, rd := range rounds {
		for _, p := range paths {
			r := rd.tput[k][p]
			fmt.Fprintf(tw, "%d\t%s\t%.0f\t%s\t%s\t%s\t%d\t%s\t%.0f%%\t\n", i+1, pathNames[p], r.rps(), ms3(r.p(50)), ms3(r.p(99)), ms3(r.p(100)),
				r.errs, cpuCell(r, p), 100*r.hostBusy)
		}
	}
	tw.Flush()
}
