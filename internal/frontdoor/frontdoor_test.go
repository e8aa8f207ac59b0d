package frontdoor_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/thontest"
)

var alphaBeta = []config.Group{{Name: "alpha", Users: []string{"alice"}}, {Name: "beta", Users: []string{"bob"}}}

// event starts a daemon (in mode) with alice's and bob's sandboxes running.
func event(t *testing.T, mode string) *thontest.Harness {
	t.Helper()
	h := thontest.New(t, thontest.Groups(alphaBeta...), thontest.FakeEngine())
	// The test IDE, unlike code-server, then takes WebSockets from any
	// Origin: the front door's own check is what keeps them out.
	h.Config.Sandbox.Env = map[string]string{"WS_ANY_ORIGIN": "1"}
	if _, err := h.Client.Import(context.Background(), h.Config); err != nil {
		t.Fatal(err)
	}
	if mode != config.ModePort {
		h.Stop()
		h.Config.Access.Mode = mode
		h.Config.Access.DashboardPort = thontest.FreePort(t)
		h.Start()
	}
	if _, err := h.Client.Bulk(context.Background(), client.BulkRequest{Action: "start"}, nil); err != nil {
		t.Fatal(err)
	}
	return h
}

// browser is an HTTP client that trusts only THON's CA and keeps cookies,
// like a participant's browser that imported the CA. Its timeout only ends
// a hang: under -race one bcrypt check of a password took 4.3 s on a
// shared two-core host (165 ms without -race), and with 10 s
// TestPasswordSignIn's sign-ins timed out in both of its -race runs there.
func browser(t *testing.T, h *thontest.Harness) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:     jar,
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: h.Daemon.CA.CAPool()},
			ForceAttemptHTTP2: true,
		},
	}
}

// signIn opens user's access link and returns the IDE's URL.
func signIn(t *testing.T, h *thontest.Harness, c *http.Client, user string) string {
	t.Helper()
	l, err := h.Client.IssueLink(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(l.Link)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.String() != l.URL || !strings.Contains(string(body), user) {
		t.Fatalf("opening %s's link: %d at %s\n%s", user, resp.StatusCode, resp.Request.URL, body)
	}
	return l.URL
}

func get(t *testing.T, c *http.Client, u string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// echo opens a WebSocket to the IDE's /ws with origin and checks one echo.
func echo(ctx context.Context, c *http.Client, ideURL, origin string) error {
	u := strings.Replace(ideURL, "https://", "wss://", 1) + "ws"
	// WebSockets need HTTP/1.1 (RFC 6455 upgrade): a transport of its own.
	tr := c.Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	conn, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr, Jar: c.Jar}, HTTPHeader: h})
	if err != nil {
		return err
	}
	defer conn.CloseNow()
	if err := conn.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		return err
	}
	_, msg, err := conn.Read(ctx)
	if err != nil {
		return err
	}
	if string(msg) != "ping" {
		return &echoError{string(msg)}
	}
	return nil
}

type echoError struct{ got string }

func (e *echoError) Error() string { return "echo returned " + strconv.Quote(e.got) }

func origin(u string) string {
	p, _ := url.Parse(u)
	return p.Scheme + "://" + p.Host
}

