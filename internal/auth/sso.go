package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/thon-dev/thon/internal/config"
)

// Identity is who a provider says signed in.
type Identity struct {
	Provider string `json:"provider"` // github, gitlab, linkedin, oidc
	Subject  string `json:"subject"`  // the provider's stable id
	Username string `json:"username,omitempty"`
	Email    string `json:"email,omitempty"`
	Name     string `json:"name,omitempty"`
}

// Key is the identity's stable key: provider:subject.
func (id Identity) Key() string { return id.Provider + ":" + id.Subject }

// Handle is how people know the identity: provider:username, else the e-mail.
func (id Identity) Handle() string {
	switch {
	case id.Username != "":
		return id.Provider + ":" + id.Username
	case id.Email != "":
		return id.Email
	}
	return id.Key()
}

// IsAdmin reports whether the identity is listed in auth.admins: by user
// name, by e-mail or as provider:name (case does not matter).
func IsAdmin(admins []string, id Identity) bool {
	for _, a := range admins {
		a = strings.ToLower(strings.TrimSpace(a))
		switch {
		case a == "":
		case strings.Contains(a, "@"):
			if id.Email != "" && a == strings.ToLower(id.Email) {
				return true
			}
		case strings.Contains(a, ":"):
			if a == strings.ToLower(id.Provider+":"+id.Username) || a == strings.ToLower(id.Key()) {
				return true
			}
		default:
			if id.Username != "" && a == strings.ToLower(id.Username) {
				return true
			}
		}
	}
	return false
}

// ProviderInfo is a configured provider, for sign-in buttons.
type ProviderInfo struct {
	ID      string `json:"id"`
	Display string `json:"display"`
}

// provider is one configured sign-in provider.
type provider struct {
	ProviderInfo
	conf   oauth2.Config // Endpoint filled in for OIDC once discovered
	issuer string        // OIDC: the issuer; "" for GitHub
	api    string        // GitHub: the REST API's base URL

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
}

// Flow is a sign-in under way: what it is for and where it goes after.
type Flow struct {
	Provider string
	Purpose  string // "admin", "join:CODE", …
	Next     string
	verifier string
	nonce    string
	binding  string // hash of the browser's flow cookie
	expires  time.Time
}

// Errors of sign-in.
var (
	ErrUnknownProvider = errors.New("this sign-in provider is not configured")
	ErrBadState        = errors.New("this sign-in is unknown, was already used, or has expired: start again")
	ErrWrongBrowser    = errors.New("this sign-in was started in another browser: start again here")
)

// FlowTTL is how long a sign-in may take at the provider.
const FlowTTL = 10 * time.Minute

// SSO signs people in with OAuth2/OIDC providers: authorization code flow
// with PKCE (S256) for every provider, state bound to the browser, nonce
// and ID token signature checked for OIDC.
type SSO struct {
	providers map[string]*provider
	order     []string
	client    *http.Client
	now       func() time.Time

	mu    sync.Mutex
	flows map[string]*Flow // by state
}

// SSOOptions: Client talks to the providers (tests: one trusting a test CA).
type SSOOptions struct {
	Client *http.Client
}

