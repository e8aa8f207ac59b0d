package auth

import (
	"sync"
	"time"
)

// Lockout slows down guessing from one address: after each wrong guess the
// address waits 1 s, 2 s, 4 s, 8 s, and 5 minutes from the fifth. The zero
// value is ready to use.
type Lockout struct {
	Now func() time.Time // time.Now when nil

	mu    sync.Mutex
	fails map[string]*guesses
}

type guesses struct {
	n     int
	until time.Time
}

func (l *Lockout) now() time.Time {
	if l.Now == nil {
		return time.Now()
	}
	return l.Now()
}

// Wait is how long addr must still wait (0: it may try).
func (l *Lockout) Wait(addr string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if g := l.fails[addr]; g != nil {
		return max(0, g.until.Sub(l.now()))
	}
	return 0
}

// Fail records a wrong guess from addr.
func (l *Lockout) Fail(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fails == nil || len(l.fails) > 10000 { // bounded: forget the oldest wave
		l.fails = map[string]*guesses{}
	}
	g := l.fails[addr]
	if g == nil {
		g = &guesses{}
		l.fails[addr] = g
	}
	g.n++
	wait := time.Duration(1<<min(g.n-1, 8)) * time.Second
	if g.n >= 5 {
		wait = 5 * time.Minute
	}
	g.until = l.now().Add(wait)
}

// Clear forgets addr's wrong guesses (it got in).
func (l *Lockout) Clear(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, addr)
}
