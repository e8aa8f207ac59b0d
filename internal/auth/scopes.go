package auth

import (
	"fmt"
	"slices"
	"strings"
)

// Scopes an API token can hold. "*" holds them all; a scope ending in
// ":write" includes the same resource's ":read".
const (
	ScopeAll            = "*"
	ScopeSandboxesRead  = "sandboxes:read"
	ScopeSandboxesWrite = "sandboxes:write"
	ScopeUsersRead      = "users:read"
	ScopeUsersWrite     = "users:write"
	ScopeGatewayRead    = "gateway:read"
	ScopeGatewayWrite   = "gateway:write"
	ScopeLLMRead        = "llm:read"
	ScopeLLMWrite       = "llm:write"
	ScopeEventsRead     = "events:read"
	ScopeSystem         = "system" // import, shutdown, tokens, invites
)

// AllScopes lists every scope, for help texts and validation.
var AllScopes = []string{ScopeSandboxesRead, ScopeSandboxesWrite, ScopeUsersRead, ScopeUsersWrite,
	ScopeGatewayRead, ScopeGatewayWrite, ScopeLLMRead, ScopeLLMWrite, ScopeEventsRead, ScopeSystem}

// Roles.
const (
	RoleAdmin       = "admin"       // everything its scopes allow
	RoleParticipant = "participant" // their own sandbox, key and usage only
)

// ParseScopes validates a comma-separated scope list.
func ParseScopes(s string) ([]string, error) {
	var out []string
	for _, sc := range strings.Split(s, ",") {
		sc = strings.TrimSpace(sc)
		if sc == "" {
			continue
		}
		if sc != ScopeAll && !slices.Contains(AllScopes, sc) {
			return nil, fmt.Errorf("unknown scope %q: use * or any of %s", sc, strings.Join(AllScopes, ", "))
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no scope: give at least one of *, %s", strings.Join(AllScopes, ", "))
	}
	return out, nil
}

// Principal is who makes a request: a token or a signed-in browser.
type Principal struct {
	Name   string   `json:"name"` // the token's name, or the signed-in identity
	Role   string   `json:"role"`
	Scopes []string `json:"scopes"`
	User   string   `json:"user,omitempty"` // a participant's participant
	Via    string   `json:"via"`            // token | session
}

// Allows reports whether the principal holds scope ("" is any signed-in
// principal).
func (p Principal) Allows(scope string) bool {
	if scope == "" || slices.Contains(p.Scopes, ScopeAll) || slices.Contains(p.Scopes, scope) {
		return true
	}
	if res, ok := strings.CutSuffix(scope, ":read"); ok {
		return slices.Contains(p.Scopes, res+":write")
	}
	return false
}
