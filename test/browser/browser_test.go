package browser

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/thontest"
)

// What the front door answers when it refuses a WebSocket upgrade
// (internal/frontdoor/gate.go). The test IDE refuses a foreign Origin too,
// with "origin not allowed"; the browser shows neither body, so
// refusedByFrontDoor replays the browser's handshake to read it.
const (
	refusedOrigin  = "WebSocket refused: its Origin is not this IDE's origin"
	refusedSession = "this IDE belongs to another participant"
)

func TestBrowserPortMode(t *testing.T) {
	h := thontest.New(t, thontest.Groups(config.Group{Name: "alpha", Users: []string{"alice", "bob"}}), thontest.FakeEngine())
	startAll(t, h)
	b := newBrowser(t, h)

	// The browser trusts THON's certificate and no other.
	other := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	other.Config.ErrorLog = log.New(io.Discard, "", 0) // the browser's refused handshakes
	other.StartTLS()
	defer other.Close()
	if err := b.openErr(other.URL); err == nil || !strings.Contains(err.Error(), "ERR_CERT") {
		t.Fatalf("a certificate THON did not issue: want a certificate error in the browser, got %v", err)
	}

	// Alice's link signs the browser in and lands on her IDE, the token gone
	// from the address bar.
	alice, resp := b.openLink(h, "alice")
	if !strings.HasPrefix(alice.Link, alice.URL+"_thon/auth?token=") || hostPort(t, alice.URL) == hostPort(t, h.Daemon.FrontDoor.MainURL()) {
		t.Fatalf("port-mode link %s: want it on alice's own port", alice.Link)
	}
	if resp.Status != http.StatusOK || b.location() != alice.URL || b.pageUser() != "alice" {
		t.Fatalf("alice's link: %d at %s, want 200 at %s showing alice's IDE:\n%s", resp.Status, b.location(), alice.URL, b.text())
	}
	t.Logf("alice's IDE page came over %s", resp.Protocol)
	checkCookie(t, b, alice.URL, "thon_alice", "/")

	// A WebSocket from the IDE page to its own origin echoes.
	echo(t, b, "/ws", "hello from alice's page")

	// Bob's IDE in the same browser, which sends alice's cookie along (cookies
	// ignore ports): the "not your IDE" page, not bob's IDE.
	bobURL := h.Daemon.FrontDoor.URL("bob")
	if bobURL == "" || hostPort(t, bobURL) == hostPort(t, alice.URL) {
		t.Fatalf("bob's IDE is at %q, alice's at %s: want a port each", bobURL, alice.URL)
	}
	resp = b.open(bobURL)
	if txt := b.text(); resp.Status != http.StatusForbidden || !strings.Contains(txt, "This is not your IDE") ||
		!strings.Contains(txt, "signed in as alice") || b.pageUser() != "" {
		t.Fatalf("bob's IDE with alice's session: %d at %s, want 403 and the not-your-IDE page:\n%s", resp.Status, b.location(), txt)
	}

	// From alice's page, a WebSocket to bob's origin fails: alice's session is
	// no key to bob's sandbox.
	bobWS := "wss://" + hostPort(t, bobURL) + "/ws"
	b.open(alice.URL)
	refused(t, b, bobWS, http.StatusForbidden)
	refusedByFrontDoor(t, h, b, bobWS, alice.URL, refusedSession)

	// Bob signs in in the same browser: now a cookie that bob's sandbox does
	// accept goes along, and bob's own page can use it (the control).
	if _, resp := b.openLink(h, "bob"); resp.Status != http.StatusOK || b.location() != bobURL || b.pageUser() != "bob" {
		t.Fatalf("bob's link: %d at %s:\n%s", resp.Status, b.location(), b.text())
	}
	echo(t, b, "/ws", "hello from bob's page")

	// Alice's page still works, and still cannot drive bob's IDE: the upgrade
	// carries bob's valid cookie but alice's Origin, and the front door refuses it.
	if resp := b.open(alice.URL); resp.Status != http.StatusOK || b.pageUser() != "alice" {
		t.Fatalf("alice's IDE after bob signed in: %d:\n%s", resp.Status, b.text())
	}
	refused(t, b, bobWS, http.StatusForbidden)
	refusedByFrontDoor(t, h, b, bobWS, alice.URL, refusedOrigin)
}

