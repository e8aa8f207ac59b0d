package wizard

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/llm/testmodel"
)

// The answers land in the commented starter: every comment kept, the
// values set, and the file reads back as those answers.
func TestRender(t *testing.T) {
	model := filepath.Join(t.TempDir(), "Qwen3-4B-Q4_K_M.gguf")
	if err := testmodel.WriteFile(model); err != nil {
		t.Fatal(err)
	}
	a := Defaults(Detection{ExternalIP: "192.0.2.7", Ports: []Port{{Port: 443, Why: "in use by another program"}, {Port: 80, Free: true}}})
	if a.HTTPSPort != 8443 || a.HTTPPort != 80 || a.LLM != LLMManaged || a.ExternalIP != "192.0.2.7" {
		t.Fatalf("defaults: %+v", a)
	}
	a.Event = "Spring Hack"
	a.Participants = "Ada Lovelace\ngrace@example.org\n\nLinus Torvalds <linus@example.org>\n"
	a.TeamSize = 2
	a.Hostnames = []string{"hack.example.org"}
	a.Cert, a.ACMEEmail = CertACME, "ops@example.org"
	a.ModelFile = model
	a.Limits = SuggestedLimits(40)
	a.AdminPassword = "s3cret-pass"
	data, c, err := Render(a)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	text := string(data)
	if !strings.HasPrefix(text, "# thon.yaml of Spring Hack, written by thon init.\n") {
		t.Errorf("header:\n%s", text[:200])
	}
	// The starter's comments are all there.
	for _, l := range strings.Split(string(config.Starter()), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "# ") && !strings.Contains(l, "thon.yaml: the configuration") && !strings.Contains(string(config.Starter()[strings.Index(string(config.Starter()), "# Participants"):]), l) {
			if !strings.Contains(text, l+"\n") {
				t.Errorf("comment lost: %q", l)
			}
		}
	}
	if c.Access.HTTPSPort != 8443 || c.Access.HTTPPort != 80 || c.Access.ExternalIP != "192.0.2.7" ||
		strings.Join(c.Access.Hostnames, ",") != "hack.example.org" || c.Access.ACME.Email != "ops@example.org" {
		t.Errorf("access: %+v", c.Access)
	}
	if c.LLM.Backend != config.BackendLlamacpp || !c.LLM.Managed || c.LLM.ChatModel.File != model || c.LLM.ChatModel.Name != "qwen3-4b-q4-k-m" || c.LLM.ChatModel.Checkpoint != "" {
		t.Errorf("llm: %+v", c.LLM)
	}
	if l := c.Gateway.Limits; l.Concurrency != 1 || l.TokensPerMinute != 8000 || l.RequestsPerMinute != 60 {
		t.Errorf("gateway limits for 40: %+v", l)
	}
	if c.Auth.AdminPassword != "s3cret-pass" {
		t.Errorf("password: %q", c.Auth.AdminPassword)
	}
	var got []string
	for _, g := range c.Groups {
		for _, u := range g.Users {
			got = append(got, g.Name+":"+u+"<"+g.Emails[u]+">")
		}
	}
	if strings.Join(got, " ") != "team-1:ada-lovelace<> team-1:grace<grace@example.org> team-2:linus-torvalds<linus@example.org>" {
		t.Errorf("groups: %s\n%s", got, text[strings.Index(text, "groups:"):])
	}

	// No LLM: no gateway either; a CSV file by its path; subdomain mode.
	csv := filepath.Join(t.TempDir(), "attendees.csv")
	os.WriteFile(csv, []byte("First Name,Last Name,Email,Team\nAda,Lovelace,ada@example.org,red\nAlan,Turing,alan@example.org,blue\n"), 0o644)
	a = Defaults(Detection{})
	a.Participants, a.LLM, a.Mode, a.Domain = csv, LLMNone, config.ModeSubdomain, "hack.example.org"
	data, c, err = Render(a)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if c.LLM.Enabled || c.Gateway.Enabled || c.Access.Mode != config.ModeSubdomain || c.Access.Domain != "hack.example.org" || len(c.Groups) != 2 || c.Groups[1].Name != "blue" {
		t.Errorf("no LLM, CSV: %+v %+v %+v", c.LLM.Enabled, c.Access, c.Groups)
	}

	// What THON would refuse is refused here, before anything is written.
	a = Defaults(Detection{})
	a.Participants = "alice"
	a.Mode = config.ModeSubdomain // without a domain
	if _, _, err := Render(a); err == nil || !strings.Contains(err.Error(), "domain") {
		t.Errorf("subdomain mode without a domain: %v", err)
	}
	a.Mode, a.Participants = config.ModePort, filepath.Join(t.TempDir(), "missing.csv")
	if _, _, err := Render(a); err == nil || !strings.Contains(err.Error(), "missing.csv") {
		t.Errorf("a missing attendee file: %v", err)
	}
	a.Participants = "Ada\nada@example.org"
	if _, _, err := Render(a); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("the same user twice: %v", err)
	}
	a.Participants = ""
	if _, _, err := Render(a); err == nil || !strings.Contains(err.Error(), "no participants") {
		t.Errorf("nobody: %v", err)
	}
}

func TestSuggestedLimits(t *testing.T) {
	for _, c := range []struct{ n, conc, tpm int }{{0, 2, 20000}, {16, 2, 20000}, {17, 1, 18000}, {40, 1, 8000}, {200, 1, 4000}} {
		if l := SuggestedLimits(c.n); l.Concurrency != c.conc || l.TokensPerMinute != c.tpm {
			t.Errorf("%d people: %+v", c.n, l)
		}
	}
}
