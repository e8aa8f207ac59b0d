package browser

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/thontest"
)

// The full browser flow with a real OpenID provider process on loopback:
// an organizer signs in to the dashboard; a participant opens an invite
// link, signs in, and lands in their own IDE; opening it again brings them
// back to the same one.
func TestSignInWithAProvider(t *testing.T) {
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown()
	mc := m.Config()
	h := thontest.New(t, thontest.Groups(config.Group{Name: "alpha", Users: []string{"alice"}}), thontest.FakeEngine())
	h.Stop()
	h.Config.Auth.Admins = []string{"ada@example.org"}
	h.Config.Auth.Providers.OIDC = config.OIDCProvider{Issuer: mc.Issuer, ClientID: mc.ClientID, ClientSecret: mc.ClientSecret, Name: "Event SSO"}
	h.Start()
	ctx := context.Background()
	dash := h.Daemon.FrontDoor.DashboardURL()
	dir := artifacts(t)
	b := newBrowser(t, h)

	// The organizer.
	b.step("organizer sign-in", func() {
		m.QueueUser(&mockoidc.MockUser{Subject: "ada-1", Email: "ada@example.org", EmailVerified: true, PreferredUsername: "ada"})
		b.open(dash + "login?next=/groups")
		eval[bool](b, `[...document.querySelectorAll("a.button")].find(a => a.textContent.includes("Event SSO")).click(); true`)
	}, `location.pathname === "/groups" && !!document.querySelector('section[data-group="alpha"]')`, 20*time.Second)
	b.screenshot(dir, "signin-organizer.png")
	b.noErrors("organizer sign-in")
	evs, _ := h.Client.Events(ctx, 0, 50)
	found := false
	for _, e := range evs {
		found = found || (e.Action == "admin.login" && e.Actor == "oidc:ada")
	}
	if !found {
		t.Errorf("no admin.login by oidc:ada in the audit log")
	}

	// A participant, in a fresh browser: the invite link, the provider, their IDE.
	inv, err := h.Client.CreateInvite(ctx, client.InviteRequest{Group: "alpha", Uses: 10, ExpiresIn: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	p := newBrowser(t, h)
	p.step("join", func() {
		m.QueueUser(&mockoidc.MockUser{Subject: "grace-1", Email: "grace@example.org", EmailVerified: true, PreferredUsername: "grace"})
		p.open(inv.URL)
		eval[bool](p, `document.querySelector("a.button").click(); true`)
	}, `(document.getElementById("user") || {}).textContent === "grace"`, 60*time.Second)
	if want := h.Daemon.FrontDoor.URL("grace"); !strings.HasPrefix(p.location(), want) {
		t.Fatalf("grace landed at %s, want her IDE at %s", p.location(), want)
	}
	p.screenshot(dir, "signin-joined-ide.png")
	// Again later: the same IDE, no second participant.
	p.step("rejoin", func() {
		m.QueueUser(&mockoidc.MockUser{Subject: "grace-1", Email: "grace@example.org", EmailVerified: true, PreferredUsername: "grace"})
		p.open(inv.URL)
		eval[bool](p, `document.querySelector("a.button").click(); true`)
	}, `(document.getElementById("user") || {}).textContent === "grace"`, 60*time.Second)
	if us, _ := h.Client.Users(ctx, "alpha"); len(us) != 2 {
		t.Fatalf("alpha has %d participants after a rejoin, want 2", len(us))
	}
}
