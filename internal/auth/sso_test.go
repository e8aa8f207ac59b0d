package auth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/thon-dev/thon/internal/auth/githubtest"
	"github.com/thon-dev/thon/internal/config"
)

const redirect = "https://thon.test/auth/oidc/callback"

// follow asks the provider's authorize URL, as a browser would, and returns
// the code and state it redirects back with.
func follow(t *testing.T, authURL string) (code, state string) {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil {
		t.Fatalf("authorize: %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}
	return loc.Query().Get("code"), loc.Query().Get("state")
}

func oidcSSO(t *testing.T) (*SSO, *mockoidc.MockOIDC) {
	t.Helper()
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	cfg := m.Config()
	s := NewSSO(config.Providers{OIDC: config.OIDCProvider{Issuer: cfg.Issuer, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Name: "Test SSO"}}, SSOOptions{})
	return s, m
}

func TestOIDCSignIn(t *testing.T) {
	ctx := context.Background()
	s, m := oidcSSO(t)
	if p := s.Providers(); len(p) != 1 || p[0].ID != "oidc" || p[0].Display != "Test SSO" {
		t.Fatalf("providers: %+v", p)
	}
	m.QueueUser(&mockoidc.MockUser{Subject: "ada-1", Email: "ada@example.org", EmailVerified: true, PreferredUsername: "ada"})
	authURL, binding, err := s.Begin(ctx, "oidc", redirect, "admin", "/groups")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(authURL)
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("redirect_uri") != redirect {
		t.Fatalf("authorize URL lacks PKCE, nonce or the fixed redirect: %s", authURL)
	}
	code, state := follow(t, authURL)
	id, flow, err := s.Finish(ctx, "oidc", redirect, code, state, binding)
	if err != nil {
		t.Fatal(err)
	}
	if id.Key() != "oidc:ada-1" || id.Username != "ada" || id.Email != "ada@example.org" || flow.Purpose != "admin" || flow.Next != "/groups" {
		t.Fatalf("identity %+v flow %+v", id, flow)
	}
	// The same state again (a replayed callback): refused before the provider is asked.
	if _, _, err := s.Finish(ctx, "oidc", redirect, code, state, binding); !errors.Is(err, ErrBadState) {
		t.Fatalf("replayed callback: %v", err)
	}
	// A replayed code on a fresh sign-in: the provider refuses it.
	_, binding2, _ := s.Begin(ctx, "oidc", redirect, "admin", "/")
	var state2 string
	s.mu.Lock()
	for k := range s.flows {
		state2 = k
	}
	s.mu.Unlock()
	if _, _, err := s.Finish(ctx, "oidc", redirect, code, state2, binding2); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("replayed code: %v", err)
	}
}

func TestOIDCSignInRefusals(t *testing.T) {
	ctx := context.Background()
	s, _ := oidcSSO(t)
	begin := func() (string, string, string) {
		authURL, binding, err := s.Begin(ctx, "oidc", redirect, "admin", "/")
		if err != nil {
			t.Fatal(err)
		}
		code, state := follow(t, authURL)
		return code, state, binding
	}
	// A state THON never handed out.
	code, _, binding := begin()
	if _, _, err := s.Finish(ctx, "oidc", redirect, code, "forged-state", binding); !errors.Is(err, ErrBadState) {
		t.Fatalf("wrong state: %v", err)
	}
	// Another browser's callback (no or another flow cookie).
	code, state, _ := begin()
	if _, _, err := s.Finish(ctx, "oidc", redirect, code, state, "someone else's cookie"); !errors.Is(err, ErrWrongBrowser) {
		t.Fatalf("other browser: %v", err)
	}
	// PKCE: the provider checks the verifier against the challenge.
	code, state, binding = begin()
	s.mu.Lock()
	s.flows[state].verifier = "a-verifier-that-does-not-match-the-challenge-0123456789"
	s.mu.Unlock()
	if _, _, err := s.Finish(ctx, "oidc", redirect, code, state, binding); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("wrong PKCE verifier: %v", err)
	}
	// The ID token must carry this sign-in's nonce.
	code, state, binding = begin()
	s.mu.Lock()
	s.flows[state].nonce = "another nonce"
	s.mu.Unlock()
	if _, _, err := s.Finish(ctx, "oidc", redirect, code, state, binding); err == nil || !strings.Contains(err.Error(), "nonce") {
		t.Fatalf("wrong nonce: %v", err)
	}
	// A sign-in that took too long.
	code, state, binding = begin()
	s.now = func() time.Time { return time.Now().Add(FlowTTL + time.Minute) }
	if _, _, err := s.Finish(ctx, "oidc", redirect, code, state, binding); !errors.Is(err, ErrBadState) {
		t.Fatalf("expired sign-in: %v", err)
	}
	s.now = time.Now
	if _, _, err := s.Begin(ctx, "github", redirect, "admin", "/"); !errors.Is(err, ErrUnknownProvider) {
		t.Fatalf("unconfigured provider: %v", err)
	}
	// A provider that does not answer: a clear error, and a later try works.
	down := NewSSO(config.Providers{OIDC: config.OIDCProvider{Issuer: "http://127.0.0.1:1", ClientID: "a", ClientSecret: "b"}}, SSOOptions{})
	if _, _, err := down.Begin(ctx, "oidc", redirect, "admin", "/"); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1/.well-known/openid-configuration") {
		t.Fatalf("provider down: %v", err)
	}
}

