package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Token is an API token's record (never the token itself).
type Token struct {
	Name     string    `json:"name"`
	Role     string    `json:"role"`           // admin | participant
	Scopes   []string  `json:"scopes"`         // ["*"] for everything
	User     string    `json:"user,omitempty"` // a participant token's participant
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires,omitzero"` // zero: never
	LastUsed time.Time `json:"last_used,omitzero"`
	Revoked  bool      `json:"revoked"`
	Hash     string    `json:"-"`
}

// Token states (Token.State).
const (
	TokenActive  = "active"
	TokenRevoked = "revoked"
	TokenExpired = "expired"
)

// State is whether the token works at now: active, revoked or expired.
func (t Token) State(now time.Time) string {
	switch {
	case t.Revoked:
		return TokenRevoked
	case !t.Expires.IsZero() && !now.Before(t.Expires):
		return TokenExpired
	}
	return TokenActive
}

// Refusal says why the token may not be used at now, or "" when it may.
func (t Token) Refusal(now time.Time) string {
	switch t.State(now) {
	case TokenRevoked:
		return "this token was revoked"
	case TokenExpired:
		return "this token has expired"
	}
	return ""
}

// CreateToken stores a new token; ErrConflict if the name is taken.
func (s *Store) CreateToken(ctx context.Context, t Token) error {
	exp := ""
	if !t.Expires.IsZero() {
		exp = t.Expires.UTC().Format(time.RFC3339Nano)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO tokens (name, hash, role, created_at, scopes, expires_at, user_name) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		t.Name, t.Hash, t.Role, s.stamp(), strings.Join(t.Scopes, ","), exp, t.User)
	if err != nil {
		return fmt.Errorf("token %s: %w", t.Name, classify(err))
	}
	return nil
}

const tokenCols = `name, hash, role, created_at, scopes, expires_at, revoked, user_name, last_used`

func scanToken(r interface{ Scan(...any) error }) (Token, error) {
	var t Token
	var created, expires, scopes, last string
	var revoked int
	if err := r.Scan(&t.Name, &t.Hash, &t.Role, &created, &scopes, &expires, &revoked, &t.User, &last); err != nil {
		return t, err
	}
	t.Created, t.Expires, t.LastUsed = parseTime(created), parseTime(expires), parseTime(last)
	t.Revoked = revoked != 0
	if scopes != "" {
		t.Scopes = strings.Split(scopes, ",")
	}
	return t, nil
}

// Tokens lists every token record, by name.
func (s *Store) Tokens(ctx context.Context) ([]Token, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+tokenCols+` FROM tokens ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Token{}
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// TokenRecord finds a token by its hash; ErrNotFound if none.
func (s *Store) TokenRecord(ctx context.Context, hash string) (Token, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return t, ErrNotFound
	}
	return t, err
}

// RevokeToken makes a token stop working; ErrNotFound if there is none.
func (s *Store) RevokeToken(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE tokens SET revoked = 1 WHERE name = ?`, name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("token %s: %w", name, ErrNotFound)
	}
	return nil
}

// TouchToken records that a token was used now.
func (s *Store) TouchToken(ctx context.Context, name string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE tokens SET last_used = ? WHERE name = ?`, s.stamp(), name)
	return err
}

// Identity links a sign-in identity to a participant.
type Identity struct {
	Key     string    `json:"key"` // provider:subject
	Handle  string    `json:"handle"`
	Email   string    `json:"email,omitempty"`
	User    string    `json:"user"`
	Created time.Time `json:"created"`
}

// IdentityUser finds the participant an identity signed up as.
func (s *Store) IdentityUser(ctx context.Context, key string) (string, error) {
	var u string
	err := s.db.QueryRowContext(ctx, `SELECT user_name FROM identities WHERE id_key = ?`, key).Scan(&u)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return u, err
}

// Invite is an invite code's record (never the code itself).
type Invite struct {
	ID        string    `json:"id"`
	Group     string    `json:"group"`
	MaxUses   int       `json:"max_uses"`
	Used      int       `json:"used"`
	Revoked   bool      `json:"revoked"`
	Expires   time.Time `json:"expires"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
	Hash      string    `json:"-"`
}

// Invite states (Invite.State).
const (
	InviteOpen      = "open"
	InviteUsedUp    = "used up"
	InviteExpired   = "expired"
	InviteWithdrawn = "withdrawn"
)

// State is what the invite is at now: open, or why it lets nobody in.
func (in Invite) State(now time.Time) string {
	switch {
	case in.Revoked:
		return InviteWithdrawn
	case !now.Before(in.Expires):
		return InviteExpired
	case in.MaxUses > 0 && in.Used >= in.MaxUses:
		return InviteUsedUp
	}
	return InviteOpen
}

// Refusal says why the invite lets nobody in at now (for a person who
// opened it), or "" when it is open.
func (in Invite) Refusal(now time.Time) string {
	switch in.State(now) {
	case InviteWithdrawn, InviteExpired:
		return "This invite link has expired or was withdrawn. Ask an organizer for a new one; if you joined before, use your personal link."
	case InviteUsedUp:
		return "This invite link has been used as often as it may. Ask an organizer for a new one; if you joined before, use your personal link."
	}
	return ""
}

// CreateInvite stores an invite code's record.
func (s *Store) CreateInvite(ctx context.Context, in Invite) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO invites (hash, id, group_name, max_uses, expires_at, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		in.Hash, in.ID, in.Group, in.MaxUses, in.Expires.UTC().Format(time.RFC3339Nano), s.stamp(), in.CreatedBy)
	if err != nil {
		return fmt.Errorf("invite for %s: %w", in.Group, classify(err))
	}
	return nil
}

