package orchestrator

// Notify exposes changed to the external tests.
func Notify(o *Orchestrator, user string) { o.changed(user) }
