package wire

import "time"

// Link is a participant's personal access link. The token inside is shown
// only in the answer that made it.
type Link struct {
	User    string    `json:"user"`
	Group   string    `json:"group,omitempty"`
	Email   string    `json:"email,omitempty"` // thon.yaml's, for a mail merge
	URL     string    `json:"url"`             // the IDE, without credentials
	Link    string    `json:"link"`            // URL plus a one-time token: opening it signs the browser in
	Expires time.Time `json:"expires"`
}

// LinksRequest issues links to the selected participants (everyone when
// no group or user is named).
type LinksRequest struct {
	Groups []string `json:"groups,omitempty"`
	Users  []string `json:"users,omitempty"`
}

// RevokeResult is how many links and browser sessions a revocation ended.
type RevokeResult struct {
	Tokens   int64 `json:"tokens"`
	Sessions int64 `json:"sessions"`
}

// PasswordRequest sets a participant's sign-in password.
type PasswordRequest struct {
	Password string `json:"password"`
}

// Principal is who a request is made by.
type Principal struct {
	Name   string   `json:"name"` // the token's name, or the signed-in identity
	Role   string   `json:"role"`
	Scopes []string `json:"scopes"`
	User   string   `json:"user,omitempty"` // a participant's participant
	Via    string   `json:"via"`            // token | session
}

// Token is an API token's record (never its secret) and its state now.
type Token struct {
	Name     string    `json:"name"`
	Role     string    `json:"role"`           // admin | participant
	Scopes   []string  `json:"scopes"`         // ["*"] for everything
	User     string    `json:"user,omitempty"` // a participant token's participant
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires,omitzero"` // zero: never
	LastUsed time.Time `json:"last_used,omitzero"`
	Revoked  bool      `json:"revoked"`
	State    string    `json:"state"` // active | revoked | expired
}

// TokenRequest creates an API token.
type TokenRequest struct {
	Name      string   `json:"name"`
	Scopes    []string `json:"scopes"`
	ExpiresIn string   `json:"expires_in,omitempty"` // e.g. 720h; "" never
	User      string   `json:"user,omitempty"`       // a participant's token
}

// CreatedToken is a new token, shown this once, with its record.
type CreatedToken struct {
	Token  string `json:"token"`
	Record Token  `json:"record"`
}

// Invite is an invite code's record (never the code) and its state now.
type Invite struct {
	ID        string    `json:"id"`
	Group     string    `json:"group"`
	MaxUses   int       `json:"max_uses"`
	Used      int       `json:"used"`
	Revoked   bool      `json:"revoked"`
	Expires   time.Time `json:"expires"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
	State     string    `json:"state"` // open | used up | expired | withdrawn
}

// InviteRequest creates an invite code for a group.
type InviteRequest struct {
	Group     string `json:"group"`
	Uses      int    `json:"uses"`       // 1 for single-use
	ExpiresIn string `json:"expires_in"` // e.g. 48h
}

// CreatedInvite is a new invite code, shown this once, and where it leads.
type CreatedInvite struct {
	Code   string `json:"code"`
	URL    string `json:"url"` // https://{dashboard}/join/{code}
	Record Invite `json:"record"`
}

// ConfigFile is a configuration file kept in the database.
type ConfigFile struct {
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	Content   string    `json:"content"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

// FileRequest stores a configuration file.
type FileRequest struct {
	Content string `json:"content"`
}

// FileSaved says what saving or deleting a file means for the event.
type FileSaved struct {
	Name   string `json:"name"`
	Effect string `json:"effect,omitempty"`
}