// NewSSO sets up the providers auth.providers configures.
func NewSSO(p config.Providers, o SSOOptions) *SSO {
	s := &SSO{providers: map[string]*provider{}, client: o.Client, now: time.Now, flows: map[string]*Flow{}}
	if s.client == nil {
		s.client = &http.Client{Timeout: 15 * time.Second}
	}
	add := func(pr *provider) {
		s.providers[pr.ID] = pr
		s.order = append(s.order, pr.ID)
	}
	if g := p.GitHub; g.ClientID != "" {
		base, api := "https://github.com", "https://api.github.com"
		if g.URL != "" {
			base = strings.TrimRight(g.URL, "/")
			api = base + "/api/v3"
		}
		add(&provider{ProviderInfo: ProviderInfo{"github", "GitHub"}, api: api, conf: oauth2.Config{
			ClientID: g.ClientID, ClientSecret: g.ClientSecret, Scopes: []string{"read:user", "user:email"},
			Endpoint: oauth2.Endpoint{AuthURL: base + "/login/oauth/authorize", TokenURL: base + "/login/oauth/access_token", AuthStyle: oauth2.AuthStyleInParams},
		}})
	}
	if g := p.GitLab; g.ClientID != "" {
		issuer := "https://gitlab.com"
		if g.URL != "" {
			issuer = strings.TrimRight(g.URL, "/")
		}
		add(&provider{ProviderInfo: ProviderInfo{"gitlab", "GitLab"}, issuer: issuer, conf: oauth2.Config{
			ClientID: g.ClientID, ClientSecret: g.ClientSecret, Scopes: []string{oidc.ScopeOpenID, "profile", "email"},
		}})
	}
	if l := p.LinkedIn; l.ClientID != "" {
		add(&provider{ProviderInfo: ProviderInfo{"linkedin", "LinkedIn"}, issuer: "https://www.linkedin.com/oauth", conf: oauth2.Config{
			ClientID: l.ClientID, ClientSecret: l.ClientSecret, Scopes: []string{oidc.ScopeOpenID, "profile", "email"},
		}})
	}
	if o := p.OIDC; o.ClientID != "" {
		name := o.Name
		if name == "" {
			name = "Single sign-on"
		}
		add(&provider{ProviderInfo: ProviderInfo{"oidc", name}, issuer: strings.TrimRight(o.Issuer, "/"), conf: oauth2.Config{
			ClientID: o.ClientID, ClientSecret: o.ClientSecret, Scopes: []string{oidc.ScopeOpenID, "profile", "email"},
		}})
	}
	return s
}

// Providers lists the configured providers, in a stable order.
func (s *SSO) Providers() []ProviderInfo {
	out := make([]ProviderInfo, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.providers[id].ProviderInfo)
	}
	return out
}

func (s *SSO) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(context.WithValue(ctx, oauth2.HTTPClient, s.client), s.client)
}

// discover finds an OIDC provider's endpoints and keys, once; a provider
// that is down is asked again next time.
func (s *SSO) discover(ctx context.Context, p *provider) error {
	if p.issuer == "" {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.verifier != nil {
		return nil
	}
	op, err := oidc.NewProvider(s.ctx(ctx), p.issuer)
	if err != nil {
		return fmt.Errorf("%s sign-in: cannot read %s/.well-known/openid-configuration: %w", p.Display, p.issuer, err)
	}
	p.conf.Endpoint = op.Endpoint()
	p.verifier = op.Verifier(&oidc.Config{ClientID: p.conf.ClientID})
	return nil
}

// Begin starts a sign-in with provider: it returns the provider's URL to
// send the browser to, and a secret for a short-lived cookie that binds
// the sign-in to this browser. redirect is THON's callback URL.
func (s *SSO) Begin(ctx context.Context, providerID, redirect, purpose, next string) (authURL, binding string, err error) {
	p := s.providers[providerID]
	if p == nil {
		return "", "", fmt.Errorf("%w: %s", ErrUnknownProvider, providerID)
	}
	if err := s.discover(ctx, p); err != nil {
		return "", "", err
	}
	f := &Flow{Provider: providerID, Purpose: purpose, Next: next, verifier: oauth2.GenerateVerifier(), nonce: randomString(), expires: s.now().Add(FlowTTL)}
	binding = randomString()
	f.binding = HashToken(binding)
	state := randomString()
	s.mu.Lock()
	s.sweep()
	s.flows[state] = f
	s.mu.Unlock()
	conf := p.conf
	conf.RedirectURL = redirect
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(f.verifier)}
	if p.issuer != "" {
		opts = append(opts, oidc.Nonce(f.nonce))
	}
	return conf.AuthCodeURL(state, opts...), binding, nil
}

// sweep forgets expired flows (s.mu held); it also bounds their number.
func (s *SSO) sweep() {
	now := s.now()
	for k, f := range s.flows {
		if now.After(f.expires) {
			delete(s.flows, k)
		}
	}
	if len(s.flows) > 10000 {
		clear(s.flows)
	}
}

