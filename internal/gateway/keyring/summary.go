package keyring

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/thon-dev/thon/internal/gateway"
	"github.com/thon-dev/thon/internal/store"
)

// UsageQuery selects usage: some users' and groups' keys (everyone when
// both are empty), since a time (zero: the whole event), and, with Minutes,
// per-minute token counts of the last Minutes minutes.
type UsageQuery struct {
	Users, Groups []string
	Since         time.Time
	Minutes       int
	Now           time.Time // the end of the window (zero: now)
}

// Usage is a sum: requests, tokens and rejections, and, for a window,
// tokens per minute (oldest first).
type Usage struct {
	Requests         int64   `json:"requests"`
	PromptTokens     int64   `json:"prompt_tokens"`
	CompletionTokens int64   `json:"completion_tokens"`
	Rejections       int64   `json:"rejections"`
	PerMinute        []int64 `json:"per_minute,omitempty"`
}

// Tokens is prompt and completion tokens together.
func (u Usage) Tokens() int64 { return u.PromptTokens + u.CompletionTokens }

func (u *Usage) add(r store.UsageRow, minute int) {
	u.Requests += r.Requests
	u.PromptTokens += r.PromptTokens
	u.CompletionTokens += r.CompletionTokens
	u.Rejections += r.Rejections
	if minute >= 0 && minute < len(u.PerMinute) {
		u.PerMinute[minute] += r.PromptTokens + r.CompletionTokens
	}
}

// KeyUsage is one key's (or group's, or key and model's) sum.
type KeyUsage struct {
	Key   string `json:"key"`             // user:alice, group:alpha
	Model string `json:"model,omitempty"` // by key and model only
	Group string `json:"group,omitempty"` // by group only
	Usage
}

// UsageSummary is the gateway's usage as THON reports it everywhere (the
// CLI, the dashboard, the API): the total, per key, per key and model, and
// per group (a group's own key and its participants' keys).
type UsageSummary struct {
	Since      time.Time  `json:"since,omitzero"`
	Minutes    int        `json:"minutes,omitempty"`
	Total      Usage      `json:"total"`
	Keys       []KeyUsage `json:"keys"`
	ByModel    []KeyUsage `json:"by_model"`
	Groups     []KeyUsage `json:"groups"`
	LastMinute Usage      `json:"last_minute"`
}

// KeysOf is every key whose usage counts for the users and groups (a
// user's own key, or their group's in per-group mode; a group's key and
// its participants').
func (k *Keyring) KeysOf(ctx context.Context, users, groups []string) (ids []string, err error) {
	seen := map[string]bool{}
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for _, name := range users {
		u, err := k.st.User(ctx, name)
		if err != nil {
			return nil, err
		}
		add(k.ID(u.Name, u.Group))
	}
	for _, name := range groups {
		g, err := k.st.Group(ctx, name)
		if err != nil {
			return nil, err
		}
		for _, u := range g.Users {
			add(k.ID(u, g.Name))
		}
		add(gateway.KeyID(gateway.KindGroup, g.Name)) // per-group mode
	}
	return ids, nil
}

// Summary sums the usage q selects.
func (k *Keyring) Summary(ctx context.Context, q UsageQuery) (UsageSummary, error) {
	sum := UsageSummary{Since: q.Since, Minutes: q.Minutes, Keys: []KeyUsage{}, ByModel: []KeyUsage{}, Groups: []KeyUsage{}}
	var ids []string
	if len(q.Users) > 0 || len(q.Groups) > 0 {
		var err error
		if ids, err = k.KeysOf(ctx, q.Users, q.Groups); err != nil {
			return sum, err
		}
		if len(ids) == 0 {
			return sum, nil
		}
	}
	now := q.Now
	if now.IsZero() {
		now = time.Now()
	}
	var start time.Time
	since := q.Since
	if q.Minutes > 0 {
		start = now.UTC().Truncate(time.Minute).Add(-time.Duration(q.Minutes-1) * time.Minute)
		if since.Before(start) {
			since = start
		}
		sum.Since = since
	}
	rows, err := k.st.Usage(ctx, store.UsageFilter{KeyIDs: ids, Since: since})
	if err != nil {
		return sum, err
	}
	users, err := k.st.Users(ctx)
	if err != nil {
		return sum, err
	}
	groupOf := make(map[string]string, len(users))
	for _, u := range users {
		groupOf[u.Name] = u.Group
	}
	window := func() Usage {
		if q.Minutes > 0 {
			return Usage{PerMinute: make([]int64, q.Minutes)}
		}
		return Usage{}
	}
	sum.Total = window()
	keys, models, groups := map[string]*KeyUsage{}, map[[2]string]*KeyUsage{}, map[string]*KeyUsage{}
	for _, r := range rows {
		minute := -1
		if q.Minutes > 0 {
			minute = int(r.Minute.Sub(start) / time.Minute)
			if minute == q.Minutes-1 {
				sum.LastMinute.add(r, -1)
			}
		}
		sum.Total.add(r, minute)
		ku := keys[r.KeyID]
		if ku == nil {
			ku = &KeyUsage{Key: r.KeyID, Usage: window()}
			keys[r.KeyID] = ku
		}
		ku.add(r, minute)
		mu := models[[2]string{r.KeyID, r.Model}]
		if mu == nil {
			mu = &KeyUsage{Key: r.KeyID, Model: r.Model}
			models[[2]string{r.KeyID, r.Model}] = mu
		}
		mu.add(r, -1)
		if g := groupOfKey(r.KeyID, groupOf); g != "" {
			gu := groups[g]
			if gu == nil {
				gu = &KeyUsage{Group: g, Usage: window()}
				groups[g] = gu
			}
			gu.add(r, minute)
		}
	}
	for _, ku := range keys {
		sum.Keys = append(sum.Keys, *ku)
	}
	for _, mu := range models {
		sum.ByModel = append(sum.ByModel, *mu)
	}
	for _, gu := range groups {
		sum.Groups = append(sum.Groups, *gu)
	}
	most := func(a, b KeyUsage) int {
		return cmp.Or(cmp.Compare(b.Tokens(), a.Tokens()), cmp.Compare(a.Key, b.Key), cmp.Compare(a.Group, b.Group), cmp.Compare(a.Model, b.Model))
	}
	slices.SortFunc(sum.Keys, most)
	slices.SortFunc(sum.Groups, most)
	slices.SortFunc(sum.ByModel, func(a, b KeyUsage) int { return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Model, b.Model)) })
	return sum, nil
}

// groupOfKey is the group a key's usage counts for: its own (a group key)
// or its participant's.
func groupOfKey(id string, groupOf map[string]string) string {
	kind, owner, ok := gateway.ParseKeyID(id)
	switch {
	case !ok:
		return ""
	case kind == gateway.KindGroup:
		return owner
	}
	return groupOf[owner]
}
