package config

import (
	"fmt"
	"strings"
)

// The password rule of every password THON keeps (auth.HashPassword
// applies it; bcrypt reads at most 72 bytes).
const (
	MinPassword = 8
	MaxPassword = 72
)

// checkAuth validates the auth section.
func (c *Config) checkAuth(bad func(path, hint, format string, args ...any)) {
	a := c.Auth
	switch pw := a.AdminPassword; {
	case pw == "":
	case len(pw) < MinPassword:
		bad("auth.admin_password", fmt.Sprintf("use at least %d characters (a few words is fine)", MinPassword), "is too short (%d characters)", len(pw))
	case len(pw) > MaxPassword:
		bad("auth.admin_password", fmt.Sprintf("use at most %d characters", MaxPassword), "is too long (%d characters)", len(pw))
	}
	for i, id := range a.Admins {
		if strings.TrimSpace(id) == "" || strings.ContainsAny(id, " \t") {
			bad(fmt.Sprintf("auth.admins.%d", i), "a user name (octocat), an e-mail or provider:name (github:octocat)", "%q is not an identity", id)
		}
	}
	p := a.Providers
	pair := func(name, id, secret string) {
		if (id == "") != (secret == "") {
			bad("auth.providers."+name, "set both client_id and client_secret (from the app you registered with "+name+"), or neither to turn it off", "client_id and client_secret go together")
		}
	}
	pair("github", p.GitHub.ClientID, p.GitHub.ClientSecret)
	pair("gitlab", p.GitLab.ClientID, p.GitLab.ClientSecret)
	pair("linkedin", p.LinkedIn.ClientID, p.LinkedIn.ClientSecret)
	pair("oidc", p.OIDC.ClientID, p.OIDC.ClientSecret)
	for _, u := range []struct{ path, v string }{{"auth.providers.github.url", p.GitHub.URL}, {"auth.providers.gitlab.url", p.GitLab.URL}} {
		if u.v != "" {
			if msg := checkURL(u.v); msg != "" {
				bad(u.path, "the server's address, e.g. https://github.example.org, or \"\" for the public site", "%q %s", u.v, msg)
			}
		}
	}
	switch {
	case p.OIDC.ClientID != "" && p.OIDC.Issuer == "":
		bad("auth.providers.oidc.issuer", "the provider's issuer URL, e.g. https://sso.example.org/realms/event", "must be set with a client_id")
	case p.OIDC.Issuer != "":
		if msg := checkURL(p.OIDC.Issuer); msg != "" {
			bad("auth.providers.oidc.issuer", "the provider's issuer URL, e.g. https://sso.example.org/realms/event", "%q %s", p.OIDC.Issuer, msg)
		}
	}
}

// Toleration is one taint sandboxes tolerate, as sandbox.kubernetes.tolerations writes it.
type Toleration struct {
	Key, Value, Effect string // Effect "" is every effect; Value "" with no "=" means any value
	Exists             bool   // no value given: any value
}

// ParseToleration reads "key=value:Effect", "key:Effect" or "key".
func ParseToleration(s string) (Toleration, error) {
	var t Toleration
	rest, effect, hasEffect := strings.Cut(strings.TrimSpace(s), ":")
	if hasEffect {
		switch effect {
		case "NoSchedule", "PreferNoSchedule", "NoExecute":
			t.Effect = effect
		default:
			return t, fmt.Errorf("%q: the effect must be NoSchedule, PreferNoSchedule or NoExecute", s)
		}
	}
	key, value, hasValue := strings.Cut(rest, "=")
	if key == "" || strings.ContainsAny(key, " \t") {
		return t, fmt.Errorf("%q has no key", s)
	}
	t.Key, t.Value, t.Exists = key, value, !hasValue
	return t, nil
}
