package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/thon-dev/thon/internal/gateway"
	"github.com/thon-dev/thon/internal/gateway/keyring"
	"github.com/thon-dev/thon/wire"

	"github.com/thon-dev/thon/internal/orchestrator"
)

// streamTick is how often the stream looks for new audit events and usage.
const streamTick = time.Second

// CloseStreams ends every event stream (they never end by themselves), so
// that a daemon shutting down waits only for requests that do end; clients
// reconnect to the next daemon, whose hello says it restarted.
func (s *Server) CloseStreams() {
	s.closeStreams.Do(func() { close(s.streamsEnd) })
}

// stream is Server-Sent Events of what changes: `hello` first (the daemon's
// start time: a new one means it restarted, so reload), `sandbox` with a
// participant's status when it changes, `reload` when participants or
// groups change (or changes were missed), `event` for each new audit log
// entry, `usage` (the gateway's traffic this minute) every 5 s, and `queue`
// (the gateway's slots and queue per model) each second it changed, and
// every 5 s.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) error {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(event string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return err
		}
		return rc.Flush()
	}
	ctx := r.Context()
	changes, stop := s.orch.Watch()
	defer stop()
	if err := send("hello", wire.Hello{Started: s.info.Started, Version: s.info.Version}); err != nil {
		return nil
	}
	var lastEvent int64
	if evs, err := s.st.Events(ctx, 0, 1); err == nil && len(evs) > 0 {
		lastEvent = evs[len(evs)-1].ID
	}
	tick := time.NewTicker(streamTick)
	defer tick.Stop()
	var lastQueues []byte
	for n := 0; ; {
		select {
		case <-ctx.Done():
			return nil
		case <-s.streamsEnd:
			return nil
		case user, ok := <-changes:
			if !ok {
				return nil
			}
			var err error
			if user == orchestrator.Overflow {
				err = send("reload", struct{}{})
			} else if st, gerr := s.orch.Get(ctx, user); gerr == nil {
				err = send("sandbox", toStatus(st))
			}
			if err != nil {
				return nil
			}
		case <-tick.C:
			n++
			evs, err := s.st.Events(ctx, lastEvent, 100)
			if err == nil {
				for _, e := range evs {
					if send("event", toEvent(e)) != nil {
						return nil
					}
					lastEvent = e.ID
				}
			}
			if s.queues != nil {
				q := s.queues()
				if q == nil {
					q = []gateway.QueueStat{}
				}
				if b, err := json.Marshal(q); err == nil && (n%5 == 0 || !bytes.Equal(b, lastQueues)) {
					lastQueues = b
					if _, err := fmt.Fprintf(w, "event: queue\ndata: %s\n\n", b); err != nil || rc.Flush() != nil {
						return nil
					}
				}
			}
			if n%5 == 0 {
				if u, err := s.usageTick(r); err == nil && send("usage", u) != nil {
					return nil
				}
				// A comment keeps proxies from closing an idle stream.
				if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
					return nil
				}
			}
		}
	}
}

func (s *Server) usageTick(r *http.Request) (wire.UsageTick, error) {
	if s.keys == nil {
		return wire.UsageTick{}, nil
	}
	sum, err := s.keys.Summary(r.Context(), keyring.UsageQuery{Minutes: 1})
	return wire.UsageTick{Requests: sum.Total.Requests, Tokens: sum.Total.Tokens(), Rejections: sum.Total.Rejections}, err
}
