package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"strconv"
	"sync"
	"time"

	"github.com/thon-dev/thon/bench/internal/benchkit"
)

// target is one way to the same IDE: through THON, through nginx, or
// straight to the sandbox (plain HTTP, no proxy).
type target struct {
	name   string
	addr   string      // host:port to connect to
	tls    *tls.Config // nil: plain TCP
	host   string      // Host header
	cookie string      // Cookie header ("" for none)
	pids   []int       // the server's processes, for CPU time and system calls (none: not measured)
}

// dial opens one connection (a TLS handshake included) with a read buffer.
func (t *target) dial(ctx context.Context) (net.Conn, *bufio.Reader, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	var c net.Conn
	var err error
	if t.tls != nil {
		c, err = (&tls.Dialer{NetDialer: d, Config: t.tls}).DialContext(ctx, "tcp", t.addr)
	} else {
		c, err = d.DialContext(ctx, "tcp", t.addr)
	}
	if err != nil {
		return nil, nil, err
	}
	return c, bufio.NewReaderSize(c, 4096), nil
}

// request is the one request of the load test, the same bytes for every
// target but the Host header: GET /healthz with the session cookie (nginx
// forwards it, THON checks and strips it).
func (t *target) request() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET /healthz HTTP/1.1\r\nHost: %s\r\nUser-Agent: thon-bench-proxy\r\nAccept: */*\r\n", t.host)
	if t.cookie != "" {
		fmt.Fprintf(&b, "Cookie: %s\r\n", t.cookie)
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// readResponse reads one HTTP/1.x response and wants 200 with the body "ok";
// keep says whether the connection may carry the next request. It is a
// minimal parser (status line, Content-Length, chunked, Connection) so that
// the load generator spends as little of the machine as it can.
func readResponse(br *bufio.Reader) (keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return false, fmt.Errorf("not an HTTP/1 response: %q", line)
	}
	keep = line[7] == '1'
	status := string(line[9:12])
	cl, chunked := -1, false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return false, err
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
		case bytes.EqualFold(name, []byte("Content-Length")):
			if cl, err = strconv.Atoi(string(value)); err != nil {
				return false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			} else if bytes.EqualFold(value, []byte("keep-alive")) {
				keep = true
			}
		}
	}
	var body []byte
	switch {
	case chunked:
		body, err = io.ReadAll(io.LimitReader(httputil.NewChunkedReader(br), 1<<20))
		if err == nil {
			// The trailer section ends with an empty line.
			for {
				line, err = br.ReadSlice('\n')
				if err != nil || len(bytes.TrimRight(line, "\r\n")) == 0 {
					break
				}
			}
		}
	case cl >= 0:
		if cl <= 64 {
			body, err = br.Peek(cl)
			body = bytes.Clone(body)
		}
		if err == nil {
			_, err = br.Discard(cl)
		}
	default:
		body, err = io.ReadAll(io.LimitReader(br, 1<<20))
		keep = false
	}
	if err != nil {
		return false, fmt.Errorf("read body: %w", err)
	}
	if status != "200" || string(body) != "ok" {
		return false, fmt.Errorf("status %s, body %.80q (want 200 \"ok\")", status, body)
	}
	return keep, nil
}

// loadResult is one timed run of the keep-alive load test.
type loadResult struct {
	requests   int             // completed inside the window
	window     time.Duration   // the timed part (after the warm-up)
	lat        []time.Duration // of the requests inside the window
	errs       int
	firstErr   error
	reconnects int // new connections after the first one of each worker
	resumed    int // of which resumed their TLS session
	serverCPU  time.Duration
	clientCPU  time.Duration
	hostBusy   float64 // share of the machine's CPU time in use, 0..1
	sysReads   int64   // the server's read and write system calls in the window
	sysWrites  int64
	tls        tls.ConnectionState
}

func (r loadResult) rps() float64 { return float64(r.requests) / r.window.Seconds() }

// perReq is CPU time per request in microseconds.
func (r loadResult) perReq(d time.Duration) float64 {
	if r.requests == 0 {
		return 0
	}
	return float64(d) / float64(time.Microsecond) / float64(r.requests)
}

// runLoad keeps conns connections busy with one request after the other
// (closed loop, HTTP/1.1 keep-alive) for warmup, then for window, and
// measures the window: requests completed, each latency, and the CPU time
// the server side and this process spent.
func runLoad(ctx context.Context, t *target, conns int, warmup, window time.Duration) (loadResult, error) {
	res := loadResult{window: window}
	start := time.Now()
	mStart, mEnd := start.Add(warmup), start.Add(warmup+window)
	req := t.request()

	type worker struct {
		lat              []time.Duration
		errs, reconn, rs int
		firstErr         error
		state            *tls.ConnectionState
	}
	ws := make([]worker, conns)
	var wg sync.WaitGroup
	for i := range ws {
		w := &ws[i]
		w.lat = make([]time.Duration, 0, 1<<14)
		wg.Go(func() {
			var c net.Conn
			var br *bufio.Reader
			first := true
			fail := func(err error) {
				w.errs++
				if w.firstErr == nil {
					w.firstErr = err
				}
				if c != nil {
					c.Close()
					c = nil
				}
			}
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			for ctx.Err() == nil && time.Now().Before(mEnd) {
				if c == nil {
					var err error
					if c, br, err = t.dial(ctx); err != nil {
						fail(fmt.Errorf("connect: %w", err))
						time.Sleep(10 * time.Millisecond)
						continue
					}
					c.SetDeadline(mEnd.Add(10 * time.Second))
					if tc, ok := c.(*tls.Conn); ok {
						st := tc.ConnectionState()
						if first {
							w.state = &st
						} else if st.DidResume {
							w.rs++
						}
					}
					if !first {
						w.reconn++
					}
					first = false
				}
				t0 := time.Now()
				if _, err := c.Write(req); err != nil {
					fail(err)
					continue
				}
				keep, err := readResponse(br)
				t1 := time.Now()
				if err != nil {
					fail(err)
					continue
				}
				if !t0.Before(mStart) && t1.Before(mEnd) {
					w.lat = append(w.lat, t1.Sub(t0))
				}
				if !keep {
					c.Close()
					c = nil
				}
			}
		})
	}

	// CPU counters at the window's edges.
	var cpuErr error
	type counters struct {
		srv, cli, busy, tot time.Duration
		reads, writes       int64
	}
	var c0, c1 counters
	sample := func(c *counters) {
		if len(t.pids) > 0 {
			var err error
			if c.srv, err = benchkit.ProcCPU(t.pids...); err == nil {
				c.reads, c.writes, err = benchkit.ProcSyscalls(t.pids...)
			}
			if err != nil && cpuErr == nil {
				cpuErr = err
			}
		}
		c.cli = benchkit.SelfCPU()
		c.busy, c.tot = benchkit.HostCPU()
	}
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(mStart)):
	}
	sample(&c0)
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(mEnd)):
	}
	sample(&c1)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if cpuErr != nil {
		return res, fmt.Errorf("%s: CPU time and system calls of the server: %w", t.name, cpuErr)
	}
	res.serverCPU, res.clientCPU = c1.srv-c0.srv, c1.cli-c0.cli
	res.sysReads, res.sysWrites = c1.reads-c0.reads, c1.writes-c0.writes
	if c1.tot > c0.tot {
		res.hostBusy = float64(c1.busy-c0.busy) / float64(c1.tot-c0.tot)
	}
	for i := range ws {
		w := &ws[i]
		res.lat = append(res.lat, w.lat...)
		res.errs += w.errs
		res.reconnects += w.reconn
		res.resumed += w.rs
		if res.firstErr == nil {
			res.firstErr = w.firstErr
		}
		if w.state != nil && res.tls.Version == 0 {
			res.tls = *w.state
		}
	}
	res.requests = len(res.lat)
	if res.requests == 0 {
		return res, fmt.Errorf("%s: no request completed in %s (%d errors, first: %v)", t.name, window, res.errs, res.firstErr)
	}
	if res.errs > res.requests/100 {
		return res, fmt.Errorf("%s: %d errors for %d requests (first: %v)", t.name, res.errs, res.requests, res.firstErr)
	}
	return res, nil
}
