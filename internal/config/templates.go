package config

import (
	"fmt"
	"maps"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Template is a named set of sandbox settings that groups use
// (templates: in thon.yaml, groups.NAME.template). Every setting it leaves
// out (nil) is sandbox:'s.
type Template struct {
	Name        string            `yaml:"-" json:"name"`
	Description string            `yaml:"description,omitempty" json:"description,omitempty"`
	Image       *string           `yaml:"image,omitempty" json:"image,omitempty"`
	Limits      TemplateLimits    `yaml:"limits,omitempty" json:"limits,omitzero"`
	Env         map[string]string `yaml:"env,omitempty" json:"env,omitempty"` // added over sandbox.env
	Workspace   *string           `yaml:"workspace,omitempty" json:"workspace,omitempty"`
	// WorkspaceDir is the host directory of bind workspaces.
	WorkspaceDir *string `yaml:"workspace_dir,omitempty" json:"workspace_dir,omitempty"`
	// Assistants are the assistants' base files, VS Code settings and
	// extensions of its sandboxes, each over assistants:'s.
	Assistants TemplateAssistants `yaml:"assistants,omitempty" json:"assistants,omitzero"`
	// The idle policy of its sandboxes (see IdlePolicy).
	IdleTimeout *Duration `yaml:"idle_timeout,omitempty" json:"idle_timeout,omitempty"`
	IdleAction  *string   `yaml:"idle_action,omitempty" json:"idle_action,omitempty"`
	MaxLifetime *Duration `yaml:"max_lifetime,omitempty" json:"max_lifetime,omitempty"`
}

// Idle is the template's idle policy.
func (t Template) Idle() IdlePolicy {
	return IdlePolicy{IdleTimeout: t.IdleTimeout, IdleAction: t.IdleAction, MaxLifetime: t.MaxLifetime}
}

// TemplateAssistants are the files a template gives its sandboxes' AI
// assistants and IDE; nil is assistants:'s (or the dashboard's stored file).
type TemplateAssistants struct {
	Kilo               TemplateAssistant `yaml:"kilo,omitempty" json:"kilo,omitzero"`
	Continue           TemplateAssistant `yaml:"continue,omitempty" json:"continue,omitzero"`
	Cline              TemplateAssistant `yaml:"cline,omitempty" json:"cline,omitzero"`
	OpenCode           TemplateAssistant `yaml:"opencode,omitempty" json:"opencode,omitzero"`
	VSCodeSettingsFile *string           `yaml:"vscode_settings_file,omitempty" json:"vscode_settings_file,omitempty"`
	ExtensionsFile     *string           `yaml:"extensions_file,omitempty" json:"extensions_file,omitempty"`
}

// TemplateAssistant is one assistant's base file in a template.
type TemplateAssistant struct {
	BaseFile *string `yaml:"base_file,omitempty" json:"base_file,omitempty"`
}

// files lists the template's assistant files: their setting below
// assistants (as llm.StoredKinds names them), their kind, where they are.
func (ta *TemplateAssistants) files() []struct {
	Setting, Kind string
	File          **string
} {
	return []struct {
		Setting, Kind string
		File          **string
	}{
		{"kilo.base_file", "json", &ta.Kilo.BaseFile},
		{"continue.base_file", "yaml", &ta.Continue.BaseFile},
		{"cline.base_file", "json", &ta.Cline.BaseFile},
		{"opencode.base_file", "json", &ta.OpenCode.BaseFile},
		{"vscode_settings_file", "json", &ta.VSCodeSettingsFile},
		{"extensions_file", "lines", &ta.ExtensionsFile},
	}
}

// Sets lists the assistant settings the template gives ("kilo.base_file").
func (ta TemplateAssistants) Sets() []string {
	var out []string
	for _, f := range ta.files() {
		if *f.File != nil {
			out = append(out, f.Setting)
		}
	}
	return out
}

// Apply returns a with the template's files put over it.
func (ta TemplateAssistants) Apply(a Assistants) Assistants {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&a.Kilo.BaseFile, ta.Kilo.BaseFile)
	set(&a.Continue.BaseFile, ta.Continue.BaseFile)
	set(&a.Cline.BaseFile, ta.Cline.BaseFile)
	set(&a.OpenCode.BaseFile, ta.OpenCode.BaseFile)
	set(&a.VSCodeSettingsFile, ta.VSCodeSettingsFile)
	set(&a.ExtensionsFile, ta.ExtensionsFile)
	return a
}

