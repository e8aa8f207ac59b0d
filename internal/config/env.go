package config

import (
	"fmt"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// EnvPrefix starts every environment variable that overrides thon.yaml.
const EnvPrefix = "THON_"

// envField is one scalar setting that an environment variable can override.
type envField struct {
	Var   string // THON_SANDBOX_LIMITS_MEMORY
	Path  string // sandbox.limits.memory
	Index []int  // field index path from Config
}

// envFields lists, in declaration order, every scalar field reachable
// through structs from Config, named after the yaml tags.
var envFields = sync.OnceValue(func() []envField {
	var out []envField
	var walk func(t reflect.Type, path []string, index []int)
	walk = func(t reflect.Type, path []string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := yamlName(f)
			if name == "" {
				continue
			}
			p := append(path[:len(path):len(path)], name)
			idx := append(index[:len(index):len(index)], i)
			switch {
			case isLeaf(f.Type):
				if len(path) > 0 { // only fields inside a section
					out = append(out, envField{
						Var:   EnvPrefix + strings.ToUpper(strings.Join(p, "_")),
						Path:  strings.Join(p, "."),
						Index: idx,
					})
				}
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, p, idx)
			}
		}
	}
	walk(reflect.TypeFor[Config](), nil, nil)
	return out
})

// EnvVars lists every environment variable that overrides a thon.yaml
// setting, in file order: THON_SERVER_DATA_DIR, …, THON_SANDBOX_CONCURRENCY.
func EnvVars() []string {
	fs := envFields()
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Var
	}
	return out
}

// ApplyEnv overrides settings with THON_<SECTION>_<KEY> variables found by
// lookup (os.LookupEnv when nil); a variable set to "" counts as set. It
// returns a *ValidationError naming every variable whose value does not
// parse, leaving those settings unchanged; run Validate afterwards for the
// range checks.
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) error {
	_, ps := c.applyEnv(lookup)
	return asError(ps)
}

// envAliases are shorter names some variables also answer to.
var envAliases = map[string]string{"THON_AUTH_ADMIN_PASSWORD": "THON_ADMIN_PASSWORD"}

// applyEnv applies the variables and returns which setting paths they set
// (path → variable) and the values that did not parse.
func (c *Config) applyEnv(lookup func(string) (string, bool)) (map[string]string, []Problem) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	set := map[string]string{}
	var ps []Problem
	root := reflect.ValueOf(c).Elem()
	for _, f := range envFields() {
		text, ok := lookup(f.Var)
		if alias, has := envAliases[f.Var]; has && !ok {
			text, ok = lookup(alias)
		}
		if !ok {
			continue
		}
		v := root.FieldByIndex(f.Index)
		example := f.Var + "=" + exampleText(v)
		if p, bad := setText(v, text); bad {
			p.File = "$" + f.Var
			p.Msg = f.Path + ": " + p.Msg
			if p.Hint == "" {
				p.Hint = "e.g. " + example
			}
			ps = append(ps, p)
			continue
		}
		set[f.Path] = f.Var
	}
	return set, ps
}

// yamlName is the key of a struct field in thon.yaml, "" when it has none.
func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name
}

var (
	sizeType     = reflect.TypeFor[Size]()
	durationType = reflect.TypeFor[Duration]()
	stringsType  = reflect.TypeFor[[]string]()
	headersType  = reflect.TypeFor[Headers]()
)

// isLeaf reports whether t is a scalar setting, written as one YAML scalar.
func isLeaf(t reflect.Type) bool {
	if t == sizeType || t == durationType || t == stringsType || t == headersType {
		return true
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// kindWord says what a leaf of type t holds, for messages: "a whole number".
func kindWord(t reflect.Type) string {
	switch {
	case t == sizeType:
		return "a size"
	case t == durationType:
		return "a duration"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	default:
		return "a whole number"
	}
}

// exampleText writes the current value of a leaf as it would be typed.
func exampleText(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case Size:
		return x.String()
	case Duration:
		return x.String()
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case string:
		if x == "" {
			return `""`
		}
		return x
	case []string:
		return strings.Join(x, ",")
	case Headers: // secrets: an example, never the value
		return "Authorization=Basic%20…"
	}
	return fmt.Sprint(v.Interface())
}

// setText parses text into the leaf v. On failure it returns a Problem whose
// Msg says what is wrong with text (without naming the setting), with a Hint
// when one is more precise than an example, and leaves v unchanged.
func setText(v reflect.Value, text string) (Problem, bool) {
	switch p := v.Addr().Interface().(type) {
	case *Size:
		n, err := ParseSize(text)
		if err != nil {
			return asProblem(err), true
		}
		*p = n
		return Problem{}, false
	case *Duration:
		d, err := ParseDuration(text)
		if err != nil {
			return asProblem(err), true
		}
		*p = d
		return Problem{}, false
	case *Headers: // from the environment: k=v,k2=v2
		h, err := ParseHeaders(text)
		if err != nil {
			return Problem{Msg: err.Error(), Hint: "e.g. Authorization=Basic%20cGstbGYtLi4uOnNrLWxmLS4uLg== (values percent-encoded, as OTEL_EXPORTER_OTLP_HEADERS)"}, true
		}
		*p = h
		return Problem{}, false
	case *[]string: // from the environment: comma-separated
		var l []string
		for _, f := range strings.Split(text, ",") {
			if f = strings.TrimSpace(f); f != "" {
				l = append(l, f)
			}
		}
		*p = l
		return Problem{}, false
	}
	t := strings.TrimSpace(text)
	notA := func(err error) (Problem, bool) {
		what := "is not " + kindWord(v.Type())
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			what = "is out of range"
		}
		return Problem{Msg: fmt.Sprintf("%q %s", text, what)}, true
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(text)
	case reflect.Bool:
		b, err := strconv.ParseBool(t)
		if err != nil {
			return notA(err)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(t, 10, v.Type().Bits())
		if err != nil {
			return notA(err)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(t, 10, v.Type().Bits())
		if err != nil {
			return notA(err)
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(t, v.Type().Bits())
		if err != nil {
			return notA(err)
		}
		v.SetFloat(f)
	default:
		return Problem{Msg: fmt.Sprintf("cannot set a %s from text", v.Type())}, true
	}
	return Problem{}, false
}

// asProblem returns err as a Problem, wrapping a foreign error as its Msg.
func asProblem(err error) Problem {
	if p, ok := err.(Problem); ok {
		return p
	}
	return Problem{Msg: err.Error()}
}

// ParseHeaders reads headers written as OTEL_EXPORTER_OTLP_HEADERS is:
// name=value pairs separated by commas, values percent-encoded
// ("Authorization=Basic%20abc"). An empty text is no headers.
func ParseHeaders(text string) (Headers, error) {
	h := Headers{}
	for _, kv := range strings.Split(text, ",") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not name=value", redactHeader(kv))
		}
		val, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("the value of %s is not percent-encoded text", k)
		}
		h[k] = val
	}
	if len(h) == 0 {
		return nil, nil
	}
	return h, nil
}

// redactHeader keeps a header's name and hides its value.
func redactHeader(kv string) string {
	if k, _, ok := strings.Cut(kv, "="); ok {
		return k + "=…"
	}
	if len(kv) > 12 {
		return kv[:4] + "…"
	}
	return kv
}
