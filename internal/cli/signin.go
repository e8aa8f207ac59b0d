package cli

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/people"
)

func newTokenCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "API tokens: scoped, expiring, revocable",
		Long: `API tokens let scripts and other tools use THON's REST API with only the
rights they need. Each has scopes (` + strings.Join(auth.AllScopes, ", ") + `,
or * for everything; a :write scope includes its :read), may expire, and can
be revoked at once. Only their hashes are stored; a token is shown once, when
it is made. A participant's token (--user) reaches that participant's own
sandbox, key and usage only.`,
	}
	var scopes, expires, user, output string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Make a token and print it (once)",
		Example: `  thon token create ci --scope sandboxes:read,sandboxes:write --expires 720h
  thon token create alice-laptop --user alice --scope "*"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sc, err := auth.ParseScopes(scopes)
			if err != nil {
				return err
			}
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			t, err := c.CreateToken(cmd.Context(), client.TokenRequest{Name: args[0], Scopes: sc, ExpiresIn: expires, User: user})
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout(), t.Token)
			when := "never expires"
			if !t.Record.Expires.IsZero() {
				when = "expires " + t.Record.Expires.Local().Format(time.DateTime)
			}
			fmt.Fprintf(e.stderr(), "Token %s (%s; %s). It is shown this once: keep it now. Use it as: Authorization: Bearer <token>\n", t.Record.Name, strings.Join(t.Record.Scopes, ","), when)
			return nil
		},
	}
	create.Flags().StringVar(&scopes, "scope", "", "what it may do, comma-separated: "+strings.Join(auth.AllScopes, ",")+" or *")
	create.Flags().StringVar(&expires, "expires", "", "how long it works, e.g. 24h, 720h (default: no expiry)")
	create.Flags().StringVar(&user, "user", "", "a participant's token: their own sandbox, key and usage only")
	create.MarkFlagRequired("scope")
	list := &cobra.Command{
		Use: "list", Short: "List tokens: scopes, expiry, last use", Args: cobra.NoArgs,
		Example: `  thon token list`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			ts, err := c.Tokens(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(e.stdout(), ts)
			}
			bw := bufio.NewWriter(e.stdout())
			defer bw.Flush()
			tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tSCOPES\tEXPIRES\tLAST USED\tSTATE")
			for _, t := range ts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Role+userOf(t.User), strings.Join(t.Scopes, ","), dateOr(t.Expires, "never"), dateOr(t.LastUsed, "never"), t.State)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	revoke := &cobra.Command{
		Use: "revoke NAME", Short: "Make a token stop working at once", Args: cobra.ExactArgs(1),
		Example: `  thon token revoke ci`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			if err := c.RevokeToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout(), "%s: revoked\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func userOf(u string) string {
	if u == "" {
		return ""
	}
	return " (" + u + ")"
}

func dateOr(t time.Time, none string) string {
	if t.IsZero() {
		return none
	}
	return t.Local().Format(time.DateTime)
}

func newInviteCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "invite",
		Short: "Invite codes: let participants join a group by themselves",
		Long: `An invite code lets people join a group on their own: they open
