package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/mail"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Problem is one thing wrong with a configuration. File, Line and Col say
// where it is when that is known (a config built in code has no position; a
// value from an environment variable has File "$THON_…" and no line).
type Problem struct {
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
	Col  int    `json:"col,omitempty"`
	Msg  string `json:"msg"`            // what is wrong
	Hint string `json:"hint,omitempty"` // how to fix it; may be empty
}

// String formats the problem as `file:line:col: msg (hint)`, leaving out the
// parts that are not known.
func (p Problem) String() string {
	var b strings.Builder
	where := make([]string, 0, 3)
	if p.File != "" {
		where = append(where, p.File)
	}
	if p.Line > 0 {
		where = append(where, strconv.Itoa(p.Line))
		if p.Col > 0 {
			where = append(where, strconv.Itoa(p.Col))
		}
	}
	if len(where) > 0 {
		b.WriteString(strings.Join(where, ":"))
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	if p.Hint != "" {
		b.WriteString(" (")
		b.WriteString(p.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// Error makes a Problem usable as an error on its own, as ValidName and
// ParseSize return it; Msg and Hint stay available through errors.As.
func (p Problem) Error() string { return p.String() }

// ValidationError carries every problem found in a configuration.
type ValidationError struct {
	Problems []Problem
}

// Error lists a count line, then every problem, one per line.
func (e *ValidationError) Error() string {
	var b strings.Builder
	n := len(e.Problems)
	noun := "problems"
	if n == 1 {
		noun = "problem"
	}
	where := "configuration"
	if f := e.file(); f != "" {
		where = f
	}
	fmt.Fprintf(&b, "%d %s in %s:", n, noun, where)
	for _, p := range e.Problems {
		b.WriteString("\n")
		b.WriteString(p.String())
	}
	return b.String()
}

// file returns the file every problem with a line shares, or "".
func (e *ValidationError) file() string {
	file := ""
	for _, p := range e.Problems {
		if p.Line == 0 {
			continue
		}
		if file != "" && p.File != file {
			return ""
		}
		file = p.File
	}
	return file
}

// asError returns nil for no problems, else a *ValidationError with the
// problems in file order (those without a line keep their order, last).
func asError(ps []Problem) error {
	if len(ps) == 0 {
		return nil
	}
	ps = slices.Clone(ps)
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		switch {
		case a.Line == 0 || b.Line == 0:
			return a.Line != 0 && b.Line == 0
		case a.Line != b.Line:
			return a.Line < b.Line
		default:
			return a.Col < b.Col
		}
	})
	return &ValidationError{Problems: ps}
}

// position is where a value sits: a file and line:col, or an environment
// variable (File "$THON_…").
type position struct {
	File      string
	Line, Col int
}

// locator returns the position of the first of paths that has one, where a
// path is a dotted yaml key path ("sandbox.limits.memory"), "groups[1]" for
// a group's key or "groups[1].users[0]" for a user.
type locator func(paths ...string) position

func noPositions(...string) position { return position{} }

// Validate checks a configuration built in code (or received as JSON) with
// the same rules Parse applies, returning a *ValidationError listing every
// problem, without positions.
func (c *Config) Validate() error {
	return asError(c.check(noPositions))
}

// Limits on values.
const (
	maxCPU         = 1024
	maxConcurrency = 256
	minMemory      = Size(6 << 20) // Docker refuses less
)

// Workspace modes.
var workspaceModes = []string{"volume", "bind", "ephemeral"}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// check runs the semantic rules; at places each problem.
func (c *Config) check(at locator) []Problem {
	var ps []Problem
	add := func(paths []string, p Problem) {
		pos := at(paths...)
		p.File, p.Line, p.Col = pos.File, pos.Line, pos.Col
		ps = append(ps, p)
	}
	// bad adds a problem about the field at path, the message prefixed with it.
	bad := func(path, hint, format string, args ...any) {
		add([]string{path}, Problem{Msg: path + ": " + fmt.Sprintf(format, args...), Hint: hint})
	}

	// server
	s := c.Server
	if strings.TrimSpace(s.DataDir) == "" {
		bad("server.data_dir", "e.g. data_dir: "+DefaultDataDir, "must not be empty")
	}
	if db := s.Database; db != "" && !strings.HasPrefix(db, "postgres://") && !strings.HasPrefix(db, "postgresql://") {
		bad("server.database", "a PostgreSQL URL, postgres://user:password@host:5432/thon, or \"\" for SQLite in data_dir", "is not a postgres:// URL")
	}
	if msg := checkHostPort(s.Listen); msg != "" {
		bad("server.listen", "write host:port, e.g. "+DefaultListen+", or :8100 for every interface", "%q %s", s.Listen, msg)
	}

	// access
	a := c.Access
	if a.ExternalIP != "" && net.ParseIP(a.ExternalIP) == nil {
		bad("access.external_ip", "an IPv4 or IPv6 address, e.g. 192.0.2.10, or \"\" to detect it", "%q is not an IP address", a.ExternalIP)
	}
	for i, h := range a.Hostnames {
		if !validHostname(h) {
			hint := "a DNS name such as thon.example.org"
			if ip, ok := ipHint(h); ok {
				hint = ip
			}
			bad(fmt.Sprintf("access.hostnames.%d", i), hint, "%q is not a host name", h)
		}
	}
	if a.HTTPSPort < 1 || a.HTTPSPort > 65535 {
		bad("access.https_port", "1..65535, e.g. 443 (or 8443 without root)", "%d is out of range", a.HTTPSPort)
	}
	switch {
	case a.HTTPPort < 0 || a.HTTPPort > 65535:
		bad("access.http_port", "1..65535, e.g. 80, or 0 to turn the redirect off", "%d is out of range", a.HTTPPort)
	case a.HTTPPort != 0 && a.HTTPPort == a.HTTPSPort:
		bad("access.http_port", "use another port, or 0 to turn the redirect off", "%d is also the https_port", a.HTTPPort)
	}
	modes := []string{ModePort, ModePath, ModeSubdomain}
	if !slices.Contains(modes, a.Mode) {
		hint := "use one of: " + strings.Join(modes, ", ")
		if m, ok := suggest(a.Mode, modes); ok {
			hint = fmt.Sprintf("did you mean %q? ", m) + hint
		}
		bad("access.mode", hint, "%q is not an access mode", a.Mode)
	}
	if a.Mode == ModePort {
		if first, last, err := a.Ports(); err != nil {
			bad("access.port_range", "one port per participant, e.g. port_range: "+DefaultPortRange, "%v", err)
		} else {
			for _, p := range []int{a.HTTPSPort, a.HTTPPort} {
				if p >= first && p <= last {
					bad("access.port_range", "move the range or the port", "%q includes port %d, used by the front door itself", a.PortRange, p)
				}
			}
		}
	}
	if a.Mode == ModeSubdomain && !validHostname(a.Domain) {
		bad("access.domain", "subdomain mode serves {user}.{domain}: set a domain with a wildcard DNS record, e.g. domain: thon.example.org", "%q is not a domain", a.Domain)
	}
	switch {
	case (a.CertFile == "") != (a.KeyFile == ""):
		bad("access.cert_file", "set both cert_file and key_file, or neither to use THON's local CA", "cert_file and key_file go together")
	case a.CertFile != "":
		for _, f := range []struct{ path, val string }{{"access.cert_file", a.CertFile}, {"access.key_file", a.KeyFile}} {
			if p, err := expandHome(f.val); err != nil {
				bad(f.path, "write the full path", "%v", err)
			} else if _, err := os.Stat(p); err != nil {
				bad(f.path, "check the path and its permissions", "cannot read %q: %v", f.val, errors.Unwrap(err))
			}
		}
	}
	c.checkACME(add)
	if dp := a.Dashboard(); dp < 1 || dp > 65535 {
		bad("access.dashboard_port", "1..65535, or 0 for the https_port (https_port + 1 in path mode)", "%d is out of range", dp)
	} else {
		if a.Mode == ModePath && dp == a.HTTPSPort {
			bad("access.dashboard_port", "in path mode participants share the https_port's origin: give the dashboard its own port, or 0 for https_port + 1", "%d is the https_port", dp)
		}
		if dp == a.HTTPPort {
			bad("access.dashboard_port", "use another port", "%d is also the http_port", dp)
		}
		if first, last, err := a.Ports(); a.Mode == ModePort && err == nil && dp >= first && dp <= last {
			bad("access.dashboard_port", "move it out of the participants' range", "%d is inside port_range %s", dp, a.PortRange)
		}
	}
	if a.TokenTTL <= 0 {
		bad("access.token_ttl", "how long an access link works, e.g. token_ttl: 72h", "must be greater than zero, got %s", a.TokenTTL)
	}

	// sandbox
	b := c.Sandbox
	if b.Runtime != "" && b.Runtime != RuntimeDocker && b.Runtime != RuntimeKubernetes {
		bad("sandbox.runtime", "use docker (this machine's engine) or kubernetes (a cluster)", "%q is not a sandbox engine", b.Runtime)
	}
	if b.Runtime == RuntimeKubernetes {
		k := b.Kubernetes
		if err := ValidName("namespace", k.Namespace); err != nil {
			bad("sandbox.kubernetes.namespace", "a Kubernetes namespace name, e.g. thon", "%v", err)
		}
		if _, err := ParseSize(k.WorkspaceSize); err != nil {
			bad("sandbox.kubernetes.workspace_size", "e.g. 10Gi", "%v", err)
		}
		for i, t := range k.Tolerations {
			if _, err := ParseToleration(t); err != nil {
				bad(fmt.Sprintf("sandbox.kubernetes.tolerations.%d", i), `write "key=value:NoSchedule", "key:NoExecute" or "key"`, "%v", err)
			}
		}
	}
	checkImage(b, "sandbox", add)
	if b.Port < 1 || b.Port > 65535 {
		bad("sandbox.port", fmt.Sprintf("the port code-server listens on inside the container, 1..65535, e.g. %d", DefaultPort), "%d is out of range", b.Port)
	}
	if !strings.HasPrefix(b.HealthPath, "/") {
		hint := "e.g. health_path: " + DefaultHealthPath
		if b.HealthPath != "" {
			hint = fmt.Sprintf("write %q", "/"+b.HealthPath)
		}
		bad("sandbox.health_path", hint, "%q must start with \"/\"", b.HealthPath)
	}
	if b.StartupTimeout <= 0 {
		bad("sandbox.startup_timeout", "e.g. startup_timeout: 2m", "must be greater than zero, got %s", b.StartupTimeout)
	}
	if b.ExtensionsDir != "" {
		const hint = "put the .vsix files in a directory and name it (relative paths start at thon.yaml's directory), or set extensions_dir: \"\""
		if dir, err := c.path(b.ExtensionsDir); err != nil {
			bad("sandbox.extensions_dir", "write the full path", "%v", err)
		} else if fi, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			bad("sandbox.extensions_dir", hint, "directory %q does not exist", b.ExtensionsDir)
		} else if err != nil {
			bad("sandbox.extensions_dir", "check the path and its permissions", "cannot use %q: %v", b.ExtensionsDir, err)
		} else if !fi.IsDir() {
			bad("sandbox.extensions_dir", hint, "%q is not a directory", b.ExtensionsDir)
		}
	}
	checkWorkspaceLimits(b.Runtime, b, "sandbox", add)
	if b.Concurrency < 1 || b.Concurrency > maxConcurrency {
		bad("sandbox.concurrency", fmt.Sprintf("how many sandboxes start at once, 1..%d, e.g. %d", maxConcurrency, DefaultConcurrency),
			"%d is out of range", b.Concurrency)
	}
	checkIdle(b, "sandbox", add)
	c.checkTemplates(at, add)

	// llm, assistants and gateway
	c.checkLLM(bad)
	g := c.Gateway
	if g.Enabled {
		if msg := checkHostPort(g.Listen); msg != "" {
			bad("gateway.listen", "write host:port, e.g. "+DefaultGatewayListen+" (sandboxes reach it through the host)", "%q %s", g.Listen, msg)
		}
		if g.Mode != GatewayPerUser && g.Mode != GatewayPerGroup {
			bad("gateway.mode", "use per-user (a key per participant) or per-group (one key per group)", "%q is not a gateway mode", g.Mode)
		}
		if g.SandboxURL != "" {
			if msg := checkURL(g.SandboxURL); msg != "" {
				bad("gateway.sandbox_url", "the gateway's base URL as sandboxes reach it, e.g. http://thon-gateway.thon.svc:9080/v1, or \"\" to derive it", "%q %s", g.SandboxURL, msg)
			}
		}
		if g.Upstream != "" {
			if msg := checkURL(g.Upstream); msg != "" {
				bad("gateway.upstream", "an OpenAI-compatible base URL, or \"\" for the llm section's server", "%q %s", g.Upstream, msg)
			}
		}
		gl := g.Limits
		for _, f := range []struct {
			path string
			v    int64
		}{{"gateway.limits.requests_per_minute", int64(gl.RequestsPerMinute)}, {"gateway.limits.concurrency", int64(gl.Concurrency)},
			{"gateway.limits.tokens_per_minute", int64(gl.TokensPerMinute)}, {"gateway.limits.budget_tokens", gl.BudgetTokens}} {
			if f.v < 0 {
				bad(f.path, "0 means no limit", "%d is negative", f.v)
			}
		}
		if !slices.Contains([]string{"total", "prompt", "completion"}, gl.TokenKind) {
			bad("gateway.limits.token_kind", "use total, prompt or completion", "%q is not a kind of token", gl.TokenKind)
		}
		for i, m := range g.Models {
			p := fmt.Sprintf("gateway.models.%d", i)
			if strings.TrimSpace(m.Model) == "" {
				bad(p+".model", "name the model, e.g. {model: gemma-4-31b-it, concurrency: 1}", "must not be empty")
			}
			if m.Concurrency < 0 || m.TokensPerMinute < 0 {
				bad(p, "0 means no limit", "limits must not be negative")
			}
		}
		if g.UpstreamSlots < 0 || g.UpstreamSlots > 65536 {
			bad("gateway.upstream_slots", "the LLM server's parallel slots per model (llama-server's -np, vLLM's --max-num-seqs), or 0 for THON's plan or no limit", "%d is out of range", g.UpstreamSlots)
		}
		if qt := time.Duration(g.QueueTimeout); qt < time.Second || qt > time.Hour {
			bad("gateway.queue_timeout", "how long a request may wait for a slot of its model, e.g. queue_timeout: 2m", "must be between 1s and 1h, got %s", g.QueueTimeout)
		}
		if sr := g.ShortRequests; sr.MaxTokens < 0 {
			bad("gateway.short_requests.max_tokens", "0 means no request counts as short", "%d is negative", sr.MaxTokens)
		}
		if sr := g.ShortRequests; sr.Share < 0 || sr.Share > 0.5 || math.IsNaN(sr.Share) {
			bad("gateway.short_requests.share", "the share of each model's slots kept for short requests, e.g. share: 0.125 (1 slot in 8), 0 for none", "%v is not between 0 and 0.5", sr.Share)
		}
		c.checkOTLP(bad)
		if g.Redis != "" && !strings.HasPrefix(g.Redis, "redis://") && !strings.HasPrefix(g.Redis, "rediss://") && !strings.HasPrefix(g.Redis, "unix://") {
			bad("gateway.redis", "e.g. redis: redis://127.0.0.1:6379/0, or \"\" for counters in memory", "%q is not a Redis URL", g.Redis)
		}
	}

	c.checkAuth(bad)

	ps = append(ps, c.Groups.check(at)...)
	return ps
}

// Validate checks groups on their own (names, titles, e-mails, every user
// in exactly one group, once), as an import of participants does: one
// problem is returned as a Problem, more as a *ValidationError.
func (gs Groups) Validate() error {
	ps := gs.check(func(...string) position { return position{} })
	if len(ps) == 1 {
		return ps[0]
	}
	return asError(ps)
}

// check validates group and user names and that every user is in exactly one
// group, once.
func (gs Groups) check(at locator) []Problem {
	var ps []Problem
	add := func(path string, p Problem) {
		pos := at(path)
		p.File, p.Line, p.Col = pos.File, pos.Line, pos.Col
		ps = append(ps, p)
	}
	// lineOf says " at line N" when path has a line.
	lineOf := func(path string) string {
		if p := at(path); p.Line > 0 {
			return fmt.Sprintf(" at line %d", p.Line)
		}
		return ""
	}
	type where struct{ group, user int }
	groupAt := map[string]int{}
	userAt := map[string]where{}
	emailAt := map[string]struct{ user, path string }{}
	for gi, g := range gs {
		gpath := fmt.Sprintf("groups[%d]", gi)
		if err := ValidName("group", g.Name); err != nil {
			add(gpath, asProblem(err))
		} else if first, dup := groupAt[g.Name]; dup {
			add(gpath, Problem{
				Msg:  fmt.Sprintf("group %q is declared twice", g.Name),
				Hint: "first declared" + lineOf(fmt.Sprintf("groups[%d]", first)) + "; merge the two into one",
			})
		}
		if _, seen := groupAt[g.Name]; !seen {
			groupAt[g.Name] = gi
		}
		if why := checkTitle(g.Title); why != "" {
			add(gpath+".title", Problem{Msg: fmt.Sprintf("groups.%s.title %s", g.Name, why), Hint: `a short line people read on cards and the invite page, e.g. title: "Team Alpha"`})
		}
		for _, u := range sortedKeys(g.Emails) {
			if !slices.Contains(g.Users, u) {
				add(gpath, Problem{Msg: fmt.Sprintf("group %q has an e-mail for %q, who is not one of its users", g.Name, u), Hint: "list the user under users:, or leave out the e-mail"})
			}
		}
		for ui, u := range g.Users {
			upath := fmt.Sprintf("%s.users[%d]", gpath, ui)
			if email, ok := g.Emails[u]; ok {
				epath := upath + ".email"
				if why := CheckEmail(email); why != "" {
					add(epath, Problem{Msg: fmt.Sprintf("user %q: e-mail %q %s", u, email, why), Hint: "write the bare address, e.g. {name: " + u + ", email: " + u + "@example.org}"})
				} else if prev, dup := emailAt[strings.ToLower(email)]; dup && prev.user != u {
					add(epath, Problem{
						Msg:  fmt.Sprintf("e-mail %s is given to %q and %q", email, prev.user, u),
						Hint: "first given" + lineOf(prev.path) + "; an address belongs to one participant (it signs them in through invites)",
					})
				} else if !dup {
					emailAt[strings.ToLower(email)] = struct{ user, path string }{u, epath}
				}
			}
			if err := ValidName("user", u); err != nil {
				add(upath, asProblem(err))
				if u == "" {
					continue
				}
			}
			first, dup := userAt[u]
			switch {
			case !dup:
				userAt[u] = where{gi, ui}
			case gs[first.group].Name == g.Name:
				add(upath, Problem{
					Msg:  fmt.Sprintf("user %q is listed twice in group %q", u, g.Name),
					Hint: "first listed" + lineOf(fmt.Sprintf("groups[%d].users[%d]", first.group, first.user)) + "; remove one",
				})
			default:
				fg := gs[first.group].Name
				add(upath, Problem{
					Msg: fmt.Sprintf("user %q is in two groups: already in %q%s, again in %q", u, fg,
						lineOf(fmt.Sprintf("groups[%d].users[%d]", first.group, first.user)), g.Name),
					Hint: fmt.Sprintf("a participant belongs to exactly one group; remove %s from %q or %q", u, fg, g.Name),
				})
			}
		}
	}
	return ps
}

// checkSandbox checks the settings a template can give as well (image,
// workspace, limits, env, idle policy), named under prefix ("sandbox",
// "templates.node"); runtime is sandbox.runtime. Each problem's first path
// is the setting it is about.
func checkSandbox(runtime string, b Sandbox, prefix string, add func(paths []string, p Problem)) {
	checkImage(b, prefix, add)
	checkWorkspaceLimits(runtime, b, prefix, add)
	checkIdle(b, prefix, add)
}

func checkImage(b Sandbox, prefix string, add func(paths []string, p Problem)) {
	path := prefix + ".image"
	switch {
	case strings.TrimSpace(b.Image) == "":
		add([]string{path}, Problem{Msg: path + ": must not be empty", Hint: "e.g. image: " + DefaultImage})
	case strings.ContainsAny(b.Image, " \t\r\n"):
		add([]string{path}, Problem{Msg: fmt.Sprintf("%s: %q contains white space", path, b.Image), Hint: "an image reference has no spaces, e.g. " + DefaultImage})
	}
}

// checkWorkspaceLimits checks the workspace mode, limits and env in b.
func checkWorkspaceLimits(runtime string, b Sandbox, prefix string, add func(paths []string, p Problem)) {
	bad := func(key, hint, format string, args ...any) {
		path := prefix + "." + key
		add([]string{path}, Problem{Msg: path + ": " + fmt.Sprintf(format, args...), Hint: hint})
	}
	if runtime == RuntimeKubernetes && b.Workspace == "bind" {
		bad("workspace", "use volume (a PersistentVolumeClaim per participant) or ephemeral on Kubernetes", "bind is not possible on Kubernetes")
	}
	if !slices.Contains(workspaceModes, b.Workspace) {
		hint := "use one of: " + strings.Join(workspaceModes, ", ")
		if m, ok := suggest(b.Workspace, workspaceModes); ok {
			hint = fmt.Sprintf("did you mean %q? ", m) + hint
		}
		bad("workspace", hint, "%q is not a workspace mode", b.Workspace)
	}
	if b.Workspace == "bind" {
		dirPaths := []string{prefix + ".workspace_dir", prefix + ".workspace"}
		dirBad := func(hint, format string, args ...any) {
			add(dirPaths, Problem{Msg: prefix + ".workspace_dir: " + fmt.Sprintf(format, args...), Hint: hint})
		}
		if strings.TrimSpace(b.WorkspaceDir) == "" {
			dirBad("set it to the host directory that will hold /workspace/{group}/{user}, e.g. workspace_dir: /srv/thon/workspaces",
				"must be set when workspace is bind")
		} else if dir, err := expandHome(b.WorkspaceDir); err != nil {
			dirBad("write the full path", "%v", err)
		} else if fi, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			dirBad("create it with: mkdir -p "+shellQuote(dir), "directory %q does not exist", b.WorkspaceDir)
		} else if err != nil {
			dirBad("check the path and its permissions", "cannot use %q: %v", b.WorkspaceDir, err)
		} else if !fi.IsDir() {
			dirBad("point it at a directory", "%q is not a directory", b.WorkspaceDir)
		}
	}
	l := b.Limits
	if !(l.CPU > 0 && l.CPU <= maxCPU) {
		bad("limits.cpu", fmt.Sprintf("a number of cores above 0 and at most %d, e.g. 1 or 0.5", maxCPU),
			"%s is out of range", strconv.FormatFloat(l.CPU, 'g', -1, 64))
	}
	switch {
	case l.Memory <= 0:
		bad("limits.memory", "e.g. memory: 2Gi", "must be greater than zero, got %s", l.Memory)
	case l.Memory < minMemory:
		hint := "the minimum is " + minMemory.String()
		if l.Memory < 1<<20 {
			hint = fmt.Sprintf("a number without a unit is bytes; did you mean %dMi?", int64(l.Memory))
		}
		bad("limits.memory", hint, "%d bytes is too small", int64(l.Memory))
	}
	if l.Pids < 0 {
		bad("limits.pids", fmt.Sprintf("use 0 for no limit, or a process count, e.g. %d", DefaultPids), "%d is negative", l.Pids)
	}
	for _, k := range sortedKeys(b.Env) {
		if !envNameRE.MatchString(k) {
			bad("env."+k, "names use letters, digits and _, and do not start with a digit, e.g. TZ or MY_VAR",
				"%q is not a valid environment variable name", k)
		}
	}
}

