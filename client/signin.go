package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/thon-dev/thon/wire"
)

// Sign-in types, named here for callers of this package.
type (
	Principal     = wire.Principal
	Token         = wire.Token
	TokenRequest  = wire.TokenRequest
	CreatedToken  = wire.CreatedToken
	Invite        = wire.Invite
	InviteRequest = wire.InviteRequest
	CreatedInvite = wire.CreatedInvite
	ConfigFile    = wire.ConfigFile
	FileSaved     = wire.FileSaved
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
func (c *Client) ImportUsers(ctx context.Context, groups []GroupMembers) (ImportResult, error) {
	var out ImportResult
	return out, c.do(ctx, http.MethodPost, "/api/v1/users/import", nil, wire.ImportUsersRequest{Groups: groups}, &out)
}

// Files lists the configuration files kept in the database.
func (c *Client) Files(ctx context.Context) ([]ConfigFile, error) {
	var out []ConfigFile
	return out, c.do(ctx, http.MethodGet, "/api/v1/files", nil, nil, &out)
}

// File reads one stored configuration file.
func (c *Client) File(ctx context.Context, name string) (ConfigFile, error) {
	var out ConfigFile
	return out, c.do(ctx, http.MethodGet, "/api/v1/files/"+url.PathEscape(name), nil, nil, &out)
}

// PutFile stores a configuration file after the daemon checked it (an
// invalid one comes back as an error with its problems, and nothing is kept).
func (c *Client) PutFile(ctx context.Context, name string, content []byte) (FileSaved, error) {
	var out FileSaved
	return out, c.do(ctx, http.MethodPut, "/api/v1/files/"+url.PathEscape(name), nil, wire.FileRequest{Content: string(content)}, &out)
}

// DeleteFile removes a stored configuration file.
func (c *Client) DeleteFile(ctx context.Context, name string) (FileSaved, error) {
	var out FileSaved
	return out, c.do(ctx, http.MethodDelete, "/api/v1/files/"+url.PathEscape(name), nil, nil, &out)
}
