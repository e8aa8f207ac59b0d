package docker

import (
	"context"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/sandbox"
)

var _ sandbox.Watcher = (*Runtime)(nil)

// Watch follows the engine's events of this instance's containers: the
// user of every container that starts, stops, dies, pauses, unpauses or is
// removed, and sandbox.WatchLost when the stream breaks (the engine
// stopped, or restarted its containers at new addresses) and once more
// when it is open again after a break.
func (r *Runtime) Watch(ctx context.Context) <-chan string {
	out := make(chan string, 64)
	go func() {
		defer close(out)
		send := func(user string) bool {
			select {
			case out <- user:
				return true
			case <-ctx.Done():
				return false
			}
		}
		f := r.filters().Add("type", string(events.ContainerEventType))
		for _, a := range []events.Action{events.ActionStart, events.ActionRestart, events.ActionStop, events.ActionDie,
			events.ActionKill, events.ActionPause, events.ActionUnPause, events.ActionDestroy} {
			f = f.Add("event", string(a))
		}
		pause := func() bool {
			select {
			case <-ctx.Done():
				return false
			case <-time.After(time.Second):
				return true
			}
		}
		for first := true; ctx.Err() == nil; first = false {
			// After a break, reopen once the engine answers: one WatchLost
			// for the gap, not one a second while it is down.
			for !first && r.Ping(ctx) != nil {
				if !pause() {
					return
				}
			}
			sctx, cancel := context.WithCancel(ctx)
			res := r.cli.Events(sctx, client.EventsListOptions{Filters: f})
			ok := true
			if !first { // open again: what happened in the gap is not in it
				ok = send(sandbox.WatchLost)
			}
		stream:
			for ok {
				select {
				case <-ctx.Done():
					ok = false
				case m := <-res.Messages:
					if u := m.Actor.Attributes[sandbox.LabelUser]; u != "" {
						ok = send(u)
					}
				case <-res.Err:
					break stream
				}
			}
			cancel()
			if !ok || !send(sandbox.WatchLost) || !pause() {
				return
			}
		}
	}()
	return out
}
