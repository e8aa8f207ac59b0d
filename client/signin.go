package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/thon-dev/thon/internal/api"
	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/store"
)

// Sign-in types, named here for callers of this package.
type (
	Principal     = auth.Principal
	Token         = store.Token
	TokenRequest  = api.TokenRequest
	CreatedToken  = api.CreatedToken
	Invite        = store.Invite
	InviteRequest = api.InviteRequest
	CreatedInvite = api.CreatedInvite
)

// Me says who the client's token is.
func (c *Client) Me(ctx context.Context) (Principal, error) {
	var out Principal
	return out, c.do(ctx, http.MethodGet, "/api/v1/me", nil, nil, &out)
}

// Tokens lists API tokens' records.
func (c *Client) Tokens(ctx context.Context) ([]Token, error) {
	var out []Token
	return out, c.do(ctx, http.MethodGet, "/api/v1/tokens", nil, nil, &out)
}

// CreateToken makes an API token; the token is in the answer only.
func (c *Client) CreateToken(ctx context.Context, r TokenRequest) (CreatedToken, error) {
	var out CreatedToken
	return out, c.do(ctx, http.MethodPost, "/api/v1/tokens", nil, r, &out)
}

// RevokeToken makes a token stop working at once.
func (c *Client) RevokeToken(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(name), nil, nil, nil)
}

// Invites lists invite codes' records.
func (c *Client) Invites(ctx context.Context) ([]Invite, error) {
	var out []Invite
	return out, c.do(ctx, http.MethodGet, "/api/v1/invites", nil, nil, &out)
}

// CreateInvite makes an invite code for a group; the code is in the answer only.
func (c *Client) CreateInvite(ctx context.Context, r InviteRequest) (CreatedInvite, error) {
	var out CreatedInvite
	return out, c.do(ctx, http.MethodPost, "/api/v1/invites", nil, r, &out)
}

// RevokeInvite withdraws an invite code by id.
func (c *Client) RevokeInvite(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/invites/"+url.PathEscape(id), nil, nil, nil)
}

// ImportUsers adds participants by group (nobody is deleted).
func (c *Client) ImportUsers(ctx context.Context, groups config.Groups) (ImportResult, error) {
	var out ImportResult
	return out, c.do(ctx, http.MethodPost, "/api/v1/users/import", nil, api.ImportUsersRequest{Groups: groups}, &out)
}
