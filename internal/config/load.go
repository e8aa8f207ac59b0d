package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FileName is the name of the configuration file.
const FileName = "thon.yaml"

// ErrNotFound is wrapped by Load and Resolve when no thon.yaml exists.
var ErrNotFound = errors.New("no " + FileName + " found")

// SearchPaths returns where Load looks when given no path, in order:
// ./thon.yaml, then ~/.thon/thon.yaml (when the home directory is known).
func SearchPaths() []string {
	paths := []string{FileName}
	if home, err := os.UserHomeDir(); err == nil {
		paths = append(paths, filepath.Join(home, ".thon", FileName))
	}
	return paths
}

// Resolve returns the config file Load would read: path itself when it is
// not "" (it must exist), else the first of SearchPaths that exists. The
// error wraps ErrNotFound when there is none, and says how to make one.
func Resolve(path string) (string, error) {
	tried := SearchPaths()
	if path != "" {
		tried = []string{path}
	}
	for _, p := range tried {
		fi, err := os.Stat(p)
		switch {
		case err == nil && fi.IsDir():
			return "", fmt.Errorf("config %s is a directory; give the path of a %s file", p, FileName)
		case err == nil:
			return p, nil
		case !errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("config: %w", err)
		}
	}
	return "", fmt.Errorf("%w (tried %s); run `thon init` to write a starter %s",
		ErrNotFound, strings.Join(tried, ", "), FileName)
}

// Load reads the config file at path ("" searches SearchPaths), applies the
// THON_* environment variables over it, and validates the result. Problems
// are reported all at once in a *ValidationError, each with file:line:col or
// the environment variable it came from. Config.Path is set to the file's
// absolute path.
func Load(path string) (*Config, error) {
	return load(path, os.LookupEnv)
}

