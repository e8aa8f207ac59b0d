package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/thon-dev/thon/internal/api"
	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/dashboard"
)

// newDashboard builds the organizers' dashboard, with the REST API on the
// same origin for its actions.
func (d *Daemon) newDashboard(ctx context.Context, o Options, cfg *config.Config, apiHandler http.Handler, info api.Info, log *slog.Logger) (*dashboard.Dashboard, error) {
	if err := d.setAdminPassword(ctx, cfg); err != nil {
		return nil, err
	}
	g := cfg.Gateway.Limits
	limits := fmt.Sprintf("%d requests/min, %d at once, %d %s tokens/min", g.RequestsPerMinute, g.Concurrency, g.TokensPerMinute, g.TokenKind)
	if g.BudgetTokens > 0 {
		limits += fmt.Sprintf(", %d tokens for the event", g.BudgetTokens)
	}
	if cfg.Gateway.Mode == config.GatewayPerGroup {
		limits += " (per group, times its size)"
	}
	var llmSvc api.LLM
	if d.LLM != nil {
		llmSvc = d.LLM
	}
	if ps := auth.NewSSO(cfg.Auth.Providers, auth.SSOOptions{Client: o.ProviderClient}); len(ps.Providers()) > 0 {
		d.SSO = ps
	}
	dash, err := dashboard.New(dashboard.Options{
		Orch: d.Orch, Store: d.Store, Sessions: d.Admins, Admins: cfg.Auth.Admins, SSO: d.SSO, Access: d.Access, Addresses: d.addrs, Keys: keysOrNil(d.Keyring), LLM: llmSvc, Queues: d.queues(),
		API: apiHandler, Logger: log, Files: d.Files, Tokens: d.Tokens,
		TLS: func() dashboard.TLSInfo {
			st := d.CA.Status()
			t := dashboard.TLSInfo{Own: cfg.Access.CertFile != "", Fingerprint: d.CA.CAFingerprint(), Warning: st.Warning}
			for _, n := range st.ACME {
				t.ACME = append(t.ACME, dashboard.ACMEName{Name: n.Name, NotAfter: n.NotAfter, Error: n.Error})
			}
			if leaf, err := d.CA.Leaf(); err == nil {
				t.Subject, t.Names, t.NotAfter = leaf.Subject.String(), leaf.DNSNames, leaf.NotAfter
				for _, ip := range leaf.IPAddresses {
					t.Names = append(t.Names, ip.String())
				}
			}
			return t
		},
		Info: func() dashboard.Info {
			host := strings.TrimPrefix(strings.TrimSuffix(d.addrs.MainURL(), "/"), "https://")
			return dashboard.Info{
				Version: info.Version, ConfigPath: info.ConfigPath, DataDir: info.DataDir, ExternalIP: host,
				Hostnames: cfg.Access.Hostnames, Mode: cfg.Access.Mode, GatewayLimits: limits,
			}
		},
	})
	if err != nil {
		return nil, err
	}
	log.Info("dashboard", "url", d.addrs.DashboardURL(), "password_set", d.Admins.HasPassword(ctx))
	return dash, nil
}

// setAdminPassword stores the hash of auth.admin_password when it is set
// and new; a change ends every dashboard session.
func (d *Daemon) setAdminPassword(ctx context.Context, cfg *config.Config) error {
	if cfg.Auth.AdminPassword == "" {
		return nil
	}
	changed, err := d.Admins.SetPassword(ctx, cfg.Auth.AdminPassword)
	if err != nil {
		return fmt.Errorf("auth.admin_password: %w", err)
	}
	if changed {
		d.Store.AddEvent(context.WithoutCancel(ctx), "thon", "admin.password", "", "set from the configuration; dashboard sessions ended")
	}
	return nil
}
