package sandbox

import (
	"errors"
	"slices"
	"strings"
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

func TestSpecValidateAndCheck(t *testing.T) {
	good := Spec{User: "alice", Group: "g1", Image: "i", Port: 8080, Env: map[string]string{"TZ": "UTC", "MY_VAR": "x"}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Spec){
		"user":      func(s *Spec) { s.User = "Alice" },
		"long user": func(s *Spec) { s.User = strings.Repeat("a", 64) },
		"group":     func(s *Spec) { s.Group = "g_1" },
		"image":     func(s *Spec) { s.Image = "" },
		"port":      func(s *Spec) { s.Port = 70000 },
		"env":       func(s *Spec) { s.Env = map[string]string{"1X": "y"} },
		"file":      func(s *Spec) { s.Files = []File{{Path: "x"}} },
		"workspace": func(s *Spec) { s.Workspace = "nfs" },
		"bind":      func(s *Spec) { s.Workspace = WorkspaceBind },
	} {
		s := good
		mut(&s)
		var ue *UserError
		if err := s.Validate(); !errors.As(err, &ue) || ue.Hint == "" {
			t.Errorf("%s: Validate returned %v, want a UserError with a hint", name, err)
		}
	}
	caps := Capabilities{Workspaces: []WorkspaceMode{WorkspaceVolume, WorkspaceEphemeral}}
	if err := good.Check(caps, "Kubernetes"); err != nil {
		t.Fatal(err)
	}
	bind := good
	bind.Workspace, bind.WorkspaceDir = WorkspaceBind, "/srv"
	var ue *UserError
	if err := bind.Check(caps, "Kubernetes"); !errors.As(err, &ue) || ue.Msg != "workspace mode bind (a host directory) is not supported on Kubernetes" || ue.Hint != "use workspace mode volume or ephemeral" {
		t.Errorf("bind on Kubernetes: %v", err)
	}
	if !caps.Supports("") || caps.Supports(WorkspaceBind) {
		t.Error(`Supports: "" is volume, bind is not listed`)
	}
}

func TestEnviron(t *testing.T) {
	s := Spec{User: "alice", Group: "g1", Port: 8080, Env: map[string]string{"ZED": "z", "THON_USER": "mallory", "A": "1"}}
	var got []string
	for _, v := range s.Environ() {
		got = append(got, v.Name+"="+v.Value)
	}
	want := []string{"A=1", "PORT=8080", "THON_GROUP=g1", "THON_USER=alice", "THON_WORKSPACE=/workspace/g1/alice", "ZED=z"}
	if !slices.Equal(got, want) {
		t.Fatalf("Environ = %q, want %q", got, want)
	}
	if s.Env["THON_USER"] != "mallory" {
		t.Fatal("Environ changed the spec's Env")
	}
}
