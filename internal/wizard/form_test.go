package wizard

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/testenv"
)

type result struct {
	data []byte
	err  error
}

func runOn(term *testenv.Terminal, d Detection) chan result {
	done := make(chan result, 1)
	go func() {
		data, err := Run(context.Background(), term.TTY, term.TTY, d, "event/thon.yaml")
		done <- result{data, err}
	}()
	return done
}

// The wizard on a real pseudo-terminal, answered as an organizer would:
// proposals from the detection accepted with Enter, others typed, a bad
// answer refused on the spot; the file shown (the password hidden), then
// returned once confirmed.
func TestRunOnATerminal(t *testing.T) {
	term := testenv.NewTerminal(t)
	d := Detection{ExternalIP: "192.0.2.7", GPU: "none", Lemonade: "http://127.0.0.1:13305", Docker: "24.0.9",
		Ports: []Port{{Port: 443, Why: "in use by another program"}, {Port: 80, Free: true}}}
	done := runOn(term, d)

	term.Expect(t, "what this machine has")
	term.Expect(t, "Lemonade answers at http://127.0.0.1:13305")
	term.Expect(t, "443: in use by another program")
	term.Send(t, testenv.Enter)
	term.Expect(t, "The event's name")
	term.Send(t, testenv.CtrlU, "Spring Hack", testenv.Enter)
	term.Expect(t, "Participants")
	term.Send(t, "Ada Lovelace", testenv.CtrlJ, "grace@example.org", testenv.CtrlJ, "Linus Torvalds <linus@example.org>", testenv.Enter)
	term.Expect(t, "Group of the participants the list puts in none")
	term.Send(t, testenv.Enter)
	term.Expect(t, "Split them into teams of")
	term.Send(t, "x", testenv.Enter)
	term.Expect(t, "a number of people, at least 1, or empty")
	term.Send(t, testenv.CtrlU, "2", testenv.Enter)

	term.Expect(t, "How participants reach their IDE")
	term.Send(t, testenv.Enter) // port, proposed
	term.Expect(t, "The address participants reach this machine at")
	term.Send(t, testenv.Enter) // 192.0.2.7, detected
	term.Expect(t, "Host names of this machine")
	term.Send(t, "hack.example.org", testenv.Enter)
	term.Expect(t, "Certificates")
	term.Send(t, testenv.Down, testenv.Enter)
	term.Expect(t, "E-mail address for Let's Encrypt")
	term.Send(t, "ops@example.org", testenv.Enter)
	term.Expect(t, "HTTPS port")
	term.Expect(t, "443 is in use by another program: proposing 8443")
	term.Send(t, testenv.Enter)
	term.Expect(t, "The language model of the AI assistants")
	term.Send(t, testenv.Enter) // Lemonade, found
	term.Expect(t, "Gateway: requests a minute per participant")
	term.Send(t, testenv.Enter)
	term.Expect(t, "Gateway: requests at a time per participant")
	term.Expect(t, "Proposed for 3 participants.")
	term.Send(t, testenv.Enter)
	term.Expect(t, "Gateway: tokens a minute per participant")
	term.Send(t, testenv.CtrlU, "15000", testenv.Enter)
	term.Expect(t, "The dashboard's password")
	term.Send(t, "tiny7", testenv.Enter)
	term.Expect(t, "at least 8 characters, or empty")
	term.Send(t, testenv.CtrlU, "s3cret-pass", testenv.Enter)

	term.Expect(t, "# thon.yaml of Spring Hack, written by thon init.")
	term.Expect(t, `admin_password: "(hidden)"`)
	term.Expect(t, "The thon.yaml above is valid (3 participants in 2 groups).")
	term.Expect(t, "Write event/thon.yaml?")
	term.Send(t, testenv.Enter)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if strings.Contains(term.Shown(), "s3cret-pass") || strings.Contains(term.Shown(), "tiny7") {
		t.Errorf("the password showed on the terminal")
	}
	c, err := config.Parse(r.data, "thon.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Access.HTTPSPort != 8443 || c.Access.ExternalIP != "192.0.2.7" || c.Access.ACME.Email != "ops@example.org" ||
		strings.Join(c.Access.Hostnames, ",") != "hack.example.org" || c.Access.Mode != config.ModePort {
		t.Errorf("access: %+v", c.Access)
	}
	if c.LLM.Backend != config.BackendLemonade || !c.LLM.Enabled || c.Gateway.Limits.TokensPerMinute != 15000 || c.Gateway.Limits.Concurrency != 2 {
		t.Errorf("llm %+v, gateway %+v", c.LLM, c.Gateway.Limits)
	}
	if c.Auth.AdminPassword != "s3cret-pass" {
		t.Errorf("password %q", c.Auth.AdminPassword)
	}
	if len(c.Groups) != 2 || strings.Join(c.Groups[0].Users, ",") != "ada-lovelace,grace" || c.Groups[1].Emails["linus-torvalds"] != "linus@example.org" {
		t.Errorf("groups: %+v", c.Groups)
	}
}

// Ctrl-C at any question, or "Cancel" at the end: nothing comes back.
func TestRunStopped(t *testing.T) {
	term := testenv.NewTerminal(t)
	done := runOn(term, Detection{GPU: "none"})
	term.Expect(t, "what this machine has")
	term.Send(t, testenv.Enter)
	term.Expect(t, "The event's name")
	term.Send(t, testenv.CtrlC)
	if r := <-done; !errors.Is(r.err, ErrAborted) || r.data != nil {
		t.Fatalf("Ctrl-C: %v %q", r.err, r.data)
	}

	term = testenv.NewTerminal(t)
	done = runOn(term, Detection{GPU: "none"})
	term.Expect(t, "what this machine has")
	term.Send(t, testenv.Enter)
	term.Expect(t, "The event's name")
	term.Send(t, testenv.Enter)
	term.Expect(t, "Participants")
	term.Send(t, "alice", testenv.Enter)
	for _, q := range []string{"Group of the participants", "Split them into teams of", "How participants reach", "The address participants", "Host names", "Certificates", "HTTPS port"} {
		term.Expect(t, q)
		term.Send(t, testenv.Enter)
	}
	term.Expect(t, "The language model of the AI assistants")
	term.Send(t, testenv.Down, testenv.Down, testenv.Down, testenv.Down, testenv.Enter) // none
	term.Expect(t, "The dashboard's password")
	term.Send(t, testenv.Enter)
	term.Expect(t, "Write event/thon.yaml?")
	term.Send(t, "n", testenv.Enter)
	if r := <-done; !errors.Is(r.err, ErrAborted) || r.data != nil {
		t.Fatalf("Cancel: %v %q", r.err, r.data)
	}
}
