package config

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// normalize makes configs that mean the same compare equal: a group with no
// users is written `[]` whether its list is nil or empty.
func normalize(c *Config) *Config {
	n := *c
	n.Path = ""
	n.Groups = make(Groups, len(c.Groups))
	for i, g := range c.Groups {
		if g.Users == nil {
			g.Users = []string{}
		}
		n.Groups[i] = g
	}
	return &n
}

// custom is a valid config with every setting changed from its default.
func custom(t *testing.T) *Config {
	c := Default()
	c.Server = Server{DataDir: "/var/lib/thon", Listen: ":9100"}
	c.Sandbox = Sandbox{
		Image:          "registry.example/thon/sandbox:1.2",
		Port:           3000,
		HealthPath:     "/ready",
		StartupTimeout: Duration(90 * time.Second),
		Workspace:      "bind",
		WorkspaceDir:   t.TempDir(),
		Limits:         Limits{CPU: 0.5, Memory: 1536 << 20, Pids: 0},
		Env:            map[string]string{"TZ": "Europe/Paris", "N": "1", "YES": "yes", "EMPTY": "", "Q": "a: b # c"},
		Concurrency:    32,
		IdleTimeout:    Duration(45 * time.Minute),
		IdleAction:     IdlePause,
		MaxLifetime:    Duration(8 * time.Hour),
	}
	c.Groups = Groups{
		{Name: "zeta", Users: []string{"alice", "123", "yes", "null", "true"}},
		{Name: "007", Users: nil},
		{Name: "alpha", Users: []string{"bob"}},
		{Name: "beta", Title: "Team Beta: 2nd floor", Users: []string{"carol", "dave"}, Emails: map[string]string{"dave": "dave@example.org"}},
	}
	return c
}

func TestYAMLRoundTrip(t *testing.T) {
	for name, c := range map[string]*Config{"default": Default(), "custom": custom(t)} {
		t.Run(name, func(t *testing.T) {
			out, err := c.YAML()
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(out, "out.yaml")
			if err != nil {
				t.Fatalf("Parse(YAML()):\n%s\n%v", out, err)
			}
			if !reflect.DeepEqual(normalize(back), normalize(c)) {
				t.Errorf("round trip:\n%s\ngot  %+v\nwant %+v", out, back, c)
			}
		})
	}
	out, err := custom(t).YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"zeta: [alice, \"123\",", "\"007\": []", "alpha: [bob]", "memory: 1536Mi", "startup_timeout: 1m30s",
		"title: 'Team Beta: 2nd floor'", "- {name: dave, email: dave@example.org}"} {
		if !strings.Contains(string(out), s) {
			t.Errorf("YAML() lacks %q:\n%s", s, out)
		}
	}
}

func TestJSON(t *testing.T) {
	c := custom(t)
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		`"memory":"1536Mi"`, `"startup_timeout":"1m30s"`,
		`"groups":[{"name":"zeta","users":["alice","123","yes","null","true"]},{"name":"007","users":[]},{"name":"alpha","users":["bob"]},` +
			`{"name":"beta","title":"Team Beta: 2nd floor","users":["carol","dave"],"emails":{"dave":"dave@example.org"}}]`,
	} {
		if !strings.Contains(string(b), s) {
			t.Errorf("JSON lacks %s:\n%s", s, b)
		}
	}
	var back Config
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normalize(&back), normalize(c)) {
		t.Errorf("JSON round trip:\ngot  %+v\nwant %+v", back, c)
	}

	empty, err := json.Marshal(&Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(empty), `"groups":[]`) {
		t.Errorf("no groups should be [], got %s", empty)
	}

	// Numbers are accepted for sizes (bytes) and durations (nanoseconds).
	var n Config
	in := `{"sandbox":{"limits":{"memory":1073741824},"startup_timeout":5000000000},"groups":[{"name":"a","users":["x"]}]}`
	if err := json.Unmarshal([]byte(in), &n); err != nil {
		t.Fatal(err)
	}
	if n.Sandbox.Limits.Memory != 1<<30 || n.Sandbox.StartupTimeout.D() != 5*time.Second ||
		!reflect.DeepEqual(n.Groups, Groups{{Name: "a", Users: []string{"x"}}}) {
		t.Errorf("unmarshal %s = %+v", in, n)
	}
	if err := json.Unmarshal([]byte(`{"groups":{"a":["x"]}}`), &n); err == nil {
		t.Error("groups as an object: no error")
	}
}

func TestGroupsUnmarshalYAML(t *testing.T) {
	var c Config
	if err := unmarshalYAML("groups:\n  a: [x]\n  b: {users: [y]}\n", &c); err != nil {
		t.Fatal(err)
	}
	if want := (Groups{{Name: "a", Users: []string{"x"}}, {Name: "b", Users: []string{"y"}}}); !reflect.DeepEqual(c.Groups, want) {
		t.Errorf("groups = %+v, want %+v", c.Groups, want)
	}
	if err := unmarshalYAML("groups:\n  a: {members: [x]}\n", &c); err == nil || !strings.Contains(err.Error(), `unknown key "members"`) {
		t.Errorf("unknown group key: %v", err)
	}
}

