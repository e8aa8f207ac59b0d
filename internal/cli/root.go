// Package cli is the thon command line. Every command but init, config and
// serve is a thin client of the daemon's REST API, like docker and kubectl.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/daemon"
)

// IO is where a command reads and writes; it knows whether output is a terminal.
type IO struct {
	In     io.Reader
	Out    io.Writer
	Err    io.Writer
	IsTTY  bool // stdout is a terminal: tables, progress bars
	InTTY  bool // stdin is a terminal: confirmations can be asked
	Getenv func(string) (string, bool)
}

// SystemIO is the process's own streams.
func SystemIO() *IO {
	return &IO{
		In: os.Stdin, Out: os.Stdout, Err: os.Stderr,
		IsTTY:  term.IsTerminal(int(os.Stdout.Fd())),
		InTTY:  term.IsTerminal(int(os.Stdin.Fd())),
		Getenv: os.LookupEnv,
	}
}

// env is what every command gets from the root: flags and streams.
type env struct {
	io         *IO
	version    string
	configPath string
	server     string
	token      string
	dataDir    string // --data-dir: overrides server.data_dir
	listen     string // --listen: overrides server.listen
}

// ExitError carries an exit status without a message of its own (the
// command has already said what went wrong).
type ExitError struct{ Code int }

func (e ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// Execute runs the CLI with args and returns the process exit status.
func Execute(ctx context.Context, version string, args []string, stdio *IO) int {
	root := NewRoot(version, stdio)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stdio.Err, "\nthon: interrupted. The daemon finishes what it started; see `thon status`.")
		return 130
	}
	fmt.Fprintln(stdio.Err, "thon: "+err.Error())
	var ce *client.Error
	if errors.As(err, &ce) && ce.StatusCode == http.StatusUnauthorized {
		fmt.Fprintln(stdio.Err, "hint: the daemon refused the token. With --server, check --token or THON_TOKEN; locally, another THON daemon (with another data directory) may be listening at server.listen.")
	}
	return 1
}

// NewRoot builds the command tree.
func NewRoot(version string, stdio *IO) *cobra.Command {
	e := &env{io: stdio, version: version}
	root := &cobra.Command{
		Use:   "thon",
		Short: "Run a coding event: a browser IDE for every participant",
		Long: `THON gives every participant of a hackathon or workshop their own isolated
VS Code in the browser (code-server in a container) with a persistent
workspace, driven from one thon.yaml.

Configuration comes from thon.yaml, then THON_* environment variables, then flags.`,
		Example: `  thon init --non-interactive   # write a starter thon.yaml
  thon config validate          # check it
  thon run                      # bring the event up
  thon status                   # who has what`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	pf := root.PersistentFlags()
	pf.StringVarP(&e.configPath, "config", "c", "", "path to thon.yaml (default ./thon.yaml, then ~/.thon/thon.yaml)")
	pf.StringVar(&e.dataDir, "data-dir", "", "override server.data_dir (env THON_SERVER_DATA_DIR)")
	pf.StringVar(&e.listen, "listen", "", "override server.listen, the REST API address (env THON_SERVER_LISTEN)")
	pf.StringVar(&e.server, "server", "", "URL of a remote THON daemon (env THON_URL); default: server.listen of thon.yaml")
	pf.StringVar(&e.token, "token", "", "API token for --server (env THON_TOKEN); default: the admin token in the data directory")
	root.AddCommand(
		newInitCmd(e), newConfigCmd(e), newServeCmd(e), newRunCmd(e), newStatusCmd(e),
		newInstanceCmd(e), newExportCmd(e), newUsageCmd(e), newCleanupCmd(e), newDownCmd(e), newUserCmd(e), newGroupCmd(e), newTemplateCmd(e),
		newEventsCmd(e), newAccessCmd(e), newGatewayCmd(e), newLLMCmd(e), newSetupCmd(e), newDoctorCmd(e), newTokenCmd(e), newInviteCmd(e), newFilesCmd(e),
	)
	return root
}

func (e *env) stdout() io.Writer { return e.io.Out }
func (e *env) stderr() io.Writer { return e.io.Err }

// loadConfig reads and validates thon.yaml (then THON_* variables, then
// flags); with required false a missing file yields the defaults.
func (e *env) loadConfig(required bool) (*config.Config, error) {
	cfg, err := config.Load(e.configPath)
	if !required && e.configPath == "" && errors.Is(err, config.ErrNotFound) {
		cfg = config.Default()
		if err = cfg.ApplyEnv(e.io.Getenv); err == nil {
			err = cfg.Validate()
		}
	}
	if err != nil {
		return nil, err
	}
	if e.dataDir == "" && e.listen == "" {
		return cfg, nil
	}
	if e.dataDir != "" {
		cfg.Server.DataDir = e.dataDir
	}
	if e.listen != "" {
		cfg.Server.Listen = e.listen
	}
	return cfg, cfg.Validate()
}

// overrideArgs passes the flags that override thon.yaml on to a child thon.
func (e *env) overrideArgs() []string {
	var args []string
	if e.dataDir != "" {
		args = append(args, "--data-dir", e.dataDir)
	}
	if e.listen != "" {
		args = append(args, "--listen", e.listen)
	}
	return args
}

// client returns a client of the daemon: --server/THON_URL when given,
// else the local daemon of thon.yaml with the admin token from its data directory.
func (e *env) client() (*client.Client, error) {
	server, token := e.server, e.token
	if server == "" {
		server, _ = e.io.Getenv("THON_URL")
	}
	if token == "" {
		token, _ = e.io.Getenv("THON_TOKEN")
	}
	if server != "" {
		if token == "" {
			return nil, errors.New("--server needs a token: pass --token or set THON_TOKEN")
		}
		return client.New(server, token), nil
	}
	cfg, err := e.loadConfig(false)
	if err != nil {
		return nil, err
	}
	return localClient(cfg, token)
}

func localClient(cfg *config.Config, token string) (*client.Client, error) {
	base := "http://" + cfg.Server.Listen
	if token != "" {
		return client.New(base, token), nil
	}
	dir, err := cfg.DataDir()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, daemon.TokenFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// No daemon has run with this data directory yet; Health still works
		// and the caller says how to start one.
		return client.New(base, ""), nil
	case errors.Is(err, os.ErrPermission):
		return nil, fmt.Errorf("cannot read the admin token %s: run thon as the user who runs the daemon, or pass --token", path)
	case err != nil:
		return nil, fmt.Errorf("read admin token: %w", err)
	}
	return client.New(base, strings.TrimSpace(string(b))), nil
}

// daemonClient is client() plus a check that the daemon answers, with a hint
// when it does not.
func (e *env) daemonClient(ctx context.Context) (*client.Client, error) {
	c, err := e.client()
	if err != nil {
		return nil, err
	}
	if err := c.Health(ctx); err != nil {
		return nil, fmt.Errorf("no THON daemon answers at %s: start one with `thon run` (or `thon serve`)", c.URL())
	}
	return c, nil
}

// confirm asks a yes/no question on a terminal; elsewhere it refuses and
// says which flag skips the question.
func (e *env) confirm(question string) (bool, error) {
	if !e.io.InTTY {
		return false, errors.New("refusing to ask for confirmation without a terminal: pass --yes")
	}
	fmt.Fprintf(e.stderr(), "%s [y/N] ", question)
	var answer string
	fmt.Fscanln(e.io.In, &answer)
	answer = strings.ToLower(strings.TrimSpace(answer))
	return answer == "y" || answer == "yes", nil
}
