package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/daemon"
	"github.com/thon-dev/thon/internal/gateway"
)

func newGatewayCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "The AI gateway: participants' keys and their usage",
		Long: `The AI gateway is THON's OpenAI-compatible endpoint for the assistants in
every sandbox. Each participant (or group, with gateway.mode: per-group) has
its own key, which their sandbox receives as OPENAI_API_KEY with the
gateway's URL as OPENAI_BASE_URL. Only hashes of keys are stored.`,
	}
	keys := &cobra.Command{
		Use:   "keys",
		Short: "List gateway keys (list, rotate, revoke)",
		Example: `  thon gateway keys
  thon gateway keys rotate alice
  thon gateway keys revoke group:alpha`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return listKeys(e, cmd) },
	}
	keys.AddCommand(&cobra.Command{
		Use: "list", Short: "List gateway keys", Args: cobra.NoArgs,
		Example: `  thon gateway keys list`,
		RunE:    func(cmd *cobra.Command, args []string) error { return listKeys(e, cmd) },
	}, &cobra.Command{
		Use:   "rotate ID|USER",
		Short: "Replace a key; the old one stops working at once",
		Long: `Rotate replaces a key (by id, "user:alice" or "group:alpha", or by the user
whose sandbox uses it) and prints the new one. The old key stops working at
once; sandboxes receive the new one when recreated ("thon run --recreate"
recreates every sandbox whose key changed, keeping workspaces).`,
		Example: `  thon gateway keys rotate alice && thon instance recreate alice`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			k, err := c.RotateGatewayKey(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout(), k.Key)
			fmt.Fprintf(e.stderr(), "%s rotated. Sandboxes get the new key when recreated: thon run --recreate\n", k.ID)
			return nil
		},
	}, &cobra.Command{
		Use:     "revoke ID|USER",
		Short:   "Make a key stop working (rotate issues a new one)",
		Example: `  thon gateway keys revoke alice`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			if err := c.RevokeGatewayKey(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout(), "%s: revoked\n", args[0])
			return nil
		},
	})

	var users, groups []string
	var since, output string
	usage := &cobra.Command{
		Use:   "usage",
		Short: "Requests and tokens per key and model",
		Long: `Usage sums the gateway's per-minute records: requests, prompt and completion
tokens and rejections (429s) per key and model, for everyone or some users or
groups, over the whole event or since a while ago. -o json prints the
per-minute rows.`,
		Example: `  thon gateway usage
  thon gateway usage --group alpha --since 1h
  thon gateway usage --user alice -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			rows, err := c.GatewayUsage(cmd.Context(), users, groups, since)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(e.stdout(), rows)
			}
			type sum struct{ requests, prompt, completion, rejections int64 }
			type k struct{ key, model string }
			sums := map[k]*sum{}
			for _, r := range rows {
				s := sums[k{r.KeyID, r.Model}]
				if s == nil {
					s = &sum{}
					sums[k{r.KeyID, r.Model}] = s
				}
				s.requests += r.Requests
				s.prompt += r.PromptTokens
				s.completion += r.CompletionTokens
				s.rejections += r.Rejections
			}
			order := make([]k, 0, len(sums))
			for key := range sums {
				order = append(order, key)
			}
			sort.Slice(order, func(i, j int) bool {
				return order[i].key < order[j].key || order[i].key == order[j].key && order[i].model < order[j].model
			})
			bw := bufio.NewWriter(e.stdout())
			defer bw.Flush()
			tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "KEY\tMODEL\tREQUESTS\tPROMPT\tCOMPLETION\tREJECTED\t")
			for _, key := range order {
				s := sums[key]
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t\n", key.key, key.model, s.requests, s.prompt, s.completion, s.rejections)
			}
			if len(order) == 0 {
				fmt.Fprintln(e.stderr(), "No usage yet.")
			}
			return tw.Flush()
		},
	}
	usage.Flags().StringArrayVar(&users, "user", nil, "only this participant's key (repeatable)")
	usage.Flags().StringArrayVarP(&groups, "group", "g", nil, "only this group's keys (repeatable)")
	usage.Flags().StringVar(&since, "since", "", "only the last while, e.g. 1h or 30m (default: the whole event)")
	usage.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	var listen string
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Run an extra AI gateway replica in the foreground",
		Long: `Serve runs another replica of the AI gateway, for events whose assistants
outgrow one process or machine. It asks the THON daemon (--server/THON_URL
with --token/THON_TOKEN, or the local daemon) about keys and sends it the usage
it counts. Set gateway.redis so that every replica shares one set of limits:
without it, each replica keeps its own counters. SIGINT or SIGTERM stop it.`,
		Example: `  thon gateway serve --listen 0.0.0.0:9081
  THON_URL=https://10.0.0.5 THON_TOKEN=... thon gateway serve`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := e.loadConfig(false)
			if err != nil {
				return err
			}
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(e.stderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
			if cfg.Gateway.Redis == "" {
				log.Warn("gateway.redis is not set: this replica's limits are its own, not shared with the daemon's gateway")
			}
			opts := daemon.GatewayOptions(cfg)
			backend := client.GatewayBackend{C: c}
			opts.Keys, opts.Usage, opts.Logger = backend, backend, log
			gw, err := gateway.New(opts)
			if err != nil {
				return err
			}
			defer gw.Close()
			if cfg.Gateway.UpstreamSlots == 0 && cfg.Gateway.Upstream == "" && (cfg.LLM.IsManaged() || cfg.LLM.Backend == config.BackendLemonade) {
				// The daemon sizes the server: its plan has each model's slots.
				go followPlanSlots(cmd.Context(), c, gw, log)
			}
			if listen == "" {
				listen = cfg.Gateway.Listen
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w (set --listen)", listen, err)
			}
			srv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}
			go func() {
				<-cmd.Context().Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				srv.Shutdown(ctx)
			}()
			log.Info("AI gateway replica listening", "addr", ln.Addr().String(), "daemon", c.URL(), "upstream", opts.Upstream)
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	serve.Flags().StringVar(&listen, "listen", "", "address to listen on (default gateway.listen)")
	cmd.AddCommand(keys, usage, serve)
	return cmd
}

// followPlanSlots gives a replica the slots of each model in the daemon's
// LLM plan, now and every 30 s, so that it never sends a model more than
// the server has.
func followPlanSlots(ctx context.Context, c *client.Client, gw *gateway.Gateway, log *slog.Logger) {
	warned := false
	for {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		plan, err := c.LLMPlan(pctx)
		cancel()
		switch {
		case err == nil:
			gw.SetSlots(plan.Slots())
		case !warned && ctx.Err() == nil:
			log.Warn("cannot read the daemon's LLM plan: this replica does not limit requests per model to the server's slots (set gateway.upstream_slots, or give the token the llm:read scope)", "err", err)
			warned = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(30 * time.Second):
		}
	}
}

func listKeys(e *env, cmd *cobra.Command) error {
	c, err := e.daemonClient(cmd.Context())
	if err != nil {
		return err
	}
	ks, err := c.GatewayKeys(cmd.Context())
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(e.stdout())
	defer bw.Flush()
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tGENERATION\tSTATE\tROTATED")
	for _, k := range ks {
		state := "active"
		if k.Revoked {
			state = "revoked"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", k.ID, k.Generation, state, k.RotatedAt.Local().Format(time.DateTime))
	}
	if len(ks) == 0 {
		fmt.Fprintln(e.stderr(), "No keys yet: a participant's key is made when their sandbox is created.")
	}
	return tw.Flush()
}
