package config

import (
	"net/url"
	"slices"
	"strings"
)

// Redacted is what a secret set in the configuration shows as in Redacted.
const Redacted = "<redacted>"

// Redacted returns a copy of the configuration fit to show: every secret
// that is set (passwords, API keys, client secrets, the password in a
// database or Redis URL) replaced by Redacted. Secrets that are not set
// stay "", so the copy still tells which are.
func (c *Config) Redacted() *Config {
	r := *c
	hide := func(s *string) {
		if *s != "" {
			*s = Redacted
		}
	}
	hide(&r.Auth.AdminPassword)
	hide(&r.LLM.APIKey)
	hide(&r.LLM.AdminAPIKey)
	hide(&r.Auth.Providers.GitHub.ClientSecret)
	hide(&r.Auth.Providers.GitLab.ClientSecret)
	hide(&r.Auth.Providers.LinkedIn.ClientSecret)
	hide(&r.Auth.Providers.OIDC.ClientSecret)
	r.Server.Database = redactURL(r.Server.Database)
	r.Gateway.Redis = redactURL(r.Gateway.Redis)
	r.Gateway.Upstream = redactURL(r.Gateway.Upstream)
	r.LLM.URL = redactURL(r.LLM.URL)
	// Maps and slices are shared with c: copy what is changed or may be.
	r.Sandbox.Env = redactEnv(c.Sandbox.Env)
	r.Auth.Admins = slices.Clone(c.Auth.Admins)
	return &r
}

// redactURL hides the password of a URL's user information
// (postgres://thon:secret@db/thon → postgres://thon:xxxxx@db/thon), and a
// Redis URL's lone user information (redis://secret@host), which Redis
// clients take for a password.
func redactURL(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return Redacted // unparsable, and it may hold a password
	case u.User == nil:
		return s
	}
	if _, has := u.User.Password(); has {
		return u.Redacted()
	}
	if u.Scheme == "redis" || u.Scheme == "rediss" {
		u.User = url.User("xxxxx")
		return u.String()
	}
	return s
}

// secretEnvWords mark environment variables of sandbox.env that hold
// secrets: their values are hidden too.
var secretEnvWords = []string{"KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"}

func redactEnv(env map[string]string) map[string]string {
	if env == nil {
		return nil
	}
	out := make(map[string]string, len(env))
	for k, v := range env {
		up := strings.ToUpper(k)
		if v != "" && slices.ContainsFunc(secretEnvWords, func(w string) bool { return strings.Contains(up, w) }) {
			v = Redacted
		}
		out[k] = v
	}
	return out
}
