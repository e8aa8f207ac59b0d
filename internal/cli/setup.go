package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/thon-dev/thon/internal/llm"
)

func newSetupCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Prepare this machine: the participant image, Lemonade's keys",
		Long: `Setup prepares the machine an event runs on. Each step says exactly what
it will do before doing it, and nothing is downloaded unless you ask.`,
	}
	var dryRun, yes bool
	lemonade := &cobra.Command{
		Use:   "lemonade",
		Short: "Make Lemonade Server require thon.yaml's API keys",
		Long: `Lemonade installs the keys of thon.yaml (llm.api_key, llm.admin_api_key) in
Lemonade Server's systemd unit, as a drop-in readable by root only
(/etc/systemd/system/lemond.service.d/thon.conf), then restarts Lemonade.
From then on Lemonade answers only requests with a key: the AI gateway's
(api_key) and THON's own management (admin_api_key). Participants never
see either; they use their own gateway keys.

It prints what it will do first and asks (or takes --yes). Running it again
with the same keys changes nothing.`,
		Example: `  thon setup lemonade --dry-run
  sudo thon setup lemonade --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := e.loadConfig(true)
			if err != nil {
				return err
			}
			if cfg.LLM.Backend != llm.BackendLemonade {
				return fmt.Errorf("llm.backend is %s: keys of other servers are set where those servers are configured", cfg.LLM.Backend)
			}
			s := llm.LemonadeSetup{}
			p, err := s.Plan(cfg.LLM.APIKey, cfg.LLM.AdminAPIKey)
			if err != nil {
				return err
			}
			if p.Current {
				fmt.Fprintf(e.stdout(), "%s already requires thon.yaml's keys (%s): nothing to do.\n", p.Unit, p.DropIn)
				return nil
			}
			fmt.Fprintf(e.stdout(), "To make %s require thon.yaml's keys, THON will:\n", p.Unit)
			for i, st := range p.Steps {
				fmt.Fprintf(e.stdout(), "  %d. %s\n", i+1, st)
			}
			if dryRun {
				return nil
			}
			if !yes {
				ok, err := e.confirm("Go ahead?")
				if err != nil || !ok {
					if err == nil {
						fmt.Fprintln(e.stderr(), "Nothing changed.")
					}
					return err
				}
			}
			if err := s.Apply(cmd.Context(), p); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout(), "Done: %s requires the keys. Check with: thon llm status\n", p.Unit)
			return nil
		},
	}
	lemonade.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be done, change nothing")
	lemonade.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.AddCommand(lemonade)
	return cmd
}
