package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
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
		Long: `Usage sums the gateway's records: requests, prompt and completion tokens and
rejections (429s) per key and model, for everyone or some users or groups,
over the whole event or since a while ago. -o json prints the daemon's whole
summary (in all, per key, per key and model, per group), the one the
dashboard shows too.`,
		Example: `  thon gateway usage
  thon gateway usage --group alpha --since 1h
  thon gateway usage --user alice -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			sum, err := c.GatewayUsageSummary(cmd.Context(), users, groups, since, 0)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(e.stdout(), sum)
			}
			bw := bufio.NewWriter(e.stdout())
			defer bw.Flush()
			tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "KEY\tMODEL\tREQUESTS\tPROMPT\tCOMPLETION\tREJECTED\t")
			for _, u := range sum.ByModel {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t\n", u.Key, u.Model, u.Requests, u.PromptTokens, u.CompletionTokens, u.Rejections)
			}
			if len(sum.ByModel) == 0 {
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
			backend := replicaBackend{c}
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
			slots := make(map[string]int, len(plan.Models))
			for _, mp := range plan.Models {
				slots[mp.Model] = mp.Slots
			}
			gw.SetSlots(slots)
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

// replicaBackend makes the daemon the key store and usage sink of a gateway
// replica (thon gateway serve): keys are looked up, and usage stored,
// through the API.
type replicaBackend struct{ c *client.Client }

// KeyByHash implements gateway.KeyStore.
func (b replicaBackend) KeyByHash(ctx context.Context, hash string) (gateway.Key, error) {
	k, err := b.c.GatewayLookup(ctx, hash)
	if client.IsNotFound(err) {
		return gateway.Key{}, gateway.ErrUnknownKey
	}
	if err != nil {
		return gateway.Key{}, err
	}
	return gateway.Key{ID: k.ID, Owner: k.Owner, Group: k.Group, Scale: k.Scale, Revoked: k.Revoked, BudgetUsed: k.BudgetUsed}, nil
}

// Add implements gateway.UsageSink.
func (b replicaBackend) Add(ctx context.Context, u gateway.Usage) error {
	return b.c.AddGatewayUsage(ctx, []client.UsageRow{{KeyID: u.KeyID, Model: u.Model, Minute: u.Minute, Requests: u.Requests,
		PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, Rejections: u.Rejections}})
}
