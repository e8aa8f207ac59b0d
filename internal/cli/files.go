package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/thon-dev/thon/internal/configfiles"
)

func newFilesCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "files",
		Short: "Configuration files kept in the database (assistants' base files, settings, extensions, groups)",
		Long: `THON keeps some configuration files in its database, beside thon.yaml:
edited on the dashboard's Settings page, with these commands, or through the
API. A stored assistant file stands in for the file thon.yaml names and
reaches sandboxes created from then on (running ones show as outdated until
recreated); a stored groups-yaml waits until you import it. Every file is
checked before it is kept: problems are reported at their lines and nothing
is stored.

Files: ` + strings.Join(configfiles.Kinds, ", ") + `.`,
	}
	var output string
	list := &cobra.Command{
		Use: "list", Short: "List the stored files", Args: cobra.NoArgs,
		Example: `  thon files list
  thon files list -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			fs, err := c.Files(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(e.stdout(), fs)
			}
			if len(fs) == 0 {
				fmt.Fprintln(e.stdout(), "no files are stored (thon files put NAME FILE stores one)")
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tUPDATED\tBY")
			for _, f := range fs {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Name, f.UpdatedAt.Local().Format(time.DateTime), f.UpdatedBy)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	get := &cobra.Command{
		Use: "get NAME", Short: "Print a stored file", Args: cobra.ExactArgs(1),
		Example: `  thon files get kilo-base > kilo-base.json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			f, err := c.File(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			_, err = io.WriteString(e.stdout(), f.Content)
			return err
		},
	}
	put := &cobra.Command{
		Use: "put NAME FILE", Short: "Store a file (FILE - reads standard input)", Args: cobra.ExactArgs(2),
		Example: `  thon files put continue-base continue-base.yaml
  thon files put extensions - < extensions.txt`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var data []byte
			var err error
			if args[1] == "-" {
				data, err = io.ReadAll(io.LimitReader(e.io.In, configfiles.MaxSize+1))
			} else {
				data, err = os.ReadFile(args[1])
			}
			if err != nil {
				return err
			}
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			res, err := c.PutFile(cmd.Context(), args[0], data)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout(), strings.TrimSpace(res.Name+" stored. "+res.Effect))
			return nil
		},
	}
	rm := &cobra.Command{
		Use: "rm NAME", Short: "Delete a stored file (thon.yaml's, if any, applies again)", Args: cobra.ExactArgs(1),
		Example: `  thon files rm vscode-settings`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			res, err := c.DeleteFile(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout(), strings.TrimSpace(res.Name+" deleted. "+res.Effect))
			return nil
		},
	}
	cmd.AddCommand(list, get, put, rm)
	return cmd
}
