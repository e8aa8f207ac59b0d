package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// Reference renders the command tree as Markdown: docs/cli.md is this text,
// and a test keeps the two in step with --help.
func Reference(root *cobra.Command) string {
	var b strings.Builder
	b.WriteString("# thon command reference\n\n")
	b.WriteString("Generated from `thon --help`; do not edit by hand (`go test ./internal/cli -run Reference -update` rewrites it).\n\n")
	b.WriteString("Global flags, accepted by every command:\n\n```\n")
	b.WriteString(root.PersistentFlags().FlagUsages())
	b.WriteString("```\n")
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if !sub.IsAvailableCommand() || sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			if sub.Runnable() {
				writeCommand(&b, sub)
			}
			walk(sub)
		}
	}
	walk(root)
	return b.String()
}

func writeCommand(b *strings.Builder, c *cobra.Command) {
	fmt.Fprintf(b, "\n## %s\n\n%s\n\n", c.CommandPath(), c.Short)
	fmt.Fprintf(b, "```\n%s\n```\n", c.UseLine())
	if c.Long != "" {
		fmt.Fprintf(b, "\n%s\n", c.Long)
	}
	if c.Example != "" {
		fmt.Fprintf(b, "\nExamples:\n\n```\n%s\n```\n", c.Example)
	}
	if flags := c.LocalNonPersistentFlags().FlagUsages(); flags != "" {
		fmt.Fprintf(b, "\nFlags:\n\n```\n%s```\n", flags)
	}
}
