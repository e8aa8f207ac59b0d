package daemon_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/config"
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
