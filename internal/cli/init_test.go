package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/testenv"
)

// initOn runs thon init with term as its terminal.
func initOn(term *testenv.Terminal, args ...string) chan int {
	code := make(chan int, 1)
	go func() {
		code <- Execute(context.Background(), "dev", append([]string{"init"}, args...), &IO{In: term.TTY, Out: term.TTY, Err: term.TTY,
			IsTTY: true, InTTY: true, Getenv: func(string) (string, bool) { return "", false }})
	}()
	return code
}

// thon init on a terminal is the wizard: answered through a real
// pseudo-terminal, it writes a valid, commented thon.yaml, readable by its
// owner only as it holds the dashboard's password.
func TestInitWizard(t *testing.T) {
	path := filepath.Join(t.TempDir(), "thon.yaml")
	term := testenv.NewTerminal(t)
	code := initOn(term, path)
	term.Expect(t, "what this machine has")
	term.Send(t, testenv.Enter)
	term.Expect(t, "The event's name")
	term.Send(t, testenv.CtrlU, "Demo Day", testenv.Enter)
	term.Expect(t, "Participants")
	term.Send(t, "alice", testenv.CtrlJ, "bob", testenv.CtrlJ, "carol@example.org", testenv.Enter)
	term.Expect(t, "Group of the participants the list puts in none")
	term.Send(t, testenv.CtrlU, "demo", testenv.Enter)
	term.Expect(t, "Split them into teams of")
	term.Send(t, testenv.Enter)
	// What this machine proposes is replaced, so the file is the same anywhere.
	term.Expect(t, "How participants reach their IDE")
	term.Send(t, testenv.Home, testenv.Enter)
	term.Expect(t, "The address participants reach this machine at")
	term.Send(t, testenv.CtrlU, "127.0.0.1", testenv.Enter)
	term.Expect(t, "Host names of this machine")
	term.Send(t, testenv.CtrlU, testenv.Enter)
	term.Expect(t, "Certificates")
	term.Send(t, testenv.Home, testenv.Enter)
	term.Expect(t, "HTTPS port")
	term.Send(t, testenv.CtrlU, "8443", testenv.Enter)
	term.Expect(t, "The language model of the AI assistants")
	term.Send(t, testenv.Home, testenv.Enter)
	term.Expect(t, "The GGUF model file")
	term.Send(t, testenv.Enter)
	for _, q := range []string{"requests a minute", "requests at a time", "tokens a minute"} {
		term.Expect(t, "Gateway: "+q)
		term.Send(t, testenv.Enter)
	}
	term.Expect(t, "The dashboard's password")
	term.Send(t, "organizer-pass", testenv.Enter)
	term.Expect(t, "The thon.yaml above is valid (3 participants in 1 groups).")
	term.Expect(t, "Write "+path+"?")
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("written before confirming: %v", err)
	}
	term.Send(t, testenv.Enter)
	if c := <-code; c != 0 {
		t.Fatalf("exit %d:\n%s", c, term.Shown())
	}
	term.Expect(t, "Wrote "+path+". Next: sudo thon setup")

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 (the password is in it)", fi.Mode().Perm())
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Access.ExternalIP != "127.0.0.1" || c.Access.HTTPSPort != 8443 || len(c.Access.Hostnames) != 0 || c.Access.ACME.Email != "" ||
		c.LLM.Backend != config.BackendLlamacpp || !c.LLM.Managed || c.LLM.ChatModel.Name != "thon-test" || c.Auth.AdminPassword != "organizer-pass" {
		t.Errorf("config: access %+v llm %+v", c.Access, c.LLM)
	}
	if len(c.Groups) != 1 || c.Groups[0].Name != "demo" || strings.Join(c.Groups[0].Users, ",") != "alice,bob,carol" || c.Groups[0].Emails["carol"] != "carol@example.org" {
		t.Errorf("groups %+v", c.Groups)
	}
	data, _ := os.ReadFile(path)
	if !bytes.Contains(data, []byte("# Where THON keeps its state")) {
		t.Errorf("the comments are gone:\n%s", data)
	}
	if code, _, stderr := runCLI(t, "--config", path, "config", "validate"); code != 0 {
		t.Errorf("thon config validate: exit %d\n%s", code, stderr)
	}
}

// Ctrl-C writes nothing; --non-interactive on a terminal, and no terminal,
// write the commented starter without a question; an existing file is
// refused before any question.
func TestInitWithoutTheWizard(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "thon.yaml")
	term := testenv.NewTerminal(t)
	code := initOn(term, path)
	term.Expect(t, "what this machine has")
	term.Send(t, testenv.Enter)
	term.Expect(t, "The event's name")
	term.Send(t, testenv.CtrlC)
	if c := <-code; c != 130 {
		t.Errorf("Ctrl-C: exit %d", c)
	}
	term.Expect(t, "Stopped: nothing written.")
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("Ctrl-C left a file: %v", err)
	}

	term = testenv.NewTerminal(t)
	if c := <-initOn(term, "--non-interactive", path); c != 0 {
		t.Fatalf("--non-interactive: exit %d\n%s", c, term.Shown())
	}
	if data, _ := os.ReadFile(path); !bytes.Equal(data, config.Starter()) {
		t.Errorf("--non-interactive did not write the starter")
	}
	if strings.Contains(term.Shown(), "what this machine has") {
		t.Errorf("--non-interactive asked:\n%s", term.Shown())
	}

	term = testenv.NewTerminal(t)
	if c := <-initOn(term, path); c != 1 {
		t.Errorf("over an existing file: exit %d", c)
	}
	term.Expect(t, path+" exists already: edit it, or pass --force to overwrite it")
	if strings.Contains(term.Shown(), "what this machine has") {
		t.Errorf("asked before refusing:\n%s", term.Shown())
	}

	other := filepath.Join(dir, "other.yaml")
	if code, _, stderr := runCLI(t, "init", other); code != 0 || !strings.Contains(stderr, "Wrote "+other) {
		t.Fatalf("without a terminal: exit %d\n%s", code, stderr)
	}
	if data, _ := os.ReadFile(other); !bytes.Equal(data, config.Starter()) {
		t.Errorf("without a terminal, not the starter")
	}
}
