package dashboard

import (
	"strings"
	"testing"
)

func TestCheckFile(t *testing.T) {
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
		errs := CheckFile(tc.kind, []byte(tc.content))
		if len(errs) == 0 || errs[0].Line != tc.line || !strings.Contains(errs[0].Msg, tc.msg) {
			t.Errorf("%s: %+v, want line %d with %q", tc.kind, errs, tc.line, tc.msg)
		}
	}
	for kind, ok := range map[string]string{"vscode-settings": "{\"a\": 1, // c\n}", "continue-base": "name: x\n", "extensions": "# c\nms-python.python\n", "groups-yaml": "alpha: [alice]\n"} {
		if errs := CheckFile(kind, []byte(ok)); len(errs) != 0 {
			t.Errorf("%s: %+v for a good file", kind, errs)
		}
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{"/instances?group=a": "/instances?group=a", "//evil.example": "/", "https://evil.example": "/", "/\\evil": "/", "": "/"} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBuckets(t *testing.T) {
	v := make([]int64, 1440)
	for i := range v {
		v[i] = 1
	}
	b := buckets(v, 60)
	if len(b) != 60 || b[0] != 24 || b[59] != 24 {
		t.Fatalf("buckets: %d, %v", len(b), b[:3])
	}
	if got := buckets([]int64{1, 2}, 60); len(got) != 2 {
		t.Fatalf("short input changed: %v", got)
	}
}
