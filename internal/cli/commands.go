package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/daemon"
	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/internal/wizard"
)

func newInitCmd(e *env) *cobra.Command {
	var force bool
	var nonInteractive bool
	cmd := &cobra.Command{
		Use:   "init [PATH]",
		Short: "Write thon.yaml: a wizard on a terminal, else a commented starter",
		Long: `Init writes thon.yaml (default ./thon.yaml, or --config PATH, or the PATH
argument). It never overwrites an existing file unless --force.

On a terminal it is a wizard: it looks at the machine (its address and host
names, whether Docker answers, GPUs, a Lemonade or llama.cpp server already
listening, whether ports 443 and 80 are free) and asks, proposing what it
found: the event's name, the participants (typed, pasted, or an attendee
CSV's path), their groups, how participants reach their IDE, host names and
certificates (THON's local CA or Let's Encrypt), the language model, the
gateway's limits for that many people, and the dashboard's password. It
shows the resulting thon.yaml, validated, and writes it, with a comment on
every setting, once you confirm. Ctrl-C writes nothing.

With --non-interactive, or without a terminal, it asks nothing and writes
the starter: every setting at its default with a comment, plus two demo
groups.`,
		Example: `  thon init                     # the wizard
  thon init --non-interactive   # the commented starter, no questions
  thon init event/thon.yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "thon.yaml"
			if e.configPath != "" {
				path = e.configPath
			}
			if len(args) == 1 {
				path = args[0]
			}
			if !force {
				if _, err := os.Stat(path); err == nil {
					return fmt.Errorf("%s exists already: edit it, or pass --force to overwrite it", path)
				}
			}
			data, mode := config.Starter(), os.FileMode(0o644)
			interactive := !nonInteractive && e.io.InTTY && e.io.IsTTY
			if interactive {
				d := wizard.Detect(cmd.Context(), wizard.DetectOptions{})
				var err error
				data, err = wizard.Run(cmd.Context(), e.io.In, e.stdout(), d, path)
				if errors.Is(err, wizard.ErrAborted) {
					fmt.Fprintln(e.stderr(), "Stopped: nothing written.")
					return ExitError{Code: 130}
				}
				if err != nil {
					return err
				}
				if c, err := config.Parse(data, path); err == nil && c.Auth.AdminPassword != "" {
					mode = 0o600 // it holds the dashboard's password
				}
			}
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if force {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			f, err := os.OpenFile(path, flags, mode)
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("%s exists already: edit it, or pass --force to overwrite it", path)
			}
			if err != nil {
				return err
			}
			if err := f.Chmod(mode); err != nil {
				f.Close()
				return err
			}
			if _, err := f.Write(data); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			if interactive {
				fmt.Fprintf(e.stderr(), "Wrote %s. Next: sudo thon setup (what it needs on this machine), thon doctor, thon run.\n", path)
			} else {
				fmt.Fprintf(e.stderr(), "Wrote %s. Next: edit its groups, then `thon config validate` and `thon run`.\n", path)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing file")
	cmd.Flags().BoolVar(&nonInteractive, "non-interactive", false, "ask nothing: write the commented starter (also without a terminal)")
	return cmd
}

func newConfigCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check and show thon.yaml",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate",
		Short: "Report every problem in thon.yaml at once (exit 1 if any)",
		Long: `Validate reads thon.yaml, applies THON_* environment overrides and reports
every problem at once with file:line:col and a hint. It changes nothing.`,
		Example: `  thon config validate
  thon config validate --config /etc/thon/thon.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := e.loadConfig(true)
			var ve *config.ValidationError
			if errors.As(err, &ve) {
				for _, p := range ve.Problems {
					fmt.Fprintln(e.stderr(), p.String())
				}
				fmt.Fprintf(e.stderr(), "%d problem(s); nothing was changed.\n", len(ve.Problems))
				return ExitError{Code: 1}
			}
			if err != nil {
				return err
			}
			users := 0
			for _, g := range cfg.Groups {
				users += len(g.Users)
			}
			fmt.Fprintf(e.stdout(), "%s is valid: %d groups, %d participants, image %s, workspace %s.\n", cfg.Path, len(cfg.Groups), users, cfg.Sandbox.Image, cfg.Sandbox.Workspace)
			return nil
		},
	})
	var showOutput string
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration, secrets hidden",
		Long: `Show prints the configuration THON runs with: thon.yaml with every default
filled in, then THON_* environment variables and the --data-dir and --listen
flags applied over it. Every secret that is set (passwords, API keys, client
secrets, the password in a database or Redis URL, sandbox.env values whose
names say KEY, TOKEN, SECRET or PASSWORD) shows as ` + config.Redacted + `; one
that is not set stays "", so the output tells which are. It changes nothing.`,
		Example: `  thon config show
  thon config show -o json | jq .gateway.limits
  THON_SANDBOX_IMAGE=thon/sandbox:dev thon config show | grep image`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if showOutput != "yaml" && showOutput != "json" {
				return fmt.Errorf("--output %q: use yaml or json", showOutput)
			}
			cfg, err := e.loadConfig(false)
			if err != nil {
				return err
			}
			r := cfg.Redacted()
			if showOutput == "json" {
				return writeJSON(e.stdout(), r)
			}
			b, err := r.YAML()
			if err != nil {
				return err
			}
			src := "defaults only (no thon.yaml found)"
			if cfg.Path != "" {
				src = cfg.Path
			}
			fmt.Fprintf(e.stdout(), "# The effective configuration: %s, then THON_* variables and flags. Secrets hidden.\n", src)
			_, err = e.stdout().Write(b)
			return err
		},
	}
	show.Flags().StringVarP(&showOutput, "output", "o", "yaml", "output format: yaml or json")
	cmd.AddCommand(show)
	cmd.AddCommand(&cobra.Command{
		Use:     "env",
		Short:   "List the THON_* environment variables that override thon.yaml",
		Example: `  THON_SERVER_LISTEN=127.0.0.1:9000 thon run`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, v := range config.EnvVars() {
				fmt.Fprintln(e.stdout(), v)
			}
			return nil
		},
	})
	return cmd
}

