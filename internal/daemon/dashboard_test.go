package daemon_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/gateway/upstreamtest"
	"github.com/thon-dev/thon/internal/thontest"
)

// tlsClient trusts only the event's CA and keeps cookies; it follows no
// redirects, so tests see them.
func tlsClient(h *thontest.Harness) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:           jar,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.Daemon.CA.CAPool()}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func do(t *testing.T, c *http.Client, method, u string, body io.Reader, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, body)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf" content="([^"]+)">`)

// The dashboard's defences, from an HTTP client: sign-in, security
// headers, anti-forgery on every change, and rate-limited guessing.
func TestDashboardSecurity(t *testing.T) {
	h := thontest.New(t, thontest.Groups(config.Group{Name: "alpha", Users: []string{"alice"}}), thontest.FakeEngine())
	h.Stop()
	h.Config.Auth.AdminPassword = "a long admin password"
	h.Start()
	ctx := context.Background()
	dash := h.Daemon.FrontDoor.DashboardURL()
	c := tlsClient(h)

	resp, _ := do(t, c, "GET", dash+"instances", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next=/instances" {
		t.Fatalf("signed out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, page := do(t, c, "GET", dash+"login", nil, nil)
	for h, want := range map[string]string{
		"Content-Security-Policy": "script-src 'self'", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
	} {
		if !strings.Contains(resp.Header.Get(h), want) {
			t.Errorf("%s: %q, want %q", h, resp.Header.Get(h), want)
		}
	}
	if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") || strings.Contains(page, "<script>") || strings.Contains(page, " style=") {
		t.Errorf("CSP or inline code: %s", resp.Header.Get("Content-Security-Policy"))
	}

	form := func(pw string, origin string) (*http.Response, string) {
		hdr := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
		if origin != "" {
			hdr["Origin"] = origin
		}
		return do(t, c, "POST", dash+"login", strings.NewReader(url.Values{"password": {pw}, "next": {"/groups"}}.Encode()), hdr)
	}
	origin := strings.TrimSuffix(dash, "/")
	if resp, _ := form("a long admin password", "https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-in posted from another site: %d", resp.StatusCode)
	}
	if resp, body := form("wrong", origin); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "wrong password") {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}
	if resp, body := form("a long admin password", origin); resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "try again in") {
		t.Fatalf("right password straight after a wrong one: %d (want the lockout)", resp.StatusCode)
	}
	c2 := tlsClient(h)
	var last *http.Response
	for i := 0; i < 60; i++ { // the lockout is a second, then sign in
		last, _ = do(t, c2, "POST", dash+"login", strings.NewReader(url.Values{"password": {"a long admin password"}}.Encode()),
			map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": origin})
		if last.StatusCode == http.StatusSeeOther {
			break
		}
		if i == 59 {
			t.Fatalf("sign-in: %d", last.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
	resp, page = do(t, c2, "GET", dash+"instances", nil, nil)
	m := csrfMeta.FindStringSubmatch(page)
	if resp.StatusCode != 200 || m == nil || !strings.Contains(page, `data-user="alice"`) {
		t.Fatalf("instances after sign-in: %d\n%s", resp.StatusCode, page)
	}
	csrf := m[1]

	// Export per group and per row: links to the API, read with the session.
	if !strings.Contains(page, `href="/api/v1/groups/alpha/export"`) || strings.Contains(page, `data-export="alice"`) {
		t.Errorf("instances page: a group export link, and no row export for alice, who has no sandbox yet:\n%s", page)
	}
	if _, err := h.Client.Action(ctx, "alice", "start"); err != nil {
		t.Fatal(err)
	}
	if err := h.Daemon.Orch.SampleUsage(ctx); err != nil {
		t.Fatal(err)
	}
	_, page = do(t, c2, "GET", dash+"instances", nil, nil)
	if !strings.Contains(page, `href="/api/v1/sandboxes/alice/export"`) || !strings.Contains(page, "1 running sandboxes use") || !strings.Contains(page, "GiB memory") {
		t.Errorf("instances page with alice running: no export link or machine total:\n%s", page)
	}
	if resp, body := do(t, c2, "GET", dash+"api/v1/sandboxes/alice/export", nil, nil); resp.StatusCode != 200 || !strings.HasPrefix(body, "\x1f\x8b") {
		t.Errorf("row export with the session: %d %q", resp.StatusCode, body[:min(len(body), 100)])
	}
	if resp, body := do(t, c2, "GET", dash+"api/v1/groups/alpha/export", nil, nil); resp.StatusCode != 200 || !strings.HasPrefix(body, "\x1f\x8b") {
		t.Errorf("group export with the session: %d %q", resp.StatusCode, body[:min(len(body), 100)])
	}

	// The API with the session: reads need nothing more; a change needs the token.
	if resp, _ := do(t, c2, "GET", dash+"api/v1/sandboxes", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("API read with the session: %d", resp.StatusCode)
	}
	if resp, body := do(t, c2, "POST", dash+"api/v1/groups", strings.NewReader(`{"name":"beta"}`), map[string]string{"Content-Type": "application/json"}); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "X-CSRF-Token") {
		t.Fatalf("API change without the token: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, c2, "POST", dash+"api/v1/groups", strings.NewReader(`{"name":"beta"}`), map[string]string{"Content-Type": "application/json", "X-CSRF-Token": csrf, "Origin": "https://evil.example"}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("API change from another origin: %d", resp.StatusCode)
	}
	if resp, body := do(t, c2, "POST", dash+"api/v1/groups", strings.NewReader(`{"name":"beta"}`), map[string]string{"Content-Type": "application/json", "X-CSRF-Token": csrf, "Origin": origin}); resp.StatusCode != http.StatusCreated {
		t.Fatalf("API change with the token: %d %s", resp.StatusCode, body)
	}
	evs, _ := h.Client.Events(ctx, 0, 50)
	found := false
	for _, e := range evs {
		found = found || (e.Action == "group.create" && e.Target == "beta" && e.Actor == auth.AdminActor)
	}
	if !found {
		t.Fatalf("group.create by admin not in the audit log: %+v", evs)
	}
	// A dashboard form without the token is refused too.
	if resp, _ := do(t, c2, "POST", dash+"settings/files/delete", strings.NewReader("name=x"), map[string]string{"Content-Type": "application/x-www-form-urlencoded"}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("form without the token: %d", resp.StatusCode)
	}
	// Printable cards: a fresh one-time link and a QR code per participant.
	formHdr := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": origin}
	resp, page = do(t, c2, "POST", dash+"cards", strings.NewReader(url.Values{"csrf": {csrf}, "group": {"alpha"}}.Encode()), formHdr)
	if resp.StatusCode != 200 || strings.Count(page, `class="access-card"`) != 1 || !strings.Contains(page, "data:image/png;base64,") || !strings.Contains(page, "/_thon/auth?token=") {
		t.Fatalf("cards: %d\n%s", resp.StatusCode, page)
	}
	resp, png := do(t, c2, "POST", dash+"qr", strings.NewReader(url.Values{"csrf": {csrf}, "text": {"https://example.org/x"}}.Encode()), formHdr)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" || !strings.HasPrefix(png, "\x89PNG") {
		t.Fatalf("qr: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// An attendee export: two people join, one in a new group.
	csv := "First Name,Last Name,Email,Team\nAda,Lovelace,ada@example.org,gamma\nAlan,Turing,alan@example.org,\n"
	resp, _ = do(t, c2, "POST", dash+"groups/import", strings.NewReader(url.Values{"csrf": {csrf}, "data": {csv}, "group": {"alpha"}}.Encode()), formHdr)
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "2+participants+added") {
		t.Fatalf("import: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if us, _ := h.Client.Users(ctx, "gamma"); len(us) != 1 || us[0].Name != "ada-lovelace" {
		t.Fatalf("gamma after the import: %+v", us)
	}

	// A participant's own port serves their IDE, never the dashboard.
	if resp, _ := do(t, tlsClient(h), "GET", h.Daemon.FrontDoor.URL("alice")+"instances", nil, nil); resp.StatusCode == 200 {
		t.Fatalf("the dashboard on alice's port: %d", resp.StatusCode)
	}
}

// The gateway and LLM pages show each model's slots and queue, and the
// stream they listen to updates them every second.
func TestDashboardShowsModelQueues(t *testing.T) {
	up := upstreamtest.New(upstreamtest.Options{})
	defer up.Close()
	h := thontest.New(t, thontest.Groups(alphaBeta...), thontest.FakeEngine())
	h.Stop()
	h.Config.Auth.AdminPassword = "a long admin password"
	h.Config.LLM.Backend, h.Config.LLM.URL = config.BackendOpenAI, up.URL
	h.Config.Gateway.UpstreamSlots = 1
	h.Start()
	ctx := context.Background()
	dash := h.Daemon.FrontDoor.DashboardURL()
	c := tlsClient(h)
	resp, _ := do(t, c, "POST", dash+"login", strings.NewReader(url.Values{"password": {"a long admin password"}}.Encode()),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": strings.TrimSuffix(dash, "/")})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	alice, _ := h.Daemon.Keyring.KeyFor(ctx, "alice", "alpha")
	carol, _ := h.Daemon.Keyring.KeyFor(ctx, "carol", "beta")
	up.Hold()
	defer up.Release(-1)
	go chatOnce(h.Daemon.GatewayURL, alice)
	if err := up.WaitInFlight(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	go chatOnce(h.Daemon.GatewayURL, carol) // waits for the only slot
	waitFor(t, 10*time.Second, "carol to wait", func() bool {
		st := h.Daemon.Gateway.QueueStats()
		return len(st) == 1 && st[0].Waiting == 1
	})
	for _, page := range []string{"gateway", "llm"} {
		resp, body := do(t, c, "GET", dash+page, nil, nil)
		if resp.StatusCode != 200 || !strings.Contains(body, "data-queues") || !strings.Contains(body, "<td>thon-test</td><td>1 of 1</td><td>1</td>") ||
			!strings.Contains(body, "<td>group beta</td><td></td><td>1</td>") {
			t.Fatalf("the %s page does not show thon-test's queue: %d\n%s", page, resp.StatusCode, body)
		}
	}
	// Live: the stream's queue event.
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(sctx, "GET", dash+"api/v1/stream", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	queue := false
	for sc.Scan() {
		line := sc.Text()
		if line == "event: queue" {
			queue = true
			continue
		}
		if queue && strings.HasPrefix(line, "data: ") {
			if !strings.Contains(line, `"model":"thon-test","slots":1,"reserved":0,"busy":1,"waiting":1`) || !strings.Contains(line, `"group":"beta","waiting":1`) {
				t.Fatalf("queue event: %s", line)
			}
			return
		}
	}
	t.Fatalf("no queue event in the stream: %v", sc.Err())
}
