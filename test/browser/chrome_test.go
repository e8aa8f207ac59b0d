package browser

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/thontest"
)

// browser is one headless Chromium with one tab, trusting nothing but the
// certificate THON's CA issued for the front door.
type browser struct {
	t   *testing.T
	ctx context.Context // the tab; actions derive their own deadlines from it

	mu      sync.Mutex
	sockets []*wsHandshake                     // every WebSocket the page opened, in order
	byID    map[network.RequestID]*wsHandshake // the same, by DevTools request
	logs    []string                           // the browser's own log (network errors, console)
	errs    []string                           // errors only: log entries of level error, exceptions, console.error
}

// wsHandshake is what DevTools reported about one WebSocket handshake.
// Chromium reports the response of a handshake that succeeded; of one that
// failed, only its error message.
type wsHandshake struct {
	url        string
	status     int64  // of a handshake that succeeded (101); 0 otherwise
	statusLine string // "HTTP/1.1 101 Switching Protocols"
	failure    string // "Error during WebSocket handshake: Unexpected response code: 403"
}

// chromium finds Debian's chromium; the test fails without it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	t.Fatal("chromium is not installed: apt-get install chromium (headless browser tests need it)")
	return ""
}

// leafSPKI connects to the front door at addr trusting only THON's CA, checks
// the certificate holds 127.0.0.1, and returns the base64 SHA-256 of the
// served leaf's SubjectPublicKeyInfo, the form Chromium's
// --ignore-certificate-errors-spki-list takes.
func leafSPKI(t *testing.T, h *thontest.Harness, addr string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: h.Daemon.CA.CAPool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS to the front door at %s with only THON's CA trusted: %v", addr, err)
	}
	defer conn.Close()
	leaf := conn.ConnectionState().PeerCertificates[0]
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// waitNetworkQuiet waits, for a browser that shares the host's network (not
// root: see isolate), until the host's interfaces are done changing after
// our containers started: every running interface with IPv6 has its
// link-local address and none is still tentative (duplicate address
// detection). See networkChanged. It only logs when the network does not
// settle: the retries are the safety net.
func waitNetworkQuiet(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		busy := networkBusy()
		if busy == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Logf("the host's network is still changing (%s); going on", busy)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// networkBusy names an interface whose IPv6 link-local address is missing or
// tentative, or returns "".
func networkBusy() string {
	data, err := os.ReadFile("/proc/net/if_inet6")
	if err != nil {
		return "" // no IPv6: nothing to wait for
	}
	linkLocal := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		// address ifindex prefixlen scope flags name
		f := strings.Fields(line)
		if len(f) != 6 {
			continue
		}
		if flags, err := strconv.ParseUint(f[4], 16, 32); err == nil && flags&0x40 != 0 { // IFA_F_TENTATIVE
			return f[5] + " (tentative address)"
		}
		if strings.HasPrefix(f[0], "fe80") {
			linkLocal[f[5]] = true
		}
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 || ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagRunning == 0 || linkLocal[ifc.Name] {
			continue
		}
		if v, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + ifc.Name + "/disable_ipv6"); err != nil || strings.TrimSpace(string(v)) != "0" {
			continue
		}
		return ifc.Name + " (no link-local address yet)"
	}
	return ""
}