const inviteCols = `hash, id, group_name, max_uses, used, revoked, expires_at, created_at, created_by`

func scanInvite(r interface{ Scan(...any) error }) (Invite, error) {
	var in Invite
	var revoked int
	var exp, created string
	if err := r.Scan(&in.Hash, &in.ID, &in.Group, &in.MaxUses, &in.Used, &revoked, &exp, &created, &in.CreatedBy); err != nil {
		return in, err
	}
	in.Revoked, in.Expires, in.Created = revoked != 0, parseTime(exp), parseTime(created)
	return in, nil
}

// Invites lists invite codes' records, newest first.
func (s *Store) Invites(ctx context.Context) ([]Invite, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+inviteCols+` FROM invites ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Invite{}
	for rows.Next() {
		in, err := scanInvite(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, rows.Err()
}

// InviteByHash finds an invite by its code's hash.
func (s *Store) InviteByHash(ctx context.Context, hash string) (Invite, error) {
	in, err := scanInvite(s.db.QueryRowContext(ctx, `SELECT `+inviteCols+` FROM invites WHERE hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return in, ErrNotFound
	}
	return in, err
}

// RevokeInvite stops an invite code by id.
func (s *Store) RevokeInvite(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE invites SET revoked = 1 WHERE id = ?`, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("invite %s: %w", id, ErrNotFound)
	}
	return nil
}

// Errors of joining with an invite code.
var (
	ErrInviteUsedUp  = errors.New("this invite code has been used as often as it may")
	ErrInviteExpired = errors.New("this invite code has expired or was withdrawn")
)

// openInvite is the group of the invite codeHash inside tx: ErrNotFound
// when no invite has it, ErrInviteExpired when it was withdrawn or expired
// (one used up is left to the caller: claiming a listed participant spends
// no use).
func (s *Store) openInvite(ctx context.Context, tx *txn, codeHash string) (string, error) {
	var group string
	var maxUses, used, revoked int
	var exp string
	err := tx.QueryRowContext(ctx, `SELECT group_name, max_uses, used, revoked, expires_at FROM invites WHERE hash = ?`, codeHash).Scan(&group, &maxUses, &used, &revoked, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", err
	}
	in := Invite{Revoked: revoked != 0, Expires: parseTime(exp), MaxUses: maxUses, Used: used}
	switch in.State(s.now()) {
	case InviteWithdrawn, InviteExpired:
		return "", ErrInviteExpired
	}
	return group, nil
}

// JoinWithInvite spends one use of an invite and adds the participant
// user to its group, linked to identity key (if any), in one transaction:
// under any number of concurrent joins an invite is never used more often
// than it allows. An identity that already joined is sent back to its own
// participant without spending a use. email (verified by the provider)
// becomes the new participant's.
func (s *Store) JoinWithInvite(ctx context.Context, codeHash, user, idKey, handle, email string) (member string, created bool, err error) {
	err = s.tx(ctx, func(tx *txn) error {
		group, err := s.openInvite(ctx, tx, codeHash)
		if err != nil {
			return err
		}
		if idKey != "" {
			var existing string
			err := tx.QueryRowContext(ctx, `SELECT user_name FROM identities WHERE id_key = ?`, idKey).Scan(&existing)
			if err == nil {
				member = existing
				return nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, `UPDATE invites SET used = used + 1 WHERE hash = ? AND used < max_uses`, codeHash)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrInviteUsedUp
		}
		now := s.stamp()
		if _, err := tx.ExecContext(ctx, `INSERT INTO users (name, group_name, email, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`, user, group, email, now, now); err != nil {
			return fmt.Errorf("user %s: %w", user, classify(err))
		}
		if idKey != "" {
			if _, err := tx.ExecContext(ctx, `INSERT INTO identities (id_key, handle, email, user_name, created_at) VALUES (?, ?, ?, ?, ?)`, idKey, handle, email, user, now); err != nil {
				return fmt.Errorf("identity %s: %w", handle, classify(err))
			}
		}
		member, created = user, true
		return nil
	})
	return member, created, err
}

// ClaimListed links identity idKey to the participant of the invite's
// group whose e-mail is email (thon.yaml lists them; case does not matter),
// when no identity is linked to them yet: a listed participant who joins
// through the invite becomes that participant, without spending a use.
// ErrNotFound when nobody matches (or the invite is not known),
// ErrInviteExpired when the invite has ended.
func (s *Store) ClaimListed(ctx context.Context, codeHash, idKey, handle, email string) (user string, err error) {
	if email == "" || idKey == "" {
		return "", ErrNotFound
	}
	err = s.tx(ctx, func(tx *txn) error {
		group, err := s.openInvite(ctx, tx, codeHash)
		if err != nil {
			return err
		}
		err = tx.QueryRowContext(ctx, `SELECT name FROM users WHERE group_name = ? AND LOWER(email) = LOWER(?)
			AND name NOT IN (SELECT user_name FROM identities) ORDER BY name LIMIT 1`, group, email).Scan(&user)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO identities (id_key, handle, email, user_name, created_at) VALUES (?, ?, ?, ?, ?)`, idKey, handle, email, user, s.stamp())
		if err != nil {
			return fmt.Errorf("identity %s: %w", handle, classify(err))
		}
		return nil
	})
	return user, err
}
