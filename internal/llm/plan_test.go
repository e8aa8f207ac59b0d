package llm

import (
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/config"
)

func TestPlanFor(t *testing.T) {
	l := config.Default().LLM
	l.EmbeddingModel.Name, l.EmbeddingModel.Checkpoint = "nomic-embed-text-v1.5", "nomic-ai/nomic-embed-text-v1.5-GGUF:Q8_0"
	for _, tc := range []struct {
		n                    int
		ctx, slots, perSlot  int
		embedCtx, embedSlots int
		args                 string
		notes                int
	}{
		{0, 32768, 1, 32768, 8192, 1, "-np 1", 0},
		{1, 32768, 1, 32768, 8192, 1, "-np 1", 0},
		{5, 163840, 5, 32768, 40960, 5, "-np 5", 0},
		// 30 × 32768 passes the 262144 cap: each of 30 slots gets 8738.
		{30, 262144, 30, 8738, 245760, 30, "-np 30", 2},
		// 100 participants: both caps.
		{100, 262144, 64, 4096, 262144, 64, "-np 64", 3},
	} {
		p := PlanFor(l, tc.n)
		if len(p.Models) != 2 {
			t.Fatalf("%d models", len(p.Models))
		}
		c, e := p.Models[0], p.Models[1]
		if c.Role != "chat" || c.Model != "user.gemma-4-31b-it" || c.CtxSize != tc.ctx || c.Slots != tc.slots || c.CtxPerSlot != tc.perSlot || c.LlamacppArgs != tc.args || len(c.Notes) != tc.notes {
			t.Errorf("n=%d chat: %+v", tc.n, c)
		}
		if e.Role != "embedding" || e.CtxSize != tc.embedCtx || e.Slots != tc.embedSlots {
			t.Errorf("n=%d embedding: %+v", tc.n, e)
		}
	}

	l.SlotsPerUser, l.LlamacppArgs = 2, "--flash-attn on"
	if c := PlanFor(l, 3).Models[0]; c.Slots != 6 || c.LlamacppArgs != "-np 6 --flash-attn on" || c.CtxPerSlot != 16384 || !strings.Contains(c.Notes[0], "less than ctx_per_user") {
		t.Errorf("two slots each: %+v", c)
	}
	l.LlamacppArgs = "--parallel=4 --flash-attn on"
	if c := PlanFor(l, 10).Models[0]; c.Slots != 4 || c.LlamacppArgs != l.LlamacppArgs || !strings.Contains(strings.Join(c.Notes, ";"), "sets 4 parallel slots") {
		t.Errorf("organizer's own -np: %+v", c)
	}
}

func TestParallelArg(t *testing.T) {
	for args, want := range map[string]int{"-np 4": 4, "--parallel 8 -fa on": 8, "--parallel=2": 2, "-np": 0, "-np x": 0, "--no-mmap": 0, "": 0} {
		if n, _ := ParallelArg(args); n != want {
			t.Errorf("ParallelArg(%q) = %d, want %d", args, n, want)
		}
	}
}
