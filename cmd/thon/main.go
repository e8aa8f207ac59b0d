// Command thon runs a coding event: an isolated browser IDE for every participant.
package main

import (
	"context"
	"os"

	"github.com/thon-dev/thon/internal/cli"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(cli.Execute(context.Background(), version, os.Args[1:], cli.SystemIO()))
}