func load(path string, lookup func(string) (string, bool)) (*Config, error) {
	p, err := Resolve(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, d := decode(data, p)
	if c.Path, err = filepath.Abs(p); err != nil { // files it names are relative to it
		return nil, fmt.Errorf("config path: %w", err)
	}
	set, envProblems := c.applyEnv(lookup)
	ps := append(d.problems, envProblems...)
	ps = append(ps, c.check(d.locator(set))...)
	if err := asError(ps); err != nil {
		return nil, err
	}
	c.resolveFiles()
	return c, nil
}

// Parse decodes thon.yaml text over Default() and validates it. filename is
// used in problem positions only. Every problem found — YAML syntax,
// unknown keys, wrong types, bad values — is returned in one
// *ValidationError, each with the file:line:col it is at.
func Parse(data []byte, filename string) (*Config, error) {
	c, d := decode(data, filename)
	ps := append(d.problems, c.check(d.locator(nil))...)
	if err := asError(ps); err != nil {
		return nil, err
	}
	return c, nil
}

// decoder turns a yaml.Node tree into a Config, collecting problems and the
// position of every value it sets.
type decoder struct {
	file     string
	problems []Problem
	pos      map[string]position
}

// decode parses data over the defaults. It never fails: what it cannot use
// becomes a problem, and that setting keeps its default.
func decode(data []byte, file string) (*Config, *decoder) {
	c := Default()
	d := &decoder{file: file, pos: map[string]position{}}
	root, err := parseYAML(data)
	if err != nil {
		d.problems = append(d.problems, d.syntaxProblem(err, data))
		return c, d
	}
	if root == nil {
		return c, d
	}
	d.decodeValue(root, reflect.ValueOf(c).Elem(), "")
	return c, d
}

// parseYAML returns the content of the single YAML document in data, nil for
// an empty document.
func parseYAML(data []byte) (root *yaml.Node, err error) {
	defer func() { // the YAML library must not take the process down
		if r := recover(); r != nil {
			root, err = nil, fmt.Errorf("yaml: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, nil
		}
		return nil, err
	}
	var next yaml.Node
	if err := dec.Decode(&next); err != io.EOF {
		if err != nil {
			return nil, err
		}
		return nil, &extraDocError{line: next.Line}
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		return doc.Content[0], nil
	}
	return &doc, nil
}

type extraDocError struct{ line int }

func (e *extraDocError) Error() string { return "more than one YAML document" }

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxProblem turns a YAML parser error into a problem at its line.
func (d *decoder) syntaxProblem(err error, data []byte) Problem {
	p := Problem{File: d.file, Msg: strings.TrimPrefix(err.Error(), "yaml: "), Hint: "fix the YAML syntax"}
	var extra *extraDocError
	if errors.As(err, &extra) {
		p.Line = extra.line
		p.Msg = "the file holds more than one YAML document"
		p.Hint = `remove the "---" separator and merge them into one`
		return p
	}
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		p.Msg = m[2]
	}
	if strings.Contains(p.Msg, "tab") || tabIndented(data, p.Line) {
		p.Hint = "indent with spaces, not tabs"
	}
	return p
}

// tabIndented reports whether line n (1-based) of data is indented with a tab.
func tabIndented(data []byte, n int) bool {
	if n < 1 {
		return false
	}
	lines := bytes.SplitN(data, []byte("\n"), n+1)
	if len(lines) < n {
		return false
	}
	line := lines[n-1]
	indent := line[:len(line)-len(bytes.TrimLeft(line, " \t"))]
	return bytes.ContainsRune(indent, '\t')
}

// locator finds positions of values decoded from the file; settings in set
// (path → variable) came from the environment instead.
func (d *decoder) locator(set map[string]string) locator {
	return func(paths ...string) position {
		for _, p := range paths {
			if v, ok := set[p]; ok {
				return position{File: "$" + v}
			}
			if pos, ok := d.pos[p]; ok {
				return pos
			}
		}
		return position{File: d.file}
	}
}

func (d *decoder) at(n *yaml.Node) position {
	return position{File: d.file, Line: n.Line, Col: n.Column}
}

func (d *decoder) add(n *yaml.Node, hint, format string, args ...any) {
	p := d.at(n)
	d.problems = append(d.problems, Problem{
		File: p.File, Line: p.Line, Col: p.Col,
		Msg: fmt.Sprintf(format, args...), Hint: hint,
	})
}

// label names a path in messages.
func label(path string) string {
	if path == "" {
		return "the top level"
	}
	return path
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// deref follows aliases (*name) to the node they stand for.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 16; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe says what a node is, for "must be X, not Y" messages.
func describe(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!str" {
			return strconv.Quote(n.Value)
		}
		return n.Value
	}
	return "something else"
}

// decodeValue sets v from n. A null value keeps what v holds (the default).
func (d *decoder) decodeValue(n *yaml.Node, v reflect.Value, path string) {
	n = deref(n)
	if n == nil || n.Kind == yaml.AliasNode {
		return
	}
	d.pos[path] = d.at(n)
	if isNull(n) {
		return
	}
	switch p := v.Addr().Interface().(type) {
	case *Groups:
		d.decodeGroups(n, p)
		return
	case *Templates:
		d.decodeTemplates(n, p)
		return
	case *map[string]string:
		d.decodeStringMap(n, p, path)
		return
	case *Headers:
		d.decodeStringMap(n, (*map[string]string)(p), path)
		return
	case *[]string:
		d.decodeStringList(n, p, path)
		return
	}
	switch {
	case v.Kind() == reflect.Pointer && isLeaf(v.Type().Elem()):
		// an optional setting (a template's): given, even as its zero value
		nv, before := reflect.New(v.Type().Elem()), len(d.problems)
		if d.decodeLeaf(n, nv.Elem(), path); len(d.problems) == before {
			v.Set(nv)
		}
	case isLeaf(v.Type()):
		d.decodeLeaf(n, v, path)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		d.decodeStructList(n, v, path)
	case v.Kind() == reflect.Struct:
		d.decodeStruct(n, v, path)
	default:
		d.add(n, "", "%s: cannot read a %s (internal error)", label(path), v.Type())
	}
}

