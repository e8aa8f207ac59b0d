package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/thon-dev/thon/internal/imagebuild"
	"github.com/thon-dev/thon/internal/llm"
	"github.com/thon-dev/thon/internal/setup"
	"github.com/thon-dev/thon/wire"
)

func newSetupCmd(e *env) *cobra.Command {
	var o setupFlags
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Prepare this machine for thon.yaml's event: engine, images, LLM, Lemonade, models, systemd unit",
		Long: `Setup prepares the machine an event runs on. With no subcommand it runs, in
order, every step the current thon.yaml needs:

  1. the Docker engine: Debian's docker.io installed with apt when it is
     missing, enabled and started;
  2. the participant image (sandbox.image), built when it is not there;
  3. the LLM server's image (llm.image), when THON runs llama-server;
  4. Lemonade, when llm.backend is lemonade: its keys made when thon.yaml
     has none (written into thon.yaml, which then becomes readable by its
     owner only), installed as a systemd drop-in, its config.json set
     (llama.cpp backend from llm.gpu, the system's llama-server when there
     is one, how many models may be loaded), and Lemonade restarted;
  5. the models thon.yaml configures, downloaded (through the daemon when
     one runs);
  6. THON itself as /usr/local/bin/thon and a systemd unit, thon.service,
     running "thon serve" for this thon.yaml: enabled, so the event survives
     a reboot, and started; "thon run" then uses that daemon.

Each step first looks at the machine: one that is already as wanted says
so and does nothing, so running setup again changes nothing. Otherwise it
says exactly what it will do and asks (--yes does not ask). The first step
that fails stops setup, with what to do; run it again once that is fixed
(finished steps are skipped). --dry-run prints the plan and changes nothing.
Most steps need root: sudo thon setup.

Once every step is done it runs thon doctor's checks and capacity estimate
(--no-doctor skips them) and exits 1 when one of them fails, so that
"thon setup && thon run" stops where something is not ready.

The subcommands run one step each, with more options.`,
		Example: `  sudo thon setup --dry-run
  sudo thon setup
  sudo thon setup --yes --no-unit   # a machine without systemd`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSetup(cmd.Context(), e, o, nil)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.dryRun, "dry-run", false, "print what would be done, change nothing")
	f.BoolVarP(&o.yes, "yes", "y", false, "do not ask before each step")
	f.BoolVar(&o.noUnit, "no-unit", false, "leave out the systemd unit (thon run then starts the daemon in the background)")
	f.BoolVar(&o.noDoctor, "no-doctor", false, "do not run thon doctor's checks at the end")

	var lo setupFlags
	lemonade := &cobra.Command{
		Use:   "lemonade",
		Short: "Make Lemonade Server require thon.yaml's API keys, with THON's settings",
		Long: `Lemonade installs the keys of thon.yaml (llm.api_key, llm.admin_api_key) in
Lemonade Server's systemd unit, as a drop-in readable by root only
(/etc/systemd/system/lemond.service.d/thon.conf), sets THON's settings in
Lemonade's config.json (the llama.cpp backend from llm.gpu, the system's
llama-server when one is installed, and how many models may be loaded at
once: every chat model thon.yaml configures), then restarts Lemonade.
When thon.yaml has no keys it makes two random ones and writes them into
thon.yaml (which then becomes readable by its owner only).
From then on Lemonade answers only requests with a key: the AI gateway's
(api_key) and THON's own management (admin_api_key). Participants never
see either; they use their own gateway keys.

It prints what it will do first and asks (or takes --yes). Running it again
with the same keys and settings changes nothing. It is step 4 of thon setup.`,
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
			return runSetup(cmd.Context(), e, lo, []string{setup.StepLemonade})
		},
	}
	lemonade.Flags().BoolVar(&lo.dryRun, "dry-run", false, "print what would be done, change nothing")
	lemonade.Flags().BoolVarP(&lo.yes, "yes", "y", false, "do not ask for confirmation")
	cmd.AddCommand(newSetupImageCmd(e), newSetupLLMCmd(e), lemonade)
	return cmd
}

type setupFlags struct{ dryRun, yes, noUnit, noDoctor bool }

