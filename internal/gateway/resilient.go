package gateway

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// errLimiterDown is returned (fail-closed) while Redis does not answer.
var errLimiterDown = errors.New("rate limiter unavailable")

// sharedCounters puts Redis first and this process's counters behind it:
// while Redis does not answer, fail-open admits on the local counters and
// fail-closed refuses. A probe notices Redis coming back.
type sharedCounters struct {
	remote   *redisCounters
	local    *memCounters
	failOpen bool
	log      *slog.Logger
	probe    time.Duration
	onState  func(up bool)

	up      atomic.Bool
	probing atomic.Bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newSharedCounters(remote *redisCounters, failOpen bool, log *slog.Logger, onState func(bool)) *sharedCounters {
	s := &sharedCounters{remote: remote, local: newMemCounters(), failOpen: failOpen, log: log,
		probe: 500 * time.Millisecond, onState: onState, stop: make(chan struct{})}
	s.up.Store(true)
	onState(true)
	return s
}

// start checks Redis once, so an outage at boot is logged and probed.
func (s *sharedCounters) start() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.remote.ping(ctx); err != nil {
		s.down(err)
	}
}

func (s *sharedCounters) down(err error) {
	if s.up.CompareAndSwap(true, false) {
		s.onState(false)
		if s.failOpen {
			s.log.Warn("gateway: Redis unreachable; serving with this replica's local counters until it returns (fail_open)", "err", err)
		} else {
			s.log.Error("gateway: Redis unreachable; refusing requests with 503 until it returns (fail_open: false)", "err", err)
		}
	}
	if s.probing.CompareAndSwap(false, true) {
		s.wg.Add(1)
		go s.probeLoop()
	}
}

func (s *sharedCounters) probeLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.probe)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			s.probing.Store(false)
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := s.remote.ping(ctx)
		cancel()
		if err == nil {
			// Logged first: whoever sees up sees the log line too.
			s.log.Info("gateway: Redis reachable again; limits are shared again")
			s.probing.Store(false)
			s.up.Store(true)
			s.onState(true)
			return
		}
	}
}

// failed reports whether err is Redis failing rather than the caller going
// away, and starts the outage handling when it is.
func (s *sharedCounters) failed(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	s.down(err)
	return true
}

func (s *sharedCounters) admit(ctx context.Context, p *plan, now time.Time, t *ticket) (verdict, error) {
	if s.up.Load() {
		v, err := s.remote.admit(ctx, p, now, t)
		if err == nil {
			return v, nil
		}
		if !s.failed(ctx, err) {
			return v, err
		}
	}
	if !s.failOpen {
		return verdict{}, errLimiterDown
	}
	return s.local.admit(ctx, p, now, t)
}

// finish returns the ticket to the store that issued it: a request admitted
// on the local counters during an outage finishes there.
func (s *sharedCounters) finish(ctx context.Context, t *ticket, now time.Time, tokens int64, refund bool) error {
	err := t.store.finish(ctx, t, now, tokens, refund)
	if err != nil && t.store == counterStore(s.remote) {
		s.failed(ctx, err)
	}
	return err
}

func (s *sharedCounters) peek(ctx context.Context, p *plan, now time.Time) (verdict, error) {
	if s.up.Load() {
		v, err := s.remote.peek(ctx, p, now)
		if err == nil || !s.failed(ctx, err) {
			return v, err
		}
	}
	return s.local.peek(ctx, p, now)
}

func (s *sharedCounters) seedBudget(ctx context.Context, keyID string, used int64) error {
	s.local.seedBudget(ctx, keyID, used)
	if s.up.Load() {
		if err := s.remote.seedBudget(ctx, keyID, used); err != nil {
			s.failed(ctx, err)
			return err
		}
	}
	return nil
}

func (s *sharedCounters) close() error {
	close(s.stop)
	s.wg.Wait()
	return s.remote.close()
}
