package config

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const templatesYAML = `sandbox:
  image: thon/sandbox:latest
  env: {TZ: Europe/Paris, LANG: C.UTF-8}
  idle_timeout: 45m
  limits: {cpu: 1, memory: 2Gi}
templates:
  node:
    description: Node.js 22
    image: thon/sandbox-node:22
    limits: {memory: 4Gi, pids: 0}
    env: {TZ: UTC, NODE_ENV: development}
    idle_action: pause
  data:
    workspace: ephemeral
    idle_timeout: 0s
    max_lifetime: 8h
groups:
  web: {template: node, users: [alice, bob]}
  ml:
    template: data
    idle_timeout: 20m
    users: [carol]
  plain: [dave]
`

func TestTemplatesParseAndResolve(t *testing.T) {
	c, err := Parse([]byte(templatesYAML), "thon.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Templates.Names(); !reflect.DeepEqual(got, []string{"node", "data"}) {
		t.Fatalf("templates %v, want [node data] in order", got)
	}
	set := c.SandboxSet()

	web := set.For("web")
	if web.Template != "node" || web.Image != "thon/sandbox-node:22" {
		t.Errorf("web: template %q image %q, want node's image", web.Template, web.Image)
	}
	if web.Limits.Memory != 4<<30 || web.Limits.CPU != 1 || web.Limits.Pids != 0 {
		t.Errorf("web limits %+v: want memory 4Gi from node, cpu 1 from sandbox:, pids 0 (given as 0)", web.Limits)
	}
	if want := map[string]string{"TZ": "UTC", "LANG": "C.UTF-8", "NODE_ENV": "development"}; !reflect.DeepEqual(web.Env, want) {
		t.Errorf("web env %v, want %v (node's over sandbox:'s)", web.Env, want)
	}
	if web.IdleTimeout.D() != 45*time.Minute || web.IdleAction != IdlePause {
		t.Errorf("web idle %s %s, want sandbox:'s 45m and node's pause", web.IdleTimeout, web.IdleAction)
	}
	if c.Sandbox.Env["TZ"] != "Europe/Paris" {
		t.Errorf("applying a template changed sandbox.env: %v", c.Sandbox.Env)
	}

	ml := set.For("ml")
	if ml.Template != "data" || ml.Workspace != "ephemeral" || ml.Image != "thon/sandbox:latest" {
		t.Errorf("ml: %+v, want data's workspace and sandbox:'s image", ml)
	}
	if ml.IdleTimeout.D() != 20*time.Minute || ml.MaxLifetime.D() != 8*time.Hour {
		t.Errorf("ml idle_timeout %s max_lifetime %s: want the group's 20m over data's 0s, data's 8h", ml.IdleTimeout, ml.MaxLifetime)
	}

	plain := set.For("plain")
	if plain.Template != "" || !reflect.DeepEqual(plain.Sandbox, c.Sandbox) {
		t.Errorf("a group without a template gets %+v, want sandbox: as it is", plain)
	}
	if got := set.For("made-later"); !reflect.DeepEqual(got.Sandbox, c.Sandbox) {
		t.Errorf("a group unknown to the config gets %+v, want sandbox:", got)
	}
	if got := set.Uses("node"); !reflect.DeepEqual(got, []string{"web"}) {
		t.Errorf("Uses(node) = %v, want [web]", got)
	}
}

func TestTemplatesRoundTrip(t *testing.T) {
	c, err := Parse([]byte(templatesYAML), "thon.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(y, "export.yaml")
	if err != nil {
		t.Fatalf("exported YAML does not parse: %v\n%s", err, y)
	}
	if !reflect.DeepEqual(back.SandboxSet(), c.SandboxSet()) || !reflect.DeepEqual(back.Groups, c.Groups) {
		t.Errorf("YAML round trip changed templates or groups:\n%s", y)
	}
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON Config
	if err := json.Unmarshal(j, &fromJSON); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromJSON.SandboxSet(), c.SandboxSet()) {
		t.Errorf("JSON round trip changed the sandbox set:\n%s", j)
	}
	if err := fromJSON.Validate(); err != nil {
		t.Errorf("a valid config read back from JSON: %v", err)
	}
}

