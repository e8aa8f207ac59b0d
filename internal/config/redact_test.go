package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestRedacted(t *testing.T) {
	c := Default()
	c.Auth.AdminPassword = "dashboard secret"
	c.LLM.APIKey, c.LLM.AdminAPIKey = "llm-key-1", "llm-key-2"
	c.Auth.Providers.GitHub = GitProvider{ClientID: "gh-id", ClientSecret: "gh-secret"}
	c.Auth.Providers.GitLab = GitProvider{ClientID: "gl-id", ClientSecret: "gl-secret"}
	c.Auth.Providers.LinkedIn = OAuthClient{ClientID: "li-id", ClientSecret: "li-secret"}
	c.Auth.Providers.OIDC = OIDCProvider{Issuer: "https://sso.example.org", ClientID: "oidc-id", ClientSecret: "oidc-secret"}
	c.Server.Database = "postgres://thon:pg-secret@db:5432/thon"
	c.Gateway.Redis = "redis://redis-secret@cache:6379/0"
	c.Gateway.Upstream = "http://user:up-secret@llm:8080/v1"
	c.Sandbox.Env = map[string]string{"TZ": "Europe/Paris", "HF_TOKEN": "hf-secret", "MY_API_KEY": "k-secret", "EMPTY_SECRET": ""}
	r := c.Redacted()
	for _, out := range []func() ([]byte, error){r.YAML} {
		b, err := out()
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{"dashboard secret", "llm-key-1", "llm-key-2", "gh-secret", "gl-secret", "li-secret", "oidc-secret", "pg-secret", "redis-secret", "up-secret", "hf-secret", "k-secret"} {
			if strings.Contains(string(b), secret) {
				t.Errorf("the redacted config shows %q", secret)
			}
		}
		for _, kept := range []string{"gh-id", "oidc-id", "TZ: Europe/Paris", "EMPTY_SECRET: \"\"", "postgres://thon:xxxxx@db:5432/thon", "redis://xxxxx@cache:6379/0", "admin_password: <redacted>"} {
			if !strings.Contains(string(b), kept) {
				t.Errorf("the redacted config lacks %q:\n%s", kept, b)
			}
		}
	}
	// The original is untouched.
	if c.Auth.AdminPassword != "dashboard secret" || c.Sandbox.Env["HF_TOKEN"] != "hf-secret" {
		t.Errorf("Redacted changed its receiver")
	}
	// Unset secrets stay empty, so one sees which are set.
	if d := Default().Redacted(); d.LLM.APIKey != "" || d.Auth.AdminPassword != "" {
		t.Errorf("unset secrets: %+v", d.Auth)
	}
}

// Every string setting whose name says it is a secret is redacted: a new
// one must be added to Redacted.
func TestRedactedCoversEverySecret(t *testing.T) {
	c := Default()
	var secrets []string
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		for i := range v.NumField() {
			f := v.Type().Field(i)
			name := yamlName(f)
			if name == "" {
				continue
			}
			p := join(path, name)
			switch fv := v.Field(i); {
			case fv.Kind() == reflect.Struct && !isLeaf(f.Type):
				walk(fv, p)
			case fv.Kind() == reflect.String && (strings.Contains(name, "secret") || strings.Contains(name, "password") || strings.HasSuffix(name, "api_key")):
				fv.SetString("s3cr3t-" + p)
				secrets = append(secrets, "s3cr3t-"+p)
			}
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
	if len(secrets) < 7 {
		t.Fatalf("found only %v", secrets)
	}
	b, _ := c.Redacted().YAML()
	for _, s := range secrets {
		if strings.Contains(string(b), s) {
			t.Errorf("%s is not redacted", strings.TrimPrefix(s, "s3cr3t-"))
		}
	}
}
