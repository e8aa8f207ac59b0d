package browser

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/thontest"
)

const adminPassword = "organizer pass 42"

// artifacts is where screenshots are kept: $THON_ARTIFACTS, else a
// temporary directory named in the test log.
func artifacts(t *testing.T) string {
	if d := os.Getenv("THON_ARTIFACTS"); d != "" {
		os.MkdirAll(d, 0o755)
		return d
	}
	return t.TempDir()
}

// waitJS polls a JavaScript condition in the page.
func (b *browser) waitJS(what, js string, within time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if ok, _ := tryEval[bool](b, js); ok {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("waited %s for %s (%s)\npage:\n%s\nbrowser log:\n%s", within, what, js, b.text(), b.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// step does something in the page and waits for its result; when the host's
// network changed under it (Docker adding an interface for another test's
// container aborts Chromium's requests), it does it again.
func (b *browser) step(what string, do func(), cond string, within time.Duration) {
	b.t.Helper()
	for i := 1; ; i++ {
		mark := len(b.log())
		do()
		deadline := time.Now().Add(within)
		for {
			if ok, _ := tryEval[bool](b, cond); ok {
				return
			}
			changed := networkChanged(b.log()[mark:])
			if pageText, _ := tryEval[string](b, `document.body ? document.body.innerText : ""`); networkChanged(pageText) {
				changed = true
			}
			if changed && i < attempts {
				b.t.Logf("%s: the host's network changed; again", what)
				time.Sleep(500 * time.Millisecond)
				break
			}
			if time.Now().After(deadline) {
				b.t.Fatalf("waited %s for %s (%s)\npage:\n%s\nbrowser log:\n%s", within, what, cond, b.text(), b.log())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// noErrors fails the test if the pages raised any error since the last call.
func (b *browser) noErrors(page string) {
	b.t.Helper()
	var errs []string
	for _, e := range b.errors() {
		if !networkChanged(e) { // Docker adding a network interface: not the page's doing
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		b.t.Errorf("%s: the browser reported errors:\n%s", page, strings.Join(errs, "\n"))
	}
}

// The organizer's dashboard in a real browser: sign in, see everyone, pause
// and resume a sandbox and watch its row change live, move a participant,
// rotate a key, have a broken config file refused at its line; no page
// raises an error (CSP included).
func TestDashboard(t *testing.T) {
	h := thontest.New(t, thontest.Groups(config.Group{Name: "alpha", Users: []string{"alice", "bob"}}, config.Group{Name: "beta", Users: []string{"carol"}}), thontest.FakeEngine())
	h.Stop()
	h.Config.Auth.AdminPassword = adminPassword
	h.Start()
	startAll(t, h)
	ctx := context.Background()
	dash := h.Daemon.FrontDoor.DashboardURL()
	dir := artifacts(t)
	b := newBrowser(t, h)

	// Signed out: every page leads to the sign-in form.
	b.open(dash + "instances")
	if !strings.HasPrefix(b.location(), dash+"login?next=") {
		t.Fatalf("signed out at %s", b.location())
	}
	b.noErrors("login")
	eval[bool](b, `document.getElementById("password").value = "wrong password"; document.querySelector("form").submit(); true`)
	b.waitJS("the wrong password refused", `document.body.innerText.includes("wrong password")`, 10*time.Second)
	b.errors()                          // the refusal's 401, expected
	time.Sleep(1100 * time.Millisecond) // a wrong password locks the address out for a second
	b.step("sign-in", func() {
		b.open(dash + "login?next=/instances")
		eval[bool](b, fmt.Sprintf(`document.getElementById("password").value = %q; document.querySelector("form").submit(); true`, adminPassword))
	}, `location.pathname === "/instances" && document.querySelectorAll("tr[data-user]").length === 3`, 10*time.Second)
	for _, c := range b.cookies(dash) {
		if c.Name == "__Host-thon_admin" && (!c.HTTPOnly || !c.Secure || c.SameSite != "Strict" || c.Path != "/") {
			t.Errorf("session cookie: HttpOnly %v, Secure %v, SameSite %q, Path %q; want HttpOnly, Secure, Strict, /", c.HTTPOnly, c.Secure, c.SameSite, c.Path)
		}
	}
	b.waitJS("the live stream", `document.getElementById("live").classList.contains("on")`, 10*time.Second)
	b.screenshot(dir, "dashboard-instances.png")
	b.noErrors("instances")

	// Pause alice from her row: the row turns paused, and back, with no reload.
	eval[bool](b, `window.__stay = 1; true`)
	logMark := len(b.log())
	b.step("pause alice", func() {
		eval[bool](b, `document.querySelector('button[data-action="pause"][data-user="alice"]').click(); true`)
	}, `document.querySelector('tr[data-user="alice"] [data-field="state"]').textContent === "paused"`, 30*time.Second)
	if s, _ := h.Client.Sandbox(ctx, "alice"); s.State != "paused" {
		t.Fatalf("alice after pause: %+v", s)
	}
	b.step("resume alice", func() {
		eval[bool](b, `document.querySelector('button[data-action="resume"][data-user="alice"]').click(); true`)
	}, `document.querySelector('tr[data-user="alice"] [data-field="state"]').textContent === "running"`, 30*time.Second)
	if !eval[bool](b, `window.__stay === 1`) && !networkChanged(b.log()[logMark:]) {
		t.Fatal("the page reloaded: the row should change live") // (it may after a network change: the stream then resyncs)
	}
	// A change made elsewhere (the CLI) shows up too.
	if _, err := h.Client.Action(ctx, "bob", "stop"); err != nil {
		t.Fatal(err)
	}
	b.waitJS("bob's row to show stopped", `document.querySelector('tr[data-user="bob"] [data-field="state"]')?.textContent === "stopped"`, 30*time.Second)
	b.noErrors("instances, live")

	// Overview.
	b.open(dash)
	b.waitJS("the overview", `document.querySelector('[data-count="running"]') !== null`, 10*time.Second)
	if got := eval[string](b, `document.querySelector('[data-count="running"]').textContent`); got != "2" {
		t.Errorf("overview: %s running, want 2", got)
	}
	b.screenshot(dir, "dashboard-overview.png")
	b.noErrors("overview")

	// Groups: move carol to alpha with her select.
	b.open(dash + "groups")
	eval[bool](b, `const s = document.querySelector('select[data-move="carol"]'); s.value = "alpha"; s.dispatchEvent(new Event("change", {bubbles: true})); true`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		u, err := h.Client.Users(ctx, "alpha")
		if err == nil && len(u) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("carol not moved to alpha: %+v %v\n%s", u, err, b.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.waitJS("the groups page to show carol in alpha", `!!document.querySelector('section[data-group="alpha"] tr[data-user="carol"]')`, 15*time.Second)
	b.screenshot(dir, "dashboard-groups.png")
	b.noErrors("groups")

	// Gateway: rotate alice's key; the new key is shown once.
	before, err := h.Client.GatewayKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gen := 0
	for _, k := range before {
		if k.ID == "user:alice" {
			gen = k.Generation
		}
	}
	b.open(dash + "gateway")
	eval[bool](b, `window.confirm = () => true; document.querySelector('button[data-rotate="user:alice"]').click(); true`)
	b.waitJS("the new key", `(document.getElementById("new-key") || {}).textContent?.startsWith("thon_")`, 15*time.Second)
	after, _ := h.Client.GatewayKeys(ctx)
	for _, k := range after {
		if k.ID == "user:alice" && k.Generation != gen+1 {
			t.Errorf("alice's key generation %d after the rotation, was %d", k.Generation, gen)
		}
	}
	b.screenshot(dir, "dashboard-gateway.png")
	b.noErrors("gateway")

	// Settings: a VS Code settings file with a mistake on line 3 is refused there.
	b.open(dash + "settings")
	eval[bool](b, `document.querySelector('select[name="kind"]').value = "vscode-settings";
		document.getElementById("file-content").value = '{\n  "editor.fontSize": 16\n  "editor.tabSize": 2\n}\n';
		document.querySelector("form.editor").submit(); true`)
	b.waitJS("the problem at line 3", `!!document.querySelector('#problems li[data-line="3"]')`, 10*time.Second)
	if files, err := h.Daemon.Store.ConfigFiles(ctx); err != nil || len(files) != 0 {
		t.Fatalf("a refused file was stored: %+v %v", files, err)
	}
	b.screenshot(dir, "dashboard-settings-error.png")
	for _, e := range b.errors() { // the refusal itself is answered 422: nothing else may fail
		if !strings.Contains(e, "status of 422") && !networkChanged(e) {
			t.Errorf("settings: %s", e)
		}
	}
	// Fixed, it is saved.
	eval[bool](b, `document.getElementById("file-content").value = '{\n  "editor.fontSize": 16,\n  "editor.tabSize": 2\n}\n';
		document.querySelector("form.editor").submit(); true`)
	b.waitJS("saved", `document.body.innerText.includes("vscode-settings saved.")`, 10*time.Second)
	b.noErrors("settings")

	// The LLM page (no server here: it says so) and the printable cards.
	b.open(dash + "llm")
	b.waitJS("the LLM page", `document.body.innerText.includes("down")`, 10*time.Second)
	b.screenshot(dir, "dashboard-llm.png")
	b.noErrors("llm")

	// An invite link with its QR code, to project for a group.
	b.open(dash + "groups")
	b.step("make an invite link", func() {
		eval[bool](b, `window.prompt = () => "5"; document.querySelector('button[data-invite="alpha"]').click(); true`)
	}, `(document.getElementById("invite-url") || {}).textContent?.includes("/join/") && !!document.querySelector("#dialog img")`, 15*time.Second)
	if ins, err := h.Client.Invites(ctx); err != nil || len(ins) != 1 || ins[0].MaxUses != 5 || ins[0].Group != "alpha" {
		t.Fatalf("invites after the dashboard made one: %+v %v", ins, err)
	}
	b.screenshot(dir, "dashboard-invite.png")
	b.noErrors("invite")

	// An API token, shown once, that works.
	b.open(dash + "settings")
	b.step("make a token", func() {
		eval[bool](b, `const f = document.querySelector('form[data-form="create-token"]');
			f.querySelector('input[name="name"]').value = "dash-ci";
			f.querySelector('input[value="sandboxes:read"]').checked = true;
			f.requestSubmit(); true`)
	}, `(document.getElementById("new-token") || {}).textContent?.startsWith("thon_")`, 15*time.Second)
	tok := eval[string](b, `document.getElementById("new-token").textContent`)
	if _, err := client.New(h.Daemon.URL, tok).Sandboxes(ctx, nil, nil); err != nil {
		t.Fatalf("the dashboard's token does not read sandboxes: %v", err)
	}
	if _, err := client.New(h.Daemon.URL, tok).Users(ctx); err == nil {
		t.Fatal("a sandboxes:read token listed users")
	}
	b.noErrors("token")

	// The audit log has who did what.
	evs, _ := h.Client.Events(ctx, 0, 200)
	var actions []string
	for _, e := range evs {
		if e.Actor == "admin" {
			actions = append(actions, e.Action+" "+e.Target)
		}
	}
	for _, want := range []string{"admin.login 127.0.0.1", "pause alice", "resume alice", "user.move carol", "gateway.key.rotate user:alice", "config.file.save vscode-settings", "invite.create", "token.create dash-ci"} {
		if !strings.Contains(strings.Join(actions, "\n"), want) {
			t.Errorf("the audit log lacks %q by admin:\n%s", want, strings.Join(actions, "\n"))
		}
	}

	// Sign out: the session cookie no longer works.
	b.open(dash)
	eval[bool](b, `document.querySelector("form.logout").submit(); true`)
	b.waitJS("the sign-in page", `location.pathname === "/login"`, 10*time.Second)
	b.open(dash + "groups")
	if !strings.HasPrefix(b.location(), dash+"login") {
		t.Fatalf("after sign-out: %s", b.location())
	}
}
