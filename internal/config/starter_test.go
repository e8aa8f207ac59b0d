package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestStarter(t *testing.T) {
	c, err := Parse(Starter(), "thon.yaml")
	if err != nil {
		t.Fatalf("Starter() does not parse cleanly: %v", err)
	}
	def := Default()
	c.Groups, c.Path = nil, ""
	if !reflect.DeepEqual(c, def) {
		t.Errorf("Starter() settings are not the defaults:\n%+v\nwant\n%+v", c, def)
	}
	c, _ = Parse(Starter(), "thon.yaml")
	want := Groups{{Name: "alpha", Users: []string{"alice", "bob"}},
		{Name: "beta", Title: "Team Beta", Users: []string{"carol"}, Emails: map[string]string{"carol": "carol@example.org"}}}
	if !reflect.DeepEqual(c.Groups, want) {
		t.Errorf("Starter() groups = %+v, want %+v", c.Groups, want)
	}

	// Every setting is written out, with a comment on the line before it.
	_, d := decode(Starter(), "thon.yaml")
	lines := strings.Split(string(Starter()), "\n")
	paths := []string{"sandbox.env"}
	for _, f := range envFields() {
		paths = append(paths, f.Path)
	}
	for _, p := range paths {
		pos, ok := d.pos[p]
		if !ok {
			t.Errorf("Starter() does not set %s", p)
			continue
		}
		if prev := strings.TrimSpace(lines[pos.Line-2]); !strings.HasPrefix(prev, "#") {
			t.Errorf("Starter(): %s at line %d has no comment above it", p, pos.Line)
		}
	}
}
