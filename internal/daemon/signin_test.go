package daemon_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/thontest"
)

var refreshRE = regexp.MustCompile(`<meta http-equiv="refresh" content="0;url=([^"]+)">`)

// signIn walks a provider sign-in as a browser would: THON's login, the
// provider's authorize (mockoidc signs the queued user in at once), THON's
// callback. It returns the callback's answer and body.
func signIn(t *testing.T, c *http.Client, start string) (*http.Response, string, string) {
	t.Helper()
	resp, _ := do(t, c, "GET", start, nil, nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("%s: %d", start, resp.StatusCode)
	}
	resp, _ = do(t, c, "GET", resp.Header.Get("Location"), nil, nil) // the provider
	callback := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.Contains(callback, "/auth/oidc/callback?") {
		t.Fatalf("provider: %d %s", resp.StatusCode, callback)
	}
	resp, body := do(t, c, "GET", callback, nil, nil)
	return resp, body, callback
}

// Organizers sign in with an OIDC provider; participants join a group with
// an invite code and land in their own IDE, and get nothing else.
func TestSignInAndJoin(t *testing.T) {
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown()
	mc := m.Config()
	h := thontest.New(t, thontest.Groups(config.Group{Name: "alpha", Users: []string{"alice"}}), thontest.FakeEngine())
	h.Stop()
	h.Config.Auth.Admins = []string{"ada@example.org"}
	h.Config.Auth.Providers.OIDC = config.OIDCProvider{Issuer: mc.Issuer, ClientID: mc.ClientID, ClientSecret: mc.ClientSecret, Name: "Test SSO"}
	h.Start()
	ctx := context.Background()
	dash := h.Daemon.FrontDoor.DashboardURL()

	// The sign-in page offers the provider.
	c := tlsClient(h)
	if _, page := do(t, c, "GET", dash+"login", nil, nil); !strings.Contains(page, `href="/auth/oidc/login?next=%2f"`) || !strings.Contains(page, "Sign in with Test SSO") {
		t.Fatalf("login page:\n%s", page)
	}

	// An organizer: signed in, sent on by a page of THON's (so the Strict cookie goes along).
	m.QueueUser(&mockoidc.MockUser{Subject: "ada-1", Email: "ada@example.org", EmailVerified: true, PreferredUsername: "ada"})
	resp, body, callback := signIn(t, c, dash+"auth/oidc/login?next=/groups")
	if resp.StatusCode != 200 || refreshRE.FindStringSubmatch(body) == nil || refreshRE.FindStringSubmatch(body)[1] != "/groups" {
		t.Fatalf("organizer's callback: %d\n%s", resp.StatusCode, body)
	}
	if resp, page := do(t, c, "GET", dash+"groups", nil, nil); resp.StatusCode != 200 || !strings.Contains(page, `data-group="alpha"`) {
		t.Fatalf("groups after sign-in: %d", resp.StatusCode)
	}
	// The same callback again (a replayed code and state): refused.
	if resp, body := do(t, c, "GET", callback, nil, nil); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "already used") {
		t.Fatalf("replayed callback: %d\n%s", resp.StatusCode, body)
	}
	// A state THON never handed out: refused.
	forged := strings.Replace(callback, "state=", "state=forged", 1)
	if resp, _ := do(t, c, "GET", forged, nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged state: %d", resp.StatusCode)
	}

	// Someone who is no organizer: refused, no session.
	c2 := tlsClient(h)
	m.QueueUser(&mockoidc.MockUser{Subject: "eve-1", Email: "eve@example.org", EmailVerified: true, PreferredUsername: "eve"})
	if resp, body, _ := signIn(t, c2, dash+"auth/oidc/login"); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "not an organizer") {
		t.Fatalf("non-organizer: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := do(t, c2, "GET", dash+"groups", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("non-organizer on the dashboard: %d", resp.StatusCode)
	}

	// A participant joins with an invite, through the provider, into their IDE.
	inv, err := h.Client.CreateInvite(ctx, client.InviteRequest{Group: "alpha", Uses: 5, ExpiresIn: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	joiner := tlsClient(h)
	if _, page := do(t, joiner, "GET", inv.URL, nil, nil); !strings.Contains(page, "Join alpha") || !strings.Contains(page, "/auth/oidc/login?join="+inv.Code) {
		t.Fatalf("join page:\n%s", page)
	}
	m.QueueUser(&mockoidc.MockUser{Subject: "carol-1", Email: "carol@example.org", EmailVerified: true, PreferredUsername: "Carol.Dev"})
	resp, body, _ = signIn(t, joiner, dash+"auth/oidc/login?join="+inv.Code)
	mm := refreshRE.FindStringSubmatch(body)
	if resp.StatusCode != 200 || mm == nil || !strings.Contains(mm[1], "/_thon/auth?token=") {
		t.Fatalf("join callback: %d\n%s", resp.StatusCode, body)
	}
	if u, err := h.Client.Users(ctx, "alpha"); err != nil || len(u) != 2 || u[1].Name != "carol-dev" {
		t.Fatalf("alpha after the join: %+v %v", u, err)
	}
	// The link is carol's, on carol's own port.
	link, _ := url.Parse(strings.ReplaceAll(mm[1], "&amp;", "&"))
	if want, _ := url.Parse(h.Daemon.FrontDoor.URL("carol-dev")); link.Host != want.Host {
		t.Fatalf("carol's link %s, her IDE at %s", link, want)
	}
	// The participant's session: herself only.
	for _, tc := range []struct {
		path string
		want int
	}{{"api/v1/me", 200}, {"api/v1/sandboxes/carol-dev", 200}, {"api/v1/sandboxes/alice", 403}, {"api/v1/sandboxes", 403}, {"api/v1/users", 403}, {"api/v1/gateway/keys", 403}} {
		if resp, body := do(t, joiner, "GET", dash+tc.path, nil, nil); resp.StatusCode != tc.want {
			t.Errorf("carol's session, %s: %d, want %d (%s)", tc.path, resp.StatusCode, tc.want, body)
		}
	}
	if resp, body := do(t, joiner, "GET", dash+"instances", nil, nil); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Organizers only") {
		t.Fatalf("carol on the dashboard: %d", resp.StatusCode)
	}
	// Opening the invite again later: back to her own sandbox, no second one, no use spent.
	m.QueueUser(&mockoidc.MockUser{Subject: "carol-1", Email: "carol@example.org", EmailVerified: true, PreferredUsername: "Carol.Dev"})
	if resp, body, _ := signIn(t, tlsClient(h), dash+"auth/oidc/login?join="+inv.Code); resp.StatusCode != 200 || !strings.Contains(body, "/_thon/auth?token=") {
		t.Fatalf("rejoin: %d\n%s", resp.StatusCode, body)
	}
	invites, _ := h.Client.Invites(ctx)
	if u, _ := h.Client.Users(ctx, "alpha"); len(u) != 2 || len(invites) != 1 || invites[0].Used != 1 {
		t.Fatalf("after the rejoin: %d users, invites %+v", len(u), invites)
	}
	waitUntil(t, "carol's sandbox running", func() bool {
		s, err := h.Client.Sandbox(ctx, "carol-dev")
		return err == nil && s.State == "running"
	})
}

// Fifty people join at once with a 30-use invite (name and password): 30 get
// in, 20 are told it is used up; nobody is let in twice.
func TestConcurrentJoinsHoldTheInviteLimit(t *testing.T) {
	h := thontest.New(t, thontest.Groups(config.Group{Name: "alpha", Users: []string{"alice"}}), thontest.FakeEngine())
	ctx := context.Background()
	inv, err := h.Client.CreateInvite(ctx, client.InviteRequest{Group: "alpha", Uses: 30, ExpiresIn: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	origin := strings.TrimSuffix(h.Daemon.FrontDoor.DashboardURL(), "/")
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			form := url.Values{"name": {fmt.Sprintf("Joiner %02d", i)}, "password": {"a good password"}}
			resp, _ := do(t, tlsClient(h), "POST", inv.URL, strings.NewReader(form.Encode()),
				map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": origin})
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[200] != 30 || codes[http.StatusGone] != 20 {
		t.Fatalf("answers: %v, want 30 × 200 and 20 × 410", codes)
	}
	if u, _ := h.Client.Users(ctx, "alpha"); len(u) != 31 {
		t.Fatalf("%d participants in alpha, want 31", len(u))
	}
	// Each joiner's sandbox starts by itself, sandbox.concurrency at a time,
	// each within sandbox.startup_timeout: on a busy machine that takes as
	// long as it takes, so the wait ends when all 30 run or one has failed,
	// and only a start that hangs past what the settings allow times out.
	sb := h.Config.Sandbox
	limit := time.Duration((30+sb.Concurrency-1)/sb.Concurrency) * sb.StartupTimeout.D()
	waitFor(t, limit, "30 joiners' sandboxes running", func() bool {
		list, err := h.Client.Sandboxes(ctx, []string{"alpha"}, nil)
		n := 0
		for _, s := range list.Items {
			if s.State == "failed" {
				t.Fatalf("%s's sandbox did not start: %s", s.User, s.Error)
			}
			if s.State == "running" {
				n++
			}
		}
		return err == nil && n == 30
	})
	// Back with the name and password: their own IDE again.
	form := url.Values{"name": {"joiner-07"}, "password": {"a good password"}}
	resp, body := do(t, tlsClient(h), "POST", inv.URL, strings.NewReader(form.Encode()), map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": origin})
	if u, _ := h.Client.Users(ctx, "alpha"); resp.StatusCode == 200 && len(u) == 31 && strings.Contains(body, "/_thon/auth?token=") {
		return
	} else if resp.StatusCode == http.StatusGone {
		t.Log("joiner-07 was among those refused; checking a wrong password instead")
	}
	form.Set("password", "not the password")
	if resp, body := do(t, tlsClient(h), "POST", inv.URL, strings.NewReader(form.Encode()), map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": origin}); resp.StatusCode == 200 {
		t.Fatalf("a wrong password got in:\n%s", body)
	}
}
