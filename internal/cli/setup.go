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
		Short: "Prepare this machine: the participant and LLM server images, Lemonade's keys",
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
	cmd.AddCommand(newSetupImageCmd(e), newSetupLLMCmd(e), lemonade)
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
			p := newStepProgress(e)
			res, err := imagebuild.Build(cmd.Context(), o, p.step)
			p.finish(err == nil)
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

func newSetupLLMCmd(e *env) *cobra.Command {
	var o imagebuild.LLMOptions
	var output string
	cmd := &cobra.Command{
		Use:   "llm",
		Short: "Build the LLM server image (llama.cpp's llama-server from Debian), offline",
		Long: `LLM builds THON's LLM server image, ` + imagebuild.DefaultLLMTag + `: llama.cpp's llama-server
from Debian unstable with ggml's CPU and Vulkan backends and Mesa's Vulkan
drivers (AMD and Intel GPUs; NVIDIA's come with the NVIDIA container
toolkit), running as the non-root user llm (uid 10001). Its entrypoint is
llama-server and THON passes every argument; it needs no network but its
port (8080 by default).

It is built from nothing but Debian's package mirror (by default the one
apt on this machine uses): a Debian unstable root file system from
debootstrap, the packages installed with apt in a chroot, imported into
Docker and finished by a local build; no container registry is asked. That
needs root and the debootstrap package, and takes a minute or two; the result
is cached (keyed by what goes into it), so running it again takes seconds.
--rebuild builds again with the suite's current packages.`,
		Example: `  sudo thon setup llm
  sudo thon setup llm --mirror http://ftp.de.debian.org/debian
  sudo thon setup llm --rebuild -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: use text or json", output)
			}
			o.ThonVersion = e.version
			p := newStepProgress(e)
			res, err := imagebuild.BuildLLM(cmd.Context(), o, p.step)
			p.finish(err == nil)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(e.stdout(), map[string]any{
					"image": res.Image, "id": res.ID, "size_bytes": res.Size, "llm_version": res.LLMVersion,
					"cached": res.Cached, "seconds": res.Took.Seconds(),
				})
			}
			how := "built in " + res.Took.Round(time.Second).String()
			if res.Cached {
				how = "already up to date"
			}
			fmt.Fprintf(e.stdout(), "%s: llama-server %s, %d MB, %s.\n", res.Image, res.LLMVersion, res.Size>>20, how)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Tag, "tag", imagebuild.DefaultLLMTag, "the image's name")
	f.StringVar(&o.Mirror, "mirror", "", "Debian mirror (default: the one apt on this machine uses)")
	f.BoolVar(&o.Rebuild, "rebuild", false, "build again even if nothing changed (with the suite's current packages)")
	f.StringVar(&o.CacheDir, "cache-dir", imagebuild.DefaultLLMCacheDir, "where the root file system and package caches are kept")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
