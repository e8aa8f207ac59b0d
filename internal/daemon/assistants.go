package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"slices"
	"sync/atomic"
	"time"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/llm"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/store"
)

// sandboxHost is the host as seen from inside a sandbox.
const sandboxHost = "host.docker.internal"

// personalizer gives each sandbox its way to the LLM: the OpenAI variables
// every SDK reads, and the assistants' config files. Its settings change
// when `thon run` imports a new thon.yaml.
type personalizer struct {
	d   *Daemon
	st  *store.Store // who participants are (their e-mail)
	log *slog.Logger
	cfg atomic.Pointer[config.Config] // the settings last applied
	// gatewayBase is the gateway as sandboxes reach it, "" when it is off
	// (gateway settings take effect when the daemon starts).
	gatewayBase string
	settings    atomic.Pointer[personalSettings]
}

type personalSettings struct {
	direct     llm.Endpoint
	assistants *llm.Assistants // nil when llm.enabled is false
	// byTemplate are the assistants of templates that give files of their own.
	byTemplate map[string]*llm.Assistants
}

func newPersonalizer(d *Daemon, cfg *config.Config, log *slog.Logger) (*personalizer, error) {
	p := &personalizer{d: d, st: d.Store, log: log}
	if d.Keyring != nil {
		p.gatewayBase = cfg.GatewayForSandboxes()
	}
	return p, p.apply(cfg)
}

// apply takes the LLM and assistant settings of cfg. Bad base files are an
// error, and the old settings stay.
func (p *personalizer) apply(cfg *config.Config) error {
	s := &personalSettings{direct: llm.Endpoint{BaseURL: SandboxURL(cfg.LLM.OpenAIBase()), Key: cfg.LLM.APIKey}}
	if cfg.LLM.Enabled {
		stored, err := p.storedFiles()
		if err != nil {
			return err
		}
		a, err := llm.NewAssistantsWith(cfg, stored)
		if err != nil {
			return err
		}
		s.assistants = a
		for _, t := range cfg.Templates {
			sets := t.Assistants.Sets()
			if len(sets) == 0 {
				continue
			}
			// The template's own files win over the dashboard's stored ones.
			own := make(map[string][]byte, len(stored))
			for kind, data := range stored {
				if !slices.Contains(sets, llm.StoredKinds[kind]) {
					own[kind] = data
				}
			}
			tc := *cfg
			tc.Assistants = t.Assistants.Apply(cfg.Assistants)
			ta, err := llm.NewAssistantsWith(&tc, own)
			if err != nil {
				return fmt.Errorf("templates.%s: %w", t.Name, err)
			}
			if s.byTemplate == nil {
				s.byTemplate = map[string]*llm.Assistants{}
			}
			s.byTemplate[t.Name] = ta
		}
	}
	p.settings.Store(s)
	p.cfg.Store(cfg)
	if p.d.Orch != nil {
		p.d.Orch.SpecsChanged()
	}
	return nil
}

// reapply applies the last settings again: a stored file changed.
func (p *personalizer) reapply() error {
	return p.apply(p.cfg.Load())
}

// storedFiles are the assistant files kept in the database (dashboard).
func (p *personalizer) storedFiles() (map[string][]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := p.d.Store.ConfigFiles(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, f := range list {
		if _, ok := llm.StoredKinds[f.Kind]; !ok {
			continue
		}
		full, err := p.d.Store.ConfigFile(ctx, f.Name)
		if err != nil {
			return nil, err
		}
		out[f.Kind] = []byte(full.Content)
	}
	return out, nil
}

// personalize adds one participant's endpoint and key to spec. With the
// gateway on that is the gateway and their own (or their group's) key;
// with it off, the LLM server and llm.api_key. The admin key never goes in.
func (p *personalizer) personalize(spec *sandbox.Spec, template string) {
	s := p.settings.Load()
	ep := llm.Endpoint{}
	switch {
	case p.gatewayBase != "":
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		key, err := p.d.Keyring.KeyFor(ctx, spec.User, spec.Group)
		if err != nil {
			p.log.Error("gateway key for sandbox", "user", spec.User, "err", err)
		}
		ep = llm.Endpoint{BaseURL: p.gatewayBase, Key: key} // "" when revoked
	case s.assistants != nil:
		ep = s.direct
	default:
		return
	}
	env := make(map[string]string, len(spec.Env)+2)
	maps.Copy(env, spec.Env)
	env["OPENAI_BASE_URL"] = ep.BaseURL
	if ep.Key != "" {
		env["OPENAI_API_KEY"] = ep.Key
	}
	spec.Env = env
	if s.assistants == nil {
		return
	}
	assistants := s.assistants
	if a, ok := s.byTemplate[template]; ok {
		assistants = a
	}
	who := llm.Participant{User: spec.User, Group: spec.Group, Workspace: spec.WorkspacePath()}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if u, err := p.st.User(ctx, spec.User); err == nil {
		who.Email = u.Email // thon.yaml's: the git identity, $THON_USER_EMAIL
	}
	files, err := assistants.Files(ep, who)
	if err != nil {
		p.log.Error("assistant files for sandbox", "user", spec.User, "err", err)
		return
	}
	spec.Files = append(spec.Files, files...)
}

// SandboxURL rewrites a URL on this host's loopback so a sandbox reaches it
// through the host (host.docker.internal). The server must then listen on
// more than loopback; `thon llm status` says when it does not.
func SandboxURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && (ip.IsLoopback() || ip.IsUnspecified())) {
		if port := u.Port(); port != "" {
			u.Host = net.JoinHostPort(sandboxHost, port)
		} else {
			u.Host = sandboxHost
		}
	}
	return u.String()
}
