package access

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/internal/people"
	"github.com/thon-dev/thon/internal/store"
)

// Invite limits: an event is at most a few thousand people, and a code
// works for at most 90 days.
const (
	MaxInviteUses = 10000
	MaxInviteTTL  = 90 * 24 * time.Hour
)

// Invite is an invite code's record and its state now (open, used up,
// expired, withdrawn).
type Invite struct {
	store.Invite
	State string `json:"state"`
}

// CreatedInvite is a new invite code, shown this once, and where it leads.
type CreatedInvite struct {
	Code   string `json:"code"`
	URL    string `json:"url"` // https://{dashboard}/join/{code}
	Record Invite `json:"record"`
}

// InviteCode is a fresh invite code: 20 characters of base32 (100 bits),
// easy to read off a wall and to type.
func InviteCode() string {
	b := make([]byte, 13)
	rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))[:20]
}

// JoinURL is where an invite code is used: the dashboard's /join/{code}.
func (s *Service) JoinURL(code string) string { return s.o.URLs.DashboardURL() + "join/" + code }

// CreateInvite makes an invite code with which up to uses people join
// group, for ttl.
func (s *Service) CreateInvite(ctx context.Context, actor, group string, uses int, ttl time.Duration) (CreatedInvite, error) {
	if err := config.ValidName("group", group); err != nil {
		return CreatedInvite{}, err
	}
	if uses < 1 || uses > MaxInviteUses {
		return CreatedInvite{}, config.Problem{Msg: fmt.Sprintf("uses=%d: how many people may join with it, 1..%d", uses, MaxInviteUses)}
	}
	if ttl <= 0 || ttl > MaxInviteTTL {
		return CreatedInvite{}, config.Problem{Msg: fmt.Sprintf("expires in %s: how long it works, a duration such as 48h (at most %s)", ttl, MaxInviteTTL)}
	}
	if _, err := s.o.Store.Group(ctx, group); err != nil {
		return CreatedInvite{}, err
	}
	code := InviteCode()
	in := store.Invite{Hash: auth.HashToken(code), ID: code[:6], Group: group, MaxUses: uses, Expires: s.o.Now().Add(ttl).UTC(), CreatedBy: actor}
	if err := s.o.Store.CreateInvite(ctx, in); err != nil {
		return CreatedInvite{}, err
	}
	s.audit(ctx, actor, "invite.create", in.ID, fmt.Sprintf("group=%s uses=%d expires=%s", in.Group, in.MaxUses, in.Expires.Format(time.RFC3339)))
	rec, err := s.o.Store.InviteByHash(ctx, in.Hash)
	if err != nil {
		return CreatedInvite{}, err
	}
	return CreatedInvite{Code: code, URL: s.JoinURL(code), Record: s.withState(rec)}, nil
}

func (s *Service) withState(in store.Invite) Invite {
	return Invite{Invite: in, State: in.State(s.o.Now())}
}

// Invites lists every invite code with its state.
func (s *Service) Invites(ctx context.Context) ([]Invite, error) {
	list, err := s.o.Store.Invites(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Invite, len(list))
	for i, in := range list {
		out[i] = s.withState(in)
	}
	return out, nil
}

// RevokeInvite withdraws an invite: nobody joins with it any more.
func (s *Service) RevokeInvite(ctx context.Context, actor, id string) error {
	if len(id) != 6 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		return config.Problem{Msg: fmt.Sprintf("invite id %q: the first 6 characters of the code, as thon invite list shows", id)}
	}
	if err := s.o.Store.RevokeInvite(ctx, id); err != nil {
		return err
	}
	s.audit(ctx, actor, "invite.revoke", id, "")
	return nil
}

// JoinError is why someone cannot join: Msg is for them to read.
type JoinError struct {
	Msg    string
	Status int // for an HTTP answer: 404 unknown, 410 ended, 409 name taken, 422 bad input, 429 too many tries
}

func (e *JoinError) Error() string { return e.Msg }

func joinErr(status int, format string, args ...any) error {
	return &JoinError{Msg: fmt.Sprintf(format, args...), Status: status}
}

// Invite finds an open invite by its code; a JoinError says why not.
func (s *Service) Invite(ctx context.Context, code string) (Invite, error) {
	in, err := s.o.Store.InviteByHash(ctx, auth.HashToken(code))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Invite{}, joinErr(404, "This invite link is not known here. Check that you typed it completely, or ask an organizer for a new one.")
	case err != nil:
		return Invite{}, err
	}
	if why := in.Refusal(s.o.Now()); why != "" {
		return Invite{}, joinErr(410, "%s", why)
	}
	return s.withState(in), nil
}