// newBrowser starts a headless Chromium with a fresh profile, in a network
// namespace of its own when it can (root): see isolate.
//
// How the browser trusts THON's certificate: Chromium on Linux reads trust
// anchors from an NSS database, and adding THON's CA there would need certutil
// and would also trust anything else that CA signs. --ignore-certificate-errors
// would accept every certificate, so a broken front door certificate would go
// unnoticed. --ignore-certificate-errors-spki-list accepts exactly the public
// keys listed; we list the one key of the leaf the front door serves, read
// through a Go TLS connection that verified it against THON's CA (and its
// 127.0.0.1 SAN) alone. Any other certificate still fails in the browser, which
// TestBrowserPortMode checks against a throwaway TLS server. (Chromium honours
// the flag only together with --user-data-dir, which we set.)
func newBrowser(t *testing.T, h *thontest.Harness, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	exe := chromium(t)
	iso, err := isolate()
	if err != nil {
		t.Logf("the browser shares the host's network, where Docker's interfaces come and go (%v; as root it gets a network of its own)", err)
		waitNetworkQuiet(t)
	}
	spki := leafSPKI(t, h, "127.0.0.1:"+strconv.Itoa(h.Config.Access.HTTPSPort))
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("ignore-certificate-errors-spki-list", spki),
		chromedp.WindowSize(900, 600),
	)
	if iso != nil {
		opts = append(opts, iso.options(t)...)
	}
	opts = append(opts, extra...) // later options win
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		acancel() // waits for the browser to exit, before t.TempDir is removed
		if iso != nil {
			iso.close()
		}
	})
	b := &browser{t: t, ctx: ctx, byID: map[network.RequestID]*wsHandshake{}}
	// Listen starts the browser and the tab (no deadline: it would bound the browser's life).
	if err := chromedp.Listen(ctx, b.onEvent); err != nil {
		t.Fatalf("start chromium (%s): %v", exe, err)
	}
	return b
}

// onEvent records WebSocket handshakes and log entries. It runs on the tab's
// reading goroutine: it must be quick and must not call the browser.
func (b *browser) onEvent(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventWebSocketCreated:
		hs := &wsHandshake{url: ev.URL}
		b.sockets = append(b.sockets, hs)
		b.byID[ev.RequestID] = hs
	case *network.EventWebSocketHandshakeResponseReceived:
		if hs := b.byID[ev.RequestID]; hs != nil && ev.Response != nil {
			hs.status = ev.Response.Status
			hs.statusLine, _, _ = strings.Cut(ev.Response.HeadersText, "\r\n")
		}
	case *network.EventWebSocketFrameError:
		if hs := b.byID[ev.RequestID]; hs != nil && hs.status == 0 {
			hs.failure = ev.ErrorMessage
		}
	case *cdplog.EventEntryAdded:
		if ev.Entry != nil {
			line := fmt.Sprintf("%s %s: %s (%s)", ev.Entry.Level, ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
			b.logs = append(b.logs, line)
			if ev.Entry.Level == cdplog.EntryLevelError {
				b.errs = append(b.errs, line)
			}
		}
	case *cdpruntime.EventExceptionThrown:
		if d := ev.ExceptionDetails; d != nil {
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg += " " + d.Exception.Description
			}
			b.errs = append(b.errs, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, msg))
		}
	case *cdpruntime.EventConsoleAPICalled:
		if ev.Type == cdpruntime.ConsoleAPICalledTypeError {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			b.errs = append(b.errs, "console.error: "+strings.Join(parts, " "))
		}
	}
}

// errors returns the errors the pages raised so far, and forgets them.
func (b *browser) errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.errs
	b.errs = nil
	return e
}

// log returns what the browser logged so far (for failure messages).
func (b *browser) log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.logs, "\n")
}

// networkChanged says whether err (or a message) is Chromium giving up on a
// request because the host's network changed. Docker makes that happen:
// each container start adds a veth interface, whose IPv6 link-local address
// appears a second or two later, and Chromium then aborts its requests in
// flight, loopback ones included, with net::ERR_NETWORK_CHANGED. As root the
// browser has a network of its own where that never happens (see isolate);
// otherwise our own containers are settled before the browser starts
// (waitNetworkQuiet), and an action that failed only because other
// containers came or went meanwhile is retried.
func networkChanged(msg string) bool { return strings.Contains(msg, "ERR_NETWORK_CHANGED") }

const attempts = 3 // per action, when the host's network changes under it

// open navigates the tab and returns the response of the document the
// navigation ended on (after redirects).
func (b *browser) open(url string) document {
	b.t.Helper()
	for i := 1; ; i++ {
		resp, err := b.navigate(url)
		if err == nil {
			return resp
		}
		if i == attempts || !networkChanged(err.Error()) {
			b.t.Fatalf("open %s: %v\nbrowser log:\n%s", url, err, b.log())
		}
		b.t.Logf("open %s: %v (the host's network changed); again", url, err)
	}
}

