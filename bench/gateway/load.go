package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/thon-dev/thon/bench/internal/benchkit"
)

// kind is the request shape measured.
type kind int

const (
	kindChat   kind = iota // POST /v1/chat/completions, JSON answer
	kindStream             // the same with "stream": true, SSE answer
	numKinds
)

var kindNames = [numKinds]string{"chat completions (JSON)", "streaming chat completions (SSE)"}

// The request every client sends (stream adds "stream": true); max_tokens
// is above the upstream's completion tokens, so it does not change them.
const chatBody = `{"model":"` + benchModel + `","messages":[{"role":"system","content":"You are a helpful coding assistant."},` +
	`{"role":"user","content":"Write a Go function that reverses a string."}],"max_tokens":256,"temperature":0.2`

// target is one path to the upstream.
type target struct {
	name string
	addr string
	// proxy lists the processes whose CPU time is the proxy's (none for
	// direct); side those beside it (redis-server).
	proxy, side func() []int
	reqs        [numKinds][][]byte // one per key, written as is
}

// buildRequests writes the raw HTTP/1.1 requests, one per key and kind.
func buildRequests(addr string, secrets []string) [numKinds][][]byte {
	var out [numKinds][][]byte
	for k := range numKinds {
		body := chatBody
		if k == kindStream {
			body += `,"stream":true`
		}
		body += "}"
		for _, s := range secrets {
			out[k] = append(out[k], []byte("POST /v1/chat/completions HTTP/1.1\r\n"+
				"Host: "+addr+"\r\n"+
				"Authorization: Bearer "+s+"\r\n"+
				"Content-Type: application/json\r\n"+
				"Accept: application/json, text/event-stream\r\n"+
				"User-Agent: bench-gateway\r\n"+
				"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body))
		}
	}
	return out
}

// expect is what a correct answer looks like.
type expect struct {
	events int // data: lines of a stream, [DONE] included
}

// conn is one keep-alive client connection with its reader and a body
// buffer reused for every response.
type conn struct {
	c    net.Conn
	br   *bufio.Reader
	body []byte
}

func dial(ctx context.Context, addr string) (*conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &conn{c: c, br: bufio.NewReaderSize(c, 16<<10), body: make([]byte, 0, 8<<10)}, nil
}

var (
	doneEvent = []byte("data: [DONE]\n\n")
	dataField = []byte("data: ")
	usageKey  = []byte(`"usage"`)
	chatObj   = []byte(`"chat.completion"`)
)

// roundTrip writes req and reads the whole answer, checking it. first is
// when the first piece of a chunked body was in (a stream's first event).
// HTTP/1.1 is parsed by hand (status, Content-Length, chunked, Connection)
// so that the load generator spends as little of the machine as it can.
func (cn *conn) roundTrip(req []byte, k kind, want expect) (keep bool, first time.Time, err error) {
	if _, err := cn.c.Write(req); err != nil {
		return false, first, err
	}
	br := cn.br
	line, err := br.ReadSlice('\n')
	if err != nil {
		return false, first, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return false, first, fmt.Errorf("not an HTTP/1 response: %q", line)
	}
	keep = line[7] == '1'
	status := [3]byte{line[9], line[10], line[11]}
	cl, chunked := -1, false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return false, first, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case len(name) == 14 && bytes.EqualFold(name, []byte("Content-Length")):
			if cl, err = strconv.Atoi(string(value)); err != nil {
				return false, first, fmt.Errorf("bad Content-Length %q", value)
			}
		case len(name) == 17 && bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case len(name) == 10 && bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			} else if bytes.EqualFold(value, []byte("keep-alive")) {
				keep = true
			}
		}
	}
	body := cn.body[:0]
	switch {
	case chunked:
		for {
			line, err = br.ReadSlice('\n')
			if err != nil {
				return false, first, fmt.Errorf("chunk size: %w", err)
			}
			line = bytes.TrimRight(line, "\r\n")
			if i := bytes.IndexByte(line, ';'); i >= 0 {
				line = line[:i]
			}
			n, perr := strconv.ParseUint(string(line), 16, 31)
			if perr != nil {
				return false, first, fmt.Errorf("bad chunk size %q", line)
			}
			if n == 0 {
				for { // trailers, then an empty line
					line, err = br.ReadSlice('\n')
					if err != nil {
						return false, first, err
					}
					if len(bytes.TrimRight(line, "\r\n")) == 0 {
						break
					}
				}
				break
			}
			start := len(body)
			if start+int(n) > 1<<20 {
				return false, first, fmt.Errorf("response body over 1 MiB")
			}
			body = slices.Grow(body, int(n))[:start+int(n)]
			if _, err = io.ReadFull(br, body[start:]); err != nil {
				return false, first, err
			}
			if first.IsZero() {
				first = time.Now()
			}
			if _, err = br.Discard(2); err != nil {
				return false, first, err
			}
		}
	case cl >= 0:
		if cl > 1<<20 {
			return false, first, fmt.Errorf("response body over 1 MiB")
		}
		body = slices.Grow(body, cl)[:cl]
		if _, err = io.ReadFull(br, body); err != nil {
			return false, first, err
		}
	default:
		if body, err = io.ReadAll(io.LimitReader(br, 1<<20)); err != nil {
			return false, first, err
		}
		keep = false
	}
	cn.body = body
	if status != [3]byte{'2', '0', '0'} {
		return false, first, fmt.Errorf("status %s: %.200s", status[:], body)
	}
	switch k {
	case kindChat:
		if !bytes.Contains(body, usageKey) || !bytes.Contains(body, chatObj) {
			return keep, first, fmt.Errorf("not a chat completion with usage: %.200s", body)
		}
	case kindStream:
		if !bytes.HasSuffix(body, doneEvent) {
			return keep, first, fmt.Errorf("stream does not end with data: [DONE]: %.200q", body)
		}
		if n := bytes.Count(body, dataField); n != want.events {
			return keep, first, fmt.Errorf("stream has %d events, want %d: %.400q", n, want.events, body)
		}
	}
	return keep, first, nil
}

