package frontdoor

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/thon-dev/thon/internal/activity"
)

type targetKey struct{}

// target is where one request goes: set by the gate, read by the proxy.
type target struct {
	user     string
	endpoint string // host:port of the IDE
	prefix   string // path-mode prefix to strip, "/u/{user}"
	// extensions are a WebSocket's, as the IDE's 101 agreed them.
	extensions string
	// idleScript adds the idle banner's script to this IDE page.
	idleScript bool
}

// newProxy is the one reverse proxy of every sandbox: it streams (no
// buffering, for server-sent events and downloads), passes WebSocket
// upgrades through, strips THON's own credentials and sets X-Forwarded-*.
func newProxy(f *FrontDoor) *httputil.ReverseProxy {
	transport := &http.Transport{
		Proxy:                 nil, // sandboxes are reached directly, never through HTTP_PROXY
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0, // an IDE may hold a request open (long polling)
		DisableCompression:    true,
	}
	return &httputil.ReverseProxy{
		Transport: transport,
		// 0 still streams: the proxy flushes at once for server-sent events
		// and bodies of unknown length; it only spares fixed-size responses
		// an extra write (and TLS record) for their headers.
		FlushInterval: 0,
		BufferPool:    bufferPool{},
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := pr.In.Context().Value(targetKey{}).(*target)
			pr.SetURL(&url.URL{Scheme: "http", Host: t.endpoint})
			if t.prefix != "" {
				pr.Out.URL.Path = "/" + strings.TrimPrefix(strings.TrimPrefix(pr.In.URL.Path, t.prefix), "/")
				pr.Out.URL.RawPath = ""
			}
			pr.SetXForwarded()
			if t.prefix != "" {
				pr.Out.Header.Set("X-Forwarded-Prefix", t.prefix)
			}
			// The IDE sees the host the browser used (code-server checks a
			// WebSocket's Origin against it), never THON's credentials.
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Del("Authorization")
			stripThonCookies(pr.Out.Header)
			if t.idleScript {
				pr.Out.Header.Del("Accept-Encoding") // a page to add the script to, uncompressed
			}
		},
		ModifyResponse: func(res *http.Response) error {
			t := res.Request.Context().Value(targetKey{}).(*target)
			if res.StatusCode == http.StatusSwitchingProtocols {
				t.extensions = res.Header.Get("Sec-WebSocket-Extensions")
			}
			if t.idleScript {
				return addIdleScript(res, t.prefix)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			t := r.Context().Value(targetKey{}).(*target)
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" {
				// Nothing listens yet (the IDE is still starting, or restarting),
				// or not at this address any more (the engine restarted it at
				// another): the orchestrator looks again at once.
				f.log.Debug("sandbox did not answer", "user", t.user, "err", err)
				f.o.Orch.Resync()
				f.waiting(w, r, t.user, "starting", -1)
				return
			}
			if r.Context().Err() != nil {
				return // the browser went away
			}
			f.log.Warn("proxy to sandbox failed", "user", t.user, "method", r.Method, "err", err)
			http.Error(w, "THON could not pass this request to the IDE", http.StatusBadGateway)
		},
	}
}

// stripThonCookies removes THON's session cookies from a request header.
func stripThonCookies(h http.Header) {
	lines := h.Values("Cookie")
	if len(lines) == 0 {
		return
	}
	var keep []string
	for _, line := range lines {
		for _, part := range strings.Split(line, ";") {
			if name, _, _ := strings.Cut(strings.TrimSpace(part), "="); !strings.HasPrefix(name, "thon_") && strings.TrimSpace(part) != "" {
				keep = append(keep, strings.TrimSpace(part))
			}
		}
	}
	h.Del("Cookie")
	if len(keep) > 0 {
		h.Set("Cookie", strings.Join(keep, "; "))
	}
}

// bufferPool recycles the proxy's copy buffers: without it every response
// allocates 32 KiB, which dominated the front door's garbage collection.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }

// tapWriter hands the proxy the browser's side of a WebSocket read through
// activity.Tap, so the participant's activity is seen in what they send.
type tapWriter struct {
	http.ResponseWriter
	t      *target
	vscode bool
	touch  func()
}

func (w *tapWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	deflate, nct := activity.ParseExtensions(w.t.extensions)
	return activity.Tap(c, activity.Options{VSCode: w.vscode, Deflate: deflate, NoContextTakeover: nct}, w.touch), brw, nil
}

func (w *tapWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
