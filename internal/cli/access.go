package cli

import (
	"bufio"
	"crypto/rand"
	"encoding/csv"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newAccessCmd(e *env) *cobra.Command {
	var groups []string
	var output string
	cmd := &cobra.Command{
		Use:   "access [USER]",
		Short: "Print a participant's personal access link (or a group's, for printed cards)",
		Long: `Access creates a personal link to a participant's IDE and prints it alone on
one line. Opening the link signs that browser in to that participant's IDE (a
cookie for this IDE only) and takes it there. Each link works once and expires
after access.token_ttl; print a new one any time. Only a hash of the token is
stored, so a lost link cannot be shown again: revoke it and print a new one.

With --group (or no USER), it prints links for many participants: a table,
or -o csv for mail merges and printed access cards (user, group, url, link,
expires, and the e-mail thon.yaml gives).`,
		Example: `  thon access alice
  thon access --group alpha -o csv > alpha-cards.csv
  thon access revoke alice
  thon access password alice --generate`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			if len(args) == 1 && len(groups) == 0 {
				l, err := c.IssueLink(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if output == "json" {
					return writeJSON(e.stdout(), l)
				}
				fmt.Fprintln(e.stdout(), l.Link)
				return nil
			}
			items, err := c.IssueLinks(cmd.Context(), groups, args)
			if err != nil {
				return err
			}
			if len(items) == 0 {
				return errors.New("no participants selected: check the group names (thon group ls)")
			}
			switch output {
			case "json":
				return writeJSON(e.stdout(), items)
			case "csv":
				w := csv.NewWriter(e.stdout())
				w.Write([]string{"user", "group", "url", "link", "expires", "email"})
				for _, it := range items {
					w.Write([]string{it.User, it.Group, it.URL, it.Link, it.Expires.Format(time.RFC3339), it.Email})
				}
				w.Flush()
				return w.Error()
			}
			bw := bufio.NewWriter(e.stdout())
			defer bw.Flush()
			tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "USER\tGROUP\tLINK\tEXPIRES")
			for _, it := range items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", it.User, it.Group, it.Link, it.Expires.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringArrayVarP(&groups, "group", "g", nil, "links for every participant of this group (repeatable)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: text (one link), table, csv or json")

	cmd.AddCommand(&cobra.Command{
		Use:   "revoke USER",
		Short: "End every access link and browser session of a participant",
		Long: `Revoke makes every link issued for the participant stop working and signs
out every browser that used one (or a password). Their IDE and files are
untouched; print a new link with "thon access USER".`,
		Example: `  thon access revoke alice && thon access alice`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			r, err := c.RevokeAccess(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout(), "%s: revoked %d unused links and %d sessions\n", args[0], r.Tokens, r.Sessions)
			return nil
		},
	})

	var generate, clear bool
	pw := &cobra.Command{
		Use:   "password USER",
		Short: "Set a participant's password for the sign-in page (a second way in)",
		Long: `Password sets the password a participant can type on their IDE's sign-in
page, as a second way in besides the access link. It reads the password from
standard input (one line), or makes one with --generate and prints it.
Only a bcrypt hash is stored. --clear removes it.`,
		Example: `  thon access password alice --generate
  echo 'correct horse battery' | thon access password bob
  thon access password alice --clear`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			var secret string
			switch {
			case clear:
			case generate:
				secret = rand.Text()[:16]
			default:
				if e.io.InTTY {
					fmt.Fprint(e.stderr(), "Password (8-72 characters): ")
				}
				line, err := bufio.NewReader(e.io.In).ReadString('\n')
				if err != nil && line == "" {
					return errors.New("no password on standard input: pipe one in, or use --generate")
				}
				if secret = strings.TrimRight(line, "\r\n"); secret == "" {
					return errors.New("the password is empty: use --clear to remove it")
				}
			}
			if err := c.SetPassword(cmd.Context(), args[0], secret); err != nil {
				return err
			}
			switch {
			case clear:
				fmt.Fprintf(e.stdout(), "%s: password removed\n", args[0])
			case generate:
				fmt.Fprintln(e.stdout(), secret)
			default:
				fmt.Fprintf(e.stdout(), "%s: password set\n", args[0])
			}
			return nil
		},
	}
	pw.Flags().BoolVar(&generate, "generate", false, "make a random password and print it")
	pw.Flags().BoolVar(&clear, "clear", false, "remove the password")
	cmd.AddCommand(pw)
	return cmd
}