func TestUsers(t *testing.T) {
	c := Default()
	c.Groups = Groups{{Name: "b", Users: []string{"x", "y"}}, {Name: "a", Users: nil}, {Name: "c", Users: []string{"z"}}}
	want := []UserEntry{{Name: "x", Group: "b"}, {Name: "y", Group: "b"}, {Name: "z", Group: "c"}}
	if got := c.Users(); !reflect.DeepEqual(got, want) {
		t.Errorf("Users() = %v, want %v", got, want)
	}
}

func unmarshalYAML(src string, out any) error { return yaml.Unmarshal([]byte(src), out) }

func TestGroupTitlesAndEmails(t *testing.T) {
	src := `groups:
  alpha:
    title: Team Alpha
    users:
      - alice
      - {name: bob, email: bob@example.org}
      - name: carol
        email: Carol.Dev@Example.org
  beta: {users: [dave]}
`
	c, err := Parse([]byte(src), "thon.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Groups{
		{Name: "alpha", Title: "Team Alpha", Users: []string{"alice", "bob", "carol"},
			Emails: map[string]string{"bob": "bob@example.org", "carol": "Carol.Dev@Example.org"}},
		{Name: "beta", Users: []string{"dave"}},
	}
	if !reflect.DeepEqual(c.Groups, want) {
		t.Errorf("groups = %+v, want %+v", c.Groups, want)
	}
	if got := c.Users(); got[1] != (UserEntry{Name: "bob", Group: "alpha", Email: "bob@example.org"}) || got[0].Email != "" {
		t.Errorf("Users() = %+v", got)
	}
	if c.Groups[0].Display() != "Team Alpha" || c.Groups[1].Display() != "beta" {
		t.Errorf("Display: %q, %q", c.Groups[0].Display(), c.Groups[1].Display())
	}
}

func TestGroupTitleAndEmailProblems(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"groups:\n  a:\n    users:\n      - {name: x, email: not-an-address}\n", `thon.yaml:4:26: user "x": e-mail "not-an-address" is not an e-mail address (write the bare address`},
		{"groups:\n  a:\n    users:\n      - {name: x, email: X <x@example.org>}\n", `thon.yaml:4:26: user "x": e-mail "X <x@example.org>" is not an e-mail address`},
		{"groups:\n  a:\n    users:\n      - {name: x, email: x@localhost}\n", `has no domain with a dot`},
		{"groups:\n  a:\n    users:\n      - {name: x, mail: x@example.org}\n", `thon.yaml:4:19: groups.a user: unknown key "mail" (did you mean "email"?)`},
		{"groups:\n  a:\n    users:\n      - {name: x, email: [x@example.org]}\n", `groups.a: a user's email must be text, not a list`},
		{"groups:\n  a:\n    users:\n      - {name: x, email: x@example.org}\n  b:\n    users:\n      - {name: y, email: X@example.org}\n", `thon.yaml:7:26: e-mail X@example.org is given to "x" and "y" (first given at line 4; an address belongs to one participant`},
		{"groups:\n  a:\n    title: \"  padded\"\n    users: [x]\n", `thon.yaml:3:5: groups.a.title starts or ends with white space`},
		{"groups:\n  a:\n    title: \"two\\nlines\"\n", `groups.a.title holds a line break`},
		{"groups:\n  a:\n    title: [x]\n", `groups.a.title must be text, not a list`},
		{"groups:\n  a:\n    name: Team A\n", `groups.a: unknown key "name" (valid keys: title, users, template, idle_timeout, idle_action, max_lifetime)`},
		{"groups:\n  a:\n    users:\n      - {email: x@example.org}\n", `invalid user name "": it is empty`},
	} {
		_, err := Parse([]byte(tc.src), "thon.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q):\n%v\nwant %q", tc.src, err, tc.want)
		}
	}
	// A config made in code (or sent as JSON) is checked the same way.
	c := Default()
	c.Groups = Groups{{Name: "a", Title: strings.Repeat("x", MaxTitle+1), Users: []string{"x"}, Emails: map[string]string{"y": "y@example.org"}}}
	err := c.Validate()
	for _, want := range []string{"groups.a.title has 101 characters; at most 100", `group "a" has an e-mail for "y", who is not one of its users`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want %q", err, want)
		}
	}
}

// A group with a title, e-mails and a template survives YAML and JSON.
func TestGroupTitleAndTemplateRoundTrip(t *testing.T) {
	src := "templates:\n  node: {image: thon/node:latest}\ngroups:\n  web:\n    title: Web team\n    template: node\n    idle_timeout: 20m\n    users:\n      - {name: ann, email: ann@example.org}\n      - ben\n"
	c, err := Parse([]byte(src), "thon.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g := c.Groups[0]
	if g.Title != "Web team" || g.Template != "node" || g.IdleTimeout == nil || g.Emails["ann"] != "ann@example.org" {
		t.Fatalf("parsed %+v", g)
	}
	y, err := yaml.Marshal(c.Groups)
	if err != nil {
		t.Fatal(err)
	}
	var back Groups
	if err := unmarshalYAML(string(y), &back); err != nil || !reflect.DeepEqual(back, c.Groups) {
		t.Fatalf("YAML round trip:\n%s\n%+v (%v)", y, back, err)
	}
	j, err := json.Marshal(c.Groups)
	if err != nil {
		t.Fatal(err)
	}
	back = nil
	if err := json.Unmarshal(j, &back); err != nil || !reflect.DeepEqual(back, c.Groups) {
		t.Fatalf("JSON round trip: %s\n%+v (%v)", j, back, err)
	}
}
