// Package jsonc reads JSON with comments and trailing commas, as VS Code's
// settings.json and many assistants' config files are written.
package jsonc

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Standardize returns data with // and /* */ comments and trailing commas
// removed, so encoding/json can read it. Line breaks are kept, so a syntax
// error's offset still points at the same line.
func Standardize(data []byte) ([]byte, error) {
	out := make([]byte, 0, len(data))
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case c == '"':
			j := i + 1
			for ; j < len(data) && data[j] != '"'; j++ {
				if data[j] == '\\' {
					j++
				}
			}
			if j >= len(data) {
				return nil, fmt.Errorf("line %d: string not closed", line(data, i))
			}
			out = append(out, data[i:j+1]...)
			i = j
		case c == '/' && i+1 < len(data) && data[i+1] == '/':
			for i < len(data) && data[i] != '\n' {
				i++
			}
			if i < len(data) {
				out = append(out, '\n')
			}
		case c == '/' && i+1 < len(data) && data[i+1] == '*':
			end := bytes.Index(data[i+2:], []byte("*/"))
			if end < 0 {
				return nil, fmt.Errorf("line %d: comment /* not closed", line(data, i))
			}
			comment := data[i : i+2+end+2]
			out = append(out, bytes.Repeat([]byte("\n"), bytes.Count(comment, []byte("\n")))...)
			i += len(comment) - 1
		case c == ']' || c == '}':
			// Drop a comma that only white space separates from the closer.
			k := len(out) - 1
			for k >= 0 && isSpace(out[k]) {
				k--
			}
			if k >= 0 && out[k] == ',' {
				out = append(out[:k], out[k+1:]...)
			}
			out = append(out, c)
		default:
			out = append(out, c)
		}
	}
	return out, nil
}

// Object parses JSONC text that must be one JSON object. Errors name the
// line they are on.
func Object(data []byte) (map[string]any, error) {
	std, err := Standardize(data)
	if err != nil {
		return nil, err
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(std))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		var se *json.SyntaxError
		if ok := asSyntax(err, &se); ok {
			return nil, fmt.Errorf("line %d: %v", line(std, int(se.Offset)-1), err)
		}
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("more than one JSON value")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the top level must be an object {…}")
	}
	return m, nil
}

func asSyntax(err error, se **json.SyntaxError) bool {
	e, ok := err.(*json.SyntaxError)
	if ok {
		*se = e
	}
	return ok
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func line(data []byte, off int) int {
	off = max(0, min(off, len(data)))
	return bytes.Count(data[:off], []byte("\n")) + 1
}