// TemplateLimits are a template's resource limits; nil is sandbox.limits'.
type TemplateLimits struct {
	CPU    *float64 `yaml:"cpu,omitempty" json:"cpu,omitempty"`
	Memory *Size    `yaml:"memory,omitempty" json:"memory,omitempty"`
	Pids   *int64   `yaml:"pids,omitempty" json:"pids,omitempty"`
}

// IdlePolicy is when sandboxes sleep and end, as a template or a group
// overrides it; nil is the setting below (the template's, then sandbox:'s).
type IdlePolicy struct {
	IdleTimeout *Duration `yaml:"idle_timeout,omitempty" json:"idle_timeout,omitempty"`
	IdleAction  *string   `yaml:"idle_action,omitempty" json:"idle_action,omitempty"`
	MaxLifetime *Duration `yaml:"max_lifetime,omitempty" json:"max_lifetime,omitempty"`
}

// IsZero reports whether the policy overrides nothing.
func (p IdlePolicy) IsZero() bool {
	return p.IdleTimeout == nil && p.IdleAction == nil && p.MaxLifetime == nil
}

// apply puts what the policy sets over s.
func (p IdlePolicy) apply(s *Sandbox) {
	if p.IdleTimeout != nil {
		s.IdleTimeout = *p.IdleTimeout
	}
	if p.IdleAction != nil {
		s.IdleAction = *p.IdleAction
	}
	if p.MaxLifetime != nil {
		s.MaxLifetime = *p.MaxLifetime
	}
}

// Apply returns base with what the template sets put over it: the
// settings of a sandbox made from the template.
func (t Template) Apply(base Sandbox) Sandbox {
	s := base
	if t.Image != nil {
		s.Image = *t.Image
	}
	if t.Limits.CPU != nil {
		s.Limits.CPU = *t.Limits.CPU
	}
	if t.Limits.Memory != nil {
		s.Limits.Memory = *t.Limits.Memory
	}
	if t.Limits.Pids != nil {
		s.Limits.Pids = *t.Limits.Pids
	}
	if len(t.Env) > 0 {
		env := make(map[string]string, len(base.Env)+len(t.Env))
		maps.Copy(env, base.Env)
		maps.Copy(env, t.Env)
		s.Env = env
	}
	if t.Workspace != nil {
		s.Workspace = *t.Workspace
	}
	if t.WorkspaceDir != nil {
		s.WorkspaceDir = *t.WorkspaceDir
	}
	t.Idle().apply(&s)
	return s
}

// sets reports whether the template gives the setting at key (a path below
// the template: "image", "limits.memory", "env.TZ"); workspace_dir counts
// as set with workspace, which decides whether it is needed.
func (t Template) sets(key string) bool {
	switch key {
	case "image":
		return t.Image != nil
	case "limits.cpu":
		return t.Limits.CPU != nil
	case "limits.memory":
		return t.Limits.Memory != nil
	case "limits.pids":
		return t.Limits.Pids != nil
	case "workspace":
		return t.Workspace != nil
	case "workspace_dir":
		return t.WorkspaceDir != nil || t.Workspace != nil
	}
	if k, ok := strings.CutPrefix(key, "env."); ok {
		_, set := t.Env[k]
		return set
	}
	return t.Idle().sets(key)
}

func (p IdlePolicy) sets(key string) bool {
	switch key {
	case "idle_timeout":
		return p.IdleTimeout != nil
	case "idle_action":
		return p.IdleAction != nil
	case "max_lifetime":
		return p.MaxLifetime != nil
	}
	return false
}

// Keys lists the settings the template gives itself, in file order
// ("image", "limits.memory", "env.NODE_ENV", "idle_timeout").
func (t Template) Keys() []string {
	var out []string
	for _, k := range []string{"image", "limits.cpu", "limits.memory", "limits.pids"} {
		if t.sets(k) {
			out = append(out, k)
		}
	}
	for _, k := range sortedKeys(t.Env) {
		out = append(out, "env."+k)
	}
	for _, k := range []string{"workspace", "workspace_dir", "idle_timeout", "idle_action", "max_lifetime"} {
		if (k != "workspace_dir" || t.WorkspaceDir != nil) && t.sets(k) {
			out = append(out, k)
		}
	}
	for _, k := range t.Assistants.Sets() {
		out = append(out, "assistants."+k)
	}
	return out
}

// Templates keeps the order templates were declared in.
type Templates []Template

// Get returns the template called name.
func (ts Templates) Get(name string) (Template, bool) {
	for _, t := range ts {
		if t.Name == name {
			return t, true
		}
	}
	return Template{}, false
}

// Names lists the templates' names in order.
func (ts Templates) Names() []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return out
}

// GroupSandbox is what a group says about its sandboxes: the template it
// uses ("" for sandbox: alone) and its own idle policy over it.
type GroupSandbox struct {
	Template string `json:"template,omitempty"`
	IdlePolicy
}

