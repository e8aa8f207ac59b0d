package store

import "context"

// Records is the store as the REST API and the dashboard see it: they read
// groups, participants and the audit log, and change nothing. Every change
// goes through a service (the orchestrator, access, tokens, config files,
// the key ring), which checks it and records its audit entry.
type Records interface {
	Groups(ctx context.Context) ([]Group, error)
	Group(ctx context.Context, name string) (Group, error)
	Users(ctx context.Context, groups ...string) ([]User, error)
	User(ctx context.Context, name string) (User, error)
	Events(ctx context.Context, after int64, limit int) ([]Event, error)
}

var _ Records = (*Store)(nil)