func TestHTTPSAndWebSocketThroughTheFrontDoor(t *testing.T) {
	h := event(t, config.ModePort)
	c := browser(t, h)
	ide := signIn(t, h, c, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// The certificate, issued by THON's CA, names the external IP.
	conn, err := tls.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(ide, "https://"), "/"), &tls.Config{RootCAs: h.Daemon.CA.CAPool()})
	if err != nil {
		t.Fatal(err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if leaf.VerifyHostname("127.0.0.1") != nil {
		t.Fatalf("certificate does not hold 127.0.0.1: %v", leaf.IPAddresses)
	}
	// A client that does not trust THON's CA is refused.
	if _, err := http.Get(ide); err == nil {
		t.Fatal("a client trusting only the system CAs accepted the front door's certificate")
	}

	code, body := get(t, c, ide+"whoami")
	var who struct{ User, Workspace string }
	json.Unmarshal([]byte(body), &who)
	if code != 200 || who.User != "alice" || who.Workspace != "/workspace/alpha/alice" {
		t.Fatalf("whoami through the front door: %d %s", code, body)
	}
	if err := echo(ctx, c, ide, origin(ide)); err != nil {
		t.Fatalf("WebSocket echo through the front door: %v", err)
	}

	// The IDE sees the browser's host and X-Forwarded-*, never THON's credentials.
	_, body = get(t, c, ide+"headers", "Cookie", "theme=dark")
	var seen struct {
		Host    string
		Headers http.Header
	}
	json.Unmarshal([]byte(body), &seen)
	if seen.Host != strings.TrimSuffix(strings.TrimPrefix(ide, "https://"), "/") || seen.Headers.Get("X-Forwarded-Proto") != "https" {
		t.Fatalf("forwarded request: %s", body)
	}
	if ck := strings.Join(seen.Headers["Cookie"], ";"); strings.Contains(ck, "thon_") || !strings.Contains(ck, "theme=dark") {
		t.Fatalf("cookies the IDE received: %q", ck)
	}

	// The API is served on the main port too, for remote organizers.
	api := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(h.Config.Access.HTTPSPort))
	if code, _ := get(t, c, api+"/api/v1/groups", "Authorization", "Bearer "+h.Daemon.Token); code != 200 {
		t.Fatalf("API over HTTPS: %d", code)
	}
	if code, body := get(t, c, api+"/ca.crt"); code != 200 || !strings.Contains(body, "BEGIN CERTIFICATE") {
		t.Fatalf("/ca.crt: %d", code)
	}
}

