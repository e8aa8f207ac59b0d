package cli

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/thon-dev/thon/client"
)

// usageRow is one participant in `thon usage`.
type usageRow struct {
	User             string  `json:"user"`
	Group            string  `json:"group"`
	RunningHours     float64 `json:"running_hours"`
	Requests         int64   `json:"requests"`
	PromptTokens     int64   `json:"prompt_tokens"`
	CompletionTokens int64   `json:"completion_tokens"`
	Rejections       int64   `json:"rejections"`
}

func newUsageCmd(e *env) *cobra.Command {
	var groups, users []string
	var output string
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "Who used what: each participant's running hours and AI gateway tokens",
		Long: `Usage answers "who used what" over the event: for every participant, the
hours their sandbox has run (stopped, paused and asleep time not counted; kept
across daemon restarts) beside the requests and tokens of their gateway key.
A last line sums them. What sandboxes use right now (CPU, memory, disk) is in
"thon status -o wide"; tokens per model in "thon gateway usage".`,
		Example: `  thon usage
  thon usage --group alpha -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %s: use table or json", output)
			}
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			list, err := c.Sandboxes(cmd.Context(), groups, users)
			if err != nil {
				return err
			}
			sum, err := c.GatewayUsageSummary(cmd.Context(), users, groups, "", 0)
			if err != nil && !isConflict(err) { // no gateway: hours alone
				return err
			}
			keys := map[string]usageRow{}
			for _, k := range sum.Keys {
				keys[k.Key] = usageRow{Requests: k.Requests, PromptTokens: k.PromptTokens, CompletionTokens: k.CompletionTokens, Rejections: k.Rejections}
			}
			rows := make([]usageRow, 0, len(list.Items))
			var total usageRow
			for _, s := range list.Items {
				r := keys["user:"+s.User]
				r.User, r.Group, r.RunningHours = s.User, s.Group, s.RunningSeconds/3600
				rows = append(rows, r)
				total.RunningHours += r.RunningHours
				total.Requests += r.Requests
				total.PromptTokens += r.PromptTokens
				total.CompletionTokens += r.CompletionTokens
				total.Rejections += r.Rejections
			}
			if output == "json" {
				return writeJSON(e.stdout(), rows)
			}
			bw := bufio.NewWriter(e.stdout())
			defer bw.Flush()
			tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "USER\tGROUP\tRUNNING\tREQUESTS\tPROMPT\tCOMPLETION\tREJECTED\t")
			for _, r := range append(rows, usageRow{User: "TOTAL", RunningHours: total.RunningHours, Requests: total.Requests, PromptTokens: total.PromptTokens, CompletionTokens: total.CompletionTokens, Rejections: total.Rejections}) {
				fmt.Fprintf(tw, "%s\t%s\t%.2fh\t%d\t%d\t%d\t%d\t\n", r.User, r.Group, r.RunningHours, r.Requests, r.PromptTokens, r.CompletionTokens, r.Rejections)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringArrayVarP(&groups, "group", "g", nil, "only this group (repeatable)")
	cmd.Flags().StringArrayVarP(&users, "user", "u", nil, "only this participant (repeatable)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// isConflict: the daemon answered 409 (here: it runs no gateway).
func isConflict(err error) bool {
	var e *client.Error
	return errors.As(err, &e) && e.StatusCode == http.StatusConflict
}
