package gateway

import (
	"context"
	"log/slog"
	"time"
)

// Usage is what one key used of one model in one minute.
type Usage struct {
	KeyID, Model     string
	Minute           time.Time // start of the minute, UTC
	Requests         int64
	PromptTokens     int64
	CompletionTokens int64
	Rejections       int64
}

// UsageSink stores usage. The gateway calls Add from one goroutine, off the
// request path, with per-minute sums (several calls may carry the same key,
// model and minute: add them up).
type UsageSink interface {
	Add(ctx context.Context, u Usage) error
}

const (
	usageBuffer = 8192
	usageFlush  = time.Second
)

type usageKey struct {
	key, model string
	minute     int64
}

// usageRecorder sums records per key, model and minute and hands the sums
// to the sink every second. A full buffer drops records (counted, logged at
// most once a minute) rather than slowing requests.
type usageRecorder struct {
	sink    UsageSink
	log     *slog.Logger
	ch      chan Usage
	stop    chan struct{}
	done    chan struct{}
	dropped func()
	lastLog time.Time
	drops   int64
}

func newUsageRecorder(sink UsageSink, log *slog.Logger, dropped func()) *usageRecorder {
	u := &usageRecorder{sink: sink, log: log, ch: make(chan Usage, usageBuffer),
		stop: make(chan struct{}), done: make(chan struct{}), dropped: dropped}
	go u.loop()
	return u
}

func (u *usageRecorder) record(x Usage) {
	if u == nil {
		return
	}
	select {
	case u.ch <- x:
	default:
		u.dropped()
	}
}

func (u *usageRecorder) loop() {
	defer close(u.done)
	sums := make(map[usageKey]*Usage)
	tick := time.NewTicker(usageFlush)
	defer tick.Stop()
	add := func(x Usage) {
		k := usageKey{x.KeyID, x.Model, x.Minute.Unix()}
		if s, ok := sums[k]; ok {
			s.Requests += x.Requests
			s.PromptTokens += x.PromptTokens
			s.CompletionTokens += x.CompletionTokens
			s.Rejections += x.Rejections
			return
		}
		sums[k] = &x
	}
	flush := func() {
		if len(sums) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		failed := 0
		var last error
		for k, s := range sums {
			if err := u.sink.Add(ctx, *s); err != nil {
				failed++
				last = err
			}
			delete(sums, k)
		}
		if failed > 0 {
			u.log.Error("gateway: store usage", "records", failed, "err", last)
		}
	}
	for {
		select {
		case x := <-u.ch:
			add(x)
		case <-tick.C:
			flush()
		case <-u.stop:
			for {
				select {
				case x := <-u.ch:
					add(x)
				default:
					flush()
					return
				}
			}
		}
	}
}

func (u *usageRecorder) close() {
	if u == nil {
		return
	}
	close(u.stop)
	<-u.done
}
