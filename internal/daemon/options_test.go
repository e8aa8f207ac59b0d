package daemon_test

import (
	"slices"
	"testing"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/daemon"
)

// An organizer who restricts the gateway's models still gets every model
// the assistants are configured with; no restriction stays none.
func TestAllowedModelsIncludeConfiguredOnes(t *testing.T) {
	cfg := config.Default()
	if got := daemon.GatewayOptions(cfg).AllowedModels; got != nil {
		t.Fatalf("no restriction: %v", got)
	}
	cfg.Gateway.AllowedModels = []string{"cloud-model"}
	cfg.LLM.Backend = config.BackendLlamacpp
	cfg.LLM.ChatModels = []config.LLMModel{{Name: "reasoner"}}
	cfg.LLM.SmallModel.Name = "tiny"
	cfg.LLM.EmbeddingModel.Name = "embed"
	got := daemon.GatewayOptions(cfg).AllowedModels
	slices.Sort(got)
	if want := []string{"cloud-model", "embed", config.DefaultChatModel, "reasoner", "tiny"}; !slices.Equal(got, want) {
		t.Fatalf("allowed %v, want %v", got, want)
	}
}
