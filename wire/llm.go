package wire

import "time"

// LLMStatus is the LLM server's health, models, slots, speed and the
// scaling plan.
type LLMStatus struct {
	Enabled    bool              `json:"enabled"`
	Backend    string            `json:"backend"`
	URL        string            `json:"url"`
	Reachable  bool              `json:"reachable"`
	Error      string            `json:"error,omitempty"`
	Version    string            `json:"version,omitempty"`
	Loaded     []LoadedModel     `json:"loaded"`
	Slots      *SlotSummary      `json:"slots,omitempty"`
	Stats      *LLMStats         `json:"stats,omitempty"`
	Configured []ConfiguredModel `json:"configured"`
	Plan       ScalePlan         `json:"plan"`
	Notes      []string          `json:"notes,omitempty"`
	// Server is the container of a server THON runs (backend llamacpp
	// without a url).
	Server *LLMServer `json:"server,omitempty"`
}

// LoadedModel is a model the server has loaded.
type LoadedModel struct {
	Name         string `json:"name"`
	Checkpoint   string `json:"checkpoint,omitempty"`
	Type         string `json:"type,omitempty"` // llm, embedding, reranking, …
	Recipe       string `json:"recipe,omitempty"`
	Device       string `json:"device,omitempty"`
	CtxSize      int    `json:"ctx_size,omitempty"`
	LlamacppArgs string `json:"llamacpp_args,omitempty"`
	Busy         bool   `json:"busy"`
}

// SlotSummary is how many of the server's parallel slots are busy.
type SlotSummary struct {
	Busy  int `json:"busy"`
	Total int `json:"total"`
}

// LLMStats is the server's speed and totals.
type LLMStats struct {
	TimeToFirstToken float64 `json:"time_to_first_token"` // seconds, last request
	TokensPerSecond  float64 `json:"tokens_per_second"`
	InputTokens      int64   `json:"input_tokens"`
	OutputTokens     int64   `json:"output_tokens"`
	RequestsTotal    int64   `json:"requests_total,omitempty"`
}

// ConfiguredModel is a model thon.yaml names and where it is.
type ConfiguredModel struct {
	Role       string `json:"role"`
	Model      string `json:"model"`
	Checkpoint string `json:"checkpoint,omitempty"`
	Downloaded bool   `json:"downloaded"`
	Loaded     bool   `json:"loaded"`
	// Current: loaded with the options the plan gives it now.
	Current bool `json:"current"`
}

// ScalePlan sizes the configured models for the participants there are.
type ScalePlan struct {
	Participants int         `json:"participants"`
	Models       []ModelPlan `json:"models"`
}

// ModelPlan is how one model is loaded.
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

// LLMServer is the container of an LLM server THON runs.
type LLMServer struct {
	Container string    `json:"container"`
	Image     string    `json:"image"`
	State     string    `json:"state"` // running | starting | restarting | stopped | missing
	Ready     bool      `json:"ready"`
	Endpoint  string    `json:"endpoint,omitempty"`
	Started   time.Time `json:"started,omitempty"`
	GPU       string    `json:"gpu"` // none | nvidia | amd | intel
	Crashes   int       `json:"crashes"`
	LastExit  string    `json:"last_exit,omitempty"`
	Error     string    `json:"error,omitempty"`
	Waiting   string    `json:"waiting,omitempty"`
	Notes     []string  `json:"notes,omitempty"`
	TestModel bool      `json:"test_model,omitempty"` // THON's test model answers
}

// Applied is what loading one model did.
type Applied struct {
	Model  string `json:"model"`
	Action string `json:"action"` // loaded | unchanged | skipped
	Reason string `json:"reason,omitempty"`
}

// LLMModel is a model the server offers.
type LLMModel struct {
	ID            string   `json:"id"`
	Checkpoint    string   `json:"checkpoint,omitempty"`
	Recipe        string   `json:"recipe,omitempty"`
	Downloaded    bool     `json:"downloaded"`
	Labels        []string `json:"labels,omitempty"`
	SizeGB        float64  `json:"size_gb,omitempty"`
	ContextLength int      `json:"context_length,omitempty"`
}

// ModelRequest names a model; "" means the models thon.yaml configures.
type ModelRequest struct {
	Model string `json:"model,omitempty"`
}

// PullProgress is how far a model's download is.
type PullProgress struct {
	File       string  `json:"file,omitempty"`
	FileIndex  int     `json:"file_index,omitempty"`
	TotalFiles int     `json:"total_files,omitempty"`
	BytesDone  int64   `json:"bytes_downloaded,omitempty"`
	BytesTotal int64   `json:"bytes_total,omitempty"`
	Percent    float64 `json:"percent"`
	Done       bool    `json:"done,omitempty"`
}

// PullLine is one line of a pull's NDJSON stream: progress of one model,
// then a last line that is done or an error.
type PullLine struct {
	Model    string        `json:"model,omitempty"`
	Progress *PullProgress `json:"progress,omitempty"`
	Done     bool          `json:"done,omitempty"`
	Error    string        `json:"error,omitempty"`
}
