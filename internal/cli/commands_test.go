package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/cli"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/thontest"
)

type result struct {
	code        int
	out, stderr string
}

// thon runs a command in this process against h's daemon, as
// `thon --server URL --token TOKEN args…` would from a pipe.
func thon(t *testing.T, h *thontest.Harness, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	stdio := &cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: func(string) (string, bool) { return "", false }}
	code := cli.Execute(context.Background(), "test", append([]string{"--server", h.Daemon.URL, "--token", h.Daemon.Token}, args...), stdio)
	return result{code, out.String(), errb.String()}
}

// The instance, status, logs, access and events commands against a daemon
// on the fake engine: what they print, their JSON, their exit status.
func TestCommandsAgainstADaemon(t *testing.T) {
	h := thontest.New(t, thontest.Groups(config.Group{Name: "alpha", Users: []string{"alice", "bob"}}), thontest.FakeEngine())

	r := thon(t, h, "status", "-o", "json")
	var list client.SandboxList
	if r.code != 0 || json.Unmarshal([]byte(r.out), &list) != nil || len(list.Items) != 2 || list.Items[0].State != "missing" {
		t.Fatalf("status -o json: %+v", r)
	}
	if r := thon(t, h, "instance", "start", "alice"); r.code != 0 || !strings.HasPrefix(r.out, "alice: created (running) at 127.0.0.1:") {
		t.Fatalf("instance start: %+v", r)
	}
	if r := thon(t, h, "instance", "start", "alice"); r.code != 0 || !strings.HasPrefix(r.out, "alice: unchanged (running)") {
		t.Fatalf("instance start again: %+v", r)
	}
	if r := thon(t, h, "instance", "pause", "alice"); r.code != 0 || r.out != "alice: paused\n" {
		t.Fatalf("instance pause: %+v", r)
	}
	r = thon(t, h, "status")
	if r.code != 0 || !strings.Contains(r.out, "USER") || !strings.Contains(r.out, "alice  alpha  paused") || !strings.Contains(r.out, "bob    alpha  missing") {
		t.Fatalf("status:\n%s%s", r.out, r.stderr)
	}
	if r := thon(t, h, "instance", "resume", "alice"); r.code != 0 || !strings.HasPrefix(r.out, "alice: resumed (running)") {
		t.Fatalf("instance resume: %+v", r)
	}
	if r := thon(t, h, "instance", "logs", "alice"); r.code != 0 || !strings.Contains(r.out, "listening") || !strings.Contains(r.out, "user=alice group=alpha") {
		t.Fatalf("instance logs: %+v", r)
	}
	// A participant without a sandbox: exit status 1 and what to do.
	if r := thon(t, h, "instance", "stop", "bob"); r.code != 1 || !strings.Contains(r.stderr, "start it first") {
		t.Fatalf("instance stop of a missing sandbox: %+v", r)
	}
	if r := thon(t, h, "access", "alice"); r.code != 0 || !strings.Contains(r.out, "/_thon/auth?token=") {
		t.Fatalf("access: %+v", r)
	}
	if r := thon(t, h, "events"); r.code != 0 || !strings.Contains(r.out, "sandbox.pause") || !strings.Contains(r.out, "alice") {
		t.Fatalf("events: %+v", r)
	}
	if r := thon(t, h, "instance", "rm", "alice"); r.code != 0 || !strings.HasPrefix(r.out, "alice: removed") {
		t.Fatalf("instance rm: %+v", r)
	}
	if inst, err := h.Runtime.Inspect(context.Background(), "alice"); err == nil {
		t.Fatalf("alice's sandbox after rm: %+v", inst)
	}
}
