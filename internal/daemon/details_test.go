package daemon_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/llm"
	"github.com/thon-dev/thon/internal/thontest"
)

// A group's title and a participant's e-mail from thon.yaml reach the
// places people see them: the store (and the API), access links and their
// CSV, the printed cards, the invite page, the git identity in the
// sandbox; a person joining through the invite with a listed address
// becomes that participant.
func TestGroupTitlesAndEmails(t *testing.T) {
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown()
	mc := m.Config()
	alpha := config.Group{Name: "alpha", Title: "Team Alpha", Users: []string{"alice", "bob"},
		Emails: map[string]string{"alice": "alice@example.org", "bob": "Bob@Example.org"}}
	h := thontest.New(t, thontest.Groups(alpha))
	h.Stop()
	h.Config.Auth.AdminPassword = "a long admin password"
	h.Config.Auth.Providers.OIDC = config.OIDCProvider{Issuer: mc.Issuer, ClientID: mc.ClientID, ClientSecret: mc.ClientSecret, Name: "Test SSO"}
	h.Start()
	ctx := context.Background()

	gs, err := h.Client.Groups(ctx)
	if err != nil || len(gs) != 1 || gs[0].Title != "Team Alpha" {
		t.Fatalf("groups: %+v %v", gs, err)
	}
	users, err := h.Client.Users(ctx)
	if err != nil || users[0].Email != "alice@example.org" {
		t.Fatalf("users: %+v %v", users, err)
	}
	links, err := h.Client.IssueLinks(ctx, []string{"alpha"}, nil)
	if err != nil || len(links) != 2 || links[0].Email != "alice@example.org" {
		t.Fatalf("links: %+v %v", links, err)
	}

	// Her git identity in her sandbox.
	if _, err := h.Client.Action(ctx, "alice", "start"); err != nil {
		t.Fatal(err)
	}
	gc := sandboxFile(t, h, "alice", llm.GitConfigPath)
	if !strings.Contains(gc.Data, "name = alice\n") || !strings.Contains(gc.Data, "email = alice@example.org\n") || gc.Mode != "0644" {
		t.Fatalf("alice's %s: %+v", llm.GitConfigPath, gc)
	}

	// The cards show the title and the e-mail.
	dash := h.Daemon.FrontDoor.DashboardURL()
	c := tlsClient(h)
	hdr := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": strings.TrimSuffix(dash, "/")}
	if resp, _ := do(t, c, "POST", dash+"login", strings.NewReader(url.Values{"password": {"a long admin password"}}.Encode()), hdr); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %d", resp.StatusCode)
	}
	_, page := do(t, c, "GET", dash+"groups", nil, nil)
	if !strings.Contains(page, "Team Alpha") {
		t.Errorf("groups page lacks the title")
	}
	csrf := csrfMeta.FindStringSubmatch(page)
	if csrf == nil {
		t.Fatalf("no CSRF token on the groups page")
	}
	resp, cards := do(t, c, "POST", dash+"cards", strings.NewReader(url.Values{"group": {"alpha"}, "csrf": {csrf[1]}}.Encode()), hdr)
	if resp.StatusCode != 200 || !strings.Contains(cards, "Access cards: Team Alpha") || !strings.Contains(cards, "alice@example.org") {
		t.Fatalf("cards: %d\n%s", resp.StatusCode, cards)
	}

	// The invite page names the group by its title; bob, listed with his
	// address, signs in with it and is bob: no new participant, no use spent.
	inv, err := h.Client.CreateInvite(ctx, client.InviteRequest{Group: "alpha", Uses: 1, ExpiresIn: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	joiner := tlsClient(h)
	if _, page := do(t, joiner, "GET", inv.URL, nil, nil); !strings.Contains(page, "Join Team Alpha") {
		t.Fatalf("join page:\n%s", page)
	}
	m.QueueUser(&mockoidc.MockUser{Subject: "bob-1", Email: "bob@example.org", EmailVerified: true, PreferredUsername: "robert"})
	resp, body, _ := signIn(t, joiner, dash+"auth/oidc/login?join="+inv.Code)
	mm := refreshRE.FindStringSubmatch(body)
	if resp.StatusCode != 200 || mm == nil {
		t.Fatalf("join callback: %d\n%s", resp.StatusCode, body)
	}
	link, _ := url.Parse(strings.ReplaceAll(mm[1], "&amp;", "&"))
	if want, _ := url.Parse(h.Daemon.FrontDoor.URL("bob")); link.Host != want.Host {
		t.Fatalf("the joiner's link %s is not bob's IDE %s", link, want)
	}
	if us, _ := h.Client.Users(ctx); len(us) != 2 {
		t.Fatalf("a participant was added: %+v", us)
	}
	if invs, _ := h.Client.Invites(ctx); len(invs) != 1 || invs[0].Used != 0 {
		t.Fatalf("invite after bob came in: %+v", invs)
	}
	// Someone unlisted still joins as new, spending the use.
	m.QueueUser(&mockoidc.MockUser{Subject: "eve-1", Email: "eve@example.org", EmailVerified: true, PreferredUsername: "eve"})
	if resp, body, _ := signIn(t, tlsClient(h), dash+"auth/oidc/login?join="+inv.Code); resp.StatusCode != 200 || !strings.Contains(body, "/_thon/auth?token=") {
		t.Fatalf("eve's join: %d\n%s", resp.StatusCode, body)
	}
	if us, _ := h.Client.Users(ctx); len(us) != 3 || us[2].Name != "eve" || us[2].Email != "eve@example.org" {
		t.Fatalf("after eve: %+v", us)
	}
	evs, _ := h.Client.Events(ctx, 0, 100)
	var seen bool
	for _, e := range evs {
		seen = seen || (e.Action == "invite.join" && e.Target == "bob" && strings.Contains(e.Detail, "listed with bob@example.org"))
	}
	if !seen {
		t.Errorf("no audit entry for bob's join: %+v", evs)
	}
	// Joining starts their sandboxes in the background: let them settle.
	waitUntil(t, "bob's and eve's sandboxes running", func() bool {
		b, err1 := h.Client.Sandbox(ctx, "bob")
		e, err2 := h.Client.Sandbox(ctx, "eve")
		return err1 == nil && err2 == nil && b.State == "running" && e.State == "running"
	})
}