func newServeCmd(e *env) *cobra.Command {
	var level string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the THON daemon in the foreground (for systemd)",
		Long: `Serve runs the daemon in the foreground: the store, the sandbox engine and
the REST API on server.listen. It adopts sandboxes that are already running.
SIGINT or SIGTERM stop it; sandboxes keep running. "thon run" starts the same
daemon in the background when none answers.`,
		Example: `  thon serve --config /etc/thon/thon.yaml
  thon serve --log-level debug`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			lv, err := parseLogLevel(level)
			if err != nil {
				return err
			}
			cfg, err := e.loadConfig(false)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(e.stderr(), &slog.HandlerOptions{Level: lv}))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			instance, _ := e.io.Getenv("THON_INSTANCE")
			d, err := daemon.Start(ctx, daemon.Options{Config: cfg, Version: e.version, Logger: log, Instance: instance})
			if err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				log.Info("stopping; sandboxes keep running")
				return d.Shutdown(context.Background())
			case <-waitChan(d):
				return d.Wait()
			}
		},
	}
	cmd.Flags().StringVar(&level, "log-level", "info", "what the daemon logs: debug, info, warn or error")
	return cmd
}

// parseLogLevel reads --log-level.
func parseLogLevel(s string) (slog.Level, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(s)); err != nil || strings.ContainsAny(s, "+-") {
		return 0, fmt.Errorf("--log-level %q: use debug, info, warn or error", s)
	}
	return lv, nil
}

func waitChan(d *daemon.Daemon) <-chan struct{} {
	ch := make(chan struct{})
	go func() { d.Wait(); close(ch) }()
	return ch
}

