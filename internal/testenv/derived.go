package testenv

import (
	"context"
	"sync"
	"testing"
	"time"
)

var derived struct {
	mu   sync.Mutex
	refs map[string]error
}

// DerivedImage returns base+"-"+suffix: an image built FROM base with the
// Dockerfile lines added (LABEL, ENV, USER…), once per process and only
// when the engine does not have that tag yet. It needs no registry.
func DerivedImage(t testing.TB, base, suffix, lines string) string {
	t.Helper()
	cli := Docker(t)
	ref := base + "-" + suffix
	derived.mu.Lock()
	defer derived.mu.Unlock()
	if derived.refs == nil {
		derived.refs = map[string]error{}
	}
	err, done := derived.refs[ref]
	if !done {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if _, err = cli.ImageInspect(ctx, ref); err != nil {
			var buildCtx []byte
			if buildCtx, err = contextTar("FROM "+base+"\n"+lines+"\n", nil); err == nil {
				err = buildImage(ctx, cli, ref, buildCtx)
			}
		}
		derived.refs[ref] = err
	}
	if err != nil {
		t.Fatalf("build %s: %v", ref, err)
	}
	return ref
}