// openLink opens a fresh access link of user; when the host's network
// changes under it, again with a new link (a link works once).
func (b *browser) openLink(h *thontest.Harness, user string) (client.Link, document) {
	b.t.Helper()
	for i := 1; ; i++ {
		l, err := h.Client.IssueLink(context.Background(), user)
		if err != nil {
			b.t.Fatalf("issue %s's link: %v", user, err)
		}
		resp, err := b.navigate(l.Link)
		if err == nil {
			return l, resp
		}
		if i == attempts || !networkChanged(err.Error()) {
			b.t.Fatalf("open %s's link %s: %v\nbrowser log:\n%s", user, l.Link, err, b.log())
		}
		b.t.Logf("open %s's link: %v (the host's network changed); again with a new link", user, err)
	}
}

// openErr navigates and returns the navigation error (a certificate error, say).
func (b *browser) openErr(url string) error {
	var err error
	for i := 0; i < attempts; i++ {
		if _, err = b.navigate(url); err == nil || !networkChanged(err.Error()) {
			break
		}
	}
	return err
}

func (b *browser) navigate(url string) (document, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
	if err != nil {
		return document{}, err
	}
	if resp != nil {
		return document{Status: resp.Status, Protocol: resp.Protocol}, nil
	}
	// chromedp loaded the page but, now and then, missed its response (seen
	// a few times in fifty runs, on an access link's redirect): ask the page.
	d, err := chromedp.Run(ctx, chromedp.Evaluate[document](`(() => {
		const n = performance.getEntriesByType("navigation")[0] || {};
		return {status: n.responseStatus || 0, protocol: n.nextHopProtocol || ""};
	})()`))
	if err != nil || d.Status == 0 {
		return document{}, fmt.Errorf("%s loaded, but its response status is unknown (%v)", url, err)
	}
	b.t.Logf("chromedp missed the response of %s; the page says %d over %s", url, d.Status, d.Protocol)
	return d, nil
}

// document is what a navigation ended on.
type document struct {
	Status   int64  `json:"status"`   // HTTP status of the document
	Protocol string `json:"protocol"` // "h2", "http/1.1"
}

// eval evaluates a JavaScript expression in the page (awaiting a promise).
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// location is the page's URL.
func (b *browser) location() string { return eval[string](b, `location.href`) }

// text is the page's visible text.
func (b *browser) text() string {
	return eval[string](b, `document.body ? document.body.innerText : ""`)
}

// pageUser is what the test IDE's page shows as its participant ("" on any
// other page).
func (b *browser) pageUser() string { return eval[string](b, pageUserJS) }

const pageUserJS = `(document.getElementById("user") || {}).textContent || ""`

// tryEval is eval for polling: an error (the page is between two documents,
// say) is no answer yet rather than a failure.
func tryEval[T any](b *browser, js string) (T, bool) {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	return v, err == nil
}

