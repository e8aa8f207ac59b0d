package daemon_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/testenv"
	"github.com/thon-dev/thon/internal/thontest"
	"github.com/thon-dev/thon/wire"
)

// The daemon's doctor, through the API, on a running event: THON's own
// ports, the certificate the front door serves, THON's llama-server with
// its slots against the participants and its memory, the gateway reached
// from a participant's sandbox, and the capacity measured on the sandboxes
// that run.
func TestDoctorOnARunningEvent(t *testing.T) {
	img := testenv.LLMImage(t)
	h := thontest.New(t, thontest.Groups(config.Group{Name: "alpha", Users: []string{"alice", "bob"}}))
	h.Stop()
	l := &h.Config.LLM
	l.Backend, l.Image, l.GPU = config.BackendLlamacpp, img, "none"
	l.ChatModel = config.LLMModel{Name: "thon-test", CtxPerUser: 4096}
	h.Start()
	ctx := context.Background()
	for _, u := range []string{"alice", "bob"} {
		if _, err := h.Client.Action(ctx, u, "start"); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 2*time.Minute, "the LLM server with 2 slots", func() bool {
		st, err := h.Client.LLMStatus(ctx)
		return err == nil && st.Reachable && st.Slots != nil && st.Slots.Total == 2
	})

	rep, err := h.Client.Doctor(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Daemon || rep.Participants != 2 {
		t.Errorf("report: daemon %v, %d participants", rep.Daemon, rep.Participants)
	}
	check := func(id string) wire.DoctorCheck {
		t.Helper()
		c, ok := rep.Check(id)
		if !ok {
			t.Fatalf("no %s check: %+v", id, rep.Checks)
		}
		return c
	}
	if c := check("ports"); c.Status != wire.DoctorOK {
		t.Errorf("ports (THON's own): %+v", c)
	}
	if c := check("certificate"); c.Status != wire.DoctorOK || !strings.Contains(c.Detail, "127.0.0.1: THON's local CA") {
		t.Errorf("certificate: %+v", c)
	}
	if c := check("llm-image"); c.Status != wire.DoctorOK || !strings.Contains(c.Detail, "llama-server") {
		t.Errorf("llm-image: %+v", c)
	}
	if c := check("llm"); c.Status != wire.DoctorOK || !strings.Contains(c.Detail, "thon-test loaded") || !strings.Contains(c.Detail, "2 parallel slots for 2 participants") {
		t.Errorf("llm: %+v", c)
	}
	if c := check("gateway"); c.Status != wire.DoctorOK || !strings.Contains(c.Detail, "from alice's sandbox") || !strings.Contains(c.Detail, "answered 401") {
		t.Errorf("gateway: %+v", c)
	}
	cp := rep.Capacity
	if !cp.Measured || cp.Source != "measured on alice, bob (running)" || cp.SandboxMemory <= 0 || cp.LLMMemory <= 0 || cp.Idle < 2 {
		t.Errorf("capacity: %+v", cp)
	}

	// A gateway sandboxes cannot reach (it listens on loopback only): fail,
	// with what to do.
	h.Stop()
	h.Config.Gateway.Listen = "127.0.0.1:" + strings.Split(h.Config.Gateway.Listen, ":")[1]
	h.Config.LLM.Enabled = false
	h.Start()
	rep, err = h.Client.Doctor(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if c := check("gateway"); c.Status != wire.DoctorFail || !strings.Contains(c.Fix, "must listen on more than 127.0.0.1") {
		t.Errorf("gateway on loopback: %+v", c)
	}
}