func (d *decoder) decodeLeaf(n *yaml.Node, v reflect.Value, path string) {
	key := path[strings.LastIndex(path, ".")+1:]
	example := fmt.Sprintf("e.g. %s: %s", key, exampleText(v))
	if n.Kind != yaml.ScalarNode {
		d.add(n, example, "%s must be %s, not %s", path, kindWord(v.Type()), describe(n))
		return
	}
	if p, bad := setText(v, n.Value); bad {
		if p.Hint == "" {
			p.Hint = example
		}
		d.add(n, p.Hint, "%s: %s", path, p.Msg)
	}
}

// fieldsOf maps the yaml keys of struct type t to field indexes, and lists
// the keys in declaration order.
func fieldsOf(t reflect.Type) (map[string]int, []string) {
	idx := map[string]int{}
	var keys []string
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			idx[name] = i
			keys = append(keys, name)
		}
	}
	return idx, keys
}

// mappingPairs checks that n is a mapping with plain keys and returns its
// key/value pairs, reporting keys given twice (unless dupOK) and keys that
// are not scalars.
func (d *decoder) mappingPairs(n *yaml.Node, path, what string, dupOK bool) [][2]*yaml.Node {
	if n.Kind != yaml.MappingNode {
		d.add(n, what, "%s must be a mapping, not %s", label(path), describe(n))
		return nil
	}
	seen := map[string]*yaml.Node{}
	var pairs [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode {
			d.add(n.Content[i], "write keys as plain names", "%s: a key must be a name, not %s", label(path), describe(n.Content[i]))
			continue
		}
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			d.add(k, "write the keys out in full", "%s: YAML merge keys (<<) are not supported", label(path))
			continue
		}
		if first, dup := seen[k.Value]; dup && !dupOK {
			d.add(k, fmt.Sprintf("first at line %d; keep one", first.Line), "%s: key %q is given twice", label(path), k.Value)
			continue
		}
		seen[k.Value] = k
		pairs = append(pairs, [2]*yaml.Node{k, v})
	}
	return pairs
}

// unknownKey reports key k, which is not one of valid.
// v, when valid, is the struct being decoded, to tell which section below it
// holds the key.
func (d *decoder) unknownKey(k *yaml.Node, path string, valid []string, v reflect.Value) {
	hint := "valid keys: " + strings.Join(valid, ", ")
	if s, ok := suggest(k.Value, valid); ok {
		hint = fmt.Sprintf("did you mean %q?", s)
	} else if in := nestedHome(v, k.Value); in != "" {
		hint = fmt.Sprintf("%s belongs under %s", k.Value, join(path, in))
	}
	if path == "" {
		d.add(k, hint, "unknown key %q", k.Value)
		return
	}
	d.add(k, hint, "%s: unknown key %q", path, k.Value)
}

// nestedHome returns the key of the struct field of v whose own fields
// include key, or "".
func nestedHome(v reflect.Value, key string) string {
	if !v.IsValid() || v.Kind() != reflect.Struct {
		return ""
	}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name := yamlName(f)
		if name == "" || f.Type.Kind() != reflect.Struct || isLeaf(f.Type) {
			continue
		}
		if idx, _ := fieldsOf(f.Type); hasKey(idx, key) {
			return name
		}
	}
	return ""
}

func hasKey(m map[string]int, k string) bool {
	_, ok := m[k]
	return ok
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	idx, keys := fieldsOf(v.Type())
	for _, kv := range d.mappingPairs(n, path, "it holds: "+strings.Join(keys, ", "), false) {
		k, val := kv[0], kv[1]
		i, ok := idx[k.Value]
		if !ok {
			d.unknownKey(k, path, keys, v)
			continue
		}
		d.decodeValue(val, v.Field(i), join(path, k.Value))
	}
}

