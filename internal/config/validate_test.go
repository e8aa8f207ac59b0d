package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestValidateDefault(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

// TestValidateMatchesParse builds in code the config a bad file describes,
// and expects Validate to find the same problems, without positions.
func TestValidateMatchesParse(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	src := `server:
  data_dir: ""
  listen: localhost
sandbox:
  image: ""
  port: 0
  health_path: healthz
  startup_timeout: -1s
  workspace: bind
  workspace_dir: ` + missing + `
  limits:
    cpu: 2000
    memory: 512
    pids: -3
  env:
    1BAD: x
  concurrency: 1000
  idle_timeout: 1m
  idle_action: sleep
  max_lifetime: -1h
groups:
  Alpha: [alice, bob, bob]
  beta: [alice, "carol-"]
  beta: []
`
	c := &Config{
		Server: Server{DataDir: "", Listen: "localhost"},
		Access: Default().Access,
		LLM:    Default().LLM,
		Sandbox: Sandbox{
			Image: "", Port: 0, HealthPath: "healthz", StartupTimeout: Duration(-time.Second),
			Workspace: "bind", WorkspaceDir: missing,
			Limits:      Limits{CPU: 2000, Memory: 512, Pids: -3},
			Env:         map[string]string{"1BAD": "x"},
			Concurrency: 1000,
			IdleTimeout: Duration(time.Minute), IdleAction: "sleep", MaxLifetime: Duration(-time.Hour),
		},
		Groups: Groups{{Name: "Alpha", Users: []string{"alice", "bob", "bob"}}, {Name: "beta", Users: []string{"alice", "carol-"}}, {Name: "beta", Users: []string{}}},
	}

	parsed := parseProblems(t, src)
	var ve *ValidationError
	if err := c.Validate(); !errors.As(err, &ve) {
		t.Fatalf("Validate() = %v, want *ValidationError", err)
	}
	if len(parsed) != 20 {
		t.Errorf("Parse found %d problems, want 20:\n%s", len(parsed), listProblems(parsed))
	}
	if len(ve.Problems) != len(parsed) {
		t.Fatalf("Validate found %d problems, Parse %d:\n%s\nvs\n%s", len(ve.Problems), len(parsed), listProblems(ve.Problems), listProblems(parsed))
	}
	for i, p := range ve.Problems {
		if p.File != "" || p.Line != 0 || p.Col != 0 {
			t.Errorf("Validate problem has a position: %s", p)
		}
		if parsed[i].Line == 0 {
			t.Errorf("Parse problem has no line: %s", parsed[i])
		}
		// Only the "first at line N" remarks may differ.
		if strip(p.Msg) != strip(parsed[i].Msg) {
			t.Errorf("problem %d:\nValidate: %s\nParse:    %s", i, p.Msg, parsed[i].Msg)
		}
	}
}

// strip removes position remarks from a message.
func strip(s string) string {
	for {
		i := strings.Index(s, " at line ")
		if i < 0 {
			return s
		}
		j := i + len(" at line ")
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		s = s[:i] + s[j:]
	}
}

func TestValidateSemantics(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		msg    string // "" means valid
	}{
		{"default", func(*Config) {}, ""},
		{"cpu NaN", func(c *Config) { c.Sandbox.Limits.CPU = nan() }, "sandbox.limits.cpu: NaN is out of range"},
		{"cpu max", func(c *Config) { c.Sandbox.Limits.CPU = 1024 }, ""},
		{"pids zero", func(c *Config) { c.Sandbox.Limits.Pids = 0 }, ""},
		{"memory negative", func(c *Config) { c.Sandbox.Limits.Memory = -1 }, "must be greater than zero"},
		{"memory minimum", func(c *Config) { c.Sandbox.Limits.Memory = 6 << 20 }, ""},
		{"memory just below minimum", func(c *Config) { c.Sandbox.Limits.Memory = 6<<20 - 1 }, "is too small"},
		{"concurrency max", func(c *Config) { c.Sandbox.Concurrency = 256 }, ""},
		{"port max", func(c *Config) { c.Sandbox.Port = 65535 }, ""},
		{"port above max", func(c *Config) { c.Sandbox.Port = 65536 }, "sandbox.port: 65536 is out of range"},
		{"listen no port", func(c *Config) { c.Server.Listen = "127.0.0.1:" }, "no port number"},
		{"workspace empty", func(c *Config) { c.Sandbox.Workspace = "" }, `"" is not a workspace mode`},
		{"health path empty", func(c *Config) { c.Sandbox.HealthPath = "" }, `"" must start with "/"`},
		{"bind with a directory", func(c *Config) {
			c.Sandbox.Workspace = "bind"
			c.Sandbox.WorkspaceDir = t.TempDir()
		}, ""},
		{"empty group", func(c *Config) { c.Groups = Groups{{Name: "a"}} }, ""},
		{"group name empty", func(c *Config) { c.Groups = Groups{{Name: ""}} }, `invalid group name "": it is empty`},
		{"user in two groups", func(c *Config) {
			c.Groups = Groups{{Name: "a", Users: []string{"x"}}, {Name: "b", Users: []string{"x"}}}
		},
			`user "x" is in two groups: already in "a", again in "b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(c)
			err := c.Validate()
			switch {
			case tt.msg == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.msg != "" && (err == nil || !strings.Contains(err.Error(), tt.msg)):
				t.Errorf("Validate() = %v, want %q", err, tt.msg)
			}
		})
	}
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

func TestValidName(t *testing.T) {
	tests := []struct {
		kind, name string
		msg, hint  string // msg "" means valid
		noSuggest  bool
	}{
		{kind: "user", name: "alice"},
		{kind: "user", name: "a"},
		{kind: "user", name: "0"},
		{kind: "group", name: "team-7"},
		{kind: "group", name: "7-team"},
		{kind: "user", name: strings.Repeat("a", 63)},
		{kind: "user", name: "Alice", msg: `invalid user name "Alice": uppercase letters are not allowed`, hint: `did you mean "alice"?`},
		{kind: "group", name: "team_a", msg: `invalid group name "team_a": "_" is not allowed`, hint: `did you mean "team-a"?`},
		{kind: "user", name: "Bob_Smith", msg: `uppercase letters are not allowed; "_" is not allowed`, hint: `did you mean "bob-smith"?`},
		{kind: "user", name: "bob smith", msg: `" " is not allowed`, noSuggest: true},
		{kind: "user", name: "bob.smith@x", msg: `".", "@" are not allowed`, noSuggest: true},
		{kind: "user", name: "josé", msg: `"é" is not allowed`, noSuggest: true},
		{kind: "user", name: "bob-", msg: `it ends with "-"`, noSuggest: true},
		{kind: "user", name: "-bob", msg: `it starts with "-"`, noSuggest: true},
		{kind: "user", name: "Bob_", msg: `"_" is not allowed`, noSuggest: true}, // "bob-" would be no better
		{kind: "user", name: "", msg: "it is empty", noSuggest: true},
		{kind: "user", name: strings.Repeat("a", 64), msg: "it has 64 characters", hint: "at most 63 characters", noSuggest: true},
	}
	for _, tt := range tests {
		err := ValidName(tt.kind, tt.name)
		if tt.msg == "" {
			if err != nil {
				t.Errorf("ValidName(%q, %q) = %v, want nil", tt.kind, tt.name, err)
			}
			continue
		}
		var p Problem
		if !errors.As(err, &p) {
			t.Errorf("ValidName(%q, %q) = %v, want a Problem", tt.kind, tt.name, err)
			continue
		}
		if !strings.Contains(p.Msg, tt.msg) || !strings.Contains(p.Hint, tt.hint) || !strings.Contains(p.Hint, NameRule) {
			t.Errorf("ValidName(%q, %q) = %s\nwant msg ~ %q, hint ~ %q and the rule", tt.kind, tt.name, p, tt.msg, tt.hint)
		}
		if tt.noSuggest && strings.Contains(p.Hint, "did you mean") {
			t.Errorf("ValidName(%q, %q) suggests a name: %s", tt.kind, tt.name, p.Hint)
		}
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "thon.yaml", Line: 3, Col: 5, Msg: "bad", Hint: "fix it"}, "thon.yaml:3:5: bad (fix it)"},
		{Problem{File: "thon.yaml", Line: 3, Msg: "bad"}, "thon.yaml:3: bad"},
		{Problem{File: "thon.yaml", Msg: "bad"}, "thon.yaml: bad"},
		{Problem{Line: 3, Col: 5, Msg: "bad"}, "3:5: bad"},
		{Problem{Msg: "bad", Hint: "fix it"}, "bad (fix it)"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
		if got := tt.p.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestValidationErrorText(t *testing.T) {
	err := asError([]Problem{
		{Msg: "no line"},
		{File: "f.yaml", Line: 9, Col: 1, Msg: "later"},
		{File: "f.yaml", Line: 2, Col: 7, Msg: "second", Hint: "h"},
		{File: "f.yaml", Line: 2, Col: 3, Msg: "first"},
	})
	want := "4 problems in f.yaml:\nf.yaml:2:3: first\nf.yaml:2:7: second (h)\nf.yaml:9:1: later\nno line"
	if err.Error() != want {
		t.Errorf("Error() =\n%s\nwant\n%s", err, want)
	}
	one := asError([]Problem{{Msg: "x"}})
	if one.Error() != "1 problem in configuration:\nx" {
		t.Errorf("Error() = %q", one)
	}
	if asError(nil) != nil {
		t.Error("asError(nil) is not nil")
	}
	var ve *ValidationError
	if !errors.As(err, &ve) || !reflect.DeepEqual(ve.Problems[0], Problem{File: "f.yaml", Line: 2, Col: 3, Msg: "first"}) {
		t.Errorf("problems not sorted: %+v", ve)
	}
}

func TestAccessProblems(t *testing.T) {
	cert := filepath.Join(t.TempDir(), "cert.pem")
	os.WriteFile(cert, []byte("x"), 0o600)
	cases := []struct {
		name, yaml, want string
	}{
		{"bad ip", "access: {external_ip: 10.0.0}", "access.external_ip: \"10.0.0\" is not an IP address"},
		{"bad hostname", "access: {hostnames: [ok.example.org, \"bad name\"]}", "access.hostnames.1: \"bad name\" is not a host name"},
		{"https port", "access: {https_port: 0}", "access.https_port: 0 is out of range"},
		{"http equals https", "access: {https_port: 8443, http_port: 8443}", "access.http_port: 8443 is also the https_port"},
		{"mode", "access: {mode: ports}", `did you mean "port"?`},
		{"range text", "access: {port_range: 20000}", "access.port_range: \"20000\" is not a range"},
		{"range order", "access: {port_range: 30000-20000}", "must lie within 1024-65535"},
		{"range covers https", "access: {https_port: 20005, port_range: 20000-20999}", "includes port 20005"},
		{"subdomain needs domain", "access: {mode: subdomain}", "access.domain: \"\" is not a domain"},
		{"cert without key", "access: {cert_file: " + cert + "}", "cert_file and key_file go together"},
		{"missing key file", "access: {cert_file: " + cert + ", key_file: /nonexistent/key.pem}", "access.key_file: cannot read"},
		{"ttl", "access: {token_ttl: 0s}", "access.token_ttl: must be greater than zero"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml+"\n"), "thon.yaml")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a problem containing %q", err, c.want)
			}
		})
	}
	ok := "access: {mode: subdomain, domain: thon.example.org, hostnames: [\"*.thon.example.org\"], https_port: 8443, http_port: 0, port_range: 21000-21099}\n"
	c, err := Parse([]byte(ok), "thon.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Access.HTTPSPort != 8443 || c.Access.Hostnames[0] != "*.thon.example.org" {
		t.Fatalf("access: %+v", c.Access)
	}
	if err := c.ApplyEnv(func(k string) (string, bool) {
		if k == "THON_ACCESS_HOSTNAMES" {
			return "a.example.org, b.example.org", true
		}
		return "", false
	}); err != nil || len(c.Access.Hostnames) != 2 || c.Access.Hostnames[1] != "b.example.org" {
		t.Fatalf("hostnames from the environment: %v %v", c.Access.Hostnames, err)
	}
}

func TestGatewayProblems(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"llm url", "llm: {url: localhost:13305}", "llm.url: \"localhost:13305\" must start with http:// or https://"},
		{"listen", "gateway: {listen: 9080}", "gateway.listen"},
		{"mode", "gateway: {mode: per-team}", "gateway.mode: \"per-team\" is not a gateway mode"},
		{"upstream", "gateway: {upstream: \"ftp://x\"}", "gateway.upstream"},
		{"negative limit", "gateway: {limits: {tokens_per_minute: -5}}", "gateway.limits.tokens_per_minute: -5 is negative"},
		{"token kind", "gateway: {limits: {token_kind: output}}", "gateway.limits.token_kind: \"output\" is not a kind of token"},
		{"model without name", "gateway: {models: [{concurrency: 1}]}", "gateway.models.0.model: must not be empty"},
		{"model key typo", "gateway: {models: [{model: m, concurency: 1}]}", `did you mean "concurrency"?`},
		{"redis", "gateway: {redis: 127.0.0.1:6379}", "gateway.redis: \"127.0.0.1:6379\" is not a Redis URL"},
		{"upstream slots", "gateway: {upstream_slots: -1}", "gateway.upstream_slots: -1 is out of range"},
		{"queue timeout", "gateway: {queue_timeout: 0s}", "gateway.queue_timeout: must be between 1s and 1h, got 0s"},
		{"queue timeout unit", "gateway: {queue_timeout: 120}", `did you mean "120s"?`},
		{"short tokens", "gateway: {short_requests: {max_tokens: -1}}", "gateway.short_requests.max_tokens: -1 is negative"},
		{"short share", "gateway: {short_requests: {share: 0.75}}", "gateway.short_requests.share: 0.75 is not between 0 and 0.5"},
		{"otlp endpoint", "gateway: {otlp: {endpoint: \"127.0.0.1:4318\"}}", "gateway.otlp.endpoint: \"127.0.0.1:4318\" is not a URL"},
		{"otlp credentials in the URL", "gateway: {otlp: {endpoint: \"https://pk:sk@x.example\"}}", "gateway.otlp.endpoint: \"https://pk:xxxxx@x.example\" holds credentials"},
		{"otlp header name", "gateway: {otlp: {headers: {\"Bad Name\": x}}}", "gateway.otlp.headers.Bad Name: \"Bad Name\" is not a header name"},
		{"otlp headers not a mapping", "gateway: {otlp: {headers: [a]}}", "gateway.otlp.headers"},
		{"otlp queue", "gateway: {otlp: {queue_size: 0}}", "gateway.otlp.queue_size: 0 is out of range"},
		{"otlp timeout", "gateway: {otlp: {timeout: 1ms}}", "gateway.otlp.timeout: must be between 100ms and 5m, got 1ms"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml+"\n"), "thon.yaml")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a problem containing %q", err, c.want)
			}
		})
	}
	ok := "gateway:\n  models:\n    - {model: gemma-4-31b-it, concurrency: 1, tokens_per_minute: 10000, priority: 1}\n  allowed_models: [gemma-4-31b-it]\n  redis: redis://127.0.0.1:6379/0\n" +
		"  upstream_slots: 8\n  queue_timeout: 30s\n  short_requests: {max_tokens: 0, share: 0}\n"
	c, err := Parse([]byte(ok), "thon.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if g := c.Gateway; g.UpstreamSlots != 8 || g.QueueTimeout.D() != 30*time.Second || g.ShortRequests != (ShortRequests{}) {
		t.Fatalf("slots, queue timeout, short requests: %d %s %+v", g.UpstreamSlots, g.QueueTimeout, g.ShortRequests)
	}
	otlp := "gateway:\n  otlp:\n    endpoint: http://127.0.0.1:4318\n    headers: {Authorization: \"Basic cGs6c2s=\"}\n    queue_size: 100\n    timeout: 2s\n"
	oc, err := Parse([]byte(otlp), "thon.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if o := oc.Gateway.OTLP; o.Endpoint != "http://127.0.0.1:4318" || o.Headers["Authorization"] != "Basic cGs6c2s=" || o.QueueSize != 100 || o.Timeout.D() != 2*time.Second {
		t.Fatalf("gateway.otlp: %+v", o)
	}
	if len(c.Gateway.Models) != 1 || c.Gateway.Models[0].TokensPerMinute != 10000 || c.Gateway.Models[0].Priority != 1 {
		t.Fatalf("models: %+v", c.Gateway.Models)
	}
	// A disabled gateway is not checked.
	if _, err := Parse([]byte("gateway: {enabled: false, mode: nonsense}\n"), "thon.yaml"); err != nil {
		t.Fatalf("disabled gateway: %v", err)
	}
}