// JoinWithIdentity signs up (or signs back in) the person an identity
// from a sign-in provider is: a participant of the invite's group, named
// after their user name, e-mail or name (the first that is free); Enter
// takes them in. An identity that joined before comes back to its own
// participant without spending a use, and so does a person whose verified
// e-mail is that of a participant of the group thon.yaml lists: they become
// that participant.
func (s *Service) JoinWithIdentity(ctx context.Context, code string, id auth.Identity) (user string, err error) {
	in, err := s.Invite(ctx, code)
	if err != nil {
		return "", err
	}
	if id.Email != "" { // providers give only verified addresses
		user, err := s.o.Store.ClaimListed(ctx, in.Hash, id.Key(), id.Handle(), id.Email)
		switch {
		case err == nil:
			s.audit(ctx, id.Handle(), "invite.join", user, "group="+in.Group+", as the participant listed with "+id.Email+", with "+id.Handle())
			return user, nil
		case !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict):
			if err := s.joinFailed(err); err != nil {
				return "", err
			}
		}
	}
	var candidates []string
	for _, c := range []string{id.Username, id.Email, id.Name} {
		if n := people.NameFrom(c); n != "" && config.ValidName("user", n) == nil {
			candidates = append(candidates, n)
		}
	}
	candidates = append(candidates, "user-"+strings.ToLower(auth.HashToken(id.Key())[:6]))
	var created bool
	for _, base := range candidates {
		for i := 1; i <= 9; i++ {
			name := base
			if i > 1 {
				name = fmt.Sprintf("%s-%d", strings.TrimSuffix(base[:min(len(base), 60)], "-"), i)
			}
			user, created, err = s.o.Store.JoinWithInvite(ctx, in.Hash, name, id.Key(), id.Handle(), id.Email)
			if !errors.Is(err, store.ErrConflict) {
				break
			}
		}
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	if err := s.joinFailed(err); err != nil {
		return "", err
	}
	if created {
		s.joined(ctx, id.Handle(), user, in.Group, "with "+id.Handle())
	}
	return user, nil
}

// JoinWithPassword is joining when no provider is configured: a name and a
// password, which also bring the person back later (the same name and
// password again). Guessing is slowed per address.
func (s *Service) JoinWithPassword(ctx context.Context, code, name, password, addr string) (user string, err error) {
	in, err := s.Invite(ctx, code)
	if err != nil {
		return "", err
	}
	if wait := s.joins.Wait(addr); wait > 0 {
		return "", joinErr(429, "Too many tries from your address: wait %s.", wait.Round(time.Second))
	}
	name = people.NameFrom(name)
	if config.ValidName("user", name) != nil {
		return "", joinErr(422, "Choose a name of letters and digits (it becomes your user name).")
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return "", joinErr(422, "Choose a password of %d to %d characters: it brings you back to your IDE later.", auth.MinPassword, auth.MaxPassword)
	}
	// Back again: the same name with the right password.
	if u, err := s.o.Store.User(ctx, name); err == nil {
		h, herr := s.o.Store.PasswordHash(ctx, name)
		if herr != nil || u.Group != in.Group || !auth.PasswordHash(h).Check(password) {
			s.joins.Fail(addr)
			return "", joinErr(409, "The name %q is taken. If it is yours, enter your password; otherwise choose another name.", name)
		}
		s.joins.Clear(addr)
		return name, nil
	}
	member, _, err := s.o.Store.JoinWithInvite(ctx, in.Hash, name, "", "", "")
	if errors.Is(err, store.ErrConflict) {
		return "", joinErr(409, "The name %q was just taken: choose another.", name)
	}
	if err := s.joinFailed(err); err != nil {
		return "", err
	}
	if err := s.o.Store.SetPassword(ctx, member, string(hash)); err != nil {
		return "", err
	}
	s.joined(ctx, member, member, in.Group, "with a name and password")
	return member, nil
}

func (s *Service) joinFailed(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrInviteUsedUp):
		return joinErr(410, "This invite link has been used as often as it may. Ask an organizer for a new one; if you joined before, use your personal link.")
	case errors.Is(err, store.ErrInviteExpired):
		return joinErr(410, "This invite link has expired or was withdrawn.")
	case errors.Is(err, store.ErrNotFound):
		return joinErr(404, "This invite link is not known here.")
	}
	return fmt.Errorf("join: %w", err)
}

// joined announces a new participant (audit log, their port, the LLM's
// sizing).
func (s *Service) joined(ctx context.Context, actor, user, group, how string) {
	s.audit(ctx, actor, "invite.join", user, "group="+group+", "+how)
	s.o.Orch.Joined(ctx, actor, user, group)
}

// Enter is how a participant who just signed in (or joined) gets into
// their IDE: a fresh access link, and their sandbox started in the
// background unless it runs (the link's waiting page shows progress and
// opens the IDE when it is up).
func (s *Service) Enter(ctx context.Context, actor, user string) (Link, error) {
	l, err := s.IssueLink(ctx, actor, user)
	if err != nil {
		return Link{}, err
	}
	s.startSandbox(user, actor)
	return l, nil
}

func (s *Service) startSandbox(user, actor string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if st, err := s.o.Orch.Get(ctx, user); err == nil && st.State == "running" {
			return
		}
		if _, err := s.o.Orch.Do(ctx, actor, orchestrator.ActionStart, user, false); err != nil {
			s.o.Logger.Warn("start a joined participant's sandbox", "user", user, "err", err)
		}
	}()
}