func TestTemplateProblems(t *testing.T) {
	yml := `sandbox:
  image: thon/sandbox:latest
templates:
  node:
    image: "bad image"
    limits: {memory: 512, cpu: many}
    workspace: volum
    idle_action: sleep
    colour: blue
  Bad_Name: {}
groups:
  web: {template: nod, users: [alice]}
  ml: {template: gpu, idle_timeout: 1m, users: [bob]}
  ok: {template: node, users: [carol], extra: 1}
`
	_, err := Parse([]byte(yml), "thon.yaml")
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v, want a *ValidationError", err)
	}
	want := []struct {
		line     int
		msg, hit string
	}{
		{5, `templates.node.image: "bad image" contains white space`, "no spaces"},
		{6, `templates.node.limits.memory: 512 bytes is too small`, "did you mean 512Mi?"},
		{6, `templates.node.limits.cpu: "many" is not a number`, ""},
		{7, `templates.node.workspace: "volum" is not a workspace mode`, `did you mean "volume"?`},
		{8, `templates.node.idle_action: "sleep" is not an idle action`, "use stop"},
		{9, `templates.node: unknown key "colour"`, "valid keys:"},
		{10, `invalid template name "Bad_Name"`, `did you mean "bad-name"?`},
		{12, `groups.web.template: no template is called "nod"`, `did you mean "node"?`},
		{13, `groups.ml.template: no template is called "gpu"`, "templates: node, Bad_Name"},
		{13, `groups.ml.idle_timeout: 1m0s is too short`, "5m or more"},
		{14, `groups.ok: unknown key "extra"`, "template"},
	}
	got := ve.Problems
	for _, w := range want {
		found := false
		for _, p := range got {
			if p.Line == w.line && strings.Contains(p.Msg, w.msg) && strings.Contains(p.Hint, w.hit) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem at line %d %q (hint %q); got:\n%v", w.line, w.msg, w.hit, err)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(got), len(want), err)
	}
	// What the template does not set is not reported again under it.
	for _, p := range got {
		if strings.HasPrefix(p.Msg, "templates.node.limits.pids") || strings.HasPrefix(p.Msg, "templates.node.idle_timeout") {
			t.Errorf("reported a setting node does not set: %s", p)
		}
	}
}

func TestTemplateWithoutPositions(t *testing.T) {
	c := Default()
	mem := Size(1 << 20)
	c.Templates = Templates{{Name: "big", Limits: TemplateLimits{Memory: &mem}}}
	c.Groups = Groups{{Name: "web", Users: []string{"alice"}, Template: "big"}, {Name: "ml", Users: []string{"bob"}, Template: "huge"}}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "templates.big.limits.memory: 1048576 bytes is too small") ||
		!strings.Contains(err.Error(), `groups.ml.template: no template is called "huge"`) {
		t.Fatalf("Validate = %v, want big's memory and ml's unknown template", err)
	}
}

func TestTemplateAssistantFileProblems(t *testing.T) {
	dir := t.TempDir()
	yml := "templates:\n  node:\n    assistants:\n      kilo: {base_file: missing.json}\n      extensions_file: " + dir + "\n      colour: blue\n"
	_, err := Parse([]byte(yml), "thon.yaml")
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 3 {
		t.Fatalf("err = %v, want 3 problems", err)
	}
	for i, w := range []struct {
		line int
		msg  string
	}{{4, "templates.node.assistants.kilo.base_file: "}, {5, "templates.node.assistants.extensions_file: "}, {6, `templates.node.assistants: unknown key "colour"`}} {
		if p := ve.Problems[i]; p.Line != w.line || !strings.HasPrefix(p.Msg, w.msg) {
			t.Errorf("problem %d = %s, want line %d %q", i, p, w.line, w.msg)
		}
	}
}

func TestAnyIdlePolicy(t *testing.T) {
	c := Default()
	if s := c.SandboxSet(); s.AnyIdlePolicy() || s.AnyLifetime() {
		t.Fatal("defaults: nothing sleeps or ends")
	}
	life := Duration(8 * time.Hour)
	c.Templates = Templates{{Name: "node", MaxLifetime: &life}}
	if s := c.SandboxSet(); !s.AnyIdlePolicy() || !s.AnyLifetime() {
		t.Error("a template's max_lifetime: sandboxes can end")
	}
	c.Templates = nil
	idle := Duration(20 * time.Minute)
	c.Groups = Groups{{Name: "web", Users: []string{"a"}, IdlePolicy: IdlePolicy{IdleTimeout: &idle}}}
	if s := c.SandboxSet(); !s.AnyIdlePolicy() || s.AnyLifetime() {
		t.Error("a group's idle_timeout: sandboxes can sleep, none ends")
	}
}
