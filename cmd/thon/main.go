// Command thon runs a coding event: an isolated browser IDE for every participant.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/thon-dev/thon/internal/cli"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	// Ctrl-C cancels the command's context: clients stop waiting (the daemon
	// carries on with what it started) and `thon serve` shuts down cleanly.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, version, os.Args[1:], cli.SystemIO())
	stop()
	os.Exit(code)
}
