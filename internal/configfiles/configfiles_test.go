package configfiles

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		kind, content string
		line          int
		msg           string
	}{
		{"vscode-settings", "{\n  \"a\": 1\n  \"b\": 2\n}", 3, "invalid character"},
		{"kilo-base", "[1]", 0, "must be an object"},
		{"continue-base", "name: x\nmodels:\n  - a: [\n", 3, "yaml"},
		{"extensions", "ms-python.python\nnot an id\n", 2, "neither an extension id"},
		{"groups-yaml", "alpha: [alice]\nbeta: [alice]\n", 2, `user "alice" is in two groups: already in "alpha" at line 1`},
		{"nonsense", "x", 0, "unknown kind"},
	} {
		errs := Check(tc.kind, []byte(tc.content))
		if len(errs) == 0 || errs[0].Line != tc.line || !strings.Contains(errs[0].Msg, tc.msg) {
			t.Errorf("%s: %+v, want line %d with %q", tc.kind, errs, tc.line, tc.msg)
		}
	}
	for kind, ok := range map[string]string{"vscode-settings": "{\"a\": 1, // c\n}", "continue-base": "name: x\n", "extensions": "# c\nms-python.python\n", "groups-yaml": "alpha: [alice]\n"} {
		if errs := Check(kind, []byte(ok)); len(errs) != 0 {
			t.Errorf("%s: %+v for a good file", kind, errs)
		}
	}
}