// runSetup shows and runs the steps (only those of only, when given).
func runSetup(ctx context.Context, e *env, f setupFlags, only []string) error {
	cfg, err := e.loadConfig(true)
	if err != nil {
		return err
	}
	instance, _ := e.io.Getenv("THON_INSTANCE")
	var p *stepProgress // of the step being applied
	var lastPull string
	s := setup.New(setup.Options{
		Config: cfg, Version: e.version, Instance: instance, NoUnit: f.noUnit,
		Progress: func(step string, done, total int) {
			if p != nil {
				p.step(step, done, total)
			}
		},
		Pull: func(model string, pp llm.PullProgress) {
			line := fmt.Sprintf("%s: %3.0f%%", model, pp.Percent)
			if line != lastPull {
				fmt.Fprintln(e.stderr(), "   "+line)
				lastPull = line
			}
		},
	})
	ids := s.Steps()
	if only != nil {
		ids = only
	}
	w := e.stdout()
	what := "does"
	if f.dryRun {
		what = "would do"
	}
	fmt.Fprintf(w, "What %s needs on this machine, step by step; what setup %s:\n", cfg.Path, what)
	pending := 0
	for i, id := range ids {
		st := s.Check(ctx, id)
		fmt.Fprintf(w, "\n%d. %s: %s\n", i+1, st.Title, st.State)
		if st.Ready {
			fmt.Fprintln(w, "   ready: nothing to do")
			continue
		}
		for _, d := range st.Do {
			fmt.Fprintf(w, "   - %s\n", d)
		}
		if len(st.Do) == 0 && st.Fix != "" {
			fmt.Fprintf(w, "   cannot be done here: %s\n", st.Fix)
		}
		pending++
		if f.dryRun {
			continue
		}
		if len(st.Do) > 0 && !f.yes {
			ok, err := e.confirm("   Do it?")
			if err != nil {
				return err
			}
			if !ok {
				fmt.Fprintf(e.stderr(), "Stopped before step %d; nothing more was changed. Run thon setup again to go on.\n", i+1)
				return ExitError{Code: 1}
			}
		}
		start := time.Now()
		p = newStepProgress(e)
		err := s.Apply(ctx, st)
		p.finish(err == nil)
		p = nil
		if err != nil {
			fmt.Fprintf(e.stderr(), "   failed: %v\n", err)
			fmt.Fprintf(e.stderr(), "Stopped at step %d (%s). Fix that, then run sudo thon setup again: the steps already done are skipped.\n", i+1, st.Title)
			return ExitError{Code: 1}
		}
		fmt.Fprintf(w, "   done (%s)\n", time.Since(start).Round(time.Second))
	}
	switch {
	case f.dryRun && pending == 0:
		fmt.Fprintln(w, "\nEverything is ready: nothing to do.")
	case f.dryRun:
		fmt.Fprintf(w, "\n%d step(s) to do; nothing was changed (--dry-run). Run sudo thon setup to do them.\n", pending)
	case only == nil && f.noDoctor:
		fmt.Fprintln(w, "\nThis machine is set up. Next: thon doctor (is it ready for everyone?), then thon run.")
	case only == nil:
		fmt.Fprintln(w, "\nThis machine is set up. Is it ready for everyone?")
		fmt.Fprintln(w)
		return setupDoctor(ctx, e, w)
	}
	return nil
}

// setupDoctor ends a full setup with thon doctor's report.
func setupDoctor(ctx context.Context, e *env, w io.Writer) error {
	rep, where, err := e.doctor(ctx, true)
	if err != nil {
		return err
	}
	printDoctor(w, rep, where)
	if rep.Status == wire.DoctorFail {
		fmt.Fprintln(e.stderr(), "Setup is done, but a check above fails: fix it (each says how), run thon doctor again, then thon run.")
		return ExitError{Code: 1}
	}
	fmt.Fprintln(w, "\nNext: thon run.")
	return nil
}

