package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/daemon"
	"github.com/thon-dev/thon/internal/orchestrator"
)

func newRunCmd(e *env) *cobra.Command {
	var groups []string
	var output string
	var recreate bool
	var level string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Bring the event up: start the daemon if needed and launch every sandbox",
		Long: `Run applies thon.yaml and brings every participant's sandbox up.

It starts the THON daemon in the background when none answers (log in the
data directory, file thon.log) and leaves it running; imports the groups and
users of thon.yaml into the daemon's store (new ones are added, moved ones
moved, none deleted); then creates, starts or resumes each sandbox, at most
sandbox.concurrency at a time, and waits for each IDE to answer its health
path. Sandboxes already running are left alone, so a second run changes
nothing. One failing sandbox does not stop the others; the summary lists
every failure with its reason, and the exit status is 1.

Sandboxes created from older settings (another image, limits or group) are
marked outdated and left alone; --recreate recreates them first, keeping
their workspaces.`,
		Example: `  thon run                       # everyone
  thon run --group alpha         # only group alpha (repeatable)
  thon run --recreate            # apply changed sandbox settings
  thon run -o json               # a summary for scripts`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if _, err := parseLogLevel(level); err != nil {
				return err
			}
			cfg, err := e.loadConfig(true)
			if err != nil {
				return err
			}
			for _, g := range groups {
				if !hasGroup(cfg, g) {
					return fmt.Errorf("group %q is not in %s: groups there are %s", g, cfg.Path, strings.Join(groupNames(cfg), ", "))
				}
			}
			c, err := e.ensureDaemon(ctx, cfg, level)
			if err != nil {
				return err
			}
			imp, err := c.Import(ctx, cfg)
			if err != nil {
				return err
			}
			if output != "json" {
				printImport(e, imp)
			}
			if recreate {
				if err := recreateOutdated(ctx, e, c, groups); err != nil {
					return err
				}
			}
			bar := newProgress(e, "Starting sandboxes")
			sum, err := c.Bulk(ctx, client.BulkRequest{Action: string(orchestrator.ActionStart), Groups: groups}, bar.update)
			bar.finish()
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(e.stdout(), sum)
			}
			list, err := c.Sandboxes(ctx, groups, nil)
			if err != nil {
				return err
			}
			printStatusTable(e.stdout(), list.Items)
			if info, err := c.Info(ctx); err == nil && info.FrontDoor != "" && sum.Total > 0 {
				fmt.Fprintf(e.stderr(), "Personal links: `thon access USER` (cards: `thon access --group G -o csv`). Browsers trust this event's CA from %sca\n", info.FrontDoor)
				if info.Dashboard != "" {
					fmt.Fprintf(e.stderr(), "Dashboard: %s (sign in with auth.admin_password or THON_ADMIN_PASSWORD)\n", info.Dashboard)
				}
			}
			if n := len(outdated(list.Items)); n > 0 {
				fmt.Fprintf(e.stderr(), "%d sandboxes run older settings (marked outdated): `thon run --recreate` applies the current ones; workspaces are kept.\n", n)
			}
			return printSummary(e, sum)
		},
	}
	cmd.Flags().StringArrayVarP(&groups, "group", "g", nil, "only this group (repeatable)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().BoolVar(&recreate, "recreate", false, "recreate outdated sandboxes (created from older settings); workspaces are kept")
	cmd.Flags().StringVar(&level, "log-level", "info", "what a daemon run starts logs (debug, info, warn or error); one already running keeps its level")
	return cmd
}

func outdated(items []client.Status) []string {
	var users []string
	for _, s := range items {
		if s.Outdated {
			users = append(users, s.User)
		}
	}
	return users
}

// recreateOutdated recreates the sandboxes that run older settings.
func recreateOutdated(ctx context.Context, e *env, c *client.Client, groups []string) error {
	list, err := c.Sandboxes(ctx, groups, nil)
	if err != nil {
		return err
	}
	users := outdated(list.Items)
	if len(users) == 0 {
		return nil
	}
	bar := newProgress(e, "Recreating outdated sandboxes")
	sum, err := c.Bulk(ctx, client.BulkRequest{Action: string(orchestrator.ActionRecreate), Users: users}, bar.update)
	bar.finish()
	if err != nil {
		return err
	}
	if sum.Failed > 0 {
		return printSummary(e, sum)
	}
	return nil
}

func hasGroup(cfg *config.Config, name string) bool {
	for _, g := range cfg.Groups {
		if g.Name == name {
			return true
		}
	}
	return false
}

func groupNames(cfg *config.Config) []string {
	var out []string
	for _, g := range cfg.Groups {
		out = append(out, g.Name)
	}
	return out
}

