package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/thon-dev/thon/bench/internal/benchkit"
)

// wsTarget is where a WebSocket goes: wss:// through a proxy or ws:// to
// the sandbox itself.
type wsTarget struct {
	name   string
	url    string
	header http.Header
	hc     *http.Client
}

// newWSTarget builds the HTTP client a WebSocket handshake goes through:
// HTTP/1.1 only (an upgrade is an HTTP/1.1 thing), TLS sessions cached.
func newWSTarget(name, url string, cfg *tls.Config, cookie string) *wsTarget {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSClientConfig:     cfg,
		MaxIdleConnsPerHost: 64,
		ForceAttemptHTTP2:   false,
	}
	h := http.Header{}
	if cookie != "" {
		h.Set("Cookie", cookie)
	}
	return &wsTarget{name: name, url: url, header: h, hc: &http.Client{Transport: tr}}
}

func (t *wsTarget) dial(ctx context.Context) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, t.url, &websocket.DialOptions{HTTPClient: t.hc, HTTPHeader: t.header, CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("%s: WebSocket %s: %s: %w", t.name, t.url, resp.Status, err)
		}
		return nil, fmt.Errorf("%s: WebSocket %s: %w", t.name, t.url, err)
	}
	return c, nil
}

// echo sends msg and wants it back unchanged.
func echo(ctx context.Context, c *websocket.Conn, msg []byte) error {
	if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	typ, got, err := c.Read(ctx)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if typ != websocket.MessageText || !bytes.Equal(got, msg) {
		return fmt.Errorf("echo mismatch: sent %q, got %q", msg, got)
	}
	return nil
}

