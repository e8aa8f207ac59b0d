package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/thon-dev/thon/internal/imagebuild"
	"github.com/thon-dev/thon/internal/thontest"
)

// What drives VS Code (code-server's workbench) in the browser for
// TestCodeServerWorkbench. The workbench reacts to real key events, so
// everything typed goes through DevTools' Input.dispatchKeyEvent, as a
// keyboard would; JavaScript only reads the page (and clicks a button of a
// dialog or of the workspace trust editor).

// csImage makes sure the real participant image exists: the offline build
// (internal/imagebuild), which returns at once when the image is up to date
// and otherwise takes minutes (it logs its steps). THON_E2E_IMAGE_TAG and
// THON_E2E_IMAGE_CACHE choose the image and the cache, as for
// internal/imagebuild's TestOfflineImageBuild.
func csImage(t *testing.T) string {
	t.Helper()
	opts := imagebuild.Options{
		Tag:      csOr(os.Getenv("THON_E2E_IMAGE_TAG"), imagebuild.DefaultTag),
		CacheDir: csOr(os.Getenv("THON_E2E_IMAGE_CACHE"), imagebuild.DefaultCacheDir),
		Offline:  true,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	t0 := time.Now()
	res, err := imagebuild.Build(ctx, opts, func(step string, done, total int) {
		t.Logf("image %6s [%d/%d] %s", time.Since(t0).Round(time.Second), done, total, step)
	})
	if err != nil {
		t.Fatalf("build the participant image %s (as `thon setup image --offline` does): %v", opts.Tag, err)
	}
	t.Logf("participant image %s: code-server %s, %.0f MB, cached %v, %s", res.Image, res.CodeServerVersion,
		float64(res.Size)/1e6, res.Cached, res.Took.Round(time.Millisecond))
	return res.Image
}

func csOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// csBrowser is newBrowser (chrome_test.go) with a window large enough for
// the workbench and, when resolve is not "", Chromium's
// --host-resolver-rules (e.g. "MAP *.thon.test 127.0.0.1", what a wildcard
// DNS record does, for subdomain mode).
func csBrowser(t *testing.T, h *thontest.Harness, resolve string) *browser {
	t.Helper()
	extra := []chromedp.ExecAllocatorOption{chromedp.WindowSize(1280, 800)}
	if resolve != "" {
		extra = append(extra, chromedp.Flag("host-resolver-rules", resolve))
	}
	return newBrowser(t, h, extra...)
}

// csTab opens another tab in b's browser (same profile, same cookies).
func csTab(b *browser) *browser {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	tab := &browser{t: b.t, ctx: ctx, byID: map[network.RequestID]*wsHandshake{}}
	if err := chromedp.Listen(ctx, tab.onEvent); err != nil {
		b.t.Fatalf("open a tab: %v", err)
	}
	return tab
}

// vscode is a tab showing a VS Code workbench: the IDE at url, with the
// folder named folder open.
type vscode struct {
	*browser
	url, folder string
	// noTrustPrompt: THON trusts the workspace (its settings), so VS Code
	// must neither ask nor open it in Restricted Mode.
	noTrustPrompt bool
}

// step runs one step in the workbench. When it fails and Chromium logged
// that the host's network changed meanwhile (Docker adding another
// container's interface aborts the page's requests and connections, see
// networkChanged), the workbench is loaded again and the step retried;
// any other failure fails the test, with a screenshot.
func (v *vscode) step(what string, do func() error) {
	v.t.Helper()
	for i := 1; ; i++ {
		mark := len(v.log())
		err := func() error {
			if i > 1 {
				v.open(v.url)
				if err := v.load(); err != nil {
					return fmt.Errorf("load the workbench again: %w", err)
				}
			}
			return do()
		}()
		if err == nil {
			return
		}
		since := v.log()[min(mark, len(v.log())):]
		if i < attempts && networkChanged(since) {
			v.t.Logf("%s: %v; the host's network changed meanwhile: loading the workbench again", what, err)
			continue
		}
		v.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		v.t.Fatalf("%s: %v\npage:\n%.2000s\nbrowser log since the step began:\n%s", what, err, v.text(), since)
	}
}

// Reading VS Code's page.
const (
	// The workbench is drawn: its editor area and status bar.
	csWorkbenchUp = `!!document.querySelector(".monaco-workbench .part.editor") && !!document.querySelector(".monaco-workbench .part.statusbar")`
	// The page is code-server's (its workbench configuration, or the workbench).
	csVSCodePage = `!!document.getElementById("vscode-workbench-web-configuration") || !!document.querySelector(".monaco-workbench")`
	// The status bar says Restricted Mode (an untrusted folder).
	csRestricted = `(document.querySelector(".part.statusbar") || {innerText: ""}).innerText.includes("Restricted Mode")`
	// A modal dialog.
	csDialog = `!!document.querySelector(".monaco-dialog-box")`
	// The quick input (command palette, Quick Open) is open.
	csQuickInput = `(() => { const w = document.querySelector(".quick-input-widget"); return !!w && getComputedStyle(w).display !== "none"; })()`
	// The focus is in a terminal.
	csTerminalFocused = `!!document.activeElement && !!document.activeElement.closest(".terminal-wrapper")`
)

// load waits for the workbench of the folder (the explorer shows it, the
// window title names it), trusts the folder, and fails when the host's
// network changed while the page loaded (then a script or a font may be
// missing).
func (v *vscode) load() error {
	start := len(v.log())
	deadline := time.Now().Add(3 * time.Minute)
	wait := func(what, cond string) error {
		for {
			if ok, _ := tryEval[bool](v.browser, cond); ok {
				return nil
			}
			if loc, ok := tryEval[string](v.browser, `location.href`); ok && strings.HasPrefix(loc, "chrome-error:") {
				txt, _ := tryEval[string](v.browser, `document.body ? document.body.innerText : ""`)
				return fmt.Errorf("the page failed to load: %s", txt)
			}
			if networkChanged(v.log()[min(start, len(v.log())):]) {
				return fmt.Errorf("the host's network changed while the workbench loaded, before %s", what)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("waited 3m for %s (%s) at %s", what, cond, v.location())
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	if err := wait("the VS Code workbench", csWorkbenchUp); err != nil {
		return err
	}
	folder := csJS(strings.ToLower(v.folder))
	if err := wait("the explorer of "+v.folder, `[...document.querySelectorAll(".part.sidebar .pane-header")].some(e =>
		(e.getAttribute("aria-label") || e.textContent || "").toLowerCase().includes(`+folder+`))`); err != nil {
		return err
	}
	// "Welcome - alice - code-server"
	if err := wait("the window title naming "+v.folder, `document.title.toLowerCase().includes(`+folder+`)`); err != nil {
		return err
	}
	if err := v.trust(); err != nil {
		return err
	}
	if networkChanged(v.log()[min(start, len(v.log())):]) {
		return errors.New("the host's network changed while the workbench loaded")
	}
	return nil
}

// trust trusts the workspace folder. A fresh browser profile opens it in
// Restricted Mode (VS Code keeps the answer in the browser), where the
// terminal does not start. VS Code asks "Do you trust the authors of the
// files in this folder?" in a dialog — a moment after the workbench is
// drawn, or only when a feature needs trust: when it has not asked after a
// few seconds, the workspace trust editor (the command palette's
// "Workspaces: Manage Workspace Trust") does the same.
func (v *vscode) trust() error {
	if v.noTrustPrompt {
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
			if ok, _ := tryEval[bool](v.browser, csDialog); ok {
				msg, _ := tryEval[string](v.browser, `document.querySelector(".monaco-dialog-box").innerText`)
				return fmt.Errorf("VS Code asks %q, though THON trusts the workspace", strings.Join(strings.Fields(msg), " "))
			}
			if restricted, _ := tryEval[bool](v.browser, csRestricted); restricted {
				return errors.New("the workbench is in Restricted Mode, though THON trusts the workspace")
			}
		}
		return nil
	}
	start := time.Now()
	deadline := start.Add(2 * time.Minute)
	answered := false
	for {
		if ok, _ := tryEval[bool](v.browser, csDialog); ok {
			msg, _ := tryEval[string](v.browser, `(document.querySelector(".monaco-dialog-box .dialog-message-text") || document.querySelector(".monaco-dialog-box")).innerText`)
			if yes, _ := tryEval[bool](v.browser, `(() => {
				const yes = [...document.querySelectorAll(".monaco-dialog-box .monaco-button")].find(e => /yes, i trust/i.test(e.textContent));
				if (yes) yes.click();
				return !!yes;
			})()`); !yes {
				return fmt.Errorf("a dialog that is not the workspace trust question: %q", msg)
			}
			v.t.Logf("VS Code asks %q: yes", strings.Join(strings.Fields(msg), " "))
			answered = true
		} else if clicked, _ := tryEval[bool](v.browser, `(() => {
			const trust = [...document.querySelectorAll(".workspace-trust-editor .monaco-button")].find(e => e.offsetParent && /^\s*trust\s*$/i.test(e.textContent));
			if (trust) trust.click();
			return !!trust;
		})()`); clicked {
			v.t.Logf("trusted the folder in the workspace trust editor")
			answered = true
		} else if restricted, ok := tryEval[bool](v.browser, csRestricted); ok && !restricted && (answered || time.Since(start) > 2*time.Second) {
			return v.closeModalEditor()
		} else if !answered && time.Since(start) > 5*time.Second {
			v.t.Logf("VS Code has not asked whether to trust the folder: opening the workspace trust editor")
			answered = true
			if err := v.command("Workspaces: Manage Workspace Trust"); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			return errors.New("the workbench stays in Restricted Mode")
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// csModalEditor: an editor open as a modal over the workbench (VS Code
// 1.139 opens the workspace trust editor, settings and the like so, with
// workbench.editor.useModal "some"); it keeps the keyboard.
const csModalEditor = `(() => {
	const m = document.querySelector(".modal-editor-part");
	if (!m) return false;
	const r = m.getBoundingClientRect(), st = getComputedStyle(m);
	return r.width > 0 && r.height > 0 && st.display !== "none" && st.visibility !== "hidden";
})()`

// closeModalEditor closes a modal editor (Escape, else its close button).
func (v *vscode) closeModalEditor() error {
	for i := 0; i < 6; i++ {
		if open, _ := tryEval[bool](v.browser, csModalEditor); !open {
			return nil
		}
		if i < 3 {
			v.press(kb.Escape)
		} else {
			tryEval[bool](v.browser, `(() => {
				const b = [...document.querySelectorAll(".modal-editor-part .action-label")].find(e => /close/i.test(e.getAttribute("aria-label") || e.title || "") || e.classList.contains("codicon-close"));
				if (b) b.click();
				return !!b;
			})()`)
		}
		time.Sleep(400 * time.Millisecond)
	}
	return errors.New("a modal editor (the workspace trust editor) stays open over the workbench")
}

// command runs a command of the command palette (F1) by its title.
func (v *vscode) command(title string) error {
	v.escape()
	if err := v.openQuickInput(kb.F1); err != nil {
		return fmt.Errorf("the command palette (F1): %w", err)
	}
	v.typeText(title)
	// The palette filters as one types, fuzzily ("Terminal: Focus Terminal"
	// also finds "Terminal: Focus Next Terminal Group", first): wait for
	// the command, move the selection to it, run it.
	rowOf := `(() => {
		const rows = [...document.querySelectorAll(".quick-input-list .monaco-list-row")];
		const label = r => ((r.querySelector(".label-name") || r).textContent || "").replace(/\u00a0/g, " ").trim().toLowerCase();
		const want = rows.find(r => label(r) === ` + csJS(strings.ToLower(title)) + `);
		const focused = rows.find(r => r.classList.contains("focused"));
		if (!want || !focused) return 9999; // not (yet) listed
		return Number(want.dataset.index) - Number(focused.dataset.index);
	})()`
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, ok := tryEval[int](v.browser, rowOf)
		switch {
		case ok && n == 0:
			v.press(kb.Enter)
			v.poll("!("+csQuickInput+")", 10*time.Second)
			return nil
		case ok && n < 0:
			v.press(kb.ArrowUp)
			continue
		case ok && n != 9999:
			v.press(kb.ArrowDown)
			continue
		}
		if time.Now().After(deadline) {
			list, _ := tryEval[string](v.browser, `(document.querySelector(".quick-input-list") || {}).innerText || ""`)
			return fmt.Errorf("the command palette does not offer %q; it lists:\n%s", title, list)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// openQuickInput presses key (F1, or Ctrl+P with mods) until the quick
// input shows.
func (v *vscode) openQuickInput(key string, mods ...chromedp.Modifier) error {
	for i := 0; i < 3; i++ {
		v.press(key, mods...)
		if v.poll(csQuickInput, 10*time.Second) {
			return nil
		}
	}
	return errors.New("it does not open")
}

// escape closes a quick input that is open.
func (v *vscode) escape() {
	for i := 0; i < 3; i++ {
		if ok, _ := tryEval[bool](v.browser, csQuickInput); !ok {
			return
		}
		v.press(kb.Escape)
		time.Sleep(300 * time.Millisecond)
	}
}

// quickOpen opens a file of the workspace by name with Quick Open (Ctrl+P)
// and waits for its editor to be the active one, with the focus.
func (v *vscode) quickOpen(name string) error {
	row := `(() => {
		const r = document.querySelector(".quick-input-list .monaco-list-row.focused");
		return !!r && (r.getAttribute("aria-label") || r.textContent || "").includes(` + csJS(name) + `);
	})()`
	// The file search may not know a file made a moment ago: again.
	for i := 1; ; i++ {
		v.escape()
		if err := v.openQuickInput("p", chromedp.ModifierCtrl); err != nil {
			return fmt.Errorf("Quick Open (Ctrl+P): %w", err)
		}
		v.typeText(name)
		if v.poll(row, 15*time.Second) {
			break
		}
		if i == attempts {
			list, _ := tryEval[string](v.browser, `(document.querySelector(".quick-input-widget") || {}).innerText || ""`)
			return fmt.Errorf("Quick Open does not find %s:\n%s", name, list)
		}
		v.t.Logf("Quick Open does not list %s yet; again", name)
	}
	v.press(kb.Enter)
	active := `(() => {
		const tab = document.querySelector(".part.editor .tab.active");
		const ed = document.activeElement && document.activeElement.closest(".part.editor .monaco-editor");
		return !!tab && (tab.getAttribute("aria-label") || tab.textContent || "").includes(` + csJS(name) + `) && !!ed;
	})()`
	if !v.poll(active, 20*time.Second) {
		el, _ := tryEval[string](v.browser, `document.activeElement ? document.activeElement.outerHTML.slice(0, 200) : ""`)
		return fmt.Errorf("%s did not open in an editor with the focus; the focus is on %s", name, el)
	}
	return nil
}

// editorText is the text the active editor shows (its visible lines).
func (v *vscode) editorText() string {
	s, _ := tryEval[string](v.browser, `(() => {
		const ed = document.querySelector(".part.editor .editor-group-container.active .monaco-editor .view-lines");
		return ed ? ed.innerText.replace(/\u00a0/g, " ") : "";
	})()`)
	return s
}

// terminalText is what the terminals show (xterm's rows as DOM text; ""
// when xterm draws on a canvas).
func (v *vscode) terminalText() string {
	s, _ := tryEval[string](v.browser, `[...document.querySelectorAll(".terminal-wrapper .xterm-rows")].map(e => e.innerText).join("\n").replace(/\u00a0/g, " ")`)
	return s
}

// newTerminal opens a terminal (Terminal: Create New Terminal) and waits
// for it to have the focus.
func (v *vscode) newTerminal() error {
	if err := v.command("Terminal: Create New Terminal"); err != nil {
		return err
	}
	if !v.poll(csTerminalFocused, time.Minute) {
		if ok, _ := tryEval[bool](v.browser, csDialog); ok {
			msg, _ := tryEval[string](v.browser, `document.querySelector(".monaco-dialog-box").innerText`)
			return fmt.Errorf("no terminal; VS Code says %q", strings.Join(strings.Fields(msg), " "))
		}
		return errors.New("no terminal has the focus after Terminal: Create New Terminal")
	}
	return nil
}

// run types line into the focused terminal and presses Enter, then waits
// until done holds; a shell not yet reading gets the line again.
func (v *vscode) run(line string, done func() bool) error {
	for i := 1; ; i++ {
		if !v.poll(csTerminalFocused, 20*time.Second) {
			el, _ := tryEval[string](v.browser, `document.activeElement ? document.activeElement.outerHTML.slice(0, 200) : ""`)
			return fmt.Errorf("the terminal does not have the focus; %s has", el)
		}
		v.typeText(line)
		v.press(kb.Enter)
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if done() {
				return nil
			}
			time.Sleep(250 * time.Millisecond)
		}
		if i == attempts {
			return fmt.Errorf("the terminal did not run %q; it shows:\n%s", line, v.terminalText())
		}
		v.t.Logf("the terminal did not run %q (yet); it shows %q; typing it again", line, v.terminalText())
		v.press("c", chromedp.ModifierCtrl) // a fresh prompt
	}
}

// shot keeps a screenshot named codeserver-<test>-<what>.png in
// $THON_ARTIFACTS (else the temporary directory).
func (v *vscode) shot(what string) {
	ctx, cancel := context.WithTimeout(v.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		return
	}
	dir := csOr(os.Getenv("THON_ARTIFACTS"), os.TempDir())
	os.MkdirAll(dir, 0o755)
	p := filepath.Join(dir, "codeserver-"+strings.NewReplacer("/", "-", " ", "-").Replace(v.t.Name())+"-"+what+".png")
	if os.WriteFile(p, png, 0o644) == nil {
		v.t.Logf("screenshot: %s", p)
	}
}

// typeText types s, one key at a time, as a keyboard does.
func (v *vscode) typeText(s string) {
	v.t.Helper()
	v.keys(fmt.Sprintf("type %q", s), csKeys(s))
}

// press presses one key (kb.Enter, "p", …) with modifiers held.
func (v *vscode) press(key string, mods ...chromedp.Modifier) {
	v.t.Helper()
	v.keys("press "+strconv.Quote(key), csKeys(key, mods...))
}

func (v *vscode) keys(what string, a chromedp.Action[chromedp.Void]) {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(v.ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, a); err != nil {
		v.t.Fatalf("%s: %v", what, err)
	}
}

// poll evaluates the JavaScript condition cond until it holds or within
// passes, and says whether it held.
func (v *vscode) poll(cond string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for {
		if ok, _ := tryEval[bool](v.browser, cond); ok {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// csKeys types s with modifiers held: per character a keyDown that carries
// the character's text, then a keyUp — what Chromium makes of a real key
// press (keydown, keypress, input, keyup in the page). chromedp.KeyEvent
// sends the text in a separate "char" event instead, which xterm.js (the
// integrated terminal) takes for a second key press: every character
// arrives twice.
func csKeys(s string, mods ...chromedp.Modifier) chromedp.Action[chromedp.Void] {
	var m int64
	for _, mod := range mods {
		m |= int64(mod)
	}
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, r := range s {
			if r == '\n' {
				r = '\r'
			}
			down := input.DispatchKeyEventParams{Type: input.DispatchKeyEventTypeKeyDown, Modifiers: m}
			if k, ok := kb.Keys[r]; ok {
				down.Key, down.Code, down.WindowsVirtualKeyCode, down.NativeVirtualKeyCode = k.Key, k.Code, k.Windows, k.Native
				if k.Shift {
					down.Modifiers |= int64(chromedp.ModifierShift)
				}
				if k.Print && m&^int64(chromedp.ModifierShift) == 0 {
					down.Text, down.UnmodifiedText = k.Text, k.Unmodified
				}
			} else {
				down.Key, down.Text, down.UnmodifiedText = string(r), string(r), string(r)
			}
			if down.Text == "" {
				down.Type = input.DispatchKeyEventTypeRawKeyDown
			}
			up := down
			up.Type, up.Text, up.UnmodifiedText = input.DispatchKeyEventTypeKeyUp, "", ""
			if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, down); err != nil {
				return err
			}
			if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, up); err != nil {
				return err
			}
		}
		return nil
	})
}

// csJS is s as a JavaScript string literal.
func csJS(s string) string {
	j, _ := json.Marshal(s)
	return string(j)
}

func csFirstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
