package sandbox

import (
	"slices"
	"testing"
)

func TestSpecHashStable(t *testing.T) {
	a := Spec{User: "u", Group: "g", Image: "i", Port: 1, Env: map[string]string{"A": "1", "B": "2", "C": "3"}}
	b := a
	b.Env = map[string]string{"C": "3", "B": "2", "A": "1"}
	if a.Hash() != b.Hash() {
		t.Fatal("hash depends on map order")
	}
	b.Group = "h"
	if a.Hash() == b.Hash() {
		t.Fatal("hash ignores the group")
	}
}

func TestOwnedDirsAndCheckFiles(t *testing.T) {
	for p, want := range map[string][]string{
		"/home/coder/.config/kilo/config.json": {"/home/coder", "/home/coder/.config", "/home/coder/.config/kilo"},
		"/home/coder/x":                        {"/home/coder"},
		"/home/x":                              nil,
		"/etc/thon/extensions.txt":             nil,
	} {
		if got := OwnedDirs(p); !slices.Equal(got, want) {
			t.Errorf("OwnedDirs(%q) = %q, want %q", p, got, want)
		}
	}
	for _, f := range []File{{Path: "rel/x"}, {Path: "/a/../b"}, {Path: "/"}, {Path: "/a", Mode: 0o10000}, {Path: "/a", UID: -1}} {
		if err := CheckFiles([]File{f}); err == nil {
			t.Errorf("CheckFiles(%+v) accepted", f)
		}
	}
	if err := CheckFiles([]File{{Path: "/home/coder/.continue/config.yaml", Mode: 0o600, UID: 1000, GID: 1000}}); err != nil {
		t.Error(err)
	}
}