// echoRTT opens one WebSocket and times n sequential echoes of a size-byte
// message after warm untimed ones.
func echoRTT(ctx context.Context, t *wsTarget, warm, n, size int) ([]time.Duration, error) {
	c, err := t.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.CloseNow()
	msg := bytes.Repeat([]byte("x"), size)
	out := make([]time.Duration, 0, n)
	for i := range warm + n {
		copy(msg, fmt.Sprintf("%08d", i))
		ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
		t0 := time.Now()
		err := echo(ectx, c, msg)
		d := time.Since(t0)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: echo %d: %w", t.name, i, err)
		}
		if i >= warm {
			out = append(out, d)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
	return out, nil
}

// holdResult is the outcome of holding many WebSockets open.
type holdResult struct {
	conns                int
	dialed               int
	dialTimes            []time.Duration
	dialErrs             int
	echoes               int // answered correctly
	echoErrs             int
	closeErrs            int
	firstErrs            []error
	rtt                  []time.Duration
	rssBefore, rssPeak   int64 // KiB; the peak is sampled every 200ms
	rssHeld, rssAfter    int64 // after every socket is open; after they closed
	hwm                  int64 // the daemon's VmHWM at the end
	fdBefore, fdPeak     int
	samples              int
	connected, heldUntil time.Duration // time to open all; the hold
}

func (h holdResult) errors() int { return h.dialErrs + h.echoErrs + h.closeErrs }

// hold opens conns WebSockets to t (dialConc at a time), keeps them for
// holdFor while each sends a holdMsgSize-byte message every interval (spread evenly
// so they do not come in bursts) and checks the echo, then closes them.
// Meanwhile it samples the daemon's VmRSS every 200ms and its open files.
func hold(ctx context.Context, t *wsTarget, daemonPID, conns, dialConc int, holdFor, interval time.Duration) (holdResult, error) {
	res := holdResult{conns: conns}
	var mu sync.Mutex
	note := func(err error) {
		mu.Lock()
		if len(res.firstErrs) < 5 {
			res.firstErrs = append(res.firstErrs, err)
		}
		mu.Unlock()
	}
	var err error
	if res.rssBefore, err = benchkit.ProcStatusKiB(daemonPID, "VmRSS"); err != nil {
		return res, fmt.Errorf("daemon memory: %w", err)
	}
	res.fdBefore = fdCount(daemonPID)

	// The sampler.
	var peak atomic.Int64
	var fdPeak atomic.Int64
	var samples atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			if kib, err := benchkit.ProcStatusKiB(daemonPID, "VmRSS"); err == nil {
				samples.Add(1)
				if kib > peak.Load() {
					peak.Store(kib)
				}
			}
			if i%5 == 0 {
				if n := int64(fdCount(daemonPID)); n > fdPeak.Load() {
					fdPeak.Store(n)
				}
			}
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()
	defer func() {
		select {
		case <-stopSampling:
		default:
			close(stopSampling)
			<-sampled
		}
	}()

	// Open them all.
	cs := make([]*websocket.Conn, conns)
	times := make([]time.Duration, conns)
	sem := make(chan struct{}, dialConc)
	var wg sync.WaitGroup
	var dialErrs atomic.Int64
	start := time.Now()
	for i := range cs {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			t0 := time.Now()
			c, err := t.dial(ctx)
			if err != nil {
				dialErrs.Add(1)
				note(fmt.Errorf("dial %d: %w", i, err))
				return
			}
			times[i] = time.Since(t0)
			c.SetReadLimit(1 << 16)
			cs[i] = c
		})
	}
	wg.Wait()
	res.connected = time.Since(start)
	defer func() {
		for _, c := range cs {
			if c != nil {
				c.CloseNow()
			}
		}
	}()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.dialErrs = int(dialErrs.Load())
	for i, c := range cs {
		if c != nil {
			res.dialed++
			res.dialTimes = append(res.dialTimes, times[i])
		}
	}
	// Let the daemon settle, then note its memory with every socket open.
	time.Sleep(500 * time.Millisecond)
	res.rssHeld, _ = benchkit.ProcStatusKiB(daemonPID, "VmRSS")
	fmt.Fprintf(progress, "  %d WebSockets open in %.1fs (%d failed); daemon RSS %s MiB, %d open files; holding for %s...\n",
		res.dialed, res.connected.Seconds(), res.dialErrs, benchkit.MiB(res.rssHeld), fdCount(daemonPID), holdFor)

	// Hold them: each one sends every interval, the first sends spread
	// over the first interval.
	holdStart := time.Now()
	end := holdStart.Add(holdFor)
	var echoes, echoErrs atomic.Int64
	rtts := make([][]time.Duration, conns)
	dead := make([]bool, conns)
	for i, c := range cs {
		if c == nil {
			continue
		}
		wg.Go(func() {
			next := holdStart.Add(time.Duration(i) * interval / time.Duration(conns))
			msg := make([]byte, holdMsgSize)
			for seq := 0; ; seq++ {
				if !next.Before(end) {
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(next)):
				}
				for j := range msg {
					msg[j] = '.'
				}
				copy(msg, fmt.Sprintf("ws%04d seq%06d", i, seq))
				ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
				t0 := time.Now()
				err := echo(ectx, c, msg)
				d := time.Since(t0)
				cancel()
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					echoErrs.Add(1)
					note(fmt.Errorf("WebSocket %d, message %d: %w", i, seq, err))
					dead[i] = true
					return // a failed socket is dead: coder/websocket closes it
				}
				echoes.Add(1)
				rtts[i] = append(rtts[i], d)
				next = next.Add(interval)
			}
		})
	}
	wg.Wait()
	res.heldUntil = time.Since(holdStart)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.echoes, res.echoErrs = int(echoes.Load()), int(echoErrs.Load())
	for _, r := range rtts {
		res.rtt = append(res.rtt, r...)
	}

	// Close them properly (the closing handshake goes through the proxy too).
	var closeErrs atomic.Int64
	for i, c := range cs {
		if c == nil || dead[i] {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil && !errors.Is(err, net.ErrClosed) {
				closeErrs.Add(1)
				note(fmt.Errorf("close %d: %w", i, err))
			}
			cs[i] = nil
		})
	}
	wg.Wait()
	res.closeErrs = int(closeErrs.Load())
	time.Sleep(time.Second)
	close(stopSampling)
	<-sampled
	res.rssPeak, res.fdPeak, res.samples = peak.Load(), int(fdPeak.Load()), int(samples.Load())
	res.rssAfter, _ = benchkit.ProcStatusKiB(daemonPID, "VmRSS")
	if res.hwm, err = benchkit.ProcStatusKiB(daemonPID, "VmHWM"); err != nil {
		return res, fmt.Errorf("daemon memory: %w", err)
	}
	return res, nil
}