func newSetupImageCmd(e *env) *cobra.Command {
	var o imagebuild.Options
	var output string
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build the participant image (code-server, the coding agents, the tools), with or without a registry",
		Long: `Image builds THON's participant image: code-server (VS Code in the browser)
running as the non-root user coder on Node.js ` + nodeMajor() + `, with the terminal coding
agents Kilo (kilo), Continue (cn), Cline (cline) and opencode, npm and pnpm,
Python 3 with pip and venv, a JDK, build-essential, Chromium with
playwright-core, git and ripgrep; nothing of them is downloaded when a
sandbox starts.

With a container registry it builds deploy/sandbox/Dockerfile from the
pinned official code-server image. Without one (or with --offline) it builds
the same image from nothing but Debian's package mirror and the npm
registry (those this machine's apt and npm use, unless --mirror and
--npm-registry say otherwise): a Debian 13 root file system from
debootstrap, Node.js and code-server from npm with its native modules
compiled here, imported into Docker and finished by a local build. That
needs root and the debootstrap package, and takes about 6 minutes the
first time on 2 quiet cores (much longer on busy ones: most of it is
compiling code-server's native modules); the result is cached, so running
it again takes seconds.

VS Code extensions are baked in when you have them: every .vsix in
--extensions DIR (or sandbox.extensions_dir of thon.yaml), and, with a
marketplace reachable now, each id of --extensions-list FILE downloaded from
Open VSX once (kept in the cache directory). They are installed into
code-server's extensions directory while the image is built, so a sandbox
starts with them at once; extensions thon.yaml lists that are not baked in
are still installed when a sandbox starts, in the background.`,
		Example: `  sudo thon setup image
  sudo thon setup image --extensions ./vsix
  sudo thon setup image --extensions-list extensions.txt   # kilocode.kilo-code@4.1.0, one per line
  sudo thon setup image --offline --tag thon/sandbox:event
  sudo thon setup image --rebuild -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: use text or json", output)
			}
			// thon.yaml names the image and the extensions to bake in,
			// unless the flags do.
			if o.Tag == "" || !cmd.Flags().Changed("extensions") {
				cfg, err := e.loadConfig(false)
				if err != nil {
					return err
				}
				if o.Tag == "" {
					o.Tag = cfg.Sandbox.Image
				}
				if !cmd.Flags().Changed("extensions") {
					o.ExtensionsDir = cfg.Sandbox.ExtensionsDir
				}
			}
			if o.Tag == "" {
				o.Tag = imagebuild.DefaultTag
			}
			o.ThonVersion = e.version
			p := newStepProgress(e)
			res, err := imagebuild.Build(cmd.Context(), o, p.step)
			p.finish(err == nil)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(e.stdout(), map[string]any{
					"image": res.Image, "id": res.ID, "size_bytes": res.Size, "code_server_version": res.CodeServerVersion,
					"mode": res.Mode, "extensions": nonNil(res.Extensions), "cached": res.Cached, "seconds": res.Took.Seconds(),
				})
			}
			how := "built in " + res.Took.Round(time.Second).String()
			if res.Cached {
				how = "already up to date"
			}
			fmt.Fprintf(e.stdout(), "%s: code-server %s, %d MB, %s build, %s.\n", res.Image, res.CodeServerVersion, res.Size>>20, res.Mode, how)
			if len(res.Extensions) > 0 {
				fmt.Fprintf(e.stdout(), "Extensions baked in: %s.\n", strings.Join(res.Extensions, ", "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Tag, "tag", "", "the image's name (default: sandbox.image of thon.yaml, else "+imagebuild.DefaultTag+")")
	f.BoolVar(&o.Offline, "offline", false, "build from the Debian mirror and npm even if a registry answers")
	f.BoolVar(&o.Rebuild, "rebuild", false, "build again even if nothing changed")
	f.StringVar(&o.CacheDir, "cache-dir", imagebuild.DefaultCacheDir, "where the root file system and package caches are kept")
	f.StringVar(&o.Mirror, "mirror", "", "Debian mirror (default: the one apt on this machine uses, else debootstrap's own)")
	f.StringVar(&o.CodeServerVersion, "code-server", imagebuild.DefaultCodeServerVersion, "code-server version (its engines.node must be Node.js "+nodeMajor()+")")
	f.StringVar(&o.NPMRegistry, "npm-registry", "", "npm registry (default: the one npm on this machine uses, else npm's own)")
	f.StringVar(&o.ExtensionsDir, "extensions", "", "bake every .vsix of this directory into the image (default: sandbox.extensions_dir of thon.yaml)")
	f.StringVar(&o.ExtensionsList, "extensions-list", "", "bake the extensions this file lists (publisher.name[@version] per line), downloaded from Open VSX now")
	f.StringVar(&o.Marketplace, "marketplace", "", "the Open VSX server for --extensions-list (default: code-server's EXTENSIONS_GALLERY, else "+imagebuild.DefaultMarketplace+")")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// nonNil is s, or an empty list for JSON.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// nodeMajor is the major version of the Node.js the participant image has.
func nodeMajor() string {
	major, _, _ := strings.Cut(imagebuild.DefaultNodeVersion, ".")
	return major
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
