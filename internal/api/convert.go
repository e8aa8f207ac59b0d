package api

import (
	"github.com/thon-dev/thon/internal/access"
	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/gateway/keyring"
	"github.com/thon-dev/thon/internal/llm"
	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/store"
	"github.com/thon-dev/thon/wire"
)

// The daemon's records become the API's JSON (package wire) here, and only
// here: renaming a field inside THON does not change the API, and a field
// the API does not list is not sent.
//
// Where a record and its wire type have the same fields, a Go conversion
// does it, so a field added to either fails to compile until it is decided
// here whether the API shows it.

// each converts a list; the API answers [] rather than null.
func each[T, W any](in []T, f func(T) W) []W {
	out := make([]W, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

func toStatus(s orchestrator.Status) wire.Status { return wire.Status(s) }
func toResult(r orchestrator.Result) wire.Result { return wire.Result(r) }
func toGroup(g store.Group) wire.Group {
	return wire.Group{Name: g.Name, Title: g.Title, Users: nonNil(g.Users), CreatedAt: g.CreatedAt}
}
func toTemplate(t orchestrator.TemplateInfo) wire.Template {
	st := t.Settings
	env := st.Env
	if env == nil {
		env = map[string]string{}
	}
	return wire.Template{
		Name: t.Template.Name, Description: t.Template.Description, Sets: nonNil(t.Template.Keys()),
		Image: st.Image, CPU: st.Limits.CPU, MemoryBytes: int64(st.Limits.Memory), Pids: st.Limits.Pids, Env: env,
		Workspace: st.Workspace, IdleTimeout: st.IdleTimeout.String(), IdleAction: st.IdleAction, MaxLifetime: st.MaxLifetime.String(),
		Groups: nonNil(t.Groups), Participants: t.Participants, Outdated: t.Outdated,
	}
}
func toUser(u store.User) wire.User             { return wire.User(u) }
func toEvent(e store.Event) wire.Event          { return wire.Event(e) }
func toLink(l access.Link) wire.Link            { return wire.Link(l) }
func toUsageRow(u store.UsageRow) wire.UsageRow { return wire.UsageRow(u) }
func toConfigFile(f store.ConfigFile) wire.ConfigFile {
	return wire.ConfigFile(f)
}
func toProblem(p config.Problem) wire.Problem { return wire.Problem(p) }
func toPrincipal(p auth.Principal) wire.Principal {
	return wire.Principal(p)
}

func toInstance(i sandbox.Instance) wire.Instance {
	return wire.Instance{ID: i.ID, Name: i.Name, User: i.User, Group: i.Group, Image: i.Image, State: string(i.State),
		SpecHash: i.SpecHash, Created: i.Created, Endpoint: i.Endpoint, ExitCode: i.ExitCode, Reason: i.Reason}
}

func toProgress(p orchestrator.Progress) wire.Progress {
	w := wire.Progress{User: p.User, Phase: p.Phase, Done: p.Done, Total: p.Total}
	if p.Res != nil {
		r := toResult(*p.Res)
		w.Res = &r
	}
	return w
}

func toSummary(s orchestrator.Summary) wire.Summary {
	counts := s.Counts
	if counts == nil {
		counts = map[string]int{}
	}
	return wire.Summary{Action: string(s.Action), Total: s.Total, Counts: counts, Failed: s.Failed,
		Results: each(s.Results, toResult), Seconds: s.Seconds}
}

func toImportResult(r store.ImportResult) wire.ImportResult {
	moved := r.UsersMoved
	if moved == nil {
		moved = map[string]string{}
	}
	return wire.ImportResult{GroupsAdded: nonNil(r.GroupsAdded), UsersAdded: nonNil(r.UsersAdded), UsersMoved: moved,
		Updated: r.Updated, Unchanged: r.Unchanged, NotListed: nonNil(r.NotListed)}
}

func toReconcileReport(r orchestrator.ReconcileReport) wire.ReconcileReport {
	return wire.ReconcileReport{Adopted: nonNil(r.Adopted), Missing: nonNil(r.Missing), Changed: nonNil(r.Changed),
		Orphans: each(r.Orphans, toInstance)}
}

func toGatewayKey(k store.GatewayKey) wire.GatewayKey {
	return wire.GatewayKey{ID: k.ID, Kind: k.Kind, Owner: k.Owner, Generation: k.Generation, Revoked: k.Revoked,
		CreatedAt: k.CreatedAt, RotatedAt: k.RotatedAt}
}

func toUsage(u keyring.Usage) wire.Usage { return wire.Usage(u) }

func toKeyUsage(k keyring.KeyUsage) wire.KeyUsage {
	return wire.KeyUsage{Key: k.Key, Model: k.Model, Group: k.Group, Usage: toUsage(k.Usage)}
}

func toUsageSummary(s keyring.UsageSummary) wire.UsageSummary {
	return wire.UsageSummary{Since: s.Since, Minutes: s.Minutes, Total: toUsage(s.Total), Keys: each(s.Keys, toKeyUsage),
		ByModel: each(s.ByModel, toKeyUsage), Groups: each(s.Groups, toKeyUsage), LastMinute: toUsage(s.LastMinute)}
}

func toToken(t auth.TokenInfo) wire.Token {
	return wire.Token{Name: t.Name, Role: t.Role, Scopes: nonNil(t.Scopes), User: t.User, Created: t.Created,
		Expires: t.Expires, LastUsed: t.LastUsed, Revoked: t.Revoked, State: t.State}
}

func toInvite(in access.Invite) wire.Invite {
	return wire.Invite{ID: in.ID, Group: in.Group, MaxUses: in.MaxUses, Used: in.Used, Revoked: in.Revoked,
		Expires: in.Expires, Created: in.Created, CreatedBy: in.CreatedBy, State: in.State}
}

func toCreatedInvite(c access.CreatedInvite) wire.CreatedInvite {
	return wire.CreatedInvite{Code: c.Code, URL: c.URL, Record: toInvite(c.Record)}
}

func toLLMStatus(s llm.Status) wire.LLMStatus {
	w := wire.LLMStatus{Enabled: s.Enabled, Backend: s.Backend, URL: s.URL, Reachable: s.Reachable, Error: s.Error,
		Version: s.Version, Loaded: each(s.Loaded, toLoadedModel), Configured: each(s.Configured, toConfiguredModel),
		Plan: toScalePlan(s.Plan), Notes: s.Notes}
	if s.Slots != nil {
		w.Slots = &wire.SlotSummary{Busy: s.Slots.Busy, Total: s.Slots.Total}
	}
	if s.Stats != nil {
		st := wire.LLMStats(*s.Stats)
		w.Stats = &st
	}
	if s.Server != nil {
		srv := wire.LLMServer(*s.Server)
		w.Server = &srv
	}
	return w
}

func toLoadedModel(m llm.LoadedModel) wire.LoadedModel             { return wire.LoadedModel(m) }
func toConfiguredModel(m llm.ConfiguredModel) wire.ConfiguredModel { return wire.ConfiguredModel(m) }
func toModelPlan(m llm.ModelPlan) wire.ModelPlan                   { return wire.ModelPlan(m) }
func toApplied(a llm.Applied) wire.Applied                         { return wire.Applied(a) }
func toLLMModel(m llm.Model) wire.LLMModel                         { return wire.LLMModel(m) }
func toPullProgress(p llm.PullProgress) wire.PullProgress          { return wire.PullProgress(p) }

func toScalePlan(p llm.Plan) wire.ScalePlan {
	return wire.ScalePlan{Participants: p.Participants, Models: each(p.Models, toModelPlan)}
}

// toResources sums the last usage sample over the sandboxes measured.
func toResources(u orchestrator.UsageSample) wire.Resources {
	w := wire.Resources{At: u.At, MachineCPUs: u.Machine.CPUs, MachineMemory: u.Machine.Memory, Note: u.Note, Error: u.Error}
	for _, r := range u.Sandboxes {
		w.Sandboxes++
		if r.CPU >= 0 {
			w.CPU += r.CPU
		}
		if r.Memory >= 0 {
			w.Memory += r.Memory
		}
		if r.Disk >= 0 {
			w.Disk += r.Disk
		}
	}
	return w
}
