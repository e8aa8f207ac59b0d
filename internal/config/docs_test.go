package config

import (
	"os"
	"strings"
	"testing"
)

// The configuration reference must name every environment variable.
func TestReferenceListsEveryEnvVar(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range EnvVars() {
		if !strings.Contains(string(doc), "`"+v+"`") {
			t.Errorf("docs/configuration.md does not document %s", v)
		}
	}
}