func TestParticipantsReachOnlyTheirOwnSandbox(t *testing.T) {
	h := event(t, config.ModePort)
	c := browser(t, h)
	alice := signIn(t, h, c, "alice")
	bobURL := h.Daemon.FrontDoor.URL("bob")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Alice's session on Bob's IDE: refused, over HTTP and WebSocket.
	if code, body := get(t, c, bobURL, "Accept", "text/html"); code != http.StatusForbidden || !strings.Contains(body, "not your IDE") {
		t.Fatalf("alice on bob's IDE: %d %s", code, body)
	}
	if err := echo(ctx, c, bobURL, origin(bobURL)); err == nil {
		t.Fatal("alice's browser opened a WebSocket to bob's IDE")
	}
	// Alice's own secret presented under bob's cookie name: still alice's.
	var secret string
	for _, ck := range c.Jar.Cookies(mustURL(alice)) {
		if ck.Name == "thon_alice" {
			secret = ck.Value
		}
	}
	if secret == "" {
		t.Fatal("no session cookie after the link")
	}
	if code, _ := get(t, &http.Client{Transport: c.Transport}, bobURL, "Cookie", "thon_bob="+secret); code != http.StatusForbidden {
		t.Fatalf("alice's secret as bob's cookie: %d", code)
	}
	// A forged cookie is no session at all.
	if code, _ := get(t, &http.Client{Transport: c.Transport}, alice, "Cookie", "thon_alice=forged"); code != http.StatusUnauthorized {
		t.Fatalf("forged cookie: %d", code)
	}
	// Without a session a browser is sent to the sign-in page.
	noRedirect := &http.Client{Transport: c.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Do(mustReq(alice, "Accept", "text/html"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/_thon/login" {
		t.Fatalf("no session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Code served from another origin cannot drive alice's IDE through her browser.
	if err := echo(ctx, c, alice, origin(bobURL)); err == nil {
		t.Fatal("a cross-origin WebSocket upgrade was let through")
	}
	if err := echo(ctx, c, alice, origin(alice)); err != nil {
		t.Fatalf("same-origin WebSocket: %v", err)
	}
	// Organizers reach every sandbox with the admin token.
	if code, _ := get(t, &http.Client{Transport: c.Transport}, bobURL+"whoami", "Authorization", "Bearer "+h.Daemon.Token); code != 200 {
		t.Fatalf("admin on bob's IDE: %d", code)
	}
	// Other tokens only while they work, and only with sandboxes:write.
	plain := &http.Client{Transport: c.Transport}
	rw, err := h.Client.CreateToken(ctx, client.TokenRequest{Name: "ops", Scopes: []string{"sandboxes:write"}})
	if err != nil {
		t.Fatal(err)
	}
	ro, err := h.Client.CreateToken(ctx, client.TokenRequest{Name: "viewer", Scopes: []string{"sandboxes:read"}})
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, plain, bobURL+"whoami", "Authorization", "Bearer "+rw.Token); code != 200 {
		t.Fatalf("a sandboxes:write token on bob's IDE: %d", code)
	}
	if code, _ := get(t, plain, bobURL+"whoami", "Authorization", "Bearer "+ro.Token); code != http.StatusUnauthorized {
		t.Fatalf("a sandboxes:read token on bob's IDE: %d", code)
	}
	if err := h.Client.RevokeToken(ctx, "ops"); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, plain, bobURL+"whoami", "Authorization", "Bearer "+rw.Token); code != http.StatusUnauthorized {
		t.Fatalf("a revoked token on bob's IDE: %d", code)
	}
}

func TestLinksAreOneTimeRevocableAndExpire(t *testing.T) {
	h := event(t, config.ModePort)
	ctx := context.Background()
	l, err := h.Client.IssueLink(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	c := browser(t, h)
	if code, _ := get(t, c, l.Link); code != 200 {
		t.Fatalf("first use: %d", code)
	}
	if code, body := get(t, browser(t, h), l.Link); code != http.StatusUnauthorized || !strings.Contains(body, "already used") {
		t.Fatalf("second use of a one-time link: %d %s", code, body)
	}
	// A link for alice does not open bob's IDE (and is not used up by trying).
	l2, _ := h.Client.IssueLink(ctx, "alice")
	bobAuth := h.Daemon.FrontDoor.URL("bob") + "_thon/auth?" + mustURL(l2.Link).RawQuery
	if code, _ := get(t, browser(t, h), bobAuth); code != http.StatusUnauthorized {
		t.Fatalf("alice's link on bob's IDE: %d", code)
	}
	// Revoking ends the session in use (cached or not) and the unused link.
	if code, _ := get(t, c, l.URL+"whoami"); code != 200 {
		t.Fatalf("session before revoke: %d", code)
	}
	r, err := h.Client.RevokeAccess(ctx, "alice")
	if err != nil || r.Tokens != 1 || r.Sessions != 1 {
		t.Fatalf("revoke: %+v %v", r, err)
	}
	if code, _ := get(t, c, l.URL+"whoami"); code != http.StatusUnauthorized {
		t.Fatalf("session after revoke: %d", code)
	}
	if code, _ := get(t, browser(t, h), l2.Link); code != http.StatusUnauthorized {
		t.Fatalf("unused link after revoke: %d", code)
	}
	// An expired link no longer works.
	h.Stop()
	h.Config.Access.TokenTTL = config.Duration(time.Nanosecond)
	h.Start()
	l3, err := h.Client.IssueLink(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, browser(t, h), l3.Link); code != http.StatusUnauthorized || !strings.Contains(body, "expired") {
		t.Fatalf("expired link: %d %s", code, body)
	}
}

func TestPasswordSignIn(t *testing.T) {
	h := event(t, config.ModePort)
	ctx := context.Background()
	if err := h.Client.SetPassword(ctx, "alice", "short"); err == nil {
		t.Fatal("a 5-character password was accepted")
	}
	if err := h.Client.SetPassword(ctx, "alice", "correct horse"); err != nil {
		t.Fatal(err)
	}
	ide := h.Daemon.FrontDoor.URL("alice")
	login := ide + "_thon/login"
	post := func(c *http.Client, password, origin string) int {
		req, _ := http.NewRequest(http.MethodPost, login, strings.NewReader(url.Values{"password": {password}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", origin)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	c := browser(t, h)
	if code := post(c, "correct horse", "https://evil.example"); code != http.StatusForbidden {
		t.Fatalf("cross-site sign-in: %d", code)
	}
	if code := post(c, "wrong horse", origin(ide)); code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", code)
	}
	if code := post(c, "correct horse", origin(ide)); code != 200 {
		t.Fatalf("right password: %d", code)
	}
	if code, body := get(t, c, ide+"whoami"); code != 200 || !strings.Contains(body, "alice") {
		t.Fatalf("after sign-in: %d", code)
	}
	// Guessing is slowed down: after five failures the form closes for a while.
	other := browser(t, h)
	for range 5 {
		post(other, "guess", origin(ide))
	}
	if code := post(other, "correct horse", origin(ide)); code != http.StatusTooManyRequests {
		t.Fatalf("after five failures: %d", code)
	}
}

func TestWaitingPageWhileNotRunning(t *testing.T) {
	h := event(t, config.ModePort)
	c := browser(t, h)
	ide := signIn(t, h, c, "alice")
	ctx := context.Background()
	for _, step := range []struct{ action, word string }{{"pause", "paused"}, {"stop", "stopped"}} {
		if _, err := h.Client.Action(ctx, "alice", step.action); err != nil {
			t.Fatal(err)
		}
		code, body := get(t, c, ide, "Accept", "text/html")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, step.word) || !strings.Contains(body, `http-equiv="refresh"`) {
			t.Fatalf("%s: %d %s", step.action, code, body)
		}
		if code, _ := get(t, c, ide+"whoami"); code != http.StatusServiceUnavailable {
			t.Fatalf("%s, API client: %d", step.action, code)
		}
		if _, err := h.Client.Action(ctx, "alice", "start"); err != nil {
			t.Fatal(err)
		}
		if code, body := get(t, c, ide+"whoami"); code != 200 || !strings.Contains(body, "alice") {
			t.Fatalf("after start: %d %s", code, body)
		}
	}
}

func TestPathMode(t *testing.T) {
	h := event(t, config.ModePath)
	c := browser(t, h)
	ide := signIn(t, h, c, "alice")
	main := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(h.Config.Access.HTTPSPort))
	if ide != main+"/u/alice/" {
		t.Fatalf("path-mode URL: %s", ide)
	}
	// /u/alice redirects to /u/alice/; the prefix is stripped once, not doubled.
	code, body := get(t, c, main+"/u/alice/headers")
	if code != 200 || !strings.Contains(body, `"path":"/headers"`) || !strings.Contains(body, `"X-Forwarded-Prefix":["/u/alice"]`) {
		t.Fatalf("path mode proxying: %d %s", code, body)
	}
	noRedirect := &http.Client{Transport: c.Transport, Jar: c.Jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(main + "/u/alice?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/u/alice/?x=1" {
		t.Fatalf("/u/alice: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The session cookie is scoped to alice's prefix: bob's path gets none of it.
	for _, ck := range c.Jar.Cookies(mustURL(main + "/u/bob/")) {
		if strings.HasPrefix(ck.Name, "thon_") {
			t.Fatalf("cookie %s leaks to /u/bob/", ck.Name)
		}
	}
	if code, _ := get(t, c, main+"/u/bob/whoami"); code != http.StatusUnauthorized {
		t.Fatalf("alice on bob's path: %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := echo(ctx, c, ide, main); err != nil {
		t.Fatalf("WebSocket under the prefix: %v", err)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func mustReq(u string, hdr ...string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return req
}

func TestSubdomainMode(t *testing.T) {
	h := thontest.New(t, thontest.Groups(alphaBeta...), thontest.FakeEngine())
	h.Stop()
	h.Config.Access.Mode = config.ModeSubdomain
	h.Config.Access.Domain = "thon.test"
	h.Start()
	if _, err := h.Client.Bulk(context.Background(), client.BulkRequest{Action: "start"}, nil); err != nil {
		t.Fatal(err)
	}
	c := browser(t, h)
	// Every *.thon.test name resolves to the front door, as a wildcard DNS record would.
	main := net.JoinHostPort("127.0.0.1", strconv.Itoa(h.Config.Access.HTTPSPort))
	c.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, main)
	}
	ide := signIn(t, h, c, "alice")
	if want := "https://alice.thon.test:" + strconv.Itoa(h.Config.Access.HTTPSPort) + "/"; ide != want {
		t.Fatalf("subdomain URL: %s, want %s", ide, want)
	}
	if code, body := get(t, c, ide+"whoami"); code != 200 || !strings.Contains(body, `"alice"`) {
		t.Fatalf("alice's IDE on her subdomain: %d %s", code, body)
	}
	// Host-only cookies: bob's subdomain gets none of alice's.
	bob := h.Daemon.FrontDoor.URL("bob")
	if code, _ := get(t, c, bob+"whoami"); code != http.StatusUnauthorized {
		t.Fatalf("alice's browser on bob's subdomain: %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := echo(ctx, c, ide, origin(ide)); err != nil {
		t.Fatalf("WebSocket on a subdomain: %v", err)
	}
}

// What a participant's browser does is their activity; an organizer's
// token is not. An idle sandbox sleeps; the participant's next page load
// wakes it (not an organizer's visit, not a script or a reconnecting tab),
// and the waiting page says it is waking.
func TestActivitySleepAndWake(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	h := thontest.New(t, thontest.Groups(alphaBeta...), thontest.FakeEngine(), thontest.Clock(clock))
	h.Config.Sandbox.IdleTimeout = config.Duration(30 * time.Minute)
	h.Config.Sandbox.Env = map[string]string{"WS_ANY_ORIGIN": "1"}
	if _, err := h.Client.Import(ctx, h.Config); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Client.Bulk(ctx, client.BulkRequest{Action: "start"}, nil); err != nil {
		t.Fatal(err)
	}
	act := h.Daemon.Activity
	c := browser(t, h)
	ide := signIn(t, h, c, "alice")
	if act.Last("alice").IsZero() {
		t.Fatal("alice's page load is not her activity")
	}

	// An organizer's token through the front door is not alice's activity.
	advance(time.Minute)
	before := act.Last("alice")
	if code, _ := get(t, browser(t, h), ide+"whoami", "Authorization", "Bearer "+h.Daemon.Token); code != 200 {
		t.Fatalf("organizer's token: %d", code)
	}
	if !act.Last("alice").Equal(before) {
		t.Fatal("an organizer's request counted as alice's activity")
	}
	// A message she sends on a WebSocket is.
	if err := echo(ctx, c, ide, origin(ide)); err != nil {
		t.Fatal(err)
	}
	if !act.Last("alice").After(before) {
		t.Fatal("alice's WebSocket message is not her activity")
	}
	if !act.Last("bob").IsZero() {
		t.Fatal("bob did nothing, yet has activity")
	}

	// 40 minutes later.
	advance(40 * time.Minute)
	if err := h.Daemon.Orch.SleepIdle(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ := h.Client.Sandbox(ctx, "alice")
	if st.State != "asleep" {
		t.Fatalf("alice after 40 idle minutes: %s", st.State)
	}

	// Neither an organizer, nor a script, nor her reconnecting tab wakes it.
	if code, body := get(t, browser(t, h), ide, "Accept", "text/html", "Authorization", "Bearer "+h.Daemon.Token); code != 503 || !strings.Contains(body, "asleep") {
		t.Fatalf("organizer visits a sleeping sandbox: %d %s", code, body)
	}
	if code, body := get(t, c, ide+"whoami"); code != 503 || !strings.Contains(body, "open it in the browser") {
		t.Fatalf("a script: %d %s", code, body)
	}
	if err := echo(ctx, c, ide, origin(ide)); err == nil {
		t.Fatal("a WebSocket reached a sleeping sandbox")
	}
	if st, _ := h.Client.Sandbox(ctx, "alice"); st.State != "asleep" {
		t.Fatalf("after those: %s, want asleep still", st.State)
	}

	// Her page load wakes it: the waiting page says so, then her IDE.
	code, body := get(t, c, ide, "Accept", "text/html")
	if code != 503 || !strings.Contains(body, "waking") || !strings.Contains(body, `http-equiv="refresh"`) {
		t.Fatalf("alice comes back: %d %s", code, body)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, body := get(t, c, ide+"whoami"); code == 200 && strings.Contains(body, "alice") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("alice's sandbox did not wake")
		}
	}
	evs, _ := h.Client.Events(ctx, 0, 100)
	var slept, woke bool
	for _, e := range evs {
		slept = slept || e.Action == "sandbox.sleep" && e.Actor == "system" && e.Target == "alice"
		woke = woke || e.Action == "sandbox.wake" && e.Actor == "alice"
	}
	if !slept || !woke {
		t.Fatalf("audit log: sleep by system %v, wake by alice %v: %+v", slept, woke, evs)
	}
}

// TestIdleBanner: with sandbox.idle_timeout, the participant's IDE page
// (top window only) gets the banner's script; /_thon/idle tells it how long
// until the sandbox sleeps without counting as activity, and a POST from
// the IDE's own origin keeps it awake. Nobody else's session reads it.
func TestIdleBanner(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	h := thontest.New(t, thontest.Groups(alphaBeta...), thontest.FakeEngine(), thontest.Clock(clock))
	h.Stop()
	h.Config.Access.Mode = config.ModePath
	h.Config.Access.DashboardPort = thontest.FreePort(t)
	h.Config.Sandbox.IdleTimeout = config.Duration(30 * time.Minute)
	h.Config.Sandbox.MaxLifetime = config.Duration(12 * time.Hour)
	h.Start()
	if _, err := h.Client.Bulk(ctx, client.BulkRequest{Action: "start"}, nil); err != nil {
		t.Fatal(err)
	}
	act := h.Daemon.Activity
	c := browser(t, h)
	ide := signIn(t, h, c, "alice") // https://…/u/alice/
	prefix := strings.TrimSuffix(mustParse(t, ide).Path, "/")
	script := `<script src="` + prefix + `/_thon/idle.js" defer></script></head>`

	// Her IDE page has the script, once, before </head>; a frame's page,
	// an organizer's view and other answers do not.
	if code, body := get(t, c, ide, "Accept", "text/html", "Sec-Fetch-Dest", "document"); code != 200 || strings.Count(body, "idle.js") != 1 || !strings.Contains(body, script) {
		t.Fatalf("alice's IDE page: %d\n%s", code, body)
	}
	if _, body := get(t, c, ide, "Accept", "text/html", "Sec-Fetch-Dest", "iframe"); strings.Contains(body, "idle.js") {
		t.Fatal("a webview's frame got the banner's script")
	}
	if _, body := get(t, browser(t, h), ide, "Accept", "text/html", "Authorization", "Bearer "+h.Daemon.Token); strings.Contains(body, "idle.js") {
		t.Fatal("an organizer's view of the IDE got the banner's script")
	}
	if code, body := get(t, c, ide+"_thon/idle.js"); code != 200 || !strings.Contains(body, "thon-idle-banner") {
		t.Fatalf("the script: %d %.200s", code, body)
	}

	idle := func(c *http.Client, method string, hdr ...string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, ide+"_thon/idle", nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}

	// 26 idle minutes: the banner is due (4 minutes left); asking is not activity.
	advance(26 * time.Minute)
	before := act.Last("alice")
	code, st := idle(c, http.MethodGet)
	if code != 200 || st["state"] != "running" || st["sleep_in_seconds"] != float64(4*60) || st["timeout_seconds"] != float64(30*60) || st["action"] != "stop" {
		t.Fatalf("idle status after 26 minutes: %d %v", code, st)
	}
	if !act.Last("alice").Equal(before) {
		t.Fatal("asking for the idle time counted as activity")
	}
	if st["ends_in_seconds"] != float64((12*time.Hour - 26*time.Minute).Seconds()) { // on THON's clock
		t.Fatalf("the end of alice's lifetime: %v", st)
	}
	// "I'm still here" from another site is refused and changes nothing;
	// from the IDE's page it keeps the sandbox awake.
	if code, _ := idle(c, http.MethodPost, "Origin", "https://evil.example"); code != http.StatusForbidden || !act.Last("alice").Equal(before) {
		t.Fatalf("a cross-site keep-alive: %d", code)
	}
	if code, st := idle(c, http.MethodPost, "Origin", origin(ide)); code != 200 || st["sleep_in_seconds"] != float64(30*60) {
		t.Fatalf("keep-alive: %d %v", code, st)
	}
	// Bob's session does not read alice's idle time.
	bob := browser(t, h)
	signIn(t, h, bob, "bob")
	if code, st := idle(bob, http.MethodGet); code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Fatalf("bob reads alice's idle time: %d %v", code, st)
	}

	// Asleep, the status says so (the banner offers to wake it).
	advance(31 * time.Minute)
	if err := h.Daemon.Orch.SleepIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if code, st := idle(c, http.MethodGet); code != 200 || st["state"] != "asleep" {
		t.Fatalf("idle status asleep: %d %v", code, st)
	}

	// Without an idle timeout or a lifetime, nothing is added.
	s := h.Daemon.Orch.Sandboxes()
	s.Base.IdleTimeout, s.Base.MaxLifetime = 0, 0
	if err := h.Daemon.Orch.ApplySettings(ctx, "test", s); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, c, ide, "Accept", "text/html"); code == 200 && strings.Contains(body, "idle.js") {
		t.Fatal("the banner's script without an idle timeout")
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