func TestBrowserPathMode(t *testing.T) {
	h := thontest.New(t, thontest.Groups(config.Group{Name: "alpha", Users: []string{"alice", "bob"}}), thontest.FakeEngine())
	h.Stop() // thontest starts in port mode: restart on the same data in path mode
	h.Config.Access.Mode = config.ModePath
	h.Config.Access.DashboardPort = thontest.FreePort(t)
	h.Start()
	startAll(t, h)
	b := newBrowser(t, h)

	front := h.Daemon.FrontDoor.MainURL()
	alice, resp := b.openLink(h, "alice")
	if alice.URL != front+"u/alice/" || !strings.HasPrefix(alice.Link, front+"u/alice/_thon/auth?token=") {
		t.Fatalf("path-mode link: %s (IDE %s), want it under %su/alice/", alice.Link, alice.URL, front)
	}
	if resp.Status != http.StatusOK || b.location() != alice.URL || b.pageUser() != "alice" {
		t.Fatalf("alice's link: %d at %s, want 200 at %s showing alice's IDE:\n%s", resp.Status, b.location(), alice.URL, b.text())
	}
	t.Logf("alice's IDE page came over %s", resp.Protocol)
	checkCookie(t, b, alice.URL, "thon_alice", "/u/alice/")

	// The page's relative "ws" is /u/alice/ws: the echo works under the prefix.
	if ws := echo(t, b, "ws", "hello under the prefix"); ws.URL != "wss://"+hostPort(t, front)+"/u/alice/ws" {
		t.Errorf("the page's relative WebSocket went to %s", ws.URL)
	}
	// /u/alice without the slash leads to the IDE, not to a doubled path.
	if b.open(strings.TrimSuffix(alice.URL, "/")); b.location() != alice.URL || b.pageUser() != "alice" {
		t.Errorf("%s leads to %s:\n%s", strings.TrimSuffix(alice.URL, "/"), b.location(), b.text())
	}

	// Alice's cookie is scoped to /u/alice/: at bob's IDE the browser has no
	// session and gets bob's sign-in form.
	bobURL := front + "u/bob/"
	resp = b.open(bobURL)
	if txt := b.text(); b.location() != bobURL+"_thon/login" || !strings.Contains(txt, "Sign in to the IDE of bob") || b.pageUser() != "" {
		t.Fatalf("bob's IDE without a session: %d at %s, want bob's sign-in page:\n%s", resp.Status, b.location(), txt)
	}
	// Every IDE shares one origin in path mode (documented as weaker
	// isolation), so no Origin check can keep alice's page from bob's IDE:
	// the session must. From alice's page, bob's WebSocket is refused.
	b.open(alice.URL)
	bobWS := "wss://" + hostPort(t, front) + "/u/bob/ws"
	refused(t, b, bobWS, http.StatusUnauthorized)

	// Even when alice's session cookie reaches bob's path, bob's sandbox
	// does not accept it.
	var secret string
	for _, c := range b.cookies(alice.URL) {
		if c.Name == "thon_alice" {
			secret = c.Value
		}
	}
	b.setCookie(network.SetCookieParams{Name: "thon_alice", Value: secret, URL: bobURL, Path: "/u/bob/",
		Secure: new(true), HTTPOnly: new(true), SameSite: network.CookieSameSiteLax})
	resp = b.open(bobURL)
	if txt := b.text(); resp.Status != http.StatusForbidden || !strings.Contains(txt, "signed in as alice") || b.pageUser() != "" {
		t.Fatalf("bob's IDE with alice's session cookie: %d at %s, want 403 and the not-your-IDE page:\n%s", resp.Status, b.location(), txt)
	}
	b.open(alice.URL)
	refused(t, b, bobWS, http.StatusForbidden)

	// Bob's own link works in the same browser, WebSocket included.
	if _, resp := b.openLink(h, "bob"); resp.Status != http.StatusOK || b.location() != bobURL || b.pageUser() != "bob" {
		t.Fatalf("bob's link: %d at %s:\n%s", resp.Status, b.location(), b.text())
	}
	echo(t, b, "ws", "hello from bob's page")
}

func TestBrowserWaitingPage(t *testing.T) {
	h := thontest.New(t, thontest.Groups(config.Group{Name: "alpha", Users: []string{"alice"}}), thontest.FakeEngine())
	startAll(t, h)
	b := newBrowser(t, h)
	alice, _ := b.openLink(h, "alice")
	if b.pageUser() != "alice" {
		t.Fatalf("alice's link: at %s:\n%s", b.location(), b.text())
	}
	shots := t.TempDir()
	if dir := os.Getenv("THON_SCREENSHOTS"); dir != "" { // to keep them and look
		shots = dir
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := h.Client.Action(ctx, "alice", "pause"); err != nil {
		t.Fatalf("pause: %v", err)
	}
	// The IDE page still open in the browser loses its WebSocket: the front
	// door answers a plain 503 to the upgrade.
	refused(t, b, "/ws", http.StatusServiceUnavailable)

	// Reloaded, the page is the waiting page (503), no IDE.
	resp := b.open(alice.URL)
	if txt := b.text(); resp.Status != http.StatusServiceUnavailable || !strings.Contains(txt, "paused") || b.pageUser() != "" {
		t.Fatalf("alice's IDE while paused: %d, want 503 and the waiting page:\n%s", resp.Status, txt)
	}
	b.screenshot(shots, "waiting.png")

	if _, err := h.Client.Action(ctx, "alice", "resume"); err != nil {
		t.Fatalf("resume: %v", err)
	}
	// The waiting page reloads itself: the IDE appears with no action from here.
	b.waitPageUser(alice.URL, "alice", 20*time.Second)
	if got := b.location(); got != alice.URL {
		t.Errorf("the IDE appeared at %s, want %s", got, alice.URL)
	}
	echo(t, b, "/ws", "hello after resume")
	b.screenshot(shots, "ide.png")
}

// startAll starts every sandbox and fails the test unless all run.
func startAll(t *testing.T, h *thontest.Harness) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sum, err := h.Client.Bulk(ctx, client.BulkRequest{Action: "start"}, nil)
	if err != nil {
		t.Fatalf("start sandboxes: %v", err)
	}
	if sum.Failed > 0 {
		t.Fatalf("start sandboxes: %+v", sum)
	}
}

