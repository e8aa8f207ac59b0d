package llm

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/thon-dev/thon/internal/config"
)

// Plan is how the LLM server should be loaded for the event's participants:
// context and parallel slots that grow with them.
type Plan struct {
	Participants int         `json:"participants"`
	Models       []ModelPlan `json:"models"`
}

// ModelPlan is one model's load options.
type ModelPlan struct {
	Role         string   `json:"role"` // chat | embedding | small
	Model        string   `json:"model"`
	Checkpoint   string   `json:"checkpoint,omitempty"`
	CtxSize      int      `json:"ctx_size"`      // whole context (llama.cpp --ctx-size)
	Slots        int      `json:"slots"`         // parallel requests (llama.cpp --parallel)
	CtxPerSlot   int      `json:"ctx_per_slot"`  // what one request gets
	LlamacppArgs string   `json:"llamacpp_args"` // what THON passes on load
	Notes        []string `json:"notes,omitempty"`
}

// Slots is each model's parallel slots (llama.cpp's -np) by model id: what
// the gateway may send each model at once.
func (p Plan) Slots() map[string]int {
	out := make(map[string]int, len(p.Models))
	for _, mp := range p.Models {
		out[mp.Model] = mp.Slots
	}
	return out
}

// PlanFor sizes every configured model for n participants: context =
// ctx_per_user × n capped by max_ctx, slots = slots_per_user × n capped by
// max_slots (at least one participant's worth of each).
func PlanFor(l config.LLM, n int) Plan {
	p := Plan{Participants: n}
	for _, m := range Configured(l) {
		p.Models = append(p.Models, planModel(l, m.Role, m.Model, n))
	}
	return p
}

// RoleModel is a configured model and what it is for.
type RoleModel struct {
	Role  string // chat | embedding | small
	Model config.LLMModel
}

// Configured lists thon.yaml's models: the chat model, the extra chat
// models, the small model and the embeddings model, those with a name.
// An extra chat model without ctx_per_user takes the chat model's.
func Configured(l config.LLM) []RoleModel {
	out := []RoleModel{{"chat", l.ChatModel}}
	for _, m := range l.ChatModels {
		if m.CtxPerUser == 0 {
			m.CtxPerUser, m.MaxCtx = l.ChatModel.CtxPerUser, cmpOrInt(m.MaxCtx, l.ChatModel.MaxCtx)
		}
		out = append(out, RoleModel{"chat", m})
	}
	if l.SmallModel.Name != "" {
		out = append(out, RoleModel{"small", l.SmallModel})
	}
	if l.EmbeddingModel.Name != "" {
		out = append(out, RoleModel{"embedding", l.EmbeddingModel})
	}
	return out
}

func cmpOrInt(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

func planModel(l config.LLM, role string, m config.LLMModel, n int) ModelPlan {
	users := max(n, 1)
	mp := ModelPlan{Role: role, Model: ModelID(l, m), Checkpoint: m.Checkpoint}
	mp.CtxSize = m.CtxPerUser * users
	if m.MaxCtx > 0 && mp.CtxSize > m.MaxCtx {
		mp.CtxSize = m.MaxCtx
		mp.Notes = append(mp.Notes, fmt.Sprintf("context capped at max_ctx %d (%d participants × %d would be %d)", m.MaxCtx, users, m.CtxPerUser, m.CtxPerUser*users))
	}
	mp.Slots = max(1, l.SlotsPerUser*users)
	if l.MaxSlots > 0 && mp.Slots > l.MaxSlots {
		mp.Slots = l.MaxSlots
		mp.Notes = append(mp.Notes, fmt.Sprintf("slots capped at max_slots %d: more requests at once wait their turn", l.MaxSlots))
	}
	args := strings.TrimSpace(l.LlamacppArgs)
	if own, ok := ParallelArg(args); ok {
		mp.Slots = own
		mp.Notes = append(mp.Notes, fmt.Sprintf("llamacpp_args sets %d parallel slots; THON does not change them", own))
		mp.LlamacppArgs = args
	} else {
		mp.LlamacppArgs = strings.TrimSpace("-np " + strconv.Itoa(mp.Slots) + " " + args)
	}
	mp.CtxPerSlot = mp.CtxSize / mp.Slots
	if mp.CtxPerSlot < m.CtxPerUser {
		mp.Notes = append(mp.Notes, fmt.Sprintf("each slot gets %d tokens of context, less than ctx_per_user %d: raise max_ctx or lower max_slots", mp.CtxPerSlot, m.CtxPerUser))
	}
	return mp
}

// ParallelArg finds -np N / --parallel N (or =N) in llama.cpp arguments.
func ParallelArg(args string) (int, bool) {
	f := strings.Fields(args)
	for i, a := range f {
		name, val, hasVal := strings.Cut(a, "=")
		if name != "-np" && name != "--parallel" {
			continue
		}
		if !hasVal && i+1 < len(f) {
			val = f[i+1]
		}
		if n, err := strconv.Atoi(val); err == nil && n > 0 {
			return n, true
		}
	}
	return 0, false
}