https://{address}/join/{code} (or scan its QR code on the wall), sign in with
a provider of auth.providers (or, with none configured, pick a name and a
password), become a participant of the group, and land in their IDE once it
has started. Opening the link again brings them back to their own sandbox.
A code works a number of times (--uses) until it expires (--expires).`,
	}
	var group, expires, output string
	var uses int
	create := &cobra.Command{
		Use:   "create",
		Short: "Make an invite code for a group and print its link",
		Example: `  thon invite create --group alpha --uses 30 --expires 48h
  thon invite create --group beta --uses 1 --expires 2h   # single-use`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			in, err := c.CreateInvite(cmd.Context(), client.InviteRequest{Group: group, Uses: uses, ExpiresIn: expires})
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout(), in.URL)
			fmt.Fprintf(e.stderr(), "Invite %s: %d people may join %s until %s. The dashboard's Groups page shows its QR code.\n",
				in.Record.ID, in.Record.MaxUses, in.Record.Group, in.Record.Expires.Local().Format(time.DateTime))
			return nil
		},
	}
	create.Flags().StringVarP(&group, "group", "g", "", "the group people join")
	create.Flags().IntVar(&uses, "uses", 1, "how many people may join with it")
	create.Flags().StringVar(&expires, "expires", "48h", "how long it works, e.g. 2h, 48h")
	create.MarkFlagRequired("group")
	list := &cobra.Command{
		Use: "list", Short: "List invite codes", Args: cobra.NoArgs,
		Example: `  thon invite list`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			ins, err := c.Invites(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(e.stdout(), ins)
			}
			tw := tabwriter.NewWriter(e.stdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tGROUP\tUSED\tEXPIRES\tSTATE")
			for _, in := range ins {
				fmt.Fprintf(tw, "%s\t%s\t%d of %d\t%s\t%s\n", in.ID, in.Group, in.Used, in.MaxUses, in.Expires.Local().Format(time.DateTime), in.State)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Withdraw an invite code", Args: cobra.ExactArgs(1),
		Example: `  thon invite revoke k3m9qa`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			if err := c.RevokeInvite(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout(), "%s: withdrawn\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// newUsersImportCmd is `thon users import FILE`.
func newUsersImportCmd(e *env) *cobra.Command {
	var group, output string
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Add participants from an attendee list and print their access links",
		Long: `Import reads an attendee list — a CSV as event platforms export them (a
name, first/last name or email column; optionally group or team; other
columns are ignored), rows of name[,group[,email]], or thon.yaml's groups
in YAML — adds everyone (nobody is deleted; someone in another group is
moved), and prints each new participant's personal access link with their
e-mail, as a CSV ready for a mail merge. "-" reads standard input.`,
		Example: `  thon users import attendees.csv --group alpha > links.csv
  thon users import attendees.csv -o table`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var data []byte
			var err error
			if args[0] == "-" {
				data, err = readAll(e)
			} else {
				data, err = os.ReadFile(args[0])
			}
			if err != nil {
				return err
			}
			as, err := people.Parse(data, group)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			var groups []client.GroupMembers
			for _, g := range people.Groups(as) {
				groups = append(groups, client.GroupMembers{Name: g.Name, Users: g.Users})
			}
			res, err := c.ImportUsers(cmd.Context(), groups)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stderr(), "%d added, %d moved, %d groups added (%d in the list).\n", len(res.UsersAdded), len(res.UsersMoved), len(res.GroupsAdded), len(as))
			var users []string
			for _, a := range as {
				users = append(users, a.Name)
			}
			links, err := c.IssueLinks(cmd.Context(), nil, users)
			if err != nil {
				return err
			}
			linkOf := map[string]client.Link{}
			for _, l := range links {
				linkOf[l.User] = l
			}
			// In the list's order, so the output lines up with the input.
			if output == "table" {
				tw := tabwriter.NewWriter(e.stdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "USER\tGROUP\tEMAIL\tLINK")
				for _, a := range as {
					l := linkOf[a.Name]
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Name, l.Group, a.Email, l.Link)
				}
				return tw.Flush()
			}
			w := csv.NewWriter(e.stdout())
			w.Write([]string{"user", "group", "email", "link", "expires"})
			for _, a := range as {
				l := linkOf[a.Name]
				w.Write([]string{a.Name, l.Group, a.Email, l.Link, l.Expires.Format(time.RFC3339)})
			}
			w.Flush()
			return w.Error()
		},
	}
	cmd.Flags().StringVarP(&group, "group", "g", "", "group for rows without one")
	cmd.Flags().StringVarP(&output, "output", "o", "csv", "output format: csv or table")
	return cmd
}

func readAll(e *env) ([]byte, error) { return io.ReadAll(io.LimitReader(e.io.In, 16<<20)) }
