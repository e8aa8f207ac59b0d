package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/thon-dev/thon/internal/imagebuild"
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
	cmd.AddCommand(newSetupImageCmd(e), lemonade)
	return cmd
}

func newSetupImageCmd(e *env) *cobra.Command {
	var o imagebuild.Options
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build the participant image (code-server), with or without a registry",
		Long: `Image builds THON's participant image: code-server (VS Code in the browser)
running as the non-root user coder, with git, a terminal, ripgrep and the
assistants' extensions at start.

With a container registry it builds deploy/sandbox/Dockerfile from the
pinned official code-server image. Without one (or with --offline) it builds
the same image from nothing but Debian's package mirror and the npm
registry: a Debian 13 root file system from debootstrap, code-server from
npm with its native modules compiled here, imported into Docker and
finished by a local build. That needs root and the debootstrap package, and
takes a few minutes; the result is cached, so running it again takes
seconds.`,
		Example: `  sudo thon setup image
  sudo thon setup image --offline --tag thon/sandbox:event
  sudo thon setup image --rebuild`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Tag == "" {
				o.Tag = imagebuild.DefaultTag
				if cfg, err := e.loadConfig(false); err == nil {
					o.Tag = cfg.Sandbox.Image
				}
			}
			o.ThonVersion = e.version
			var last string
			res, err := imagebuild.Build(cmd.Context(), o, func(step string, done, total int) {
				line := fmt.Sprintf("[%d/%d] %s", done, total, step)
				if line != last {
					fmt.Fprintln(e.stderr(), line)
					last = line
				}
			})
			if err != nil {
				return err
			}
			how := "built in " + res.Took.Round(time.Second).String()
			if res.Cached {
				how = "already up to date"
			}
			fmt.Fprintf(e.stdout(), "%s: code-server %s, %d MB, %s build, %s.\n", res.Image, res.CodeServerVersion, res.Size>>20, res.Mode, how)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Tag, "tag", "", "the image's name (default: sandbox.image of thon.yaml, else "+imagebuild.DefaultTag+")")
	f.BoolVar(&o.Offline, "offline", false, "build from the Debian mirror and npm even if a registry answers")
	f.BoolVar(&o.Rebuild, "rebuild", false, "build again even if nothing changed")
	f.StringVar(&o.CacheDir, "cache-dir", imagebuild.DefaultCacheDir, "where the root file system and package caches are kept")
	f.StringVar(&o.Mirror, "mirror", "", "Debian mirror (default: the one apt on this machine uses)")
	f.StringVar(&o.CodeServerVersion, "code-server", imagebuild.DefaultCodeServerVersion, "code-server version (it must run on Debian 13's Node.js 20)")
	f.StringVar(&o.NPMRegistry, "npm-registry", imagebuild.DefaultNPMRegistry, "npm registry")
	return cmd
}
