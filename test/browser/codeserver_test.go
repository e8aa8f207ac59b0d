package browser

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/thontest"
)

// TestCodeServerWorkbench drives the real participant image — code-server,
// VS Code in the browser — through the front door in headless Chromium, in
// each access mode (port, path, subdomain): alice's access link opens her
// workbench; a command typed into the integrated terminal runs in her
// sandbox; a file of her workspace opened with Quick Open, typed into and
// saved with Ctrl+S is on her volume afterwards; her session does not open
// bob's workbench, and bob's link opens his. Screenshots of the workbench
// (the file open, the terminal) are kept in $THON_ARTIFACTS.
//
// Opt-in, like the image build it relies on (it needs root and, the first
// time, minutes to build the image offline):
//
//	THON_E2E_IMAGE=1 THON_ARTIFACTS=/tmp/thon-artifacts go test ./test/browser -run TestCodeServerWorkbench -v
func TestCodeServerWorkbench(t *testing.T) {
	if os.Getenv("THON_E2E_IMAGE") != "1" {
		t.Skip("drives the real participant image (code-server) in Chromium; run it with " +
			"THON_E2E_IMAGE=1 go test ./test/browser -run TestCodeServerWorkbench -v " +
			"(as root, with Docker; the first run builds thon/sandbox:latest offline, which takes minutes)")
	}
	image := csImage(t)

	const group = "alpha"
	h := thontest.New(t, thontest.Groups(config.Group{Name: group, Users: []string{"alice", "bob"}}))
	h.Stop()
	h.Config.Sandbox.Image = image
	h.Config.Sandbox.Limits = config.Limits{CPU: 1, Memory: 1 << 30, Pids: 512}
	h.Config.Sandbox.StartupTimeout = config.Duration(3 * time.Minute)
	h.Start()
	t0 := time.Now()
	csStartAll(t, h)
	t.Logf("alice's and bob's code-server answer after %s", time.Since(t0).Round(100*time.Millisecond))
	dir := artifacts(t)

	// One pair of sandboxes, three front doors: the daemon restarts in each
	// mode and adopts the running sandboxes.
	for _, mode := range []string{config.ModePort, config.ModePath, config.ModeSubdomain} {
		if mode != config.ModePort {
			h.Stop()
			h.Config.Access.Mode = mode
			switch mode {
			case config.ModePath:
				h.Config.Access.DashboardPort = thontest.FreePort(t)
			case config.ModeSubdomain:
				h.Config.Access.DashboardPort = 0
				h.Config.Access.Domain = "thon.test"
			}
			h.Start()
			csStartAll(t, h)
		}
		t.Run(mode, func(t *testing.T) { csMode(t, h, mode, group, dir) })
	}
}

