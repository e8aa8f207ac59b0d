package auth

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/store"
)

func TestAdmins(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "thon.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := NewAdmins(st)
	now := time.Now()
	a.now = func() time.Time { return now }

	if _, err := a.Login(ctx, "10.0.0.1", "anything"); !errors.Is(err, ErrNoAdminPassword) {
		t.Fatalf("login without a password: %v", err)
	}
	if _, err := a.SetPassword(ctx, "short"); err == nil {
		t.Fatal("a 5-character password accepted")
	}
	if changed, err := a.SetPassword(ctx, "correct horse"); err != nil || !changed {
		t.Fatalf("set: %v %v", changed, err)
	}
	if h, _ := st.Setting(ctx, passwordSetting); h == "" || h == "correct horse" {
		t.Fatalf("stored %q", h)
	}
	s, err := a.Login(ctx, "10.0.0.1", "correct horse")
	if err != nil || s.Token == "" || s.CSRF == "" || s.Actor != AdminActor {
		t.Fatalf("login: %+v %v", s, err)
	}
	got, err := a.Session(ctx, s.Token)
	if err != nil || got.CSRF != s.CSRF || !CheckCSRF(got, s.CSRF) || CheckCSRF(got, "x") || CheckCSRF(got, "") {
		t.Fatalf("session: %+v %v", got, err)
	}
	// The same password again changes nothing and keeps sessions.
	if changed, _ := a.SetPassword(ctx, "correct horse"); changed {
		t.Fatal("same password reported as a change")
	}
	if _, err := a.Session(ctx, s.Token); err != nil {
		t.Fatalf("session after setting the same password: %v", err)
	}

	// Wrong passwords lock the address out, others are unaffected.
	for range 5 {
		if _, err := a.Login(ctx, "10.0.0.2", "wrong"); !errors.Is(err, ErrWrongPassword) && !errors.Is(err, ErrLockedOut) {
			t.Fatalf("wrong password: %v", err)
		}
		now = now.Add(300 * time.Second) // past the short lockouts
	}
	now = now.Add(-300 * time.Second)
	if _, err := a.Login(ctx, "10.0.0.2", "correct horse"); !errors.Is(err, ErrLockedOut) {
		t.Fatalf("after 5 failures: %v", err)
	}
	if _, err := a.Login(ctx, "10.0.0.3", "correct horse"); err != nil {
		t.Fatalf("another address: %v", err)
	}
	now = now.Add(6 * time.Minute)
	if _, err := a.Login(ctx, "10.0.0.2", "correct horse"); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}

	// Sign-out, expiry, and a new password end sessions.
	if err := a.Logout(ctx, s.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Session(ctx, s.Token); !errors.Is(err, ErrNoSession) {
		t.Fatalf("after logout: %v", err)
	}
	s2, _ := a.Login(ctx, "10.0.0.1", "correct horse")
	st.SetClock(func() time.Time { return now.Add(AdminSessionTTL + time.Minute) })
	if _, err := a.Session(ctx, s2.Token); !errors.Is(err, ErrNoSession) {
		t.Fatalf("expired session: %v", err)
	}
	st.SetClock(time.Now)
	s3, _ := a.Login(ctx, "10.0.0.1", "correct horse")
	a.SetPassword(ctx, "a new password")
	if _, err := a.Session(ctx, s3.Token); !errors.Is(err, ErrNoSession) {
		t.Fatalf("session after a new password: %v", err)
	}
}