// runResult is one timed run against one target.
type runResult struct {
	requests    int
	window      time.Duration
	lat         []time.Duration // request written → answer read in full
	first       []time.Duration // request written → first event (streams)
	lag         []time.Duration // open loop: how late each request went out
	errs        int
	firstErr    error
	reconnects  int
	proxyCPU    time.Duration // the proxy's processes in the window
	proxyReads  int64         // their read and write system calls in the window
	proxyWrites int64
	sideCPU     time.Duration // redis-server's
	upstreamCPU time.Duration
	loadCPU     time.Duration // this process's
	hostBusy    float64       // share of the machine's CPU time in use
}

func (r *runResult) rps() float64 { return float64(r.requests) / r.window.Seconds() }

// perReq is CPU time per request in microseconds.
func (r *runResult) perReq(d time.Duration) float64 {
	if r.requests == 0 {
		return 0
	}
	return float64(d) / float64(time.Microsecond) / float64(r.requests)
}

func (r *runResult) p(q float64) time.Duration      { return benchkit.Percentile(r.lat, q) }
func (r *runResult) firstP(q float64) time.Duration { return benchkit.Percentile(r.first, q) }

// loadSpec says how to load a target.
type loadSpec struct {
	kind     kind
	want     expect
	conns    int
	rate     float64 // requests/s for the open loop; 0: closed loop
	warmup   time.Duration
	window   time.Duration
	upstream int // the upstream's pid
}

// worker is one connection's share of a run.
type worker struct {
	lat, first, lag []time.Duration
	errs, reconn    int
	firstErr        error
	sent            int // successful requests, warm-up included
}

func (w *worker) fail(err error) {
	w.errs++
	if w.firstErr == nil {
		w.firstErr = err
	}
}