// csMode is one access mode's part of TestCodeServerWorkbench.
func csMode(t *testing.T, h *thontest.Harness, mode, group, dir string) {
	resolve := ""
	if mode == config.ModeSubdomain {
		resolve = "MAP *.thon.test 127.0.0.1" // what a wildcard DNS record for *.thon.test does
	}
	b := csBrowser(t, h, resolve)
	ws := "/workspace/" + group + "/alice"
	file, termFile := "hello-"+mode+".txt", "term-"+mode+".txt"
	text := "Hello from alice, typed in VS Code in " + mode + " mode"
	cat := func(name string) (string, error) {
		out, code, err := h.Docker.Exec(context.Background(), "alice", []string{"cat", ws + "/" + name})
		if err == nil && code != 0 {
			err = fmt.Errorf("cat exits %d: %s", code, out)
		}
		return out, err
	}

	// Alice's link signs the browser in and lands on her workbench.
	t0 := time.Now()
	alice, resp := b.openLink(h, "alice")
	// code-server adds the folder it opens: ?folder=/workspace/alpha/alice.
	if resp.Status != http.StatusOK || !strings.HasPrefix(b.location(), alice.URL) {
		t.Fatalf("alice's link %s: %d at %s, want 200 at %s:\n%.1000s", alice.Link, resp.Status, b.location(), alice.URL, b.text())
	}
	v := &vscode{browser: b, url: alice.URL, folder: "alice"}
	v.step("load alice's workbench", v.load)
	t.Logf("%s mode: alice's workbench at %s is up %s after her link was opened", mode, b.location(), time.Since(t0).Round(100*time.Millisecond))

	// The integrated terminal: a shell in alice's sandbox, in her workspace.
	line := fmt.Sprintf("cd %s && echo $((6*7)) > %s && : > %s", ws, termFile, file)
	v.step("run a command in the terminal", func() error {
		if err := v.newTerminal(); err != nil {
			return err
		}
		return v.run(line, func() bool { out, err := cat(termFile); return err == nil && strings.TrimSpace(out) == "42" })
	})
	t.Logf("the terminal ran %q in alice's sandbox: %s holds 42", line, termFile)

	// The file (made by the terminal): opened with Quick Open, typed into,
	// saved with Ctrl+S, on the volume.
	v.step("type into "+file+" and save it", func() error {
		if err := v.quickOpen(file); err != nil {
			return err
		}
		v.press("a", chromedp.ModifierCtrl) // start from nothing, should this be a second try
		v.press(kb.Backspace)
		v.typeText(text)
		if !v.poll(`document.querySelector(".part.editor .editor-group-container.active .view-lines").innerText.replace(/\u00a0/g, " ") === `+csJS(text), 20*time.Second) {
			return fmt.Errorf("the editor shows %q after typing %q", v.editorText(), text)
		}
		v.press("s", chromedp.ModifierCtrl)
		var got string
		var err error
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			if got, err = cat(file); err == nil && got == text {
				v.poll(`!document.querySelector(".part.editor .tab.active.dirty")`, 10*time.Second)
				return nil
			}
		}
		return fmt.Errorf("%s on alice's volume after Ctrl+S: %q (%v), want %q", file, got, err, text)
	})
	t.Logf("typed and saved in the editor: %s/%s on alice's volume holds %q", ws, file, text)
	v.step("clear the notifications", func() error { return v.command("Notifications: Clear All Notifications") })
	b.screenshot(dir, "codeserver-"+mode+"-editor.png")

	// The terminal once more, showing both files: the terminal's screenshot.
	v.step("show the files in the terminal", func() error {
		if err := v.command("Terminal: Focus Terminal"); err != nil {
			return err
		}
		if !v.poll(csTerminalFocused, 10*time.Second) { // none left after a reload
			if err := v.newTerminal(); err != nil {
				return err
			}
		}
		return v.run("cat "+file+"; echo; cat "+termFile, func() bool {
			shown := v.terminalText()
			return shown == "" || strings.Contains(shown, text) // "": xterm draws on a canvas
		})
	})
	time.Sleep(500 * time.Millisecond) // xterm draws what the shell printed
	b.screenshot(dir, "codeserver-"+mode+"-terminal.png")

	// Alice's session is no key to bob's workbench. (In a second tab of the
	// same browser, cookies and all: VS Code may hold on to the page it runs
	// in when asked to leave it.)
	other := csTab(b)
	bobURL := h.Daemon.FrontDoor.URL("bob")
	resp = other.open(bobURL)
	txt := other.text()
	if vs, _ := tryEval[bool](other, csVSCodePage); vs || !(strings.Contains(txt, "This is not your IDE") || strings.Contains(txt, "Sign in to the IDE of bob")) {
		t.Fatalf("bob's IDE %s with alice's session: %d at %s, want the not-your-IDE page or bob's sign-in page, no workbench:\n%.1000s",
			bobURL, resp.Status, other.location(), txt)
	}
	t.Logf("bob's IDE with alice's session: %d at %s: %q", resp.Status, other.location(), csFirstLine(txt))
	// Bob's link opens bob's workbench (in port mode, where alice's cookie
	// goes along to bob's port: the front door tells the two apart).
	if mode == config.ModePort {
		bob, resp := other.openLink(h, "bob")
		if resp.Status != http.StatusOK || !strings.HasPrefix(other.location(), bob.URL) {
			t.Fatalf("bob's link: %d at %s, want 200 at %s", resp.Status, other.location(), bob.URL)
		}
		vb := &vscode{browser: other, url: bob.URL, folder: "bob"}
		vb.step("load bob's workbench", vb.load)
		t.Logf("bob's link opens bob's workbench at %s", other.location())
		other.screenshot(dir, "codeserver-"+mode+"-bob.png")
	}
}

// csStartAll starts every sandbox (the API's bulk start, as `thon run`
// does) and fails unless all run.
func csStartAll(t *testing.T, h *thontest.Harness) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sum, err := h.Client.Bulk(ctx, client.BulkRequest{Action: "start"}, nil)
	if err != nil {
		t.Fatalf("start sandboxes: %v", err)
	}
	if sum.Failed > 0 {
		t.Fatalf("start sandboxes: %+v", sum)
	}
}