func TestGitHubSignIn(t *testing.T) {
	ctx := context.Background()
	gh := githubtest.New()
	defer gh.Close()
	s := NewSSO(config.Providers{GitHub: config.GitProvider{ClientID: gh.ClientID, ClientSecret: gh.ClientSecret, URL: gh.URL}}, SSOOptions{})
	gh.QueueUser(githubtest.User{ID: 583231, Login: "octocat", Name: "The Octocat", Email: "octocat@example.org", Verified: true})
	authURL, binding, err := s.Begin(ctx, "github", "https://thon.test/auth/github/callback", "join:abc", "")
	if err != nil {
		t.Fatal(err)
	}
	code, state := follow(t, authURL)
	id, flow, err := s.Finish(ctx, "github", "https://thon.test/auth/github/callback", code, state, binding)
	if err != nil {
		t.Fatalf("%v\n%s", err, strings.Join(gh.Log, "\n"))
	}
	if id.Key() != "github:583231" || id.Username != "octocat" || id.Email != "octocat@example.org" || id.Handle() != "github:octocat" || flow.Purpose != "join:abc" {
		t.Fatalf("identity %+v", id)
	}
	// The code is single-use at GitHub too.
	_, binding2, _ := s.Begin(ctx, "github", "https://thon.test/auth/github/callback", "admin", "")
	var state2 string
	s.mu.Lock()
	for k := range s.flows {
		state2 = k
	}
	s.mu.Unlock()
	if _, _, err := s.Finish(ctx, "github", "https://thon.test/auth/github/callback", code, state2, binding2); err == nil || !strings.Contains(err.Error(), "bad_verification_code") {
		t.Fatalf("replayed GitHub code: %v", err)
	}
	// An unverified e-mail is not taken.
	gh.QueueUser(githubtest.User{ID: 2, Login: "mallory", Email: "ada@example.org", Verified: false})
	authURL, binding, _ = s.Begin(ctx, "github", "https://thon.test/auth/github/callback", "admin", "")
	code, state = follow(t, authURL)
	id, _, err = s.Finish(ctx, "github", "https://thon.test/auth/github/callback", code, state, binding)
	if err != nil || id.Email != "" {
		t.Fatalf("unverified e-mail taken: %+v %v", id, err)
	}
	if IsAdmin([]string{"ada@example.org"}, id) {
		t.Fatal("an unverified e-mail made an admin")
	}
}

func TestIsAdmin(t *testing.T) {
	id := Identity{Provider: "github", Subject: "583231", Username: "OctoCat", Email: "octo@example.org"}
	for _, tc := range []struct {
		admins []string
		want   bool
	}{
		{[]string{"octocat"}, true}, {[]string{"github:octocat"}, true}, {[]string{"github:583231"}, true},
		{[]string{"OCTO@example.org"}, true}, {[]string{"gitlab:octocat"}, false}, {[]string{"octo"}, false},
		{[]string{"other@example.org"}, false}, {nil, false}, {[]string{""}, false},
	} {
		if got := IsAdmin(tc.admins, id); got != tc.want {
			t.Errorf("IsAdmin(%q) = %v, want %v", tc.admins, got, tc.want)
		}
	}
}
