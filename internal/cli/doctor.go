package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/thon-dev/thon/internal/daemon"
	"github.com/thon-dev/thon/internal/doctor"
	"github.com/thon-dev/thon/wire"
)

func newDoctorCmd(e *env) *cobra.Command {
	var output string
	var noProbe bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Is this machine ready for the event, and how many participants does it hold?",
		Long: `Doctor checks everything the event in thon.yaml needs, each ok, warn or fail
with what to do: the container engine; the participant image and its
code-server version; the LLM server's image and model files when THON runs
it; the ports; the host names' DNS (they must reach this machine); the
certificate the front door serves (names, dates, who trusts it); the LLM
server answering, its chat model loaded and its parallel slots against the
participants; the AI gateway as a sandbox reaches it; free disk for the
workspaces; the clock kept in sync.

Then it estimates how many participants this machine holds, measured
rather than guessed: the memory and CPU of a running idle sandbox (the
engine's own figures, the median of up to three), the memory of the LLM
server THON runs, the machine's memory and CPUs. It gives two figures, each
with the resource that limits it: idle participants (what an event mostly
is) and participants all using their whole sandbox.limits at once. When no
sandbox runs it starts a throwaway one (thon-doctor) from the event's image,
lets it settle, measures it and removes it: about 20 seconds; --no-probe
skips that.

With a THON daemon answering (locally, or --server), the daemon runs the
checks with what it knows; otherwise this command does, and the checks that
need the daemon (its LLM server, the gateway) say so. The exit status is 1
when a check fails.`,
		Example: `  thon doctor
  thon doctor -o json | jq .capacity
  thon doctor --no-probe`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: use text or json", output)
			}
			rep, where, err := e.doctor(cmd.Context(), !noProbe)
			if err != nil {
				return err
			}
			if output == "json" {
				if err := writeJSON(e.stdout(), rep); err != nil {
					return err
				}
			} else {
				printDoctor(e.stdout(), rep, where)
			}
			if rep.Status == wire.DoctorFail {
				return ExitError{Code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().BoolVar(&noProbe, "no-probe", false, "never start a probe sandbox to measure (capacity is then measured only on running ones)")
	return cmd
}

// doctor runs the checks: in the daemon when one answers, else here.
func (e *env) doctor(ctx context.Context, probe bool) (wire.DoctorReport, string, error) {
	progress := func(s string) { fmt.Fprintln(e.stderr(), s) }
	if c, err := e.client(); err == nil && c.Health(ctx) == nil {
		if probe {
			progress("Asking the THON daemon at " + c.URL() + " (measuring a sandbox can take 20 s)…")
		}
		rep, err := c.Doctor(ctx, probe)
		return rep, "checked by the THON daemon at " + c.URL(), err
	} else if e.server != "" {
		return wire.DoctorReport{}, "", fmt.Errorf("no THON daemon answers at %s", e.server)
	}
	cfg, err := e.loadConfig(false)
	if err != nil {
		return wire.DoctorReport{}, "", err
	}
	instance, _ := e.io.Getenv("THON_INSTANCE")
	rt, rterr := daemon.NewRuntime(cfg.Sandbox, instance)
	if rterr != nil {
		rt = nil
	}
	where := "checked by this process (no THON daemon answers at " + cfg.Server.Listen + ")"
	if cfg.Path != "" {
		where = cfg.Path + ", " + where
	}
	rep := doctor.Run(ctx, doctor.Options{Config: cfg, Runtime: rt, RuntimeErr: rterr, Participants: -1, Probe: probe, Progress: progress})
	return rep.Wire(), where, nil
}

func printDoctor(w io.Writer, rep wire.DoctorReport, where string) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	fmt.Fprintf(bw, "THON doctor: %d participants, %s\n\n", rep.Participants, where)
	width := 0
	for _, c := range rep.Checks {
		width = max(width, len(c.Name))
	}
	var warns, fails int
	for _, c := range rep.Checks {
		switch c.Status {
		case wire.DoctorWarn:
			warns++
		case wire.DoctorFail:
			fails++
		}
		fmt.Fprintf(bw, "  %-4s  %-*s  %s\n", c.Status, width, c.Name, c.Detail)
		if c.Fix != "" {
			fmt.Fprintf(bw, "  %-4s  %-*s  fix: %s\n", "", width, "", c.Fix)
		}
	}
	cp := rep.Capacity
	fmt.Fprintln(bw)
	if !cp.Measured {
		fmt.Fprintf(bw, "Capacity: %s\n", cp.Source)
	} else {
		fmt.Fprintf(bw, "Capacity: %d idle participants (limited by %s), %d all at their full sandbox.limits at once (limited by %s); %d configured.\n",
			cp.Idle, cp.IdleLimit, cp.AtLimits, cp.AtLimitsLimit, rep.Participants)
		fmt.Fprintf(bw, "  One idle sandbox: %d MiB, %.3f CPU, %d processes; %s.\n", cp.SandboxMemory>>20, cp.SandboxCPU, cp.SandboxPids, cp.Source)
		if cp.LLMMemory > 0 {
			fmt.Fprintf(bw, "  THON's LLM server: %.1f GiB.\n", float64(cp.LLMMemory)/(1<<30))
		}
		fmt.Fprintf(bw, "  This machine: %d CPUs, %.1f GiB (%.1f GiB kept for the system and THON).\n", cp.HostCPUs, float64(cp.HostMemory)/(1<<30), float64(cp.Reserved)/(1<<30))
		for _, r := range cp.Resources {
			at := "no limit"
			if r.HoldsAt >= 0 {
				at = fmt.Sprintf("%d at limits", r.HoldsAt)
			}
			fmt.Fprintf(bw, "  %-6s %s available, %s each idle, %s each at limits: holds %d idle, %s\n", r.Name, amount(r.Name, r.Available), amount(r.Name, r.Idle), amount(r.Name, r.Limit), r.HoldsIdle, at)
		}
		for _, n := range cp.Notes {
			fmt.Fprintf(bw, "  ! %s\n", n)
		}
	}
	fmt.Fprintln(bw)
	switch {
	case fails > 0:
		fmt.Fprintf(bw, "Not ready: %d failed, %d warnings.\n", fails, warns)
	case warns > 0:
		fmt.Fprintf(bw, "Ready, with %d warnings.\n", warns)
	default:
		fmt.Fprintln(bw, "Ready.")
	}
}

func amount(resource string, v float64) string {
	switch resource {
	case "memory":
		if v >= 1<<30 {
			return fmt.Sprintf("%.1f GiB", v/(1<<30))
		}
		return fmt.Sprintf("%d MiB", int64(v)>>20)
	case "cpu":
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".") + " cores"
	}
	return fmt.Sprintf("%.0f", v)
}
