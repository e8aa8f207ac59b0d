package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
)

func newTemplateCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "template",
		Short: "Show the sandbox templates groups use",
		Long: `Templates are named sandbox settings in thon.yaml (templates:): an image,
limits, env, a workspace mode and an idle policy, each left out taken from
sandbox:. A group names one (groups: {web: {template: node, users: [...]}})
and may override its idle policy. Changing a template marks its groups'
sandboxes outdated: "thon run --recreate" applies it, keeping workspaces.`,
	}
	var output string
	list := &cobra.Command{
		Use: "list", Aliases: []string{"ls"}, Short: "List templates, their settings and the groups that use them", Args: cobra.NoArgs,
		Example: `  thon template list
  thon template list -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: use table or json", output)
			}
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			ts, err := c.Templates(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(e.stdout(), ts)
			}
			gs, err := c.Groups(cmd.Context())
			if err != nil {
				return err
			}
			return printTemplates(e.stdout(), ts, gs)
		},
	}
	list.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.AddCommand(list)
	return cmd
}

// printTemplates writes the templates' table, then which groups use sandbox: alone.
func printTemplates(w io.Writer, ts []client.Template, gs []client.Group) error {
	var plain []string
	for _, g := range gs {
		if g.Template == "" {
			plain = append(plain, g.Name)
		}
	}
	if len(ts) == 0 {
		fmt.Fprintln(w, "no templates: every group's sandboxes use sandbox: (define named settings under templates: in thon.yaml)")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TEMPLATE\tIMAGE\tCPU\tMEMORY\tWORKSPACE\tIDLE\tGROUPS\tPARTICIPANTS\tOUTDATED\tSETS")
	for _, t := range ts {
		idle := "never"
		if t.IdleTimeout != "0s" {
			idle = shortDuration(t.IdleTimeout) + " " + t.IdleAction
		}
		groups := strings.Join(t.Groups, ",")
		if groups == "" {
			groups = "-"
		}
		sets := strings.Join(t.Sets, ",")
		if sets == "" {
			sets = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", t.Name, t.Image, strconv.FormatFloat(t.CPU, 'g', -1, 64),
			config.Size(t.MemoryBytes), t.Workspace, idle, groups, t.Participants, t.Outdated, sets)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(plain) > 0 {
		fmt.Fprintf(w, "groups using sandbox: alone: %s\n", strings.Join(plain, ", "))
	}
	for _, t := range ts {
		if t.Outdated > 0 {
			fmt.Fprintln(w, "outdated sandboxes run older settings: `thon run --recreate` applies the current ones; workspaces are kept.")
			break
		}
	}
	return nil
}

// shortDuration writes a Go duration without its zero tails: "45m0s" → "45m".
func shortDuration(d string) string {
	if strings.HasSuffix(d, "m0s") {
		d = strings.TrimSuffix(d, "0s")
	}
	if strings.HasSuffix(d, "h0m") {
		d = strings.TrimSuffix(d, "0m")
	}
	return d
}
