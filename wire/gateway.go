package wire

import "time"

// GatewayKey is an AI gateway key's record (never the key).
type GatewayKey struct {
	ID         string    `json:"id"`    // user:alice, group:alpha
	Kind       string    `json:"kind"`  // user | group
	Owner      string    `json:"owner"` // the user or the group
	Generation int       `json:"generation"`
	Revoked    bool      `json:"revoked"`
	CreatedAt  time.Time `json:"created_at"`
	RotatedAt  time.Time `json:"rotated_at"`
}

// RotatedKey is a key's replacement, shown this once.
type RotatedKey struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

// ReplicaKey is what a gateway replica (thon gateway serve) learns about a
// key it was shown.
type ReplicaKey struct {
	ID         string `json:"id"`
	Owner      string `json:"owner"`
	Group      string `json:"group"`
	Scale      int    `json:"scale"`
	Revoked    bool   `json:"revoked"`
	BudgetUsed int64  `json:"budget_used"`
}

// UsageRow is one key's usage of one model in one minute.
type UsageRow struct {
	KeyID            string    `json:"key_id"`
	Model            string    `json:"model"`
	Minute           time.Time `json:"minute"`
	Requests         int64     `json:"requests"`
	PromptTokens     int64     `json:"prompt_tokens"`
	CompletionTokens int64     `json:"completion_tokens"`
	Rejections       int64     `json:"rejections"`
}

// Usage is a sum: requests, tokens and rejections (429s), and, for a
// window, tokens per minute (oldest first).
type Usage struct {
	Requests         int64   `json:"requests"`
	PromptTokens     int64   `json:"prompt_tokens"`
	CompletionTokens int64   `json:"completion_tokens"`
	Rejections       int64   `json:"rejections"`
	PerMinute        []int64 `json:"per_minute,omitempty"`
}

// Tokens is prompt and completion tokens together.
func (u Usage) Tokens() int64 { return u.PromptTokens + u.CompletionTokens }

// KeyUsage is one key's (or group's, or key and model's) sum.
type KeyUsage struct {
	Key   string `json:"key"`             // user:alice, group:alpha
	Model string `json:"model,omitempty"` // by key and model only
	Group string `json:"group,omitempty"` // by group only
	Usage
}

// UsageSummary is the gateway's usage: the total, per key, per key and
// model, and per group (a group's own key and its participants' keys).
type UsageSummary struct {
	Since      time.Time  `json:"since,omitzero"`
	Minutes    int        `json:"minutes,omitempty"`
	Total      Usage      `json:"total"`
	Keys       []KeyUsage `json:"keys"`
	ByModel    []KeyUsage `json:"by_model"`
	Groups     []KeyUsage `json:"groups"`
	LastMinute Usage      `json:"last_minute"`
}
