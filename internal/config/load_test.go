package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// want is one expected problem: position, and substrings of message and hint.
type want struct {
	line, col int
	msg, hint string
}

// parseProblems parses src and returns its problems (nil when it is valid).
func parseProblems(t *testing.T, src string) []Problem {
	t.Helper()
	c, err := Parse([]byte(src), "thon.yaml")
	if err == nil {
		if c == nil {
			t.Fatal("Parse returned neither a config nor an error")
		}
		return nil
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Parse error is %T, want *ValidationError: %v", err, err)
	}
	if c != nil {
		t.Error("Parse returned a config with an error")
	}
	return ve.Problems
}

// checkProblems asserts that ps are exactly wants, in order.
func checkProblems(t *testing.T, ps []Problem, wants []want) {
	t.Helper()
	if len(ps) != len(wants) {
		t.Errorf("got %d problems, want %d:\n%s", len(ps), len(wants), listProblems(ps))
	}
	for i := range min(len(ps), len(wants)) {
		p, w := ps[i], wants[i]
		if p.File != "thon.yaml" || p.Line != w.line || p.Col != w.col ||
			!strings.Contains(p.Msg, w.msg) || !strings.Contains(p.Hint, w.hint) {
			t.Errorf("problem %d = %s\nwant thon.yaml:%d:%d: …%s… (…%s…)", i, p, w.line, w.col, w.msg, w.hint)
		}
	}
}

func listProblems(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "  %s\n", p)
	}
	return b.String()
}

func TestParseProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []want
	}{
		{"syntax error", "server: {listen: x\n", []want{{1, 0, "did not find expected", ""}}},
		{"tab indent", "sandbox:\n\tport: 1\n", []want{{2, 0, "cannot start any token", "spaces, not tabs"}}},
		{"two documents", "server: {}\n---\nsandbox: {}\n", []want{{2, 0, "more than one YAML document", ""}}},
		{"top level not a mapping", "- a\n- b\n", []want{{1, 1, "the top level must be a mapping, not a list", "server, access, sandbox, templates, llm, assistants, gateway, auth, groups"}}},
		{"unknown top-level key", "sever:\n  listen: :1\n", []want{{1, 1, `unknown key "sever"`, `did you mean "server"?`}}},
		{"did you mean image", "sandbox:\n  imgae: x\n", []want{{2, 3, `sandbox: unknown key "imgae"`, `did you mean "image"?`}}},
		{"did you mean by prefix", "sandbox:\n  limits:\n    mem: 1Gi\n", []want{{3, 5, `sandbox.limits: unknown key "mem"`, `did you mean "memory"?`}}},
		{"key in the wrong section", "sandbox:\n  memory: 1Gi\n", []want{{2, 3, `unknown key "memory"`, "memory belongs under sandbox.limits"}}},
		{"unknown key lists valid keys", "server:\n  zzzzzz: 1\n", []want{{2, 3, `unknown key "zzzzzz"`, "valid keys: data_dir, listen"}}},
		{"key given twice", "sandbox:\n  port: 1\n  port: 2\n", []want{{3, 3, `key "port" is given twice`, "first at line 2"}}},
		{"port not a number", "sandbox:\n  port: abc\n", []want{{2, 9, `sandbox.port: "abc" is not a whole number`, "e.g. port: 8080"}}},
		{"port a list", "sandbox:\n  port: [1]\n", []want{{2, 9, "sandbox.port must be a whole number, not a list", "port: 8080"}}},
		{"limits not a mapping", "sandbox:\n  limits: 5\n", []want{{2, 11, "sandbox.limits must be a mapping, not 5", "cpu, memory, pids"}}},
		{"section not a mapping", "server: yes\n", []want{{1, 9, "server must be a mapping", "data_dir, listen"}}},
		{"cpu not a number", "sandbox:\n  limits:\n    cpu: lots\n", []want{{3, 10, `"lots" is not a number`, "cpu: 1"}}},
		{"port out of range", "sandbox:\n  port: 70000\n", []want{{2, 9, "sandbox.port: 70000 is out of range", "1..65535"}}},
		{"port zero", "sandbox:\n  port: 0\n", []want{{2, 9, "sandbox.port: 0 is out of range", ""}}},
		{"cpu zero", "sandbox:\n  limits:\n    cpu: 0\n", []want{{3, 10, "sandbox.limits.cpu: 0 is out of range", "at most 1024"}}},
		{"cpu too many", "sandbox:\n  limits:\n    cpu: 1025\n", []want{{3, 10, "sandbox.limits.cpu: 1025 is out of range", ""}}},
		{"pids negative", "sandbox:\n  limits:\n    pids: -1\n", []want{{3, 11, "sandbox.limits.pids: -1 is negative", "0 for no limit"}}},
		{"memory with space", "sandbox:\n  limits:\n    memory: 2 GB\n", []want{{3, 13, `sandbox.limits.memory: "2 GB" is not a size`, `did you mean "2Gi"?`}}},
		{"memory negative", "sandbox:\n  limits:\n    memory: -1\n", []want{{3, 13, `"-1" is negative`, "2Gi, 512Mi, 1.5Gi"}}},
		{"memory lots", "sandbox:\n  limits:\n    memory: lots\n", []want{{3, 13, `"lots" is not a size`, "Ki, Mi, Gi"}}},
		{"memory zero", "sandbox:\n  limits:\n    memory: 0\n", []want{{3, 13, "must be greater than zero", ""}}},
		{"memory in bytes too small", "sandbox:\n  limits:\n    memory: 512\n", []want{{3, 13, "512 bytes is too small", `did you mean 512Mi?`}}},
		{"concurrency zero", "sandbox:\n  concurrency: 0\n", []want{{2, 16, "sandbox.concurrency: 0 is out of range", "1..256"}}},
		{"concurrency too high", "sandbox:\n  concurrency: 257\n", []want{{2, 16, "257 is out of range", ""}}},
		{"workspace mode", "sandbox:\n  workspace: volumes\n", []want{{2, 14, `"volumes" is not a workspace mode`, `did you mean "volume"?`}}},
		{"workspace mode unknown", "sandbox:\n  workspace: nfs\n", []want{{2, 14, `"nfs" is not a workspace mode`, "volume, bind, ephemeral"}}},
		{"bind without dir", "sandbox:\n  workspace: bind\n", []want{{2, 14, "sandbox.workspace_dir: must be set when workspace is bind", "workspace_dir: /srv"}}},
		{"health path", "sandbox:\n  health_path: healthz\n", []want{{2, 16, `"healthz" must start with "/"`, `write "/healthz"`}}},
		{"startup timeout no unit", "sandbox:\n  startup_timeout: 120\n", []want{{2, 20, `"120" is not a duration`, `did you mean "120s"?`}}},
		{"startup timeout zero", "sandbox:\n  startup_timeout: 0s\n", []want{{2, 20, "must be greater than zero, got 0s", ""}}},
		{"startup timeout negative", "sandbox:\n  startup_timeout: -5s\n", []want{{2, 20, "must be greater than zero, got -5s", ""}}},
		{"listen not host:port", "server:\n  listen: localhost\n", []want{{2, 11, `server.listen: "localhost" is not host:port`, "127.0.0.1:8100"}}},
		{"listen bad port", "server:\n  listen: 'localhost:http'\n", []want{{2, 11, "no port number", ""}}},
		{"listen as a number", "server:\n  listen: 8100\n", []want{{2, 11, `"8100" is not host:port`, ":8100"}}},
		{"data dir empty", "server:\n  data_dir: ''\n", []want{{2, 13, "server.data_dir: must not be empty", ""}}},
		{"image empty", "sandbox:\n  image: \"\"\n", []want{{2, 10, "sandbox.image: must not be empty", "thon/sandbox:latest"}}},
		{"image with space", "sandbox:\n  image: thon sandbox\n", []want{{2, 10, "contains white space", ""}}},
		{"env key", "sandbox:\n  env:\n    BAD-NAME: x\n    GOOD: y\n", []want{{3, 5, `"BAD-NAME" is not a valid environment variable name`, ""}}},
		{"env value a list", "sandbox:\n  env:\n    A: [x]\n", []want{{3, 8, "sandbox.env.A must be a string, not a list", ""}}},
		{"env not a mapping", "sandbox:\n  env: [A]\n", []want{{2, 8, "sandbox.env must be a mapping", ""}}},
		{"group name case", "groups:\n  Team_A: [alice]\n", []want{{2, 3, `invalid group name "Team_A": uppercase letters are not allowed; "_" is not allowed`, `did you mean "team-a"?`}}},
		{"user name case", "groups:\n  a: [alice, Bob]\n", []want{{2, 14, `invalid user name "Bob"`, `did you mean "bob"?`}}},
		{"user name trailing dash", "groups:\n  a: [bob-]\n", []want{{2, 7, `ends with "-"`, "do not end with"}}},
		{"user name leading dash", "groups:\n  a: [-bob]\n", []want{{2, 7, `starts with "-"`, ""}}},
		{"user name space", "groups:\n  a: [\"bob smith\"]\n", []want{{2, 7, `" " is not allowed`, "lowercase letters"}}},
		{"user name too long", "groups:\n  a: [" + strings.Repeat("x", 64) + "]\n", []want{{2, 7, "it has 64 characters", "at most 63"}}},
		{"user name empty", "groups:\n  a: [alice, \"\"]\n", []want{{2, 14, "it is empty", ""}}},
		{"user twice in a group", "groups:\n  a: [alice, alice]\n", []want{{2, 14, `user "alice" is listed twice in group "a"`, "first listed at line 2"}}},
		{"user in two groups", "groups:\n  a: [alice]\n  b:\n    users: [bob, alice]\n",
			[]want{{4, 18, `user "alice" is in two groups: already in "a" at line 2, again in "b"`, "exactly one group"}}},
		{"group declared twice", "groups:\n  a: [x]\n  a: [y]\n", []want{{3, 3, `group "a" is declared twice`, "first declared at line 2"}}},
		{"group a scalar", "groups:\n  a: alice\n", []want{{2, 6, `groups.a must be a list of user names, not "alice"`, "a: [alice] or a: {users: [alice]}"}}},
		{"groups a list", "groups: [a, b]\n", []want{{1, 9, "groups must be a mapping, not a list", "alpha: [alice, bob]"}}},
		{"user a list", "groups:\n  a: [[x]]\n", []want{{2, 7, "groups.a: a user must be a name, not a list", ""}}},
		{"users not a list", "groups:\n  a: {users: bob}\n", []want{{2, 14, `groups.a.users must be a list of user names, not "bob"`, "users: [bob]"}}},
		{"unknown key in a group", "groups:\n  a:\n    user: [bob]\n", []want{{3, 5, `groups.a: unknown key "user"`, `did you mean "users"?`}}},
		{"merge key", "x: &x {port: 1}\nsandbox:\n  <<: *x\n", []want{{1, 1, `unknown key "x"`, ""}, {3, 3, "merge keys (<<) are not supported", ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkProblems(t, parseProblems(t, tt.src), tt.want)
		})
	}
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want func(*Config)
	}{
		{"empty file", "", func(*Config) {}},
		{"comments only", "# nothing here\n", func(*Config) {}},
		{"null document", "~\n", func(*Config) {}},
		{"null sections keep defaults", "server:\nsandbox:\n  limits:\ngroups:\n", func(*Config) {}},
		{"null scalar keeps default", "sandbox:\n  image:\n", func(*Config) {}},
		{"sizes", "sandbox:\n  limits:\n    memory: 512m\n", func(c *Config) { c.Sandbox.Limits.Memory = 512 << 20 }},
		{"fractional size", "sandbox:\n  limits:\n    memory: 1.5Gi\n", func(c *Config) { c.Sandbox.Limits.Memory = 3 << 29 }},
		{"plain bytes", "sandbox:\n  limits:\n    memory: 1073741824\n", func(c *Config) { c.Sandbox.Limits.Memory = 1 << 30 }},
		{"fractional cpu", "sandbox:\n  limits: {cpu: 0.5, pids: 0}\n", func(c *Config) {
			c.Sandbox.Limits.CPU = 0.5
			c.Sandbox.Limits.Pids = 0
		}},
		{"listen on every interface", "server:\n  listen: :9000\n", func(c *Config) { c.Server.Listen = ":9000" }},
		{"ipv6 listen", "server:\n  listen: '[::1]:9000'\n", func(c *Config) { c.Server.Listen = "[::1]:9000" }},
		{"env", "sandbox:\n  env:\n    TZ: Europe/Paris\n    N: 1\n    EMPTY:\n", func(c *Config) {
			c.Sandbox.Env = map[string]string{"TZ": "Europe/Paris", "N": "1", "EMPTY": ""}
		}},
		{"empty env is nil", "sandbox:\n  env: {}\n", func(*Config) {}},
		{"both group forms", "groups:\n  alpha: [alice, bob]\n  beta: {users: [carol]}\n  gamma:\n    users:\n      - dave\n      - 3d\n",
			func(c *Config) {
				c.Groups = Groups{{Name: "alpha", Users: []string{"alice", "bob"}}, {Name: "beta", Users: []string{"carol"}}, {Name: "gamma", Users: []string{"dave", "3d"}}}
			}},
		{"empty groups", "groups:\n  a:\n  b: []\n  c: {}\n  d: {users: []}\n  e: {users: }\n",
			func(c *Config) {
				c.Groups = Groups{{Name: "a", Users: nil}, {Name: "b", Users: []string{}}, {Name: "c", Users: nil}, {Name: "d", Users: []string{}}, {Name: "e", Users: nil}}
			}},
		{"group order kept", "groups:\n  zed: [z]\n  abe: [a]\n  mid: [m]\n", func(c *Config) {
			c.Groups = Groups{{Name: "zed", Users: []string{"z"}}, {Name: "abe", Users: []string{"a"}}, {Name: "mid", Users: []string{"m"}}}
		}},
		{"aliases", "groups:\n  a: &team [x, y]\n  b: {users: [z]}\n", func(c *Config) {
			c.Groups = Groups{{Name: "a", Users: []string{"x", "y"}}, {Name: "b", Users: []string{"z"}}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.src), "thon.yaml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := Default()
			tt.want(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestParseAllProblemsAtOnce(t *testing.T) {
	src := `server:
  listen: localhost
sandbox:
  imgae: thon/sandbox:dev
  port: abc
  workspace: bind
  limits:
    memory: 2 GB
    cpu: 0
  concurrency: 300
groups:
  alpha: [alice, Bob]
  beta: [carol, alice]
  Gamma_1: []
`
	checkProblems(t, parseProblems(t, src), []want{
		{2, 11, `server.listen: "localhost" is not host:port`, ""},
		{4, 3, `unknown key "imgae"`, `did you mean "image"?`},
		{5, 9, `"abc" is not a whole number`, ""},
		{6, 14, "workspace_dir: must be set when workspace is bind", ""},
		{8, 13, `"2 GB" is not a size`, ""},
		{9, 10, "sandbox.limits.cpu: 0 is out of range", ""},
		{10, 16, "sandbox.concurrency: 300 is out of range", ""},
		{12, 18, `invalid user name "Bob"`, `did you mean "bob"?`},
		{13, 17, `user "alice" is in two groups: already in "alpha" at line 12, again in "beta"`, ""},
		{14, 3, `invalid group name "Gamma_1"`, `did you mean "gamma-1"?`},
	})

	_, err := Parse([]byte(src), "thon.yaml")
	msg := err.Error()
	if !strings.HasPrefix(msg, "10 problems in thon.yaml:\n") {
		t.Errorf("error does not start with a count line:\n%s", msg)
	}
	if n := strings.Count(msg, "\nthon.yaml:"); n != 10 {
		t.Errorf("error lists %d problems, want 10:\n%s", n, msg)
	}
}

func TestParseBindDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "work spaces")
	bind := func(d string) string {
		return fmt.Sprintf("sandbox:\n  workspace: bind\n  workspace_dir: %q\n", d)
	}

	c, err := Parse([]byte(bind(dir)), "thon.yaml")
	if err != nil {
		t.Fatalf("existing directory: %v", err)
	}
	if got, _ := c.WorkspaceDir(); got != dir {
		t.Errorf("WorkspaceDir() = %q, want %q", got, dir)
	}
	checkProblems(t, parseProblems(t, bind(missing)), []want{
		{3, 18, fmt.Sprintf("directory %q does not exist", missing), fmt.Sprintf("create it with: mkdir -p '%s'", missing)},
	})
	checkProblems(t, parseProblems(t, bind(file)), []want{{3, 18, "is not a directory", ""}})
	// Outside bind mode the directory is not looked at.
	if _, err := Parse([]byte("sandbox:\n  workspace_dir: "+missing+"\n"), "thon.yaml"); err != nil {
		t.Errorf("volume mode with a missing workspace_dir: %v", err)
	}
}

func TestResolveAndLoad(t *testing.T) {
	home, work := t.TempDir(), t.TempDir()
	t.Setenv("HOME", home)
	t.Chdir(work)

	_, err := Resolve("")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Resolve with no file: %v, want ErrNotFound", err)
	}
	homeFile := filepath.Join(home, ".thon", "thon.yaml")
	for _, s := range []string{"thon.yaml", homeFile, "run `thon init`"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	if _, err := Load(""); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load with no file: %v, want ErrNotFound", err)
	}
	if _, err := Resolve("nope.yaml"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("Resolve(nope.yaml) = %v", err)
	}

	// ~/.thon/thon.yaml is found when ./thon.yaml is not there.
	if err := os.MkdirAll(filepath.Dir(homeFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(homeFile, []byte("sandbox:\n  port: 9001\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := load("", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Path != homeFile || c.Sandbox.Port != 9001 {
		t.Errorf("loaded %s port %d, want %s port 9001", c.Path, c.Sandbox.Port, homeFile)
	}

	// ./thon.yaml comes first.
	if err := os.WriteFile("thon.yaml", []byte("sandbox:\n  port: 9002\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = load("", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(work, "thon.yaml"); c.Path != want || c.Sandbox.Port != 9002 {
		t.Errorf("loaded %s port %d, want %s port 9002", c.Path, c.Sandbox.Port, want)
	}
	if p, err := Resolve(""); err != nil || p != "thon.yaml" {
		t.Errorf("Resolve() = %q, %v", p, err)
	}

	// An explicit path; problems are reported against it.
	if err := os.WriteFile("bad.yaml", []byte("sandbox:\n  port: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = load("bad.yaml", noEnv)
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].String() != "bad.yaml:2:9: sandbox.port: 0 is out of range (the port code-server listens on inside the container, 1..65535, e.g. 8080)" {
		t.Errorf("load(bad.yaml) = %v", err)
	}

	if _, err := Resolve(work); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("Resolve(dir) = %v", err)
	}
}

func TestDataDir(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "~/.thon", want: filepath.Join(home, ".thon")},
		{in: "~", want: home},
		{in: "/var/lib/thon", want: "/var/lib/thon"},
		{in: "data", want: filepath.Join(wd, "data")},
		{in: "~bob/x", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		c := Default()
		c.Server.DataDir = tt.in
		got, err := c.DataDir()
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("DataDir(%q) = %q, %v; want %q (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func noEnv(string) (string, bool) { return "", false }

func FuzzParse(f *testing.F) {
	f.Add(Starter())
	f.Add([]byte(""))
	f.Add([]byte("groups:\n  a: [alice, Bob]\n  b: {users: [alice]}\n  a:\n"))
	f.Add([]byte("sandbox:\n  limits: {memory: 2 GB, cpu: x}\n  port: 99999\n  imgae: x\n"))
	f.Add([]byte("a: &a [*a]\nsandbox: &s {limits: *s}\ngroups: {x: *a}\n"))
	f.Add([]byte("server: {listen: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "f.yaml")
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("error %T with no problems: %v", err, err)
			}
			_ = err.Error()
			return
		}
		// Whatever parses cleanly must survive a trip through YAML.
		out, err := c.YAML()
		if err != nil {
			t.Fatalf("YAML: %v", err)
		}
		back, err := Parse(out, "out.yaml")
		if err != nil {
			t.Fatalf("re-parse of\n%s\nfailed: %v", out, err)
		}
		if !reflect.DeepEqual(normalize(back), normalize(c)) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, back)
		}
	})
}

// sandbox.extensions_dir: an existing directory, relative to thon.yaml,
// made absolute by Load (thon setup image reads it from there).
func TestExtensionsDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "vsix"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "thon.yaml")
	if err := os.WriteFile(cfgFile, []byte("sandbox:\n  extensions_dir: vsix\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir()) // relative to thon.yaml, not to the working directory
	c, err := Load(cfgFile)
	if err != nil {
		t.Fatalf("an existing directory next to thon.yaml: %v", err)
	}
	if want := filepath.Join(dir, "vsix"); c.Sandbox.ExtensionsDir != want {
		t.Errorf("extensions_dir = %q, want %q", c.Sandbox.ExtensionsDir, want)
	}
	if Default().Sandbox.ExtensionsDir != "" {
		t.Error("a default extensions_dir: the image has no extensions unless the organizer has some")
	}

	missing := filepath.Join(dir, "no such dir")
	ext := func(d string) string { return fmt.Sprintf("sandbox:\n  extensions_dir: %q\n", d) }
	checkProblems(t, parseProblems(t, ext(missing)), []want{
		{2, 19, fmt.Sprintf("sandbox.extensions_dir: directory %q does not exist", missing), "put the .vsix files in a directory"},
	})
	checkProblems(t, parseProblems(t, ext(file)), []want{{2, 19, "is not a directory", ""}})

	// From the environment too, checked the same way.
	_, err = load(cfgFile, lookupIn(map[string]string{"THON_SANDBOX_EXTENSIONS_DIR": missing}))
	if err == nil || !strings.Contains(err.Error(), "$THON_SANDBOX_EXTENSIONS_DIR") || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("a missing directory from THON_SANDBOX_EXTENSIONS_DIR: %v", err)
	}
}
