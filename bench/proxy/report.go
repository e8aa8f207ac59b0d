package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/thon-dev/thon/bench/internal/benchkit"
)

// ms3 formats a duration in milliseconds with three decimals.
func ms3(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }

func tlsLine(st tls.ConnectionState) string {
	if st.Version == 0 {
		return "plain TCP"
	}
	s := tls.VersionName(st.Version) + ", " + tls.CipherSuiteName(st.CipherSuite)
	if st.CurveID != 0 {
		s += ", " + st.CurveID.String()
	}
	if st.NegotiatedProtocol != "" {
		s += ", ALPN " + st.NegotiatedProtocol
	}
	return s
}

func report(w io.Writer, o options, e *env, rounds []round, direct *round, h holdResult) {
	last := rounds[len(rounds)-1]
	fmt.Fprintf(w, "proxy: THON's front door vs nginx %s, in front of the same sandbox; %d CPUs, load from this process over loopback\n", e.nginxVersion, runtime.NumCPU())
	fmt.Fprintf(w, "sandbox: %s at %s (cpu %g, memory %dMi)\n", e.image, e.endpoint, o.sandboxCPU, sandboxMemoryMiB)
	fmt.Fprintf(w, "THON:  %s  port mode, session cookie %s; %s\n", e.thonURL, e.cookieName, tlsLine(last.thon.tls))
	fmt.Fprintf(w, "nginx: %s  %d workers (auto), upstream keep-alive 64, access_log off; %s\n", e.nginxURL, e.nginxWorkers, tlsLine(last.nginx.tls))
	fmt.Fprintf(w, "open-file limits: this process %d, the daemon %d\n\n", e.noFileSelf, e.noFileDaemon)

	// 1.
	fmt.Fprintf(w, "1. GET /healthz (2-byte body) over %d keep-alive HTTP/1.1 connections, %s warm-up + %s timed per run, %d rounds taking turns\n",
		o.conns, o.warmup, o.duration, len(rounds))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tside\treq/s\tp50 ms\tp99 ms\tmax ms\terrors\tnew conns\tserver CPU µs/req\tserver reads+writes/req\tload CPU µs/req\thost busy\t")
	row := func(label, side string, r loadResult) {
		srv, sys := "-", "-"
		if r.serverCPU > 0 {
			srv = fmt.Sprintf("%.1f", r.perReq(r.serverCPU))
			n := float64(r.requests)
			sys = fmt.Sprintf("%.2f+%.2f", float64(r.sysReads)/n, float64(r.sysWrites)/n)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%.1f\t%.0f%%\t\n", label, side, r.rps(),
			ms3(benchkit.Percentile(r.lat, 50)), ms3(benchkit.Percentile(r.lat, 99)), ms3(benchkit.Percentile(r.lat, 100)),
			r.errs, r.reconnects, srv, sys, r.perReq(r.clientCPU), 100*r.hostBusy)
	}
	var tRatios, pRatios, tRPS, nRPS, tP99, nP99, tP50, nP50, tCPU, nCPU []float64
	for i, rd := range rounds {
		first, second := "thon", "nginx"
		a, b := rd.thon, rd.nginx
		if rd.nginxFirst {
			first, second, a, b = second, first, b, a
		}
		row(fmt.Sprint(i+1), first, a)
		row("", second, b)
		tRatios = append(tRatios, rd.throughputRatio)
		pRatios = append(pRatios, rd.p99Ra)
		tRPS, nRPS = append(tRPS, rd.thon.rps()), append(nRPS, rd.nginx.rps())
		tP50, nP50 = append(tP50, msf(benchkit.Percentile(rd.thon.lat, 50))), append(nP50, msf(benchkit.Percentile(rd.nginx.lat, 50)))
		tP99, nP99 = append(tP99, msf(benchkit.Percentile(rd.thon.lat, 99))), append(nP99, msf(benchkit.Percentile(rd.nginx.lat, 99)))
		tCPU, nCPU = append(tCPU, rd.thon.perReq(rd.thon.serverCPU)), append(nCPU, rd.nginx.perReq(rd.nginx.serverCPU))
	}
	med := benchkit.Median
	fmt.Fprintf(tw, "median\tthon\t%.0f\t%.3f\t%.3f\t\t\t\t%.1f\t\t\t\t\n", med(tRPS), med(tP50), med(tP99), med(tCPU))
	fmt.Fprintf(tw, "median\tnginx\t%.0f\t%.3f\t%.3f\t\t\t\t%.1f\t\t\t\t\n", med(nRPS), med(nP50), med(nP99), med(nCPU))
	if direct != nil {
		row("reference", "direct", direct.direct)
	}
	tw.Flush()
	fmt.Fprintf(w, "THON/nginx per round: throughput %s; p99 %s\n", ratios(tRatios), ratios(pRatios))
	fmt.Fprintln(w, "(server CPU: the daemon's, or nginx's master and workers', CPU time in the timed window per request; the sandbox's is not in it.")
	fmt.Fprintln(w, " reads+writes: their read and write system calls per request. load CPU: this process's. host busy: the whole machine.")
	var reconn, resumed int
	for _, rd := range rounds {
		reconn += rd.nginx.reconnects + rd.thon.reconnects
		resumed += rd.nginx.resumed + rd.thon.resumed
	}
	if reconn > 0 {
		fmt.Fprintf(w, " new conns: opened again after the server closed a connection (nginx: keepalive_requests 1000, its default); %d of %d resumed their TLS session)\n", resumed, reconn)
	} else {
		fmt.Fprintln(w, " new conns: opened again after the server closed a connection)")
	}
	fmt.Fprintln(w)

	// 2.
	fmt.Fprintf(w, "2. WebSocket echo round trip: one connection, %d sequential %d-byte messages after %d untimed, per side and round\n", o.echoes, o.echoSize, o.echoWarm)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tside\tp50 ms\tp99 ms\tmax ms\t")
	erow := func(label, side string, ds []time.Duration) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", label, side, ms3(benchkit.Percentile(ds, 50)), ms3(benchkit.Percentile(ds, 99)), ms3(benchkit.Percentile(ds, 100)))
	}
	var te50, te99, ne50, ne99 []float64
	for i, rd := range rounds {
		first, second := "thon", "nginx"
		a, b := rd.thonEcho, rd.nginxEcho
		if rd.nginxFirst {
			first, second, a, b = second, first, b, a
		}
		erow(fmt.Sprint(i+1), first, a)
		erow("", second, b)
		te50, te99 = append(te50, msf(benchkit.Percentile(rd.thonEcho, 50))), append(te99, msf(benchkit.Percentile(rd.thonEcho, 99)))
		ne50, ne99 = append(ne50, msf(benchkit.Percentile(rd.nginxEcho, 50))), append(ne99, msf(benchkit.Percentile(rd.nginxEcho, 99)))
	}
	fmt.Fprintf(tw, "median\tthon\t%.3f\t%.3f\t\t\n", med(te50), med(te99))
	fmt.Fprintf(tw, "median\tnginx\t%.3f\t%.3f\t\t\n", med(ne50), med(ne99))
	if direct != nil {
		erow("reference", "direct", direct.directEcho)
	}
	tw.Flush()
	fmt.Fprintf(w, "THON/nginx (medians): p50 %.2f, p99 %.2f\n\n", med(te50)/med(ne50), med(te99)/med(ne99))

	// 3.
	fmt.Fprintf(w, "3. %d WebSockets through THON held %s, each sending a %d-byte message every %s and checking the echo\n", o.ws, o.hold, holdMsgSize, o.interval)
	fmt.Fprintf(w, "   opened:  %d of %d in %.1fs, %d at a time (handshake p50 %s ms, p99 %s ms)\n",
		h.dialed, h.conns, h.connected.Seconds(), o.dialConc, ms3(benchkit.Percentile(h.dialTimes, 50)), ms3(benchkit.Percentile(h.dialTimes, 99)))
	fmt.Fprintf(w, "   echoes:  %d answered, round trip p50 %s ms, p99 %s ms, max %s ms\n",
		h.echoes, ms3(benchkit.Percentile(h.rtt, 50)), ms3(benchkit.Percentile(h.rtt, 99)), ms3(benchkit.Percentile(h.rtt, 100)))
	fmt.Fprintf(w, "   errors:  %d (failed opens %d, failed echoes %d, failed closes %d)\n", h.errors(), h.dialErrs, h.echoErrs, h.closeErrs)
	for _, err := range h.firstErrs {
		fmt.Fprintf(w, "            %v\n", err)
	}
	peak := max(h.rssPeak, h.hwm)
	fmt.Fprintf(w, "   daemon:  RSS %s MiB before, %s MiB with all open, peak %s MiB (%d samples every 200ms), %s MiB after closing; VmHWM over the whole run %s MiB\n",
		benchkit.MiB(h.rssBefore), benchkit.MiB(h.rssHeld), benchkit.MiB(h.rssPeak), h.samples, benchkit.MiB(h.rssAfter), benchkit.MiB(h.hwm))
	if h.dialed > 0 {
		fmt.Fprintf(w, "            %.0f KiB more per open WebSocket; open files %d before, %d at most (the client's connection and one to the sandbox per WebSocket)\n",
			float64(h.rssHeld-h.rssBefore)/float64(h.dialed), h.fdBefore, h.fdPeak)
	}
	fmt.Fprintln(w)

	// Goals.
	mt, mp := med(tRatios), med(pRatios)
	peakMiB := float64(peak) / 1024
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "goal\tmeasured\ttarget\t\t")
	fmt.Fprintf(tw, "1. throughput THON/nginx (median of rounds)\t%.3f\t>= %.2f\t%s\t\n", mt, goalThroughput, benchkit.Verdict(mt >= goalThroughput))
	fmt.Fprintf(tw, "1. p99 latency THON/nginx (median of rounds)\t%.3f\t<= %.2f\t%s\t\n", mp, goalP99, benchkit.Verdict(mp <= goalP99))
	fmt.Fprintf(tw, "2. WebSocket echo p50 / p99, THON\t%.3f / %.3f ms\t(nginx %.3f / %.3f ms)\t\t\n", med(te50), med(te99), med(ne50), med(ne99))
	fmt.Fprintf(tw, "3. errors, %d WebSockets held %s\t%d\t0\t%s\t\n", o.ws, o.hold, h.errors(), benchkit.Verdict(h.errors() == 0 && h.dialed == h.conns))
	fmt.Fprintf(tw, "3. daemon peak RSS\t%.1f MiB\t< %.0f MiB\t%s\t\n", peakMiB, goalRSSMiB, benchkit.Verdict(peakMiB < goalRSSMiB))
	tw.Flush()
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func ratios(xs []float64) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprintf("%.3f", x))
	}
	return strings.Join(s, ", ")
}
