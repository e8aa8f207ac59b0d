package browser

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/thontest"
)

// TestCodeServerIdle: what the real code-server's open workbench sends on
// its own — VS Code's keep-alives and acknowledgements, reconnects — is
// not its participant's activity; typing in its terminal is. With
// sandbox.idle_timeout the workbench shows THON's banner five minutes
// before the sandbox sleeps, and its button keeps the sandbox awake.
//
// THON's clock is the test's: it is moved on by hand, so the activity's
// times say whether anything was recorded while the page sat untouched.
//
//	THON_E2E_IMAGE=1 go test ./test/browser -run TestCodeServerIdle -v
func TestCodeServerIdle(t *testing.T) {
	if os.Getenv("THON_E2E_IMAGE") != "1" {
		t.Skip("drives the real participant image (code-server) in Chromium; run it with " +
			"THON_E2E_IMAGE=1 go test ./test/browser -run TestCodeServerIdle -v")
	}
	image := csImage(t)
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	h := thontest.New(t, thontest.Groups(config.Group{Name: "alpha", Users: []string{"alice"}}), thontest.Clock(clock))
	h.Stop()
	h.Config.Sandbox.Image = image
	h.Config.Sandbox.Limits = config.Limits{CPU: 1, Memory: 1 << 30, Pids: 512}
	h.Config.Sandbox.StartupTimeout = config.Duration(3 * time.Minute)
	h.Config.Sandbox.IdleTimeout = config.Duration(30 * time.Minute)
	h.Start()
	csStartAll(t, h)
	act := h.Daemon.Activity

	b := csBrowser(t, h, "")
	alice, _ := b.openLink(h, "alice")
	v := &vscode{browser: b, url: alice.URL, folder: "alice"}
	v.step("load alice's workbench", v.load)
	if act.Last("alice").IsZero() {
		t.Fatal("loading her workbench is not alice's activity")
	}

	// The workbench, open and untouched: once it has settled (extensions
	// activated, files listed), a minute of its own traffic.
	time.Sleep(15 * time.Second)
	advance(time.Minute)
	before := act.Last("alice")
	sockets := b.socketCount()
	time.Sleep(time.Minute)
	if got := act.Last("alice"); !got.Equal(before) {
		t.Fatalf("an untouched workbench counted as activity (last activity %s, want %s): %d WebSockets open", got, before, b.socketCount())
	}
	t.Logf("an untouched workbench for a minute, %d WebSocket(s) open (keep-alives every few seconds): no activity", sockets)

	// Typing in the terminal is.
	advance(time.Minute)
	v.step("type in a terminal", func() error {
		if err := v.newTerminal(); err != nil {
			return err
		}
		v.typeText("echo typing")
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if act.Last("alice").After(before) {
				return nil
			}
		}
		return fmt.Errorf("typing in the terminal did not count as activity")
	})
	// Until the last keystrokes have reached the sandbox: no activity in 3
	// seconds (the clock moved on a second each time, so any would show).
	for settled := false; !settled; {
		last := act.Last("alice")
		advance(time.Second)
		time.Sleep(3 * time.Second)
		settled = act.Last("alice").Equal(last)
	}
	typed := act.Last("alice")
	t.Logf("typing in the terminal: activity at %s", typed.Format(time.TimeOnly))

	// 26 minutes later (nothing typed since: fake time), the banner, at the
	// script's next question (it asks every 2 minutes while no warning is due).
	advance(26 * time.Minute)
	b.waitJS("the idle banner", `(document.getElementById("thon-idle-banner") || {innerText: ""}).innerText.includes("goes to sleep in 4 minutes")`, 3*time.Minute)
	if !act.Last("alice").Equal(typed) {
		t.Fatal("the banner's own question counted as activity")
	}
	v.shot("idle-banner")
	// "I'm still here" keeps it awake, and the banner goes.
	eval[bool](b, `(document.querySelector("#thon-idle-banner button").click(), true)`)
	b.waitJS("the banner gone", `!document.getElementById("thon-idle-banner")`, 30*time.Second)
	for deadline := time.Now().Add(20 * time.Second); !act.Last("alice").After(typed); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("I'm still here did not count as activity")
		}
	}
	if err := h.Daemon.Orch.SleepIdle(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st, _ := h.Client.Sandbox(t.Context(), "alice"); st.State != "running" {
		t.Fatalf("alice's sandbox after I'm still here: %s", st.State)
	}
}