// echo runs a WebSocket echo from the current page and fails unless it
// completes.
func echo(t *testing.T, b *browser, target, msg string) wsResult {
	t.Helper()
	ws, hs := b.wsEcho(target, msg)
	if !ws.OK || ws.Echo != msg || hs.status != http.StatusSwitchingProtocols {
		t.Fatalf("WebSocket echo from %s to %s: %+v, handshake %+v\nbrowser log:\n%s", b.location(), ws.URL, ws, hs, b.log())
	}
	t.Logf("WebSocket echo from %s to %s (%s): %q", b.location(), ws.URL, hs.statusLine, ws.Echo)
	return ws
}

// refused opens a WebSocket from the current page to target (resolved
// against the page's URL) and fails unless the handshake is refused with
// status.
func refused(t *testing.T, b *browser, target string, status int) {
	t.Helper()
	ws, hs := b.wsEcho(target, "must not arrive")
	if ws.OK || hs.status != 0 {
		t.Fatalf("WebSocket from %s to %s: %+v, handshake %+v; want it refused", b.location(), ws.URL, ws, hs)
	}
	want := "Unexpected response code: " + strconv.Itoa(status)
	if status == http.StatusUnauthorized {
		// How Chromium words a 401 that has no WWW-Authenticate header.
		want = "HTTP Authentication failed"
	}
	if !strings.Contains(hs.failure, want) {
		t.Fatalf("WebSocket from %s to %s failed with %q, want %q\nbrowser log:\n%s", b.location(), ws.URL, hs.failure, want, b.log())
	}
	t.Logf("WebSocket from %s to %s refused: %s", b.location(), ws.URL, hs.failure)
}

// refusedByFrontDoor replays the browser's last WebSocket handshake to url —
// same cookies (read from the browser), same Origin (pageURL's) — from Go,
// and checks that the front door itself refused it with want, reading the
// body the browser does not show. The test IDE behind the front door refuses
// a foreign Origin as well, so the browser's 403 alone would not show which
// of them did.
func refusedByFrontDoor(t *testing.T, h *thontest.Harness, b *browser, url, pageURL, want string) {
	t.Helper()
	httpsURL := "https" + strings.TrimPrefix(url, "wss")
	req, err := http.NewRequest(http.MethodGet, httpsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	var cookies []string
	for _, c := range b.cookies(httpsURL) {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	req.Header.Set("Cookie", strings.Join(cookies, "; "))
	req.Header.Set("Origin", strings.TrimSuffix(pageURL, "/"))
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.Daemon.CA.CAPool()}} // HTTP/1.1, like the browser's handshake
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("replay the handshake to %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if got := strings.TrimSpace(string(body)); resp.StatusCode != http.StatusForbidden || got != want {
		t.Fatalf("the browser's handshake to %s (cookies %v, Origin %s) replayed: %d %q, want the front door's 403 %q",
			url, names(b.cookies(httpsURL)), req.Header.Get("Origin"), resp.StatusCode, got, want)
	}
}

// checkCookie checks the session cookie the front door set in the browser.
func checkCookie(t *testing.T, b *browser, url, name, path string) {
	t.Helper()
	for _, c := range b.cookies(url) {
		if c.Name != name {
			continue
		}
		if !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteLax || c.Path != path || c.Domain != "127.0.0.1" {
			t.Errorf("cookie %s: HttpOnly %v, Secure %v, SameSite %q, Path %q, Domain %q; want HttpOnly, Secure, Lax, %s, 127.0.0.1",
				name, c.HTTPOnly, c.Secure, c.SameSite, c.Path, c.Domain, path)
		}
		return
	}
	t.Errorf("no cookie %s in the browser for %s (has %v)", name, url, names(b.cookies(url)))
}

func names(cs []*network.Cookie) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}
