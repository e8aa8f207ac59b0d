package sandbox

import "testing"

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