// checkIdle checks the idle policy in b, named under prefix.
func checkIdle(b Sandbox, prefix string, add func(paths []string, p Problem)) {
	bad := func(key, hint, format string, args ...any) {
		path := prefix + "." + key
		add([]string{path}, Problem{Msg: path + ": " + fmt.Sprintf(format, args...), Hint: hint})
	}
	switch {
	case b.IdleTimeout < 0:
		bad("idle_timeout", "e.g. idle_timeout: 45m, or 0 to never put sandboxes to sleep", "must not be negative, got %s", b.IdleTimeout)
	case b.IdleTimeout > 0 && b.IdleTimeout < Duration(MinIdleTimeout):
		bad("idle_timeout", "a participant reading or thinking for a few minutes is not gone: use 5m or more, e.g. 45m", "%s is too short", b.IdleTimeout)
	}
	if !slices.Contains([]string{IdleStop, IdlePause}, b.IdleAction) {
		bad("idle_action", `use stop (frees the memory; waking takes seconds) or pause (keeps it; waking is instant)`, "%q is not an idle action", b.IdleAction)
	}
	switch {
	case b.MaxLifetime < 0:
		bad("max_lifetime", "e.g. max_lifetime: 12h, or 0 for no limit", "must not be negative, got %s", b.MaxLifetime)
	case b.MaxLifetime > 0 && b.MaxLifetime < Duration(MinIdleTimeout):
		bad("max_lifetime", "use 5m or more, e.g. 12h", "%s is too short", b.MaxLifetime)
	}
}

