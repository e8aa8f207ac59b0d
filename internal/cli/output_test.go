package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/client"
)

func TestProgressOnATerminalRedrawsOneBar(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&env{io: &IO{Err: &out, IsTTY: true}}, "Starting")
	p.update(client.Progress{User: "alice", Phase: "creating", Total: 2})
	p.update(client.Progress{User: "bob", Phase: "waiting", Total: 2})
	p.update(client.Progress{User: "alice", Phase: "done", Done: 1, Total: 2, Res: &client.Result{User: "alice", Outcome: "created", State: "running"}})
	p.update(client.Progress{User: "bob", Phase: "done", Done: 2, Total: 2, Res: &client.Result{User: "bob", Outcome: "failed", Error: "image gone"}})
	p.finish()
	s := out.String()
	if strings.Count(s, "\n") != 2 { // the failure line and the final newline
		t.Fatalf("a terminal should get one redrawn line plus failures:\n%q", s)
	}
	if !strings.Contains(s, "✗ bob: image gone") || !strings.Contains(s, "2/2 · 1 failed") || !strings.Contains(s, "\r\033[2K") {
		t.Fatalf("bar output:\n%q", s)
	}
	if !strings.Contains(s, "creating alice") || !strings.Contains(s, "waiting bob") {
		t.Fatalf("the bar should name what is in progress:\n%q", s)
	}
}

func TestProgressElsewhereWritesPlainLines(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&env{io: &IO{Err: &out}}, "Starting")
	p.update(client.Progress{User: "alice", Phase: "creating", Total: 12})
	p.update(client.Progress{User: "alice", Phase: "done", Done: 1, Total: 12, Res: &client.Result{User: "alice", Outcome: "created", State: "running", Seconds: 1.25}})
	p.update(client.Progress{User: "bob", Phase: "done", Done: 2, Total: 12, Res: &client.Result{User: "bob", Outcome: "failed", Error: "image gone"}})
	p.finish()
	want := "[ 1/12] alice                created    running 1.2s\n[ 2/12] bob                  failed     image gone\n"
	if out.String() != want {
		t.Fatalf("plain output:\n got %q\nwant %q", out.String(), want)
	}
}

func TestStatusTable(t *testing.T) {
	var out bytes.Buffer
	printStatusTable(&out, []client.Status{
		{User: "alice", Group: "alpha", State: "running", Workspace: "volume", Endpoint: "10.0.0.2:8080", Created: time.Now().Add(-90 * time.Minute), LastActive: time.Now().Add(-3*time.Minute - 10*time.Second)},
		{User: "bob", Group: "alpha", State: "running", Workspace: "volume", Outdated: true, Created: time.Now().Add(-72 * time.Hour)},
		{User: "carol", Group: "beta", State: "missing", Workspace: "volume"},
	})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "USER") {
		t.Fatalf("table:\n%s", out.String())
	}
	for i, want := range []string{"alice  alpha  running  ", "bob    alpha  running (outdated)", "carol  beta   missing"} { // URL and ENDPOINT columns follow
		if !strings.HasPrefix(lines[i+1], want) {
			t.Errorf("row %d: %q, want prefix %q", i+1, lines[i+1], want)
		}
	}
	// AGE, then LAST ACTIVE.
	if !strings.HasSuffix(lines[1], " 1h   3m ago") || !strings.HasSuffix(lines[2], " 3d   -") || !strings.HasSuffix(lines[3], " -    -") {
		t.Errorf("ages and activity:\n%s", out.String())
	}
}
