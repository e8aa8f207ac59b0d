package orchestrator

import "time"

// Notify exposes changed to the external tests.
func Notify(o *Orchestrator, user string) { o.changed(user) }

// SetClock replaces the usage sampler's clock.
func SetClock(o *Orchestrator, now func() time.Time) { o.now = now }
