package cli

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/thon-dev/thon/client"
)

func newLLMCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "llm",
		Short: "The language model server: status, models, sizing for the event",
		Long: `The LLM server behind every participant's assistants (llm in thon.yaml):
Lemonade Server, managed through its API; llama.cpp's llama-server, run by
THON in a container (backend: llamacpp, no url) or your own (with a url);
or any OpenAI-compatible server (backend: openai; status and models only).

THON sizes the models for the event: context = ctx_per_user × participants
(capped by max_ctx) and parallel slots = slots_per_user × participants
(capped by max_slots). The plan is applied again about 30 s after
participants are added or removed, never during a bulk start: Lemonade
reloads the models that are loaded; a llama-server THON runs is restarted
with the new sizes once the streams in flight have finished. Nothing is
downloaded unless you run "thon llm pull".

A server that is down never stops sandboxes: "thon llm status" says why,
and the assistants work once it is back. A llama-server THON runs is
started again when it dies, with backoff, and the audit log says so.`,
	}
	var output string
	status := &cobra.Command{
		Use:   "status",
		Short: "Health, loaded models, slots, speed, and what needs doing",
		Example: `  thon llm status
  thon llm status -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			st, err := c.LLMStatus(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(e.stdout(), st)
			}
			printLLMStatus(e.stdout(), st)
			return nil
		},
	}
	status.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")

	var all bool
	models := &cobra.Command{
		Use:   "models",
		Short: "List the server's models",
		Example: `  thon llm models
  thon llm models --all   # also what Lemonade would download`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			ms, err := c.LLMModels(cmd.Context(), all)
			if err != nil {
				return err
			}
			bw := bufio.NewWriter(e.stdout())
			defer bw.Flush()
			tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "MODEL\tDOWNLOADED\tSIZE\tCHECKPOINT\tLABELS")
			for _, m := range ms {
				size := ""
				if m.SizeGB > 0 {
					size = fmt.Sprintf("%.1f GB", m.SizeGB)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.ID, yesNo(m.Downloaded), size, m.Checkpoint, strings.Join(m.Labels, ","))
			}
			return tw.Flush()
		},
	}
	models.Flags().BoolVar(&all, "all", false, "also models that are not downloaded")

	pull := &cobra.Command{
		Use:   "pull [MODEL]",
		Short: "Download a model (default: the models thon.yaml configures)",
		Long: `Pull downloads models. Without MODEL it downloads every model thon.yaml
configures. On Lemonade a model with a checkpoint is registered as
user.NAME. For llamacpp, THON downloads each checkpoint's GGUF files from
Hugging Face into server.data_dir/models (HF_ENDPOINT for a mirror,
HF_TOKEN for a gated model), resuming a broken download, and the server THON
runs starts serving it. Downloads can be many gigabytes: run it before the
event, on the venue's best network.`,
		Example: `  thon llm pull
  thon llm pull Qwen3-0.6B-GGUF
  HF_TOKEN=hf_… thon llm pull gemma-4-31b-it`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			last := ""
			err = c.LLMPull(cmd.Context(), firstArg(args), func(model string, p client.PullProgress) {
				line := fmt.Sprintf("%s: %3.0f%%", model, p.Percent)
				if p.File != "" {
					line += fmt.Sprintf(" %s (file %d of %d)", p.File, p.FileIndex, p.TotalFiles)
				}
				if line != last {
					fmt.Fprintln(e.stderr(), line)
					last = line
				}
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout(), "downloaded; load it sized for the event with: thon llm load")
			return nil
		},
	}

	load := &cobra.Command{
		Use:   "load [MODEL]",
		Short: "Load a model (default: the configured ones, sized for the participants)",
		Example: `  thon llm load
  thon llm load user.gemma-4-31b-it`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stderr(), "loading (this can take minutes for a large model)…")
			res, err := c.LLMLoad(cmd.Context(), firstArg(args))
			printApplied(e.stdout(), res)
			return err
		},
	}
	unload := &cobra.Command{
		Use:     "unload [MODEL]",
		Short:   "Unload a model (default: every model)",
		Example: `  thon llm unload user.gemma-4-31b-it`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			if err := c.LLMUnload(cmd.Context(), firstArg(args)); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout(), "unloaded")
			return nil
		},
	}

	var dryRun bool
	scale := &cobra.Command{
		Use:   "scale",
		Short: "Size the loaded models for the participants there are now",
		Long: `Scale reloads each configured model that is loaded with other options than
the plan's (context and slots for the current participants). A reload
interrupts that model's requests in flight; THON does it on its own about
30 s after participants change. --dry-run prints the plan and changes nothing.`,
		Example: `  thon llm scale --dry-run
  thon llm scale`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			plan, err := c.LLMPlan(cmd.Context())
			if err != nil {
				return err
			}
			printPlan(e.stdout(), plan)
			if dryRun {
				return nil
			}
			res, err := c.LLMApply(cmd.Context())
			printApplied(e.stdout(), res)
			return err
		},
	}
	scale.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan, change nothing")

	cmd.AddCommand(status, models, pull, load, unload, scale)
	return cmd
}

