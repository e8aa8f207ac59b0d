package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// target is where upstream requests go; swapped whole by SetUpstream.
type target struct {
	urls [numEndpoints]string // "" until the upstream is known
	key  string
}

func newTarget(base, key string) (*target, error) {
	t := &target{key: key}
	if base == "" {
		return t, nil
	}
	u, err := url.Parse(base)
	switch {
	case err != nil:
		return nil, fmt.Errorf("upstream %q: %w", base, err)
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return nil, fmt.Errorf("upstream %q: want an http:// or https:// URL", base)
	}
	base = strings.TrimRight(base, "/")
	for i, p := range endpointPaths {
		t.urls[i] = base + p
	}
	return t, nil
}

// errNoUpstream: the upstream is not known yet (THON's own LLM server is
// starting).
var errNoUpstream = errors.New("the model server is not running yet")

var errStarting = apiError{http.StatusServiceUnavailable, typeServer, "upstream_starting",
	"The event's AI model server is starting (or restarting). Nothing was charged; try again in a moment."}

// SetUpstream points the gateway at another model server (base is its
// OpenAI base URL; "" while none runs), sending key. Requests in flight
// finish where they are.
func (g *Gateway) SetUpstream(base, key string) error {
	t, err := newTarget(base, key)
	if err != nil {
		return err
	}
	old := g.target.Swap(t)
	if old != nil && old.urls[0] != t.urls[0] {
		g.log.Info("gateway: upstream changed", "upstream", base)
	}
	return nil
}

// Upstream is the model server's base URL ("" when none is known).
func (g *Gateway) Upstream() string {
	t := g.target.Load()
	return strings.TrimSuffix(t.urls[epModels], endpointPaths[epModels])
}

// drainGate counts requests in flight upstream and can hold new ones while the
// server is swapped (THON resizing its own LLM server).
type drainGate struct {
	mu       sync.Mutex
	inflight int
	held     chan struct{} // closed when the hold ends; nil: open
	idle     chan struct{} // closed when inflight reaches 0 during a hold
}

// enter waits while the gate is held, then counts one request in.
func (g *drainGate) enter(ctx context.Context) error {
	g.mu.Lock()
	for g.held != nil {
		ch := g.held
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		g.mu.Lock()
	}
	g.inflight++
	g.mu.Unlock()
	return nil
}

func (g *drainGate) leave() {
	g.mu.Lock()
	g.inflight--
	if g.inflight == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
	g.mu.Unlock()
}

// InFlight counts the requests being served upstream now.
func (g *Gateway) InFlight() int {
	g.drain.mu.Lock()
	defer g.drain.mu.Unlock()
	return g.drain.inflight
}

// Drain holds new upstream requests (they wait, their clients see nothing
// yet) and waits until none is in flight or ctx ends. On success the caller
// swaps the server and calls release; on failure the hold is already over.
func (g *Gateway) Drain(ctx context.Context) (release func(), err error) {
	gt := &g.drain
	gt.mu.Lock()
	if gt.held != nil {
		gt.mu.Unlock()
		return nil, errors.New("the gateway is already draining")
	}
	held := make(chan struct{})
	gt.held = held
	var idle chan struct{}
	if gt.inflight > 0 {
		idle = make(chan struct{})
		gt.idle = idle
	}
	gt.mu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			gt.mu.Lock()
			gt.held, gt.idle = nil, nil
			gt.mu.Unlock()
			close(held)
		})
	}
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
			release()
			return nil, fmt.Errorf("%d requests still in flight: %w", g.InFlight(), ctx.Err())
		}
	}
	return release, nil
}
