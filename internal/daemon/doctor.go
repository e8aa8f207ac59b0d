package daemon

import (
	"context"
	"strconv"
	"strings"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/doctor"
	"github.com/thon-dev/thon/internal/sandbox"
)

// NewRuntime connects to the engine sandbox.runtime names, as the daemon
// does (thon doctor and thon setup use it when no daemon runs).
func NewRuntime(s config.Sandbox, instance string) (sandbox.Runtime, error) {
	return newRuntime(s, instance)
}

// Doctor runs thon doctor's checks with what the daemon knows: its engine,
// its LLM service, the addresses it serves, its participants, its CA.
// With probe, a throwaway sandbox is measured when none runs.
func (d *Daemon) Doctor(ctx context.Context, probe bool, progress func(string)) doctor.Report {
	cfg := *d.personal.cfg.Load() // the settings last applied (thon run)
	// The front door, the API and the gateway keep the settings they
	// started with.
	cfg.Access, cfg.Server, cfg.Gateway = d.startCfg.Access, d.startCfg.Server, d.startCfg.Gateway
	n := -1
	if users, err := d.Store.Users(ctx); err == nil {
		n = len(users)
	}
	a := d.addrs.Access()
	serving := []string{":" + strconv.Itoa(a.HTTPSPort), ":" + strconv.Itoa(a.Dashboard())}
	if a.HTTPPort != 0 && d.FrontDoor.HTTPOpen() {
		serving = append(serving, ":"+strconv.Itoa(a.HTTPPort))
	}
	serving = append(serving, strings.TrimPrefix(d.URL, "http://"), cfg.Server.Listen)
	if d.Gateway != nil {
		serving = append(serving, cfg.Gateway.Listen)
	}
	return doctor.Run(ctx, doctor.Options{
		Config: &cfg, Runtime: d.runtime, Participants: n, LLM: d.LLM.Status, Daemon: true,
		Serving: serving, ExternalIP: a.ExternalIP, CAPool: d.CA.CAPool(), Probe: probe, Progress: progress,
	})
}
