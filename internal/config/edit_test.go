package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSetScalars(t *testing.T) {
	keys := [][2]string{{"llm.api_key", "k1"}, {"llm.admin_api_key", "k2"}}
	for _, tc := range []struct{ name, in, want string }{
		{"the starter: values replaced in place, comments kept", string(Starter()), ""},
		{"plain and single-quoted values with comments",
			"llm:\n  backend: lemonade\n  api_key: old   # the regular key\n  admin_api_key: 'it''s'\n",
			"llm:\n  backend: lemonade\n  api_key: \"k1\"   # the regular key\n  admin_api_key: \"k2\"\n"},
		{"missing keys added under the section",
			"llm:\n  # the server\n  backend: lemonade\n\ngroups:\n  a: [x]\n",
			"llm:\n  # the server\n  backend: lemonade\n  api_key: \"k1\"\n  admin_api_key: \"k2\"\n\ngroups:\n  a: [x]\n"},
		{"a missing section", "groups:\n  a: [x]\n", "groups:\n  a: [x]\nllm:\n  api_key: \"k1\"\nllm:\n"},
		{"an empty file", "", "llm:\n  api_key: \"k1\"\n  admin_api_key: \"k2\"\n"},
		{"a key without a value", "llm:\n  api_key:\n  admin_api_key: \"\"\n", "llm:\n  api_key: \"k1\"\n  admin_api_key: \"k2\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := SetScalars([]byte(tc.in), keys)
			if tc.name == "a missing section" {
				// The second key lands in the section the first made.
				if err != nil || strings.Count(string(out), "llm:") != 1 || !strings.Contains(string(out), "  admin_api_key: \"k2\"") {
					t.Fatalf("%v\n%s", err, out)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != "" && string(out) != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", out, tc.want)
			}
			c, err := Parse(out, "thon.yaml")
			if err != nil || c.LLM.APIKey != "k1" || c.LLM.AdminAPIKey != "k2" {
				t.Fatalf("%v: %+v\n%s", err, c.LLM, out)
			}
			if tc.want == "" {
				// Only the two lines changed.
				a, b := strings.Split(tc.in, "\n"), strings.Split(string(out), "\n")
				diff := 0
				for i := range a {
					if a[i] != b[i] {
						diff++
					}
				}
				if len(a) != len(b) || diff != 2 {
					t.Errorf("%d lines changed (of %d → %d)", diff, len(a), len(b))
				}
			}
		})
	}
	if _, err := SetScalars([]byte("llm: {backend: lemonade}\n"), keys); err == nil || !strings.Contains(err.Error(), "{…} form") {
		t.Errorf("flow mapping: %v", err)
	}
	if _, err := SetScalars([]byte("llm:\n  api_key: |\n    multi\n"), keys); err == nil || !strings.Contains(err.Error(), "spans lines") {
		t.Errorf("block scalar: %v", err)
	}
}

func TestSetInFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "thon.yaml")
	os.WriteFile(path, Starter(), 0o644)
	if err := SetInFile(path, [][2]string{{"llm.api_key", "k1"}, {"llm.admin_api_key", "k2"}}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	c, err := Load(path)
	if err != nil || c.LLM.APIKey != "k1" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%v %+v %v", err, c.LLM, fi.Mode())
	}
	// A value that would make the file invalid is refused, the file untouched.
	before, _ := os.ReadFile(path)
	if err := SetInFile(path, [][2]string{{"llm.admin_api_key", "k1"}}); err == nil || !strings.Contains(err.Error(), "nothing was written") {
		t.Errorf("invalid result: %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("the file changed")
	}
}