// checkHostPort returns why s is not host:port, or "".
func checkHostPort(s string) string {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return "is not host:port"
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "has no port number between 1 and 65535"
	}
	return ""
}

// shellQuote quotes s for a shell command line when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r == '~' ||
			r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var hostnameRE = regexp.MustCompile(`^(\*\.)?([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)

// validHostname accepts DNS names (and a leading "*." wildcard), not IPs.
func validHostname(h string) bool {
	return len(h) <= 253 && hostnameRE.MatchString(h) && net.ParseIP(h) == nil
}

// checkURL returns what is wrong with an http(s) base URL, or "".
// checkOTLP checks gateway.otlp: where traces go and with which headers.
func (c *Config) checkOTLP(bad func(path, hint, format string, args ...any)) {
	o := c.Gateway.OTLP
	if o.Endpoint != "" {
		const hint = "the collector's OTLP/HTTP base URL, e.g. http://127.0.0.1:4318 or https://cloud.langfuse.com/api/public/otel (/v1/traces is added), or \"\" for no traces"
		if msg := checkURL(o.Endpoint); msg != "" {
			bad("gateway.otlp.endpoint", hint, "%q %s", o.Endpoint, msg)
		} else if u, _ := url.Parse(o.Endpoint); u.User != nil {
			bad("gateway.otlp.endpoint", "give the collector's keys as gateway.otlp.headers (e.g. Authorization: Basic …), not in the URL", "%q holds credentials", u.Redacted())
		} else if u.RawQuery != "" || u.Fragment != "" {
			bad("gateway.otlp.endpoint", hint, "%q has a query or fragment", o.Endpoint)
		}
	}
	for _, k := range sortedKeys(o.Headers) {
		if !headerNameRE.MatchString(k) {
			bad("gateway.otlp.headers."+k, "a header name has letters, digits and -, e.g. Authorization", "%q is not a header name", k)
		} else if strings.ContainsAny(o.Headers[k], "\r\n") {
			bad("gateway.otlp.headers."+k, "write the value on one line", "the value holds a line break")
		}
	}
	if o.QueueSize < 1 || o.QueueSize > 1<<20 {
		bad("gateway.otlp.queue_size", fmt.Sprintf("how many spans may wait to be sent, e.g. %d; more are dropped and counted", DefaultOTLPQueueSize), "%d is out of range (1 to 1048576)", o.QueueSize)
	}
	if t := time.Duration(o.Timeout); t < 100*time.Millisecond || t > 5*time.Minute {
		bad("gateway.otlp.timeout", "how long one export to the collector may take, e.g. timeout: 10s", "must be between 100ms and 5m, got %s", o.Timeout)
	}
}

var headerNameRE = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

func checkURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "is not a URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must start with http:// or https://"
	case u.Host == "":
		return "has no host"
	}
	return ""
}

// MaxTitle is the longest group title, in characters.
const MaxTitle = 100

// checkTitle returns what is wrong with a group title, or "".
func checkTitle(t string) string {
	switch {
	case utf8.RuneCountInString(t) > MaxTitle:
		return fmt.Sprintf("has %d characters; at most %d", utf8.RuneCountInString(t), MaxTitle)
	case strings.IndexFunc(t, unicode.IsControl) >= 0:
		return "holds a line break or another control character"
	case t != strings.TrimSpace(t):
		return "starts or ends with white space"
	}
	return ""
}

// CheckEmail returns what is wrong with a participant's e-mail address (a
// bare address, no display name), or "".
func CheckEmail(e string) string {
	a, err := mail.ParseAddress(e)
	switch {
	case e == "":
		return "is empty"
	case len(e) > 254:
		return "is longer than 254 characters"
	case err != nil || a.Address != e || a.Name != "":
		return "is not an e-mail address"
	case !strings.Contains(e[strings.LastIndexByte(e, '@')+1:], "."):
		return "has no domain with a dot"
	}
	return ""
}
