package browser

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/gateway/upstreamtest"
	"github.com/thon-dev/thon/internal/thontest"
)

// The gateway page shows each model's slots and queue live: a request
// starting to wait appears without a reload, and so does its leaving.
func TestDashboardModelQueuesLive(t *testing.T) {
	up := upstreamtest.New(upstreamtest.Options{})
	defer up.Close()
	h := thontest.New(t, thontest.Groups(config.Group{Name: "alpha", Users: []string{"alice"}}, config.Group{Name: "beta", Users: []string{"carol"}}), thontest.FakeEngine())
	h.Stop()
	h.Config.Auth.AdminPassword = adminPassword
	h.Config.LLM.Backend, h.Config.LLM.URL = config.BackendOpenAI, up.URL
	h.Config.Gateway.UpstreamSlots = 1
	h.Start()
	ctx := context.Background()
	dash := h.Daemon.FrontDoor.DashboardURL()
	b := newBrowser(t, h)
	b.step("sign-in", func() {
		b.open(dash + "login?next=/gateway")
		eval[bool](b, fmt.Sprintf(`document.getElementById("password").value = %q; document.querySelector("form").submit(); true`, adminPassword))
	}, `location.pathname === "/gateway"`, 10*time.Second)
	b.waitJS("the live stream", `document.getElementById("live").classList.contains("on")`, 10*time.Second)

	post := func(key string) {
		req, _ := http.NewRequest("POST", h.Daemon.GatewayURL+"/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+key)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	alice, _ := h.Daemon.Keyring.KeyFor(ctx, "alice", "alpha")
	carol, _ := h.Daemon.Keyring.KeyFor(ctx, "carol", "beta")
	up.Hold()
	defer up.Release(-1)
	go post(alice)
	if err := up.WaitInFlight(ctx, 1); err != nil {
		t.Fatal(err)
	}
	go post(carol)
	eval[bool](b, `window.__stay = 1; true`)
	row := `[...document.querySelectorAll("table[data-queues] tbody tr")].map(tr => tr.innerText.replace(/\s+/g, " ").trim())`
	b.waitJS("carol waiting, live", row+`.some(r => r.startsWith("m 1 of 1 1 ")) && `+row+`.some(r => r.startsWith("group beta 1 "))`, 15*time.Second)
	up.Release(-1)
	b.waitJS("nobody waiting, live", row+`.some(r => r.startsWith("m 0 of 1 0 "))`, 15*time.Second)
	if !eval[bool](b, `window.__stay === 1`) {
		t.Fatal("the page reloaded: the queue should change live")
	}
	b.screenshot(artifacts(t), "dashboard-gateway-queues.png")
	b.noErrors("gateway queues")
}
