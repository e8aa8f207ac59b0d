package auth

import "testing"

func TestScopes(t *testing.T) {
	s, err := ParseScopes(" sandboxes:read, gateway:write,sandboxes:read ")
	if err != nil || len(s) != 2 {
		t.Fatalf("%v %v", s, err)
	}
	p := Principal{Scopes: s}
	for scope, want := range map[string]bool{"sandboxes:read": true, "sandboxes:write": false, "gateway:read": true, "gateway:write": true, "system": false, "": true} {
		if p.Allows(scope) != want {
			t.Errorf("Allows(%q) = %v", scope, !want)
		}
	}
	if !(Principal{Scopes: []string{"*"}}).Allows("system") {
		t.Error("* does not allow system")
	}
	for _, bad := range []string{"", "sandboxes", "admin", "sandboxes:read,nope"} {
		if _, err := ParseScopes(bad); err == nil {
			t.Errorf("ParseScopes(%q) accepted", bad)
		}
	}
}