// decodeStringMap reads a mapping of names to scalar values (sandbox.env),
// recording the position of each key.
func (d *decoder) decodeStringMap(n *yaml.Node, out *map[string]string, path string) {
	m := map[string]string{}
	example := "{TZ: Europe/Paris}"
	if strings.HasSuffix(path, "headers") {
		example = `{Authorization: "Basic …"}`
	}
	for _, kv := range d.mappingPairs(n, path, "e.g. "+path[strings.LastIndex(path, ".")+1:]+": "+example, false) {
		k, val := kv[0], deref(kv[1])
		d.pos[join(path, k.Value)] = d.at(k)
		switch {
		case isNull(val):
			m[k.Value] = ""
		case val.Kind == yaml.ScalarNode:
			m[k.Value] = val.Value
		default:
			d.add(val, "quote the value to pass it as text", "%s.%s must be a string, not %s", path, k.Value, describe(val))
		}
	}
	if len(m) == 0 {
		m = nil
	}
	*out = m
}

// decodeStructList reads a list of mappings (gateway.models).
func (d *decoder) decodeStructList(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.add(n, "write a list: one \"- key: value\" item per entry", "%s must be a list, not %s", path, describe(n))
		return
	}
	if len(n.Content) == 0 {
		v.SetZero()
		return
	}
	l := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.decodeValue(item, l.Index(i), fmt.Sprintf("%s.%d", path, i))
	}
	v.Set(l)
}

// decodeStringList reads a list of strings; a lone string is a list of one.
func (d *decoder) decodeStringList(n *yaml.Node, out *[]string, path string) {
	key := path[strings.LastIndex(path, ".")+1:]
	if n.Kind == yaml.ScalarNode {
		*out = []string{n.Value}
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.add(n, fmt.Sprintf("e.g. %s: [thon.example.org]", key), "%s must be a list, not %s", path, describe(n))
		return
	}
	var l []string
	for i, item := range n.Content {
		item = deref(item)
		if item == nil || item.Kind != yaml.ScalarNode {
			d.add(n, fmt.Sprintf("e.g. %s: [thon.example.org]", key), "%s must be a list of strings", path)
			return
		}
		d.pos[fmt.Sprintf("%s.%d", path, i)] = d.at(item) // problems with one entry sit at it
		l = append(l, item.Value)
	}
	*out = l
}

const groupsHint = "e.g. groups: {alpha: [alice, bob]}"

// userKeys are the keys of a user written as a mapping.
var userKeys = []string{"name", "email"}

// decodeGroups reads `groups:`, keeping declaration order. A group is a list
// of users, a mapping with title: and users:, or null (an empty group). A
// user is a name, or a mapping {name, email}. Groups given twice are all
// kept, for check to report.
func (d *decoder) decodeGroups(n *yaml.Node, out *Groups) {
	var gs Groups
	for _, kv := range d.mappingPairs(n, "groups", groupsHint, true) {
		k, val := kv[0], deref(kv[1])
		gpath := fmt.Sprintf("groups[%d]", len(gs))
		d.pos[gpath] = d.at(k)
		g := Group{Name: k.Value}
		switch {
		case isNull(val):
		case val.Kind == yaml.SequenceNode:
			d.decodeUsers(val, gpath, &g)
		case val.Kind == yaml.MappingNode:
			for _, gkv := range d.mappingPairs(val, "groups."+g.Name, "", false) {
				gk, gv := gkv[0], deref(gkv[1])
				switch gk.Value {
				case "title":
					d.pos[gpath+".title"] = d.at(gk)
					switch {
					case isNull(gv):
					case gv.Kind == yaml.ScalarNode:
						g.Title = gv.Value
					default:
						d.add(gv, `e.g. title: "Team Alpha"`, "groups.%s.title must be text, not %s", g.Name, describe(gv))
					}
				case "users":
					switch {
					case isNull(gv):
					case gv.Kind == yaml.SequenceNode:
						d.decodeUsers(gv, gpath, &g)
					default:
						d.add(gv, fmt.Sprintf("e.g. users: [%s]", describeUsersHint(gv)), "groups.%s.users must be a list of user names, not %s", g.Name, describe(gv))
					}
				default:
					if !d.decodeGroupKey(gk, gv, &g, gpath) {
						d.unknownKey(gk, "groups."+g.Name, groupKeys, reflect.Value{})
					}
				}
			}
		default:
			d.add(val, fmt.Sprintf("write %s: [%s] or %s: {users: [%s]}", g.Name, describeUsersHint(val), g.Name, describeUsersHint(val)),
				"groups.%s must be a list of user names, not %s", g.Name, describe(val))
		}
		gs = append(gs, g)
	}
	if len(gs) == 0 {
		gs = nil
	}
	*out = gs
}

