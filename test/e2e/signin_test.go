package e2e

import (
	"encoding/csv"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/testenv"
)

var listenRE = regexp.MustCompile(`(?m)^  listen: (127\.0\.0\.1:\d+)$`)

// apiURL is this event's REST API, from its thon.yaml.
func (ev *event) apiURL() string {
	ev.t.Helper()
	cfg, _ := os.ReadFile(filepath.Join(ev.dir, "thon.yaml"))
	m := listenRE.FindSubmatch(cfg)
	if m == nil {
		ev.t.Fatal("no server.listen in thon.yaml")
	}
	return "http://" + string(m[1])
}

func call(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Scoped tokens, a participant's token, invite codes and an attendee
// list, from the CLI and over the API.
func TestTokensInvitesAndImport(t *testing.T) {
	ev := newEvent(t)
	ev.writeConfig(testenv.SandboxImage(t), "", demoGroups)
	ev.ok("run")
	api := ev.apiURL()

	// A read-only token reads, cannot change, and stops at once when revoked.
	ro := strings.TrimSpace(ev.ok("token", "create", "ci", "--scope", "sandboxes:read", "--expires", "24h").stdout)
	if code, body := call(t, "GET", api+"/api/v1/sandboxes", ro, ""); code != 200 || !strings.Contains(body, "alice") {
		t.Fatalf("read with sandboxes:read: %d %s", code, body)
	}
	if code, body := call(t, "POST", api+"/api/v1/sandboxes/alice/stop", ro, ""); code != 403 || !strings.Contains(body, "lacks the sandboxes:write scope") {
		t.Fatalf("write with sandboxes:read: %d %s", code, body)
	}
	if code, _ := call(t, "GET", api+"/api/v1/users", ro, ""); code != 403 {
		t.Fatalf("users with sandboxes:read: %d", code)
	}
	if code, body := call(t, "GET", api+"/api/v1/me", ro, ""); code != 200 || !strings.Contains(body, `"name": "ci"`) {
		t.Fatalf("me: %d %s", code, body)
	}
	if r := ev.ok("token", "list"); !strings.Contains(r.stdout, "sandboxes:read") || strings.Contains(r.stdout, "ci     admin  sandboxes:read  never") {
		t.Fatalf("token list (last use recorded): %s", r)
	}
	ev.ok("token", "revoke", "ci")
	if code, body := call(t, "GET", api+"/api/v1/sandboxes", ro, ""); code != 401 || !strings.Contains(body, "revoked") {
		t.Fatalf("revoked token: %d %s", code, body)
	}
	if r := ev.thon("token", "create", "bad", "--scope", "everything"); r.code == 0 || !strings.Contains(r.stderr, `unknown scope "everything"`) {
		t.Fatalf("bad scope: %s", r)
	}

	// A participant's token: alice's own sandbox and usage, nobody else's, nothing more.
	pt := strings.TrimSpace(ev.ok("token", "create", "alice-laptop", "--user", "alice", "--scope", "*").stdout)
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/api/v1/sandboxes/alice", 200}, {"GET", "/api/v1/sandboxes/bob", 403}, {"POST", "/api/v1/sandboxes/bob/stop", 403},
		{"GET", "/api/v1/sandboxes", 403}, {"GET", "/api/v1/users", 403}, {"GET", "/api/v1/gateway/keys", 403},
		{"POST", "/api/v1/shutdown", 403}, {"GET", "/api/v1/me", 200},
	} {
		if code, body := call(t, c.method, api+c.path, pt, ""); code != c.want {
			t.Errorf("alice's token, %s %s: %d, want %d (%s)", c.method, c.path, code, c.want, body)
		}
	}
	if code, body := call(t, "GET", api+"/api/v1/gateway/usage?user=bob", pt, ""); code != 200 || strings.Contains(body, "user:bob") {
		t.Errorf("alice's token reading bob's usage: %d %s", code, body)
	}

	// An attendee export: everyone added, a link each with their e-mail.
	os.WriteFile(filepath.Join(ev.dir, "attendees.csv"), []byte("First Name,Last Name,Email,Team\nAda,Lovelace,ada@example.org,gamma\nAlan,Turing,alan@example.org,\n"), 0o644)
	r := ev.ok("users", "import", "attendees.csv", "--group", "alpha")
	rows, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if err != nil || len(rows) != 3 || rows[1][0] != "ada-lovelace" || rows[1][1] != "gamma" || rows[1][2] != "ada@example.org" ||
		!strings.Contains(rows[1][3], "/_thon/auth?token=") || rows[2][0] != "alan-turing" || rows[2][1] != "alpha" {
		t.Fatalf("import output: %v %s", err, r)
	}

	// An invite code, and its list.
	url := strings.TrimSpace(ev.ok("invite", "create", "--group", "alpha", "--uses", "30", "--expires", "48h").stdout)
	if !regexp.MustCompile(`^https://127\.0\.0\.1:\d+/join/[a-z2-7]{20}$`).MatchString(url) {
		t.Fatalf("invite URL: %q", url)
	}
	if r := ev.ok("invite", "list"); !strings.Contains(r.stdout, "0 of 30") {
		t.Fatalf("invite list: %s", r)
	}
}