// SandboxSet is everything participants' sandboxes are made from:
// sandbox:, the templates, and what each group says. For is the one rule
// of which settings a group's participants get.
type SandboxSet struct {
	Base      Sandbox                 `json:"sandbox"`
	Templates Templates               `json:"templates"`
	Groups    map[string]GroupSandbox `json:"groups,omitempty"`
}

// Effective is the settings of one group's sandboxes and where they come from.
type Effective struct {
	Sandbox
	// Template is the template the group uses ("" for none).
	Template string `json:"template,omitempty"`
	group    string
	own      IdlePolicy // what the group itself sets
	tmpl     IdlePolicy // what its template sets
}

// Where names the setting key (idle_timeout, idle_action, max_lifetime)
// took its value from, for messages: "groups.web.idle_timeout",
// "templates.node.idle_timeout" or "sandbox.idle_timeout".
func (e Effective) Where(key string) string {
	switch {
	case e.own.sets(key):
		return "groups." + e.group + "." + key
	case e.tmpl.sets(key):
		return "templates." + e.Template + "." + key
	}
	return "sandbox." + key
}

// AnyIdlePolicy reports whether some sandboxes can sleep or end: an
// idle_timeout or max_lifetime is on in sandbox:, a template or a group.
func (s SandboxSet) AnyIdlePolicy() bool {
	on := func(p IdlePolicy) bool {
		return p.IdleTimeout != nil && *p.IdleTimeout > 0 || p.MaxLifetime != nil && *p.MaxLifetime > 0
	}
	if s.Base.IdleTimeout > 0 || s.Base.MaxLifetime > 0 {
		return true
	}
	for _, t := range s.Templates {
		if on(t.Idle()) {
			return true
		}
	}
	for _, g := range s.Groups {
		if on(g.IdlePolicy) {
			return true
		}
	}
	return false
}

// AnyLifetime reports whether some group's sandboxes have a max_lifetime.
func (s SandboxSet) AnyLifetime() bool {
	if s.Base.MaxLifetime > 0 {
		return true
	}
	for _, t := range s.Templates {
		if t.MaxLifetime != nil && *t.MaxLifetime > 0 {
			return true
		}
	}
	for _, g := range s.Groups {
		if g.MaxLifetime != nil && *g.MaxLifetime > 0 {
			return true
		}
	}
	return false
}

// For returns the settings of group's sandboxes: sandbox:, with the
// group's template put over it, then the group's own idle policy. A group
// that names no template, or one that no longer exists (a config built in
// code; Validate refuses it), gets sandbox: with its idle policy.
func (s SandboxSet) For(group string) Effective {
	g := s.Groups[group]
	out := Effective{Sandbox: s.Base, group: group, own: g.IdlePolicy}
	if t, ok := s.Templates.Get(g.Template); ok {
		out.Sandbox, out.Template, out.tmpl = t.Apply(s.Base), t.Name, t.Idle()
	}
	g.IdlePolicy.apply(&out.Sandbox)
	return out
}

// Uses returns the groups that use template name, in name order.
func (s SandboxSet) Uses(name string) []string {
	var out []string
	for _, g := range sortedGroupNames(s.Groups) {
		if s.Groups[g].Template == name {
			out = append(out, g)
		}
	}
	return out
}

func sortedGroupNames(m map[string]GroupSandbox) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// SandboxSet returns the sandbox settings of the configuration, the
// templates and what every group says of its sandboxes.
func (c *Config) SandboxSet() SandboxSet {
	s := SandboxSet{Base: c.Sandbox, Templates: c.Templates}
	for _, g := range c.Groups {
		if g.Template == "" && g.IdlePolicy.IsZero() {
			continue
		}
		if s.Groups == nil {
			s.Groups = map[string]GroupSandbox{}
		}
		s.Groups[g.Name] = GroupSandbox{Template: g.Template, IdlePolicy: g.IdlePolicy}
	}
	return s
}

// decodeTemplates reads `templates:`, keeping declaration order: a
// mapping of template names to mappings of settings.
func (d *decoder) decodeTemplates(n *yaml.Node, out *Templates) {
	var ts Templates
	for _, kv := range d.mappingPairs(n, "templates", "e.g. templates: {node: {image: thon/sandbox-node:latest}}", false) {
		k, val := kv[0], deref(kv[1])
		path := "templates." + k.Value
		d.pos["templates["+k.Value+"]"] = d.at(k)
		t := Template{Name: k.Value}
		if !isNull(val) {
			d.decodeValue(val, reflect.ValueOf(&t).Elem(), path)
		}
		ts = append(ts, t)
	}
	if len(ts) == 0 {
		ts = nil
	}
	*out = ts
}