// run loads t as spec says and measures the timed window.
//
// Open loop (spec.rate > 0): request n is due at start + n/rate, and
// connection i sends requests i, i+conns, i+2·conns, … each at its due time
// (or at once when the previous answer on that connection came late), so
// the rate does not depend on how fast the answers come. Latency is from
// writing the request to reading the whole answer; how late each request
// went out is kept too.
//
// Closed loop (spec.rate == 0): each connection sends its next request as
// soon as the previous answer is in.
func run(ctx context.Context, t *target, spec loadSpec) (runResult, int, error) {
	res := runResult{window: spec.window}
	ws := make([]worker, spec.conns)
	conns := make([]*conn, spec.conns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.c.Close()
			}
		}
	}()
	for i := range conns {
		c, err := dial(ctx, t.addr)
		if err != nil {
			return res, 0, fmt.Errorf("%s: connect: %w", t.name, err)
		}
		conns[i] = c
	}
	start := time.Now().Add(20 * time.Millisecond)
	mStart, mEnd := start.Add(spec.warmup), start.Add(spec.warmup+spec.window)
	reqs := t.reqs[spec.kind]
	var interval time.Duration
	if spec.rate > 0 {
		interval = time.Duration(float64(time.Second) / spec.rate)
	}

	var wg sync.WaitGroup
	for i := range ws {
		w := &ws[i]
		capacity := 1 << 12
		if spec.rate > 0 {
			capacity = int(spec.rate*spec.window.Seconds())/spec.conns + 16
		}
		w.lat = make([]time.Duration, 0, capacity)
		if spec.kind == kindStream {
			w.first = make([]time.Duration, 0, capacity)
		}
		if spec.rate > 0 {
			w.lag = make([]time.Duration, 0, capacity)
		}
		wg.Go(func() {
			c := conns[i]
			for n := i; ctx.Err() == nil; n += spec.conns {
				var due time.Time
				if spec.rate > 0 {
					due = start.Add(time.Duration(n) * interval)
					if !due.Before(mEnd) {
						return
					}
					if d := time.Until(due); d > 0 {
						time.Sleep(d)
					}
				} else if !time.Now().Before(mEnd) {
					return
				}
				if c == nil {
					var err error
					if c, err = dial(ctx, t.addr); err != nil {
						w.fail(fmt.Errorf("connect: %w", err))
						time.Sleep(10 * time.Millisecond)
						continue
					}
					conns[i] = c
					w.reconn++
				}
				c.c.SetDeadline(time.Now().Add(10 * time.Second))
				t0 := time.Now()
				keep, first, err := c.roundTrip(reqs[n%len(reqs)], spec.kind, spec.want)
				t1 := time.Now()
				if err != nil {
					w.fail(err)
					c.c.Close()
					c, conns[i] = nil, nil
					continue
				}
				w.sent++
				in := !t0.Before(mStart) && t1.Before(mEnd)
				if spec.rate > 0 {
					in = !due.Before(mStart)
				}
				if in {
					w.lat = append(w.lat, t1.Sub(t0))
					if spec.kind == kindStream {
						w.first = append(w.first, first.Sub(t0))
					}
					if spec.rate > 0 {
						w.lag = append(w.lag, t0.Sub(due))
					}
				}
				if !keep {
					c.c.Close()
					c, conns[i] = nil, nil
				}
			}
		})
	}

	// CPU counters at the window's edges.
	type counters struct {
		proxy, side, up, load, busy, total time.Duration
		reads, writes                      int64
	}
	var cpuErr error
	sample := func(c *counters) {
		var err error
		if t.proxy != nil {
			pids := t.proxy()
			if c.proxy, err = benchkit.ProcCPU(pids...); err == nil {
				c.reads, c.writes, err = benchkit.ProcSyscalls(pids...)
			}
			if err != nil && cpuErr == nil {
				cpuErr = err
			}
		}
		if t.side != nil {
			if c.side, err = benchkit.ProcCPU(t.side()...); err != nil && cpuErr == nil {
				cpuErr = err
			}
		}
		if c.up, err = benchkit.ProcCPU(spec.upstream); err != nil && cpuErr == nil {
			cpuErr = err
		}
		c.load = benchkit.SelfCPU()
		c.busy, c.total = benchkit.HostCPU()
	}
	var c0, c1 counters
	sleepUntil(ctx, mStart)
	sample(&c0)
	sleepUntil(ctx, mEnd)
	sample(&c1)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, 0, err
	}
	if cpuErr != nil {
		return res, 0, fmt.Errorf("%s: CPU time: %w", t.name, cpuErr)
	}
	res.proxyCPU, res.sideCPU, res.upstreamCPU, res.loadCPU = c1.proxy-c0.proxy, c1.side-c0.side, c1.up-c0.up, c1.load-c0.load
	res.proxyReads, res.proxyWrites = c1.reads-c0.reads, c1.writes-c0.writes
	if c1.total > c0.total {
		res.hostBusy = float64(c1.busy-c0.busy) / float64(c1.total-c0.total)
	}
	sent := 0
	for i := range ws {
		w := &ws[i]
		res.lat = append(res.lat, w.lat...)
		res.first = append(res.first, w.first...)
		res.lag = append(res.lag, w.lag...)
		res.errs += w.errs
		res.reconnects += w.reconn
		sent += w.sent
		if res.firstErr == nil {
			res.firstErr = w.firstErr
		}
	}
	res.requests = len(res.lat)
	if res.requests == 0 {
		return res, sent, fmt.Errorf("%s: no request completed in %s (%d errors, first: %v)", t.name, spec.window, res.errs, res.firstErr)
	}
	if res.errs > res.requests/1000 {
		return res, sent, fmt.Errorf("%s: %d errors for %d requests (first: %v)", t.name, res.errs, res.requests, res.firstErr)
	}
	return res, sent, nil
}

func sleepUntil(ctx context.Context, t time.Time) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(t)):
	}
}

// check sends one request of each kind to t and checks the answers.
func check(ctx context.Context, t *target, want [numKinds]expect) error {
	c, err := dial(ctx, t.addr)
	if err != nil {
		return fmt.Errorf("%s: connect: %w", t.name, err)
	}
	defer c.c.Close()
	c.c.SetDeadline(time.Now().Add(10 * time.Second))
	for k := range numKinds {
		if _, _, err := c.roundTrip(t.reqs[k][0], k, want[k]); err != nil {
			return fmt.Errorf("%s: %s: %w", t.name, kindNames[k], err)
		}
	}
	return nil
}
