package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/thon-dev/thon/internal/gateway"
	"github.com/thon-dev/thon/internal/gateway/upstreamtest"
)

// The benchmark runs its servers as separate processes, as nginx is: it
// starts its own executable again with serveFlag as the first argument.
// The child listens on a free loopback port, writes "ADDR [CONTROL-ADDR]"
// to -addr-file and serves until SIGTERM or until its stdin ends (the
// benchmark went away).
const serveFlag = "-internal-serve"

// Limits high enough never to refuse a request: every limit is on (and so
// counted), none is ever reached.
var benchLimits = gateway.Limits{
	RequestsPerMinute: 1 << 30,
	Concurrency:       1 << 20,
	TokensPerMinute:   1 << 40,
	TokenKind:         gateway.TokensTotal,
	BudgetTokens:      1 << 50,
}

// benchModel is the model every request names.
const benchModel = "test-model"

func serveMain(args []string) {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "serve: want upstream or gateway")
		os.Exit(2)
	}
	var err error
	switch args[0] {
	case "upstream":
		err = serveUpstream(args[1:])
	case "gateway":
		err = serveGateway(args[1:])
	case "forwarder":
		err = serveForwarder(args[1:])
	default:
		err = fmt.Errorf("unknown server %q", args[0])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
}

// stopped ends when the process should stop: SIGTERM, SIGINT, or its stdin
// reaching its end because the benchmark is gone.
func stopped() context.Context {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	return ctx
}

// announce writes the listening addresses for the benchmark (atomically:
// a temporary file renamed).
func announce(path string, addrs ...string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(addrs, " ")+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// swapHandler serves upstreamtest with a fresh Server every second:
// upstreamtest.Server keeps every request it has seen (body included) for
// tests to inspect, which under benchmark load would grow without bound.
type swapHandler struct {
	opts upstreamtest.Options
	cur  atomic.Pointer[upstreamtest.Server]
}

func (h *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.cur.Load().ServeHTTP(w, r)
}

func serveUpstream(args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	addrFile := fs.String("addr-file", "", "")
	prompt := fs.Int("prompt-tokens", 24, "")
	completion := fs.Int("completion-tokens", 5, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := stopped()
	h := &swapHandler{opts: upstreamtest.Options{PromptTokens: *prompt, CompletionTokens: *completion}}
	h.cur.Store(upstreamtest.NewHandler(h.opts))
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				h.cur.Store(upstreamtest.NewHandler(h.opts))
			}
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := announce(*addrFile, ln.Addr().String()); err != nil {
		return err
	}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serveControl serves mux, with pprof added, on the control listener: a
// port of its own, so nothing but the server under test is on the measured
// path.
func serveControl(ln net.Listener, mux *http.ServeMux) *http.Server {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return srv
}

// keyStore holds the benchmark's keys by hash, as the daemon's keyring
// does (read-only once loaded).
type keyStore map[string]gateway.Key

func (s keyStore) KeyByHash(_ context.Context, hash string) (gateway.Key, error) {
	k, ok := s[hash]
	if !ok {
		return gateway.Key{}, gateway.ErrUnknownKey
	}
	return k, nil
}

// usageCounts is what the counting sink received.
type usageCounts struct {
	Records, Requests, Prompt, Completion, Rejections int64
}

// countingSink is a UsageSink that adds everything up.
type countingSink struct {
	records, requests, prompt, completion, rejections atomic.Int64
}

func (s *countingSink) Add(_ context.Context, u gateway.Usage) error {
	s.records.Add(1)
	s.requests.Add(u.Requests)
	s.prompt.Add(u.PromptTokens)
	s.completion.Add(u.CompletionTokens)
	s.rejections.Add(u.Rejections)
	return nil
}

func (s *countingSink) counts() usageCounts {
	return usageCounts{s.records.Load(), s.requests.Load(), s.prompt.Load(), s.completion.Load(), s.rejections.Load()}
}

func serveGateway(args []string) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	addrFile := fs.String("addr-file", "", "")
	upstream := fs.String("upstream", "", "")
	redisURL := fs.String("redis", "", "")
	keysFile := fs.String("keys-file", "", "")
	modelLimits := fs.Bool("model-limits", true, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := stopped()

	f, err := os.Open(*keysFile)
	if err != nil {
		return err
	}
	keys := keyStore{}
	sc := bufio.NewScanner(f)
	for i := 0; sc.Scan(); i++ {
		secret := strings.TrimSpace(sc.Text())
		if secret == "" {
			continue
		}
		keys[gateway.HashKey(secret)] = gateway.Key{ID: fmt.Sprintf("user:u%04d", i), Owner: fmt.Sprintf("u%04d", i),
			Group: fmt.Sprintf("g%02d", i/10), Scale: 1}
	}
	f.Close()
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", *keysFile, err)
	}

	sink := &countingSink{}
	reg := prometheus.NewRegistry()
	opts := gateway.Options{
		Upstream:   *upstream,
		Limits:     benchLimits,
		Redis:      *redisURL,
		FailOpen:   true,
		Keys:       keys,
		Usage:      sink,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Registerer: reg,
	}
	if *modelLimits {
		opts.Models = []gateway.ModelLimit{{Model: benchModel, Concurrency: 1 << 20, TokensPerMinute: 1 << 40, Priority: 1}}
	}
	g, err := gateway.New(opts)
	if err != nil {
		return err
	}
	defer g.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// The gateway is served as the daemon serves it.
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
	mux := http.NewServeMux()
	mux.HandleFunc("/usage", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(sink.counts())
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	csrv := serveControl(ctl, mux)
	go func() {
		<-ctx.Done()
		srv.Close()
		csrv.Close()
	}()
	if err := announce(*addrFile, ln.Addr().String(), ctl.Addr().String()); err != nil {
		return err
	}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serveForwarder is the reference: what the gateway does for a request
// without its own logic, written the obvious way with net/http (a server,
// an http.Client tuned as the gateway's, the body read and sent upstream,
// the answer copied back, flushed after each read when it is a stream).
func serveForwarder(args []string) error {
	fs := flag.NewFlagSet("forwarder", flag.ContinueOnError)
	addrFile := fs.String("addr-file", "", "")
	upstream := fs.String("upstream", "", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := stopped()
	base := strings.TrimRight(*upstream, "/")
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost, t.DisableCompression = 1024, 1024, true
	client := &http.Client{Transport: t}
	bufs := sync.Pool{New: func() any { return new([32 << 10]byte) }}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), r.Method, base+strings.TrimPrefix(r.URL.Path, "/v1"), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req.Header["Content-Type"] = r.Header["Content-Type"]
		req.Header["Accept"] = r.Header["Accept"]
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		wh := w.Header()
		wh["Content-Type"] = resp.Header["Content-Type"]
		if resp.ContentLength >= 0 {
			wh["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
		}
		w.WriteHeader(resp.StatusCode)
		buf := bufs.Get().(*[32 << 10]byte)
		defer bufs.Put(buf)
		stream := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
		rc := http.NewResponseController(w)
		for {
			n, err := resp.Body.Read(buf[:])
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				if stream {
					rc.Flush()
				}
			}
			if err != nil {
				return
			}
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	csrv := serveControl(ctl, http.NewServeMux())
	go func() {
		<-ctx.Done()
		srv.Close()
		csrv.Close()
	}()
	if err := announce(*addrFile, ln.Addr().String(), ctl.Addr().String()); err != nil {
		return err
	}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
