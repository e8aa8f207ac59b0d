package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"testing"
	"time"
)

var derived struct {
	mu   sync.Mutex
	refs map[string]error
}

// DerivedImage returns base+"-"+suffix+"-"+a hash of lines: an image built
// FROM base with the Dockerfile lines added (LABEL, ENV, USER…), once per
// process and only when the engine does not have that tag yet (the hash:
// other lines, such as a label with another version, make another tag).
// It needs no registry.
func DerivedImage(t testing.TB, base, suffix, lines string) string {
	t.Helper()
	cli := Docker(t)
	sum := sha256.Sum256([]byte(lines))
	ref := base + "-" + suffix + "-" + hex.EncodeToString(sum[:4])
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
