package daemon_test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/llm"
	"github.com/thon-dev/thon/internal/thontest"
)

// The groups page shows the templates, which group uses which, and how
// many of a template's sandboxes are outdated after it changed.
func TestDashboardShowsTemplates(t *testing.T) {
	ctx := context.Background()
	h := thontest.New(t, thontest.Groups(config.Group{Name: "web", Users: []string{"alice"}}, config.Group{Name: "plain", Users: []string{"bob"}}), thontest.FakeEngine())
	h.Stop()
	h.Config.Auth.AdminPassword = "a long admin password"
	h.Start()
	image := "thon-test/node:22"
	cfg := *h.Config
	cfg.Templates = config.Templates{{Name: "node", Description: "Node.js 22", Image: &image}}
	cfg.Groups = config.Groups{{Name: "web", Users: []string{"alice"}, Template: "node"}, {Name: "plain", Users: []string{"bob"}}}
	if _, err := h.Client.Import(ctx, &cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Client.Action(ctx, "alice", "start"); err != nil {
		t.Fatal(err)
	}
	dash := h.Daemon.FrontDoor.DashboardURL()
	c := tlsClient(h)
	resp, _ := do(t, c, "POST", dash+"login", strings.NewReader(url.Values{"password": {"a long admin password"}}.Encode()),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": strings.TrimSuffix(dash, "/")})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	row := regexp.MustCompile(`(?s)<tr data-template="node">.*?</tr>`)
	resp, page := do(t, c, "GET", dash+"groups", nil, nil)
	r := row.FindString(page)
	if resp.StatusCode != 200 || r == "" {
		t.Fatalf("groups page: %d, no row of template node\n%s", resp.StatusCode, page)
	}
	for _, want := range []string{"Node.js 22", image, "128Mi", "web", `<td data-field="outdated">0</td>`, "image"} {
		if !strings.Contains(r, want) {
			t.Errorf("template row lacks %q:\n%s", want, r)
		}
	}
	web := regexp.MustCompile(`(?s)<section class="panel group" data-group="web">.*?</h2>`).FindString(page)
	plain := regexp.MustCompile(`(?s)<section class="panel group" data-group="plain">.*?</h2>`).FindString(page)
	if !strings.Contains(web, "template node") || strings.Contains(plain, "template") {
		t.Errorf("group headings: web %q, plain %q; want web's template shown, none on plain", web, plain)
	}

	newer := "thon-test/node:24"
	cfg.Templates[0].Image = &newer
	if _, err := h.Client.Import(ctx, &cfg); err != nil {
		t.Fatal(err)
	}
	_, page = do(t, c, "GET", dash+"groups", nil, nil)
	if r := row.FindString(page); !strings.Contains(r, newer) || !strings.Contains(r, `<td data-field="outdated">1</td>`) {
		t.Errorf("after node's image changed, the row should show it and 1 outdated:\n%s", r)
	}
}

// A template's assistant base file and extensions reach its groups'
// sandboxes only; a change to them marks those sandboxes outdated.
func TestTemplateAssistantFiles(t *testing.T) {
	ctx := context.Background()
	h := thontest.New(t, thontest.Groups(config.Group{Name: "web", Users: []string{"alice"}}, config.Group{Name: "plain", Users: []string{"bob"}}), thontest.FakeEngine())
	dir := t.TempDir()
	kilo, ext := filepath.Join(dir, "kilo-node.json"), filepath.Join(dir, "extensions-node.txt")
	os.WriteFile(kilo, []byte(`{"x-thon-test": "node"}`), 0o644)
	os.WriteFile(ext, []byte("dbaeumer.vscode-eslint\n"), 0o644)
	cfg := *h.Config
	cfg.Templates = config.Templates{{Name: "node", Assistants: config.TemplateAssistants{
		Kilo: config.TemplateAssistant{BaseFile: &kilo}, ExtensionsFile: &ext}}}
	cfg.Groups = config.Groups{{Name: "web", Users: []string{"alice"}, Template: "node"}, {Name: "plain", Users: []string{"bob"}}}
	if _, err := h.Client.Import(ctx, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		if _, err := h.Client.Action(ctx, u, "start"); err != nil {
			t.Fatal(err)
		}
	}
	file := func(user, path string) string {
		spec, err := h.Fake.Spec(user)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range spec.Files {
			if f.Path == path {
				return string(f.Data)
			}
		}
		return ""
	}
	if k := file("alice", llm.KiloConfigPath); !strings.Contains(k, `"x-thon-test": "node"`) && !strings.Contains(k, `"x-thon-test":"node"`) {
		t.Errorf("alice's kilo config lacks node's base file:\n%s", k)
	}
	if k := file("bob", llm.KiloConfigPath); k == "" || strings.Contains(k, "x-thon-test") {
		t.Errorf("bob's kilo config (no template) should be assistants:'s:\n%s", k)
	}
	if e := file("alice", llm.ExtensionsPath); !strings.Contains(e, "dbaeumer.vscode-eslint") {
		t.Errorf("alice's extensions %q lack node's", e)
	}
	if e := file("bob", llm.ExtensionsPath); strings.Contains(e, "eslint") {
		t.Errorf("bob's extensions %q have node's", e)
	}
	os.WriteFile(kilo, []byte(`{"x-thon-test": "node 2"}`), 0o644)
	if _, err := h.Client.Import(ctx, &cfg); err != nil {
		t.Fatal(err)
	}
	for u, want := range map[string]bool{"alice": true, "bob": false} {
		if s, err := h.Client.Sandbox(ctx, u); err != nil || s.Outdated != want {
			t.Errorf("%s after node's base file changed: outdated %v %v, want %v", u, s.Outdated, err, want)
		}
	}
	bad := "/nonexistent/kilo.json"
	cfg.Templates[0].Assistants.Kilo.BaseFile = &bad
	if _, err := h.Client.Import(ctx, &cfg); err == nil || !strings.Contains(err.Error(), "templates.node.assistants.kilo.base_file") {
		t.Errorf("import with a missing template base file: %v", err)
	}
}
