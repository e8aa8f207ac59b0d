package orchestrator

import "sync"

// watchers fans out the names of participants whose sandbox or membership
// changed, to whoever shows state live (the dashboard). A slow watcher
// loses names rather than slowing THON down; it is told so and reloads.
type watchers struct {
	mu   sync.Mutex
	next int
	subs map[int]chan string
}

// Overflow is sent (instead of a name) when a watcher missed changes.
const Overflow = ""

// Watch returns a channel of changed participants' names and a function
// that stops the watch. An empty name (Overflow) means some were missed.
func (o *Orchestrator) Watch() (<-chan string, func()) {
	w := &o.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.subs == nil {
		w.subs = map[int]chan string{}
	}
	id := w.next
	w.next++
	ch := make(chan string, 256)
	w.subs[id] = ch
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if _, ok := w.subs[id]; ok {
			delete(w.subs, id)
			close(ch)
		}
	}
}

// changed tells every watcher that user's state changed.
func (o *Orchestrator) changed(user string) {
	w := &o.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ch := range w.subs {
		select {
		case ch <- user:
		default:
			// Full: make room for one Overflow so the watcher knows.
			select {
			case <-ch:
			default:
			}
			select {
			case ch <- Overflow:
			default:
			}
		}
	}
}