func newStatusCmd(e *env) *cobra.Command {
	var groups []string
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every participant's sandbox: user, group, state, workspace, URL, endpoint, age",
		Long: `Status lists every participant with their sandbox's state (running,
starting, paused, stopped, failed, missing), workspace mode, the URL they open
through the front door (sign in with "thon access USER"), the endpoint the
daemon reaches the IDE at, and its age. "(outdated)" marks a sandbox created from
other settings or another group: "thon instance recreate USER" applies the
current ones and keeps the workspace. A "certificate:" line on stderr says when
the front door cannot serve a host name the certificate access.acme gets for it.
An "engine:" line on stderr says when the container engine has not answered
since when (the states are then the last ones THON saw; -o json has it as
engine_error and engine_down_since); THON follows the engine again by
itself once it answers.

-o wide adds what each running sandbox uses, sampled from the engine every
15 seconds (Docker's stats; on Kubernetes the metrics API, "-" without
metrics-server): CPU in cores, memory (of its limit), the workspace's disk
use (measured every minute), and the hours it has run over the event; a
TOTAL line sums them beside what the machine has. -o json has the same
fields per participant (cpu, memory, memory_limit, disk, running_seconds)
and the total under "resources".`,
		Example: `  thon status
  thon status -o wide
  thon status --group alpha -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			list, err := c.Sandboxes(cmd.Context(), groups, nil)
			if err != nil {
				return err
			}
			switch output {
			case "json":
				return writeJSON(e.stdout(), list)
			case "table", "wide":
			default:
				return fmt.Errorf("-o %s: use table, wide or json", output)
			}
			if len(list.Items) == 0 {
				fmt.Fprintln(e.stderr(), "No participants yet: list them under groups: in thon.yaml and run `thon run`.")
			} else if output == "wide" {
				printStatus(e.stdout(), list.Items, &list.Resources)
			} else {
				printStatusTable(e.stdout(), list.Items)
			}
			for _, o := range list.Orphans {
				fmt.Fprintf(e.stderr(), "orphan: %s (user %s is not in the store; remove with `thon cleanup --orphans`)\n", o.Name, o.User)
			}
			if list.EngineError != "" {
				fmt.Fprintf(e.stderr(), "engine: it has not answered since %s: %s. The states above are the last ones THON saw; once the engine answers again THON follows it by itself.\n",
					list.EngineDownSince.Local().Format(time.TimeOnly), list.EngineError)
			}
			if info, err := c.Info(cmd.Context()); err == nil && info.TLS != nil && info.TLS.Warning != "" {
				fmt.Fprintf(e.stderr(), "certificate: %s\n", info.TLS.Warning)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&groups, "group", "g", nil, "only this group (repeatable)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, wide (with CPU, memory, disk and running time) or json")
	return cmd
}

func newInstanceCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "instance",
		Aliases: []string{"i"},
		Short:   "Act on one participant's sandbox",
	}
	for _, a := range []struct{ action, short string }{
		{"start", "Start (creating if needed) and wait until the IDE answers"},
		{"stop", "Stop; the workspace is kept"},
		{"pause", "Freeze every process; resume continues where it was"},
		{"resume", "Unfreeze a paused sandbox"},
		{"recreate", "Remove and create afresh with current settings; the workspace is kept"},
	} {
		cmd.AddCommand(&cobra.Command{
			Use:     a.action + " USER",
			Short:   a.short,
			Example: fmt.Sprintf("  thon instance %s alice", a.action),
			Args:    cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := e.daemonClient(cmd.Context())
				if err != nil {
					return err
				}
				res, err := c.Action(cmd.Context(), args[0], a.action)
				if err != nil {
					return err
				}
				printResult(e, res)
				return nil
			},
		})
	}
	var volumes, yes bool
	rm := &cobra.Command{
		Use:   "rm USER",
		Short: "Remove the sandbox (the workspace is kept unless --volumes)",
		Example: `  thon instance rm alice
  thon instance rm alice --volumes --yes   # delete her files too`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if volumes && !yes {
				ok, err := e.confirm(fmt.Sprintf("Delete %s's sandbox AND workspace files?", args[0]))
				if err != nil || !ok {
					return errOr(err, "aborted; nothing was changed")
				}
			}
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			res, err := c.RemoveSandbox(cmd.Context(), args[0], volumes)
			if err != nil {
				return err
			}
			printResult(e, res)
			return nil
		},
	}
	rm.Flags().BoolVar(&volumes, "volumes", false, "delete the participant's workspace too")
	rm.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	var tail int
	var follow bool
	logs := &cobra.Command{
		Use:   "logs USER",
		Short: "Print the sandbox's output",
		Example: `  thon instance logs alice --tail 50
  thon instance logs alice -f`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			rc, err := c.Logs(cmd.Context(), args[0], tail, follow)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(e.stdout(), rc)
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	logs.Flags().IntVar(&tail, "tail", 0, "only the last N lines (0: all)")
	logs.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output")
	var renewFor string
	renew := &cobra.Command{
		Use:   "renew USER",
		Short: "Give a sandbox more time (sandbox.max_lifetime); an expired one starts again",
		Long: `Renew moves the end of a sandbox's lifetime (sandbox.max_lifetime) to --for
from now, or to the configured lifetime from now without --for. A sandbox that
was stopped at the end of its lifetime starts again, with its workspace.`,
		Example: `  thon instance renew alice
  thon instance renew alice --for 2h`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			res, err := c.Renew(cmd.Context(), args[0], renewFor)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout(), "%s: %s until %s\n", res.User, res.State, res.Expires.Local().Format(time.DateTime))
			return nil
		},
	}
	renew.Flags().StringVar(&renewFor, "for", "", "how long from now, e.g. 2h (default: sandbox.max_lifetime)")
	cmd.AddCommand(rm, logs, renew)
	return cmd
}

