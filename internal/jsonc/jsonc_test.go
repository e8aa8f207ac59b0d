package jsonc

import (
	"strings"
	"testing"
)

func TestObject(t *testing.T) {
	m, err := Object([]byte(`{
  // a comment "with quotes"
  "a": "http://x//y", /* block
  comment */ "b": [1, 2,],
  "c": {"d": "\"//not a comment"},
}`))
	if err != nil {
		t.Fatal(err)
	}
	if m["a"] != "http://x//y" || m["c"].(map[string]any)["d"] != `"//not a comment` || len(m["b"].([]any)) != 2 {
		t.Fatalf("got %#v", m)
	}
}

func TestObjectErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"{\n\"a\": 1\n\"b\": 2}", "line 3"},
		{"[1]", "must be an object"},
		{`{"a": "x}`, "string not closed"},
		{"{} /* x", "comment /* not closed"},
		{"{} {}", "more than one"},
	} {
		_, err := Object([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Object(%q) = %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}