// describeUsersHint suggests list contents for a misplaced scalar.
func describeUsersHint(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode && n.Value != "" {
		return n.Value
	}
	return "alice, bob"
}

const userHint = "list user names, e.g. [alice, bob], or {name: alice, email: alice@example.org}"

// decodeUsers reads a group's list of users into g: names, or mappings
// {name, email}.
func (d *decoder) decodeUsers(n *yaml.Node, gpath string, g *Group) {
	users := make([]string, 0, len(n.Content))
	for _, item := range n.Content {
		u := deref(item)
		name, email, ok := "", "", true
		switch {
		case u == nil:
			ok = false
		case u.Kind == yaml.MappingNode:
			upath := fmt.Sprintf("%s.users[%d]", gpath, len(users))
			for _, ukv := range d.mappingPairs(u, "groups."+g.Name, userHint, false) {
				uk, uv := ukv[0], deref(ukv[1])
				if uk.Value != "name" && uk.Value != "email" {
					d.unknownKey(uk, "groups."+g.Name+" user", userKeys, reflect.Value{})
					continue
				}
				if !isNull(uv) && uv.Kind != yaml.ScalarNode {
					d.add(uv, userHint, "groups.%s: a user's %s must be text, not %s", g.Name, uk.Value, describe(uv))
					continue
				}
				v := ""
				if !isNull(uv) {
					v = uv.Value
				}
				if uk.Value == "name" {
					name = v
				} else {
					email = v
					d.pos[upath+".email"] = d.at(uv)
				}
			}
		case u.Kind != yaml.ScalarNode:
			ok = false
		case isNull(u):
		default:
			name = u.Value
		}
		if !ok {
			d.add(item, userHint, "groups.%s: a user must be a name, not %s", g.Name, describe(u))
			continue
		}
		users = append(users, name)
		if email != "" {
			if g.Emails == nil {
				g.Emails = map[string]string{}
			}
			g.Emails[name] = email
		}
		d.pos[fmt.Sprintf("%s.users[%d]", gpath, len(users)-1)] = d.at(item)
	}
	g.Users = users
}

// DataDir returns server.data_dir with a leading ~ expanded to the home
// directory, as an absolute path.
func (c *Config) DataDir() (string, error) {
	return absDir("server.data_dir", c.Server.DataDir)
}

// WorkspaceDir returns sandbox.workspace_dir like DataDir, or "" when it is
// not set.
func (c *Config) WorkspaceDir() (string, error) {
	if c.Sandbox.WorkspaceDir == "" {
		return "", nil
	}
	return absDir("sandbox.workspace_dir", c.Sandbox.WorkspaceDir)
}

func absDir(what, dir string) (string, error) {
	if strings.TrimSpace(dir) == "" {
		return "", fmt.Errorf("%s is empty", what)
	}
	p, err := expandHome(dir)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return abs, nil
}

// expandHome replaces a leading "~" or "~/" with the home directory.
func expandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") && !strings.HasPrefix(p, "~"+string(filepath.Separator)) {
		if strings.HasPrefix(p, "~") {
			return "", fmt.Errorf("cannot expand %q: only ~ and ~/… are understood", p)
		}
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("expand %q: %w", p, err)
	}
	return filepath.Join(home, p[1:]), nil
}
