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
	for _, s := range []string{"zeta: [alice, \"123\",", "\"007\": []", "alpha: [bob]", "memory: 1536Mi", "startup_timeout: 1m30s"} {
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
		`"groups":[{"name":"zeta","users":["alice","123","yes","null","true"]},{"name":"007","users":[]},{"name":"alpha","users":["bob"]}]`,
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
		!reflect.DeepEqual(n.Groups, Groups{{"a", []string{"x"}}}) {
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
	if want := (Groups{{"a", []string{"x"}}, {"b", []string{"y"}}}); !reflect.DeepEqual(c.Groups, want) {
		t.Errorf("groups = %+v, want %+v", c.Groups, want)
	}
	if err := unmarshalYAML("groups:\n  a: {members: [x]}\n", &c); err == nil || !strings.Contains(err.Error(), `unknown key "members"`) {
		t.Errorf("unknown group key: %v", err)
	}
}

func TestUsers(t *testing.T) {
	c := Default()
	c.Groups = Groups{{"b", []string{"x", "y"}}, {"a", nil}, {"c", []string{"z"}}}
	want := []UserEntry{{"x", "b"}, {"y", "b"}, {"z", "c"}}
	if got := c.Users(); !reflect.DeepEqual(got, want) {
		t.Errorf("Users() = %v, want %v", got, want)
	}
}

func unmarshalYAML(src string, out any) error { return yaml.Unmarshal([]byte(src), out) }
