package config

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// SetScalars sets settings of thon.yaml text (dotted paths such as
// llm.api_key) to string values, changing nothing else: comments, order
// and formatting stay as they are. A setting that is there gets its value
// replaced on its line; one that is not is added under its section (the
// section too, when it is missing). Values are written double-quoted.
func SetScalars(data []byte, values [][2]string) ([]byte, error) {
	for _, kv := range values {
		var err error
		if data, err = setScalar(data, strings.Split(kv[0], "."), kv[1]); err != nil {
			return nil, fmt.Errorf("set %s: %w", kv[0], err)
		}
	}
	return data, nil
}

func setScalar(data []byte, path []string, value string) ([]byte, error) {
	root, err := parseYAML(data)
	if err != nil {
		return nil, err
	}
	quoted := strconv.Quote(value)
	if root == nil || isNull(root) {
		return append(ensureNewline(data), []byte(nestedText(path, quoted, 0))...), nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("the file is not a mapping of settings")
	}
	n := root
	for i, key := range path {
		if n.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s is not a section", strings.Join(path[:i], "."))
		}
		if n.Style&yaml.FlowStyle != 0 {
			return nil, fmt.Errorf("%s is written in the {…} form: write it one setting a line to let THON edit it", strings.Join(path[:i], "."))
		}
		var val *yaml.Node
		var keyNode *yaml.Node
		for j := 0; j+1 < len(n.Content); j += 2 {
			if n.Content[j].Value == key {
				keyNode, val = n.Content[j], n.Content[j+1]
			}
		}
		if val == nil {
			return insertUnder(data, n, path[:i], path[i:], quoted)
		}
		if i == len(path)-1 {
			if val.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("%s is not a single value", strings.Join(path, "."))
			}
			if isNull(val) && val.Line == keyNode.Line && val.Value == "" {
				// "key:" with nothing after it.
				return replaceAt(data, keyNode.Line, keyNode.Column+len([]rune(keyNode.Value)), 1, ": "+quoted)
			}
			return replaceScalar(data, val, quoted)
		}
		if isNull(val) { // "llm:" with nothing under it
			return insertAfterLine(data, keyNode.Line, nestedText(path[i+1:], quoted, keyNode.Column-1+2)), nil
		}
		n = val
	}
	return nil, fmt.Errorf("nothing to set")
}

// nestedText is "a:\n  b: value\n" for path [a b], indented by indent.
func nestedText(path []string, quoted string, indent int) string {
	var b strings.Builder
	for i, k := range path {
		b.WriteString(strings.Repeat(" ", indent+2*i))
		b.WriteString(k)
		b.WriteString(":")
		if i == len(path)-1 {
			b.WriteString(" " + quoted)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// insertUnder adds rest (missing keys) under mapping n, after its last
// setting, indented like its settings.
func insertUnder(data []byte, n *yaml.Node, have, rest []string, quoted string) ([]byte, error) {
	if len(n.Content) == 0 {
		return nil, fmt.Errorf("%s is empty", strings.Join(have, "."))
	}
	indent := n.Content[0].Column - 1
	last := lastLine(n)
	return insertAfterLine(data, last, nestedText(rest, quoted, indent)), nil
}

// lastLine is the last line a node's text takes.
func lastLine(n *yaml.Node) int {
	line := n.Line
	for _, c := range n.Content {
		line = max(line, lastLine(c))
	}
	return line
}

func ensureNewline(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] != '\n' {
		return append(b, '\n')
	}
	return b
}

// lines splits data keeping the line endings.
func lines(data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			out = append(out, data)
			break
		}
		out = append(out, data[:i+1])
		data = data[i+1:]
	}
	return out
}

// insertAfterLine inserts text after line n (1-based), skipping the
// comment-only and blank lines that belong to the next setting.
func insertAfterLine(data []byte, n int, text string) []byte {
	ls := lines(ensureNewline(slicesClone(data)))
	var out bytes.Buffer
	for i, l := range ls {
		out.Write(l)
		if i == n-1 {
			out.WriteString(text)
		}
	}
	if n > len(ls) {
		out.WriteString(text)
	}
	return out.Bytes()
}

func slicesClone(b []byte) []byte { return append([]byte(nil), b...) }

// replaceScalar replaces a one-line scalar's text with quoted.
func replaceScalar(data []byte, v *yaml.Node, quoted string) ([]byte, error) {
	ls := lines(data)
	if v.Line < 1 || v.Line > len(ls) {
		return nil, fmt.Errorf("line %d is not in the file", v.Line)
	}
	line := []rune(string(ls[v.Line-1]))
	start := v.Column - 1
	if start < 0 || start > len(line) {
		return nil, fmt.Errorf("column %d is not on line %d", v.Column, v.Line)
	}
	end := -1
	switch v.Style {
	case yaml.DoubleQuotedStyle:
		for i := start + 1; i < len(line); i++ {
			if line[i] == '\\' {
				i++
				continue
			}
			if line[i] == '"' {
				end = i + 1
				break
			}
		}
	case yaml.SingleQuotedStyle:
		for i := start + 1; i < len(line); i++ {
			if line[i] == '\'' {
				if i+1 < len(line) && line[i+1] == '\'' {
					i++
					continue
				}
				end = i + 1
				break
			}
		}
	case 0:
		end = start
		for end < len(line) && line[end] != '\n' && line[end] != '\r' && !(line[end] == '#' && end > start && line[end-1] == ' ') {
			end++
		}
		for end > start && (line[end-1] == ' ' || line[end-1] == '\t') {
			end--
		}
	}
	if end < 0 {
		return nil, fmt.Errorf("line %d: the value spans lines: write it on one line to let THON edit it", v.Line)
	}
	return replaceAt(data, v.Line, v.Column, end-start, quoted)
}

// replaceAt replaces n runes from column col (1-based) of line with text.
func replaceAt(data []byte, line, col, n int, text string) ([]byte, error) {
	ls := lines(data)
	r := []rune(string(ls[line-1]))
	start := col - 1
	if start > len(r) || start+n > len(r) {
		return nil, fmt.Errorf("line %d is shorter than expected", line)
	}
	nl := string(r[:start]) + text + string(r[start+n:])
	var out bytes.Buffer
	for i, l := range ls {
		if i == line-1 {
			out.WriteString(nl)
			continue
		}
		out.Write(l)
	}
	return out.Bytes(), nil
}

// SetInFile sets settings of the thon.yaml at path (SetScalars), checks
// that the result still loads as a valid configuration with those values,
// and writes it back readable by its owner only (it then holds secrets).
func SetInFile(path string, values [][2]string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := SetScalars(data, values)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	c, err := Parse(out, path)
	if err != nil {
		return fmt.Errorf("%s would not be valid after the change (nothing was written): %w", path, err)
	}
	for _, kv := range values {
		if got := lookupString(c, kv[0]); got != kv[1] {
			return fmt.Errorf("%s: %s would read %q after the change; nothing was written (this is a bug in THON)", path, kv[0], got)
		}
	}
	tmp := path + ".thon-tmp"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// lookupString is the string setting at a dotted path of c ("" when there
// is none).
func lookupString(c *Config, path string) string {
	for _, f := range envFields() {
		if f.Path == path {
			if v := reflect.ValueOf(c).Elem().FieldByIndex(f.Index); v.Kind() == reflect.String {
				return v.String()
			}
		}
	}
	return ""
}
