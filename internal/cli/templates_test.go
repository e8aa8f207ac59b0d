package cli_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/thontest"
)

// thon template list and GET /api/v1/templates against a daemon on the
// fake engine: a group's template shows with its settings and groups, and a
// template change marks its sandboxes outdated until recreated.
func TestTemplateListAgainstADaemon(t *testing.T) {
	ctx := context.Background()
	h := thontest.New(t, thontest.Groups(
		config.Group{Name: "web", Users: []string{"alice"}},
		config.Group{Name: "plain", Users: []string{"bob"}},
	), thontest.FakeEngine())

	if r := thon(t, h, "template", "list"); r.code != 0 || !strings.Contains(r.out, "no templates") {
		t.Fatalf("template list without templates: %+v", r)
	}

	image, mem, idle := "thon-test/node:22", config.Size(256<<20), config.Duration(600e9)
	pause := config.IdlePause
	cfg := *h.Config
	cfg.Templates = config.Templates{{Name: "node", Description: "Node.js", Image: &image, Limits: config.TemplateLimits{Memory: &mem},
		Env: map[string]string{"NODE_ENV": "development"}, IdleTimeout: &idle, IdleAction: &pause}}
	cfg.Groups = config.Groups{{Name: "web", Users: []string{"alice"}, Template: "node"}, {Name: "plain", Users: []string{"bob"}}}
	if _, err := h.Client.Import(ctx, &cfg); err != nil {
		t.Fatalf("import with a template: %v", err)
	}
	for _, u := range []string{"alice", "bob"} {
		if r := thon(t, h, "instance", "start", u); r.code != 0 {
			t.Fatalf("start %s: %+v", u, r)
		}
	}
	if spec, err := h.Fake.Spec("alice"); err != nil || spec.Image != image || spec.Limits.MemoryBytes != int64(mem) {
		t.Fatalf("alice's sandbox: %s %d %v, want node's image and memory", spec.Image, spec.Limits.MemoryBytes, err)
	}

	r := thon(t, h, "template", "list")
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if r.code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "TEMPLATE") {
		t.Fatalf("template list:\n%s%s", r.out, r.stderr)
	}
	for _, want := range []string{"node", image, "0.5", "256Mi", "volume", "10m pause", "web", "limits.memory,env.NODE_ENV,idle_timeout,idle_action"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("template row %q lacks %q", lines[1], want)
		}
	}
	if fields := strings.Fields(lines[1]); len(fields) < 11 || fields[8] != "1" || fields[9] != "0" {
		t.Errorf("template row %q: want 1 participant, 0 outdated", lines[1])
	}
	if lines[2] != "groups using sandbox: alone: plain" {
		t.Errorf("last line %q, want the groups without a template", lines[2])
	}
	if r := thon(t, h, "group", "ls"); !strings.Contains(r.out, "web (template node): alice") || !strings.Contains(r.out, "plain: bob") {
		t.Errorf("group ls:\n%s", r.out)
	}

	// The API's answer, as a script reads it.
	req, _ := http.NewRequest(http.MethodGet, h.Daemon.URL+"/api/v1/templates", nil)
	req.Header.Set("Authorization", "Bearer "+h.Daemon.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var ts []map[string]any
	if resp.StatusCode != 200 || json.Unmarshal(body, &ts) != nil || len(ts) != 1 {
		t.Fatalf("GET /api/v1/templates: %d %s", resp.StatusCode, body)
	}
	if ts[0]["name"] != "node" || ts[0]["memory_bytes"] != float64(mem) || ts[0]["idle_timeout"] != "10m0s" ||
		ts[0]["max_lifetime"] != "0s" || ts[0]["env"].(map[string]any)["NODE_ENV"] != "development" {
		t.Errorf("GET /api/v1/templates: %s", body)
	}
	req, _ = http.NewRequest(http.MethodGet, h.Daemon.URL+"/api/v1/templates", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/templates without a token: %v %v", resp.Status, err)
	}

	// status names the template; a new image marks alice outdated, not bob.
	r = thon(t, h, "status", "-o", "json")
	var list client.SandboxList
	if err := json.Unmarshal([]byte(r.out), &list); err != nil {
		t.Fatal(err)
	}
	for _, s := range list.Items {
		if want := map[string]string{"alice": "node", "bob": ""}[s.User]; s.Template != want || s.Outdated {
			t.Errorf("status of %s: template %q outdated %v, want %q, current", s.User, s.Template, s.Outdated, want)
		}
	}
	newer := "thon-test/node:24"
	cfg.Templates[0].Image = &newer
	if _, err := h.Client.Import(ctx, &cfg); err != nil {
		t.Fatal(err)
	}
	r = thon(t, h, "template", "list")
	if fields := strings.Fields(strings.Split(r.out, "\n")[1]); len(fields) < 11 || fields[1] != newer || fields[9] != "1" {
		t.Errorf("template list after node's image changed:\n%s", r.out)
	}
	if !strings.Contains(r.out, "thon run --recreate") {
		t.Errorf("template list with outdated sandboxes does not say how to apply: \n%s", r.out)
	}
	r = thon(t, h, "status")
	if !strings.Contains(r.out, "running (outdated)") || strings.Count(r.out, "outdated") != 1 {
		t.Errorf("status after the template change, want alice alone outdated:\n%s", r.out)
	}
	if r := thon(t, h, "instance", "recreate", "alice"); r.code != 0 {
		t.Fatalf("recreate: %+v", r)
	}
	if spec, _ := h.Fake.Spec("alice"); spec.Image != newer {
		t.Errorf("alice recreated from %s, want %s", spec.Image, newer)
	}
	if r := thon(t, h, "template", "list", "-o", "json"); !strings.Contains(r.out, `"outdated": 0`) {
		t.Errorf("template list -o json after recreate:\n%s", r.out)
	}
}
