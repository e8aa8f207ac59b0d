package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestTokens(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		if err := s.CreateToken(ctx, Token{Name: "ci", Hash: "h1", Role: "admin", Scopes: []string{"sandboxes:read", "sandboxes:write"}, Expires: exp}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateToken(ctx, Token{Name: "ci", Hash: "h2", Role: "admin", Scopes: []string{"*"}}); !errors.Is(err, ErrConflict) {
			t.Fatalf("same name twice: %v", err)
		}
		tok, err := s.TokenRecord(ctx, "h1")
		if err != nil || tok.Name != "ci" || len(tok.Scopes) != 2 || !tok.Expires.Equal(exp) || tok.Revoked || !tok.LastUsed.IsZero() {
			t.Fatalf("record: %+v %v", tok, err)
		}
		if err := s.TouchToken(ctx, "ci"); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeToken(ctx, "ci"); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeToken(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("revoke unknown: %v", err)
		}
		list, err := s.Tokens(ctx)
		if err != nil || len(list) != 1 || !list[0].Revoked || list[0].LastUsed.IsZero() {
			t.Fatalf("list: %+v %v", list, err)
		}
		if _, err := s.TokenRecord(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown hash: %v", err)
		}
	})
}

// Fifty people join with a 30-use invite at once: exactly thirty get in,
// and the invite's count says so; an identity that joined before is sent
// back to its own participant without spending a use.
func TestInvitesUnderConcurrentJoins(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		if err := s.CreateGroup(ctx, "alpha"); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateInvite(ctx, Invite{Hash: "code-hash", ID: "inv1", Group: "alpha", MaxUses: 30, Expires: time.Now().Add(time.Hour), CreatedBy: "admin"}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		got := map[string]int{}
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				user := fmt.Sprintf("p%02d", i)
				_, _, err := s.JoinWithInvite(ctx, "code-hash", user, "github:"+user, "github:"+user, "")
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					got["joined"]++
				case errors.Is(err, ErrInviteUsedUp):
					got["used up"]++
				default:
					got[err.Error()]++
				}
			}()
		}
		wg.Wait()
		if got["joined"] != 30 || got["used up"] != 20 || len(got) != 2 {
			t.Fatalf("50 joins on 30 uses: %v", got)
		}
		in, err := s.InviteByHash(ctx, "code-hash")
		if err != nil || in.Used != 30 {
			t.Fatalf("invite after: %+v %v", in, err)
		}
		users, _ := s.Users(ctx, "alpha")
		if len(users) != 30 {
			t.Fatalf("%d users in alpha", len(users))
		}
		// Joined before: back to the same participant, no use spent (even now it is used up).
		joined := users[0].Name
		member, created, err := s.JoinWithInvite(ctx, "code-hash", "someone-new", "github:"+joined, "github:"+joined, "")
		if err != nil || member != joined || created {
			t.Fatalf("rejoin of %s: %s %v %v", joined, member, created, err)
		}
		if u, err := s.IdentityUser(ctx, "github:"+joined); err != nil || u != joined {
			t.Fatalf("identity: %q %v", u, err)
		}
		// Expired and revoked invites let nobody in.
		s.CreateInvite(ctx, Invite{Hash: "old", ID: "inv2", Group: "alpha", MaxUses: 5, Expires: time.Now().Add(-time.Minute), CreatedBy: "admin"})
		if _, _, err := s.JoinWithInvite(ctx, "old", "late", "", "", ""); !errors.Is(err, ErrInviteExpired) {
			t.Fatalf("expired: %v", err)
		}
		s.CreateInvite(ctx, Invite{Hash: "withdrawn", ID: "inv3", Group: "alpha", MaxUses: 5, Expires: time.Now().Add(time.Hour), CreatedBy: "admin"})
		if err := s.RevokeInvite(ctx, "inv3"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.JoinWithInvite(ctx, "withdrawn", "late", "", "", ""); !errors.Is(err, ErrInviteExpired) {
			t.Fatalf("revoked: %v", err)
		}
		if _, _, err := s.JoinWithInvite(ctx, "unknown", "late", "", "", ""); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown code: %v", err)
		}
		// A name that is taken (one of the 30 that got in; which 30 won is a
		// race): a conflict, and no use spent.
		s.CreateInvite(ctx, Invite{Hash: "fresh", ID: "inv4", Group: "alpha", MaxUses: 5, Expires: time.Now().Add(time.Hour), CreatedBy: "admin"})
		if _, _, err := s.JoinWithInvite(ctx, "fresh", users[len(users)-1].Name, "", "", ""); !errors.Is(err, ErrConflict) {
			t.Fatalf("taken name: %v", err)
		}
		if in, _ := s.InviteByHash(ctx, "fresh"); in.Used != 0 {
			t.Fatalf("a failed join spent a use: %+v", in)
		}
		list, err := s.Invites(ctx)
		if err != nil || len(list) != 4 {
			t.Fatalf("invites: %+v %v", list, err)
		}
	})
}

// A participant thon.yaml lists with an e-mail is claimed by the identity
// with that address, once, without spending a use of the invite.
func TestClaimListed(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		if _, err := s.Import(ctx, importGroups("alpha", "beta"), []ImportUser{{Name: "ada", Group: "alpha", Email: "Ada@Example.org"}, {Name: "bea", Group: "beta", Email: "bea@example.org"}}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateInvite(ctx, Invite{Hash: "h", ID: "inv1", Group: "alpha", MaxUses: 1, Expires: time.Now().Add(time.Hour), CreatedBy: "admin"}); err != nil {
			t.Fatal(err)
		}
		if u, err := s.ClaimListed(ctx, "h", "github:1", "github:ada", "ada@example.org"); err != nil || u != "ada" {
			t.Fatalf("claim: %q %v", u, err)
		}
		// Someone of another group, or an address nobody has, is not claimed.
		if _, err := s.ClaimListed(ctx, "h", "github:2", "github:bea", "bea@example.org"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("other group: %v", err)
		}
		// ada is taken now: a second identity with her address is not her.
		if _, err := s.ClaimListed(ctx, "h", "gitlab:9", "gitlab:ada", "ada@example.org"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second claim: %v", err)
		}
		// The same identity again is a conflict (it is linked already; joining sends it back).
		if _, err := s.ClaimListed(ctx, "h", "github:1", "github:ada", "ada@example.org"); !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) {
			t.Fatalf("again: %v", err)
		}
		in, err := s.InviteByHash(ctx, "h")
		if err != nil || in.Used != 0 {
			t.Fatalf("invite: %+v %v", in, err)
		}
		// The one use is still there for someone new; an identity that came back is ada.
		if m, created, err := s.JoinWithInvite(ctx, "h", "someone", "github:1", "github:ada", "ada@example.org"); err != nil || m != "ada" || created {
			t.Fatalf("back: %q %v %v", m, created, err)
		}
	})
}