// Finish completes a sign-in at THON's callback: the state must be one
// Begin handed out, unused, unexpired and started in this browser; the
// code is exchanged with the PKCE verifier; for OIDC the ID token's
// signature, audience, expiry and nonce are checked.
func (s *SSO) Finish(ctx context.Context, providerID, redirect, code, state, binding string) (Identity, Flow, error) {
	s.mu.Lock()
	f := s.flows[state]
	delete(s.flows, state) // single use, whatever happens next
	s.mu.Unlock()
	switch {
	case f == nil || f.Provider != providerID || s.now().After(f.expires):
		return Identity{}, Flow{}, ErrBadState
	case HashToken(binding) != f.binding:
		return Identity{}, Flow{}, ErrWrongBrowser
	case code == "":
		return Identity{}, *f, errors.New("the provider sent no code back")
	}
	p := s.providers[providerID]
	conf := p.conf
	conf.RedirectURL = redirect
	tok, err := conf.Exchange(s.ctx(ctx), code, oauth2.VerifierOption(f.verifier))
	if err != nil {
		return Identity{}, *f, fmt.Errorf("%s refused the sign-in: %w", p.Display, err)
	}
	var id Identity
	if p.issuer != "" {
		id, err = s.oidcIdentity(ctx, p, tok, f.nonce)
	} else {
		id, err = s.githubIdentity(ctx, p, tok)
	}
	if err != nil {
		return Identity{}, *f, err
	}
	id.Provider = providerID
	return id, *f, nil
}

func (s *SSO) oidcIdentity(ctx context.Context, p *provider, tok *oauth2.Token, nonce string) (Identity, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, fmt.Errorf("%s sent no ID token", p.Display)
	}
	idt, err := p.verifier.Verify(s.ctx(ctx), raw)
	if err != nil {
		return Identity{}, fmt.Errorf("%s's ID token does not check out: %w", p.Display, err)
	}
	if idt.Nonce != nonce {
		return Identity{}, fmt.Errorf("%s's ID token is not for this sign-in (nonce)", p.Display)
	}
	var c struct {
		Email             string `json:"email"`
		EmailVerified     *bool  `json:"email_verified"`
		PreferredUsername string `json:"preferred_username"`
		Nickname          string `json:"nickname"`
		Name              string `json:"name"`
	}
	if err := idt.Claims(&c); err != nil {
		return Identity{}, err
	}
	id := Identity{Subject: idt.Subject, Username: cmpOr(c.PreferredUsername, c.Nickname), Name: c.Name}
	if c.EmailVerified == nil || *c.EmailVerified {
		id.Email = c.Email // an unverified address proves nothing
	}
	return id, nil
}

// githubIdentity asks GitHub's REST API who holds the token.
func (s *SSO) githubIdentity(ctx context.Context, p *provider, tok *oauth2.Token) (Identity, error) {
	get := func(path string, v any) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.api+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		req.Header.Set("Accept", "application/vnd.github+json")
		resp, err := s.client.Do(req)
		if err != nil {
			return fmt.Errorf("GitHub's API: %w", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GitHub's API answered %s to %s", resp.Status, path)
		}
		return json.Unmarshal(body, v)
	}
	var u struct {
		ID    int64  `json:"id"`
		Login string `json:"login"`
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	if err := get("/user", &u); err != nil {
		return Identity{}, err
	}
	if u.ID == 0 || u.Login == "" {
		return Identity{}, errors.New("GitHub's API did not say who signed in")
	}
	id := Identity{Subject: strconv.FormatInt(u.ID, 10), Username: u.Login, Name: u.Name}
	var emails []githubEmail
	if err := get("/user/emails", &emails); err == nil {
		if i := slices.IndexFunc(emails, func(e githubEmail) bool { return e.Primary && e.Verified }); i >= 0 {
			id.Email = emails[i].Email
		}
	}
	return id, nil
}

// githubEmail is one entry of GitHub's /user/emails.
type githubEmail struct {
	Email    string `json:"email"`
	Primary  bool   `json:"primary"`
	Verified bool   `json:"verified"`
}

func randomString() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// CallbackPath is THON's fixed redirect URI path for a provider.
func CallbackPath(providerID string) string {
	return "/auth/" + url.PathEscape(providerID) + "/callback"
}