func errOr(err error, msg string) error {
	if err != nil {
		return err
	}
	return errors.New(msg)
}

func printResult(e *env, r client.Result) {
	msg := fmt.Sprintf("%s: %s", r.User, r.Outcome)
	if r.State != "" && r.Outcome != r.State {
		msg += " (" + r.State + ")"
	}
	if r.Endpoint != "" {
		msg += " at " + r.Endpoint
	}
	fmt.Fprintln(e.stdout(), msg)
}

func newCleanupCmd(e *env) *cobra.Command {
	var groups []string
	var volumes, yes, orphans bool
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove sandboxes (and with --volumes, participants' files)",
		Long: `Cleanup removes participants' sandboxes, of every group or of --group G.
Workspaces (volumes) are kept unless --volumes; participants stay in the
store, so "thon run" brings them back with their files. --orphans also removes
sandboxes whose participant is no longer in the store. It asks before
deleting unless --yes.`,
		Example: `  thon cleanup --group alpha
  thon cleanup --volumes --yes        # the event is over: delete everything
  thon cleanup --orphans --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := e.daemonClient(ctx)
			if err != nil {
				return err
			}
			if !yes {
				what := "every group"
				if len(groups) > 0 {
					what = "group " + strings.Join(groups, ", ")
				}
				q := fmt.Sprintf("Remove the sandboxes of %s", what)
				if volumes {
					q += " AND DELETE their workspace files"
				}
				ok, err := e.confirm(q + "?")
				if err != nil || !ok {
					return errOr(err, "aborted; nothing was changed")
				}
			}
			bar := newProgress(e, "Removing sandboxes")
			sum, err := c.Bulk(ctx, client.BulkRequest{Action: string(orchestrator.ActionRemove), Groups: groups, Purge: volumes}, bar.update)
			bar.finish()
			if err != nil {
				return err
			}
			if orphans {
				res, err := c.RemoveOrphans(ctx, volumes)
				if err != nil {
					return err
				}
				for _, r := range res {
					if r.Error != "" {
						fmt.Fprintf(e.stderr(), "orphan %s: %s\n", r.User, r.Error)
					} else {
						fmt.Fprintf(e.stderr(), "orphan %s: removed\n", r.User)
					}
				}
			}
			return printSummary(e, sum)
		},
	}
	cmd.Flags().StringArrayVarP(&groups, "group", "g", nil, "only this group (repeatable)")
	cmd.Flags().BoolVar(&volumes, "volumes", false, "delete participants' workspaces too")
	cmd.Flags().BoolVar(&orphans, "orphans", false, "also remove sandboxes whose participant is not in the store")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

func newUserCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "user", Aliases: []string{"users"}, Short: "Add, move, import and remove participants"}
	var output string
	ls := &cobra.Command{
		Use: "ls", Short: "List participants", Args: cobra.NoArgs,
		Example: `  thon user ls -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			us, err := c.Users(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(e.stdout(), us)
			}
			tw := tabwriter.NewWriter(e.stdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "USER\tGROUP\tADDED")
			for _, u := range us {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Name, u.Group, u.CreatedAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	ls.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	add := &cobra.Command{
		Use: "add USER GROUP", Short: "Add a participant to a group (start creates the sandbox)", Args: cobra.ExactArgs(2),
		Example: `  thon user add erin beta && thon instance start erin`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			if _, err := c.CreateUser(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout(), "%s added to %s\n", args[0], args[1])
			return nil
		},
	}
	move := &cobra.Command{
		Use: "move USER GROUP", Short: "Move a participant to another group; the workspace follows", Args: cobra.ExactArgs(2),
		Example: `  thon user move alice beta`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			res, err := c.MoveUser(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			printResult(e, res)
			return nil
		},
	}
	var purge, yes bool
	rm := &cobra.Command{
		Use: "rm USER", Short: "Remove a participant and their sandbox (files kept unless --volumes)", Args: cobra.ExactArgs(1),
		Example: `  thon user rm dave --volumes --yes`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if purge && !yes {
				ok, err := e.confirm(fmt.Sprintf("Remove %s and DELETE their workspace files?", args[0]))
				if err != nil || !ok {
					return errOr(err, "aborted; nothing was changed")
				}
			}
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			if err := c.DeleteUser(cmd.Context(), args[0], purge); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout(), "%s removed\n", args[0])
			return nil
		},
	}
	rm.Flags().BoolVar(&purge, "volumes", false, "delete the participant's workspace too")
	rm.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.AddCommand(ls, add, move, rm, newUsersImportCmd(e))
	return cmd
}

func newGroupCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "group", Short: "Create, list and delete groups"}
	cmd.AddCommand(&cobra.Command{
		Use: "ls", Short: "List groups and their participants", Args: cobra.NoArgs,
		Example: `  thon group ls`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			gs, err := c.Groups(cmd.Context())
			if err != nil {
				return err
			}
			for _, g := range gs {
				name := g.Name
				if g.Template != "" {
					name += " (template " + g.Template + ")"
				}
				fmt.Fprintf(e.stdout(), "%s: %s\n", name, strings.Join(g.Users, ", "))
			}
			return nil
		},
	}, &cobra.Command{
		Use: "add GROUP", Short: "Create an empty group", Args: cobra.ExactArgs(1),
		Example: `  thon group add gamma`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			_, err = c.CreateGroup(cmd.Context(), args[0])
			return err
		},
	}, &cobra.Command{
		Use: "rm GROUP", Short: "Delete an empty group", Args: cobra.ExactArgs(1),
		Example: `  thon group rm gamma`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			return c.DeleteGroup(cmd.Context(), args[0])
		},
	})
	return cmd
}

func newEventsCmd(e *env) *cobra.Command {
	var limit int
	var output string
	cmd := &cobra.Command{
		Use:     "events",
		Short:   "Show the audit log: who changed what, when",
		Example: `  thon events --limit 20`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			evs, err := c.Events(cmd.Context(), 0, limit)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(e.stdout(), evs)
			}
			tw := tabwriter.NewWriter(e.stdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tACTOR\tACTION\tTARGET\tDETAIL")
			for _, ev := range evs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ev.Time.Local().Format(time.DateTime), ev.Actor, ev.Action, ev.Target, ev.Detail)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 50, "how many of the newest events (1-1000)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}
