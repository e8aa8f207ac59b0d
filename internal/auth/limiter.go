package auth

import (
	"sync"
	"time"
)

// Policy is how a Limiter slows guessing: after Free wrong guesses a key
// waits First, doubling with every further one up to Max.
type Policy struct {
	Free  int           // wrong guesses allowed before any wait
	First time.Duration // the first wait
	Max   time.Duration // the longest
}

// Guessing policies THON uses.
var (
	// PolicyAddress is for a password typed from one address (the
	// dashboard's, name-and-password joins): 1 s, 2 s, 4 s… up to 5 min.
	PolicyAddress = Policy{Free: 0, First: time.Second, Max: 5 * time.Minute}
	// PolicyAccount is for one participant's password form, whatever the
	// address: five tries, then a minute, doubling up to an hour.
	PolicyAccount = Policy{Free: 4, First: time.Minute, Max: time.Hour}
)

// Limiter slows down guessing, per key (an address, a participant — any
// string), under one Policy. The zero value with a Policy is ready to use;
// it keeps at most 10,000 keys (the oldest wave is forgotten).
type Limiter struct {
	Policy Policy
	Now    func() time.Time // time.Now when nil

	mu    sync.Mutex
	fails map[string]*guesses
}

type guesses struct {
	n     int
	until time.Time
}

// NewLimiter is a Limiter with a policy.
func NewLimiter(p Policy) *Limiter { return &Limiter{Policy: p} }

func (l *Limiter) now() time.Time {
	if l.Now == nil {
		return time.Now()
	}
	return l.Now()
}

// Wait is how long key must still wait (0: it may try).
func (l *Limiter) Wait(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if g := l.fails[key]; g != nil {
		return max(0, g.until.Sub(l.now()))
	}
	return 0
}

// Fail records a wrong guess for key.
func (l *Limiter) Fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fails == nil || len(l.fails) > 10000 {
		l.fails = map[string]*guesses{}
	}
	g := l.fails[key]
	if g == nil {
		g = &guesses{}
		l.fails[key] = g
	}
	g.n++
	if over := g.n - l.Policy.Free; over > 0 {
		wait := l.Policy.First << min(over-1, 20)
		if wait > l.Policy.Max || wait <= 0 {
			wait = l.Policy.Max
		}
		g.until = l.now().Add(wait)
	}
}

// Clear forgets key's wrong guesses (it got in).
func (l *Limiter) Clear(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, key)
}