func printImport(e *env, imp client.ImportResult) {
	w := e.stderr()
	if len(imp.GroupsAdded) > 0 {
		fmt.Fprintf(w, "Added groups: %s\n", strings.Join(imp.GroupsAdded, ", "))
	}
	if len(imp.UsersAdded) > 0 {
		fmt.Fprintf(w, "Added %d participants\n", len(imp.UsersAdded))
	}
	moved := make([]string, 0, len(imp.UsersMoved))
	for u, g := range imp.UsersMoved {
		moved = append(moved, u+" → "+g)
	}
	sort.Strings(moved)
	if len(moved) > 0 {
		fmt.Fprintf(w, "Moved: %s (their workspaces follow)\n", strings.Join(moved, ", "))
	}
	if len(imp.NotListed) > 0 {
		fmt.Fprintf(w, "Kept %d participants that thon.yaml no longer lists (remove with `thon user rm`): %s\n", len(imp.NotListed), strings.Join(imp.NotListed, ", "))
	}
}

// printSummary says what a bulk action did and fails when anything failed.
func printSummary(e *env, sum client.Summary) error {
	w := e.stderr()
	if sum.Total == 0 {
		fmt.Fprintln(w, "No participants selected: add some under groups: in thon.yaml.")
		return nil
	}
	if sum.Counts[orchestrator.OutcomeUnchanged] == sum.Total {
		fmt.Fprintf(w, "Nothing to do: all %d sandboxes are already as asked.\n", sum.Total)
		return nil
	}
	var parts []string
	for _, k := range []string{orchestrator.OutcomeCreated, orchestrator.OutcomeStarted, orchestrator.OutcomeResumed, orchestrator.OutcomeRecreated,
		orchestrator.OutcomeStopped, orchestrator.OutcomePaused, orchestrator.OutcomeRemoved, orchestrator.OutcomeUnchanged, orchestrator.OutcomeFailed} {
		if n := sum.Counts[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, k))
		}
	}
	fmt.Fprintf(w, "%s: %s in %.1fs\n", strings.ToUpper(string(sum.Action[:1]))+string(sum.Action[1:]), strings.Join(parts, ", "), sum.Seconds)
	if sum.Failed == 0 {
		return nil
	}
	fmt.Fprintf(w, "\n%d failed:\n", sum.Failed)
	for _, r := range sum.Results {
		if r.Outcome == orchestrator.OutcomeFailed {
			fmt.Fprintf(w, "  %s (%s): %s\n", r.User, r.Group, r.Error)
		}
	}
	return ExitError{Code: 1}
}

// ensureDaemon returns a client of the daemon of cfg, starting one in the
// background (detached, logging to the data directory) when none answers.
func (e *env) ensureDaemon(ctx context.Context, cfg *config.Config, logLevel string) (*client.Client, error) {
	if e.server != "" {
		return e.daemonClient(ctx)
	}
	if c, err := localClient(cfg, e.token); err == nil && c.Health(ctx) == nil {
		return c, nil
	}
	dir, err := cfg.DataDir()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", dir, err)
	}
	logPath := filepath.Join(dir, daemon.LogFile)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open daemon log: %w", err)
	}
	defer logf.Close()
	before, _ := logf.Seek(0, 2)
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := append([]string{"serve"}, e.overrideArgs()...)
	if logLevel != "" && logLevel != "info" {
		args = append(args, "--log-level", logLevel)
	}
	if cfg.Path != "" {
		args = append(args, "--config", cfg.Path)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives this terminal
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the THON daemon: %w", err)
	}
	fmt.Fprintf(e.stderr(), "Started the THON daemon (pid %d, log %s)\n", cmd.Process.Pid, logPath)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	probe := client.New("http://"+cfg.Server.Listen, "")
	for {
		if probe.Health(wctx) == nil {
			return localClient(cfg, e.token)
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("the THON daemon stopped at start (%v):\n%s", err, logTail(logPath, before))
		case <-wctx.Done():
			return nil, fmt.Errorf("the THON daemon did not answer at %s within 30s; its log:\n%s", cfg.Server.Listen, logTail(logPath, before))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// logTail returns the last lines the daemon wrote after offset.
func logTail(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimSpace(string(b[offset:])), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

func newDownCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop the THON daemon; sandboxes keep running",
		Long: `Down stops the daemon. Participants' sandboxes keep running and keep
their work; the next "thon run" or "thon serve" adopts them as they are.
To stop or remove sandboxes, use "thon instance stop" or "thon cleanup".`,
		Example: `  thon down`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if c.Health(cmd.Context()) != nil {
				fmt.Fprintf(e.stderr(), "No THON daemon answers at %s: nothing to stop.\n", c.URL())
				return nil
			}
			if err := c.Shutdown(cmd.Context()); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 15*time.Second)
			defer cancel()
			for c.Health(ctx) == nil {
				select {
				case <-ctx.Done():
					return errors.New("the daemon was asked to stop but still answers after 15s")
				case <-time.After(100 * time.Millisecond):
				}
			}
			fmt.Fprintln(e.stderr(), "THON daemon stopped; sandboxes keep running.")
			return nil
		},
	}
}