// MarshalYAML writes templates as a mapping of name to settings, in order.
func (ts Templates) MarshalYAML() (any, error) {
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, t := range ts {
		var v yaml.Node
		if err := v.Encode(t); err != nil {
			return nil, err
		}
		m.Content = append(m.Content, strNode(t.Name), &v)
	}
	return m, nil
}

// UnmarshalYAML reads templates as Parse does; names are checked by Validate.
func (ts *Templates) UnmarshalYAML(n *yaml.Node) error {
	d := &decoder{pos: map[string]position{}}
	n = deref(n)
	if isNull(n) {
		*ts = nil
		return nil
	}
	d.decodeTemplates(n, ts)
	return asError(d.problems)
}

// checkTemplates checks template names, and each template's settings with
// the rules of sandbox: (over sandbox:, reporting only what it sets).
func (c *Config) checkTemplates(at locator, add func(paths []string, p Problem)) {
	seen := map[string]bool{}
	for _, t := range c.Templates {
		tpath := "templates." + t.Name
		if err := ValidName("template", t.Name); err != nil {
			add([]string{"templates[" + t.Name + "]"}, asProblem(err))
		}
		if seen[t.Name] {
			add([]string{"templates[" + t.Name + "]"}, Problem{Msg: fmt.Sprintf("template %q is declared twice", t.Name), Hint: "keep one"})
		}
		seen[t.Name] = true
		for _, f := range t.Assistants.files() {
			if *f.File != nil && **f.File != "" {
				c.checkAssistantFile(tpath+".assistants."+f.Setting, **f.File, f.Kind, func(path, hint, format string, args ...any) {
					add([]string{path}, Problem{Msg: path + ": " + fmt.Sprintf(format, args...), Hint: hint})
				})
			}
		}
		s := t.Apply(c.Sandbox)
		checkSandbox(c.Sandbox.Runtime, s, tpath, func(paths []string, p Problem) {
			if t.sets(strings.TrimPrefix(paths[0], tpath+".")) {
				add(paths, p)
			}
		})
	}
	for gi, g := range c.Groups {
		gpath := fmt.Sprintf("groups[%d]", gi)
		if g.Template != "" {
			if _, ok := c.Templates.Get(g.Template); !ok {
				hint := "define it under templates:, or remove the group's template to use sandbox: alone"
				if len(c.Templates) > 0 {
					hint = "templates: " + strings.Join(c.Templates.Names(), ", ")
					if s, ok := suggest(g.Template, c.Templates.Names()); ok {
						hint = fmt.Sprintf("did you mean %q? ", s) + hint
					}
				}
				add([]string{gpath + ".template", gpath}, Problem{Msg: fmt.Sprintf("groups.%s.template: no template is called %q", g.Name, g.Template), Hint: hint})
			}
		}
		s := c.SandboxSet().For(g.Name).Sandbox
		checkIdle(s, "groups."+g.Name, func(paths []string, p Problem) {
			key := strings.TrimPrefix(paths[0], "groups."+g.Name+".")
			if g.IdlePolicy.sets(key) {
				add([]string{gpath + "." + key, gpath}, p)
			}
		})
	}
}

// groupKeys are the keys of a group written in the mapping form.
var groupKeys = []string{"title", "users", "template", "idle_timeout", "idle_action", "max_lifetime"}

// decodeGroupKey reads one key of a group in the mapping form other than
// users; it returns false for a key that is not one.
func (d *decoder) decodeGroupKey(k, v *yaml.Node, g *Group, gpath string) bool {
	var target reflect.Value
	path := "groups." + g.Name + "." + k.Value
	switch k.Value {
	case "template":
		target = reflect.ValueOf(&g.Template).Elem()
	case "idle_timeout":
		target = reflect.ValueOf(&g.IdleTimeout).Elem()
	case "idle_action":
		target = reflect.ValueOf(&g.IdleAction).Elem()
	case "max_lifetime":
		target = reflect.ValueOf(&g.MaxLifetime).Elem()
	default:
		return false
	}
	d.decodeValue(v, target, path)
	d.pos[gpath+"."+k.Value] = d.pos[path]
	return true
}

// resolveTemplateFiles makes the templates' file paths absolute (see resolveFiles).
func (c *Config) resolveTemplateFiles() {
	for i := range c.Templates {
		for _, f := range c.Templates[i].Assistants.files() {
			if *f.File == nil || **f.File == "" {
				continue
			}
			if abs, err := c.path(**f.File); err == nil {
				*f.File = &abs
			}
		}
	}
}
