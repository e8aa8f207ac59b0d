package store

import (
	"context"
	"testing"
	"time"
)

func TestRunningTimes(t *testing.T) { eachBackend(t, testRunningTimes) }

// testRunningTimes: periods open when first seen running, grow with each
// sighting, close at their last one, add up, outlive the store being
// reopened (a daemon restart) and go with their user.
func testRunningTimes(t *testing.T, dsn string) {
	ctx := context.Background()
	s := open(t, dsn)
	if _, err := s.Import(ctx, importGroups("alpha"), []ImportUser{{Name: "alice", Group: "alpha"}, {Name: "bob", Group: "alpha"}}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	track := func(d time.Duration, running ...string) {
		t.Helper()
		if err := s.TrackRunning(ctx, at(d), running); err != nil {
			t.Fatal(err)
		}
	}
	want := func(s *Store, user string, total time.Duration, open bool) {
		t.Helper()
		got, err := s.RunningTimes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r := got[user]
		if r.Total != total || r.Since.IsZero() == open {
			t.Errorf("%s: %+v, want total %v, open %v", user, r, total, open)
		}
	}
	track(0, "alice", "ghost") // an unknown user is ignored
	track(time.Minute, "alice", "bob")
	want(s, "alice", time.Minute, true)
	want(s, "bob", 0, true)
	track(2*time.Minute, "bob") // alice stopped some time after 1m
	want(s, "alice", time.Minute, false)
	track(10*time.Minute, "alice", "bob")
	track(11*time.Minute, "alice", "bob")
	want(s, "alice", 2*time.Minute, true)
	want(s, "bob", 10*time.Minute, true)
	if got, _ := s.RunningTimes(ctx); len(got) != 2 {
		t.Errorf("running times of %d users, want alice and bob: %+v", len(got), got)
	}

	// A restarted daemon: the same totals; bob ran on meanwhile, alice
	// did not.
	s2 := open(t, dsn)
	if err := s2.TrackRunning(ctx, at(71*time.Minute), []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	want(s2, "alice", 2*time.Minute, false)
	want(s2, "bob", 70*time.Minute, true)
	if err := s2.TrackRunning(ctx, at(72*time.Minute), nil); err != nil {
		t.Fatal(err)
	}
	want(s2, "bob", 70*time.Minute, false)

	s2.DeleteUser(ctx, "alice")
	if got, _ := s2.RunningTimes(ctx); len(got) != 1 {
		t.Errorf("running times outlived their user: %+v", got)
	}
}