func firstArg(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func printLLMStatus(w io.Writer, st client.LLMStatus) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	state := "up"
	switch {
	case !st.Enabled:
		state = "off"
	case !st.Reachable:
		state = "DOWN"
	}
	fmt.Fprintf(bw, "LLM server  %s (%s)", state, st.Backend)
	if st.URL != "" {
		fmt.Fprintf(bw, " at %s", st.URL)
	}
	if st.Version != "" {
		fmt.Fprintf(bw, ", version %s", st.Version)
	}
	fmt.Fprintln(bw)
	if st.Error != "" {
		fmt.Fprintf(bw, "            %s\n", st.Error)
	}
	if srv := st.Server; srv != nil {
		line := fmt.Sprintf("Run by THON %s %s, image %s, on %s", srv.Container, srv.State, srv.Image, gpuWord(srv.GPU))
		if !srv.Started.IsZero() {
			line += ", up since " + srv.Started.Local().Format("15:04:05")
		}
		fmt.Fprintln(bw, line)
		if srv.Crashes > 0 {
			fmt.Fprintf(bw, "            restarted %d times; last: %s\n", srv.Crashes, srv.LastExit)
		}
		if srv.Waiting != "" {
			fmt.Fprintf(bw, "            %s\n", srv.Waiting)
		}
	}
	if st.Slots != nil {
		fmt.Fprintf(bw, "Slots       %d busy of %d\n", st.Slots.Busy, st.Slots.Total)
	}
	if st.Stats != nil {
		fmt.Fprintf(bw, "Speed       %.1f tokens/s, first token after %.2fs (last request)\n", st.Stats.TokensPerSecond, st.Stats.TimeToFirstToken)
	}
	if len(st.Loaded) > 0 {
		fmt.Fprintln(bw, "\nLoaded")
		tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  MODEL\tTYPE\tCONTEXT\tARGS\tBUSY")
		for _, m := range st.Loaded {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\n", m.Name, m.Type, m.CtxSize, m.LlamacppArgs, yesNo(m.Busy))
		}
		tw.Flush()
	}
	fmt.Fprintf(bw, "\nConfigured for %d participants\n", st.Plan.Participants)
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  ROLE\tMODEL\tDOWNLOADED\tLOADED\tAS PLANNED")
	for _, m := range st.Configured {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", m.Role, m.Model, yesNo(m.Downloaded), yesNo(m.Loaded), yesNo(m.Current))
	}
	tw.Flush()
	if len(st.Notes) > 0 {
		fmt.Fprintln(bw)
		for _, n := range st.Notes {
			fmt.Fprintf(bw, "! %s\n", n)
		}
	}
}

func gpuWord(g string) string {
	if g == "" || g == "none" {
		return "the CPU"
	}
	return "the " + g + " GPU"
}

func printPlan(w io.Writer, p client.ScalePlan) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	fmt.Fprintf(bw, "Plan for %d participants\n", p.Participants)
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  ROLE\tMODEL\tCONTEXT\tSLOTS\tPER REQUEST\tLLAMA.CPP ARGS")
	for _, m := range p.Models {
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%s\n", m.Role, m.Model, m.CtxSize, m.Slots, m.CtxPerSlot, m.LlamacppArgs)
	}
	tw.Flush()
	for _, m := range p.Models {
		for _, n := range m.Notes {
			fmt.Fprintf(bw, "! %s: %s\n", m.Model, n)
		}
	}
}

func printApplied(w io.Writer, res []client.Applied) {
	for _, a := range res {
		line := a.Model + ": " + a.Action
		if a.Reason != "" {
			line += " (" + a.Reason + ")"
		}
		fmt.Fprintln(w, line)
	}
}