// waitPageUser polls the page at url, without acting on it, until it is the
// test IDE of user or the deadline passes. Should one of the page's own
// reloads fail because the host's network changed (see networkChanged), it
// opens url again, once, and says so.
func (b *browser) waitPageUser(url, user string, within time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	reopened := false
	for {
		if got, ok := tryEval[string](b, pageUserJS); ok && got == user {
			return
		}
		if loc, ok := tryEval[string](b, `location.href`); ok && strings.HasPrefix(loc, "chrome-error:") && !reopened {
			if txt, _ := tryEval[string](b, `document.body ? document.body.innerText : ""`); networkChanged(txt) {
				b.t.Logf("a reload of %s failed: the host's network changed; opening it again", url)
				reopened = true
				b.open(url)
				continue
			}
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("waited %v for the page to become the IDE of %s; it is %s:\n%s", within, user, b.location(), b.text())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// wsResult is the outcome of a WebSocket opened by page JavaScript.
type wsResult struct {
	URL   string `json:"url"`
	OK    bool   `json:"ok"`
	Echo  string `json:"echo"`
	Error string `json:"error"`
	Code  int    `json:"code"`
}

// wsEcho opens, from the current page's JavaScript, a WebSocket to target
// (resolved against the page's URL, https → wss), sends msg and waits for the
// first message back, the connection's failure, or 10 s. It returns the
// outcome and what DevTools saw of the handshake.
func (b *browser) wsEcho(target, msg string) (wsResult, wsHandshake) {
	b.t.Helper()
	for i := 1; ; i++ {
		n := b.socketCount()
		ws := b.wsOnce(target, msg)
		hs := b.waitHandshake(ws.URL, n)
		if ws.OK || i == attempts || !networkChanged(hs.failure) {
			return ws, hs
		}
		b.t.Logf("WebSocket to %s: %s (the host's network changed); again", ws.URL, hs.failure)
	}
}

func (b *browser) wsOnce(target, msg string) wsResult {
	b.t.Helper()
	tj, _ := json.Marshal(target)
	mj, _ := json.Marshal(msg)
	js := `new Promise((resolve) => {
	const u = new URL(` + string(tj) + `, location.href);
	u.protocol = u.protocol === "http:" ? "ws:" : "wss:";
	let done = false, timer;
	const finish = (r) => { if (!done) { done = true; clearTimeout(timer); resolve(Object.assign({url: u.href}, r)); } };
	let ws;
	try { ws = new WebSocket(u.href); } catch (e) { finish({ok: false, error: "constructor: " + e}); return; }
	timer = setTimeout(() => { finish({ok: false, error: "no echo within 10s"}); ws.close(); }, 10000);
	ws.onopen = () => ws.send(` + string(mj) + `);
	ws.onmessage = (ev) => { finish({ok: true, echo: String(ev.data)}); ws.close(1000); };
	ws.onerror = () => finish({ok: false, error: "error event"});
	ws.onclose = (ev) => finish({ok: false, error: "closed before an echo", code: ev.code});
})`
	return eval[wsResult](b, js)
}

// socketCount is how many WebSockets the page opened so far.
func (b *browser) socketCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sockets)
}

// waitHandshake waits (briefly: DevTools events may trail the page's events)
// for what DevTools saw of the first WebSocket to url opened after the
// first `after` ones: its response or its failure.
func (b *browser) waitHandshake(url string, after int) wsHandshake {
	b.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		var hs *wsHandshake
		for _, s := range b.sockets[min(after, len(b.sockets)):] {
			if s.url == url {
				hs = s
				break
			}
		}
		var got wsHandshake
		if hs != nil {
			got = *hs
		}
		b.mu.Unlock()
		if got.status != 0 || got.failure != "" {
			return got
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("DevTools reported no handshake outcome for the WebSocket to %s (%+v)\nbrowser log:\n%s", url, got, b.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// screenshot saves the tab as a PNG in dir and returns its path.
func (b *browser) screenshot(dir, name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot of %s: %s", b.location(), p)
	return p
}

// cookies returns the browser's cookies for url (HttpOnly ones included).
func (b *browser) cookies(url string) []*network.Cookie {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
	if err != nil {
		b.t.Fatalf("read cookies: %v", err)
	}
	return res.Cookies
}

// setCookie puts a cookie in the browser as if a server had set it.
func (b *browser) setCookie(p network.SetCookieParams) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, network.SetCookie, p); err != nil {
		b.t.Fatalf("set cookie %s: %v", p.Name, err)
	}
}

// hostPort is host:port of an https URL.
func hostPort(t *testing.T, rawURL string) string {
	t.Helper()
	rest, ok := strings.CutPrefix(rawURL, "https://")
	if !ok {
		t.Fatalf("%s is not an https URL", rawURL)
	}
	hp, _, _ := strings.Cut(rest, "/")
	if _, _, err := net.SplitHostPort(hp); err != nil {
		t.Fatalf("%s has no port: %v", rawURL, err)
	}
	return hp
}
