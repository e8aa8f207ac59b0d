package orchestrator

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/store"
)

// ExportResult is what one participant's export wrote: a .tar.gz of their
// workspace, whose entries are under {user}/.
type ExportResult struct {
	User  string `json:"user"`
	Group string `json:"group"`
	// Bytes is the size of the .tar.gz, SHA256 its digest (hex).
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
	// Files counts the regular files in it, ContentBytes their sizes.
	Files        int       `json:"files"`
	ContentBytes int64     `json:"content_bytes"`
	Time         time.Time `json:"time"` // when the archive was read
	Seconds      float64   `json:"seconds"`
	// Started: the engine reads only a running sandbox's files
	// (Capabilities.StoppedArchive unset) and this one was stopped, so THON
	// started it for the export and stopped it again.
	Started bool `json:"started,omitempty"`
	// Error says why there is no archive (a group's export lists every
	// member, exported or not).
	Error string `json:"error,omitempty"`
}

// Export is one participant's workspace being exported: opened by
// OpenExport (which fails before anything is written for a missing
// participant, sandbox or engine), written once by Write, then closed.
type Export struct {
	User, Group string
	// Started: see ExportResult.Started.
	Started bool

	o     *Orchestrator
	actor string
	rc    io.ReadCloser
	begun time.Time
	done  func() // releases the export slot, stops a sandbox started for it
	once  sync.Once
}

// gzipLevel trades size for speed: gzip's fastest level (klauspost's
// implementation, three times the standard library's speed at it) keeps a
// 2-core machine's export near the engine's own copy speed; source code
// still shrinks about threefold.
const gzipLevel = gzip.BestSpeed

// OpenExport opens user's workspace for export, waiting for one of the
// sandbox.concurrency export slots (exports from the CLI, the dashboard
// and participants share them). A participant without a sandbox has no
// workspace to export: the error wraps sandbox.ErrNotFound and says what
// to do. On an engine that reads only a running sandbox's files
// (Capabilities.StoppedArchive unset), a stopped sandbox is started for
// the export and stopped again once it is closed.
func (o *Orchestrator) OpenExport(ctx context.Context, actor, user string) (*Export, error) {
	u, err := o.st.User(ctx, user)
	if err != nil {
		return nil, err
	}
	if err := o.exports.acquire(ctx, max(o.Settings().Concurrency, 1)); err != nil {
		return nil, err
	}
	e := &Export{User: u.Name, Group: u.Group, o: o, actor: actor, begun: time.Now(), done: o.exports.release}
	fail := func(err error) (*Export, error) {
		e.done()
		if errors.Is(err, sandbox.ErrNotFound) {
			return nil, fmt.Errorf("%s has no sandbox, so no workspace to export: start it (thon instance start %s; a kept workspace comes back in it): %w", user, user, sandbox.ErrNotFound)
		}
		return nil, err
	}
	if !o.caps.StoppedArchive {
		inst, err := o.rt.Inspect(ctx, user)
		if err != nil {
			return fail(err)
		}
		if inst.State != sandbox.StateRunning {
			stop, err := o.startForExport(ctx, actor, u)
			if err != nil {
				return fail(err)
			}
			e.Started = true
			release := e.done
			e.done = func() { stop(); release() }
		}
	}
	if e.rc, err = o.rt.Archive(ctx, user); err != nil {
		return fail(err)
	}
	return e, nil
}

// startForExport starts user's stopped sandbox (holding their lock, so no
// other operation runs meanwhile) and returns what stops it again.
func (o *Orchestrator) startForExport(ctx context.Context, actor string, u store.User) (func(), error) {
	unlock := o.lock(u.Name)
	inst, err := o.rt.Inspect(ctx, u.Name)
	if err == nil && inst.State == sandbox.StateRunning {
		unlock() // started meanwhile: nothing to undo
		return func() {}, nil
	}
	if err == nil {
		_, err = o.rt.Start(ctx, u.Name)
	}
	if err == nil {
		spec := o.Spec(u.Name, u.Group)
		spec.Group = inst.Group // where its workspace is mounted now
		inst, err = o.waitHealthy(ctx, spec)
	}
	if err != nil {
		unlock()
		return nil, fmt.Errorf("start the sandbox of %s to read its workspace: %w", u.Name, err)
	}
	o.event(ctx, actor, "sandbox.start", u.Name, "for an export: the engine reads only a running sandbox's files")
	return func() {
		defer unlock()
		ctx := context.WithoutCancel(ctx)
		if err := o.rt.Stop(ctx, u.Name, 10*time.Second); err != nil {
			o.log.Error("stop a sandbox started for an export", "user", u.Name, "err", err)
			return
		}
		if inst, err := o.rt.Inspect(ctx, u.Name); err == nil {
			o.record(ctx, inst, "", "")
		}
		o.event(ctx, actor, "sandbox.stop", u.Name, "after the export it was started for")
	}, nil
}

// Write writes the workspace to w as a .tar.gz (the engine's tar, byte
// for byte, gzipped) and records the export in the audit log. An error
// means w holds an incomplete archive.
func (e *Export) Write(w io.Writer) (ExportResult, error) {
	defer e.Close()
	res := e.result()
	sum := sha256.New()
	out := &countWriter{w: io.MultiWriter(w, sum)}
	zw, _ := gzip.NewWriterLevel(out, gzipLevel)
	files, content, err := copyTar(zw, e.rc)
	if err == nil {
		err = zw.Close()
	}
	res.Files, res.ContentBytes, res.Bytes = files, content, out.n
	res.SHA256 = hex.EncodeToString(sum.Sum(nil))
	return e.finish(res, err, fmt.Sprintf("%d bytes of .tar.gz, sha256 %s", res.Bytes, res.SHA256))
}

func (e *Export) result() ExportResult {
	return ExportResult{User: e.User, Group: e.Group, Time: time.Now().UTC(), Started: e.Started}
}

// finish records the export in the audit log.
func (e *Export) finish(res ExportResult, err error, what string) (ExportResult, error) {
	res.Seconds = time.Since(e.begun).Seconds()
	ctx := context.Background()
	if err != nil {
		err = fmt.Errorf("export the workspace of %s: %w", e.User, err)
		res.Error = userMessage(err)
		e.o.event(ctx, e.actor, "sandbox.export.failed", e.User, res.Error)
		return res, err
	}
	e.o.event(ctx, e.actor, "sandbox.export", e.User, fmt.Sprintf("%d files, %d bytes, in %s", res.Files, res.ContentBytes, what))
	return res, nil
}

// GroupExport is a group's workspaces being exported into one archive.
type GroupExport struct {
	Group   string
	o       *Orchestrator
	members []store.User
}

// OpenGroupExport checks that group exists and lists its members.
func (o *Orchestrator) OpenGroupExport(ctx context.Context, group string) (*GroupExport, error) {
	if _, err := o.st.Group(ctx, group); err != nil {
		return nil, err
	}
	users, err := o.st.Users(ctx, group)
	if err != nil {
		return nil, err
	}
	return &GroupExport{Group: group, o: o, members: users}, nil
}

// Write writes every member's workspace, one after another, into one
// .tar.gz whose entries are under {group}/{user}/, then
// {group}/manifest.json: what each member's part holds, or why it is
// missing (no sandbox, say), which stops nothing. An error means w holds
// an incomplete archive.
func (g *GroupExport) Write(ctx context.Context, actor string, w io.Writer) ([]ExportResult, error) {
	zw, _ := gzip.NewWriterLevel(w, gzipLevel)
	tw := tar.NewWriter(zw)
	results := make([]ExportResult, 0, len(g.members))
	for _, u := range g.members {
		e, err := g.o.OpenExport(ctx, actor, u.Name)
		if err != nil {
			if ctx.Err() != nil {
				return results, ctx.Err()
			}
			results = append(results, ExportResult{User: u.Name, Group: g.Group, Time: time.Now().UTC(), Error: userMessage(err)})
			continue
		}
		res := e.result()
		res.Files, res.ContentBytes, err = retar(tw, e.rc, g.Group+"/")
		e.Close()
		res, err = e.finish(res, err, "the export of group "+g.Group)
		results = append(results, res)
		if err != nil {
			return results, err // the archive is cut: stop here
		}
	}
	manifest, _ := json.MarshalIndent(Manifest{Time: time.Now().UTC(), Items: results}, "", "  ")
	manifest = append(manifest, '\n')
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: g.Group + "/manifest.json", Mode: 0o644, Size: int64(len(manifest)), ModTime: time.Now()}); err != nil {
		return results, err
	}
	if _, err := tw.Write(manifest); err != nil {
		return results, err
	}
	if err := tw.Close(); err != nil {
		return results, err
	}
	return results, zw.Close()
}

// Manifest says what an export holds: one item per participant, exported
// or not (then with its error).
type Manifest struct {
	Time  time.Time      `json:"time"`
	Items []ExportResult `json:"items"`
}

// retar copies the entries of the tar in r into tw with prefix before
// their names, counting regular files and their bytes.
func retar(tw *tar.Writer, r io.Reader, prefix string) (files int, content int64, err error) {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, content, nil
		}
		if err != nil {
			return files, content, fmt.Errorf("read the engine's archive: %w", err)
		}
		h.Name = prefix + h.Name
		if h.Typeflag == tar.TypeLink {
			h.Linkname = prefix + h.Linkname
		}
		delete(h.PAXRecords, "path")
		delete(h.PAXRecords, "linkpath")
		if err := tw.WriteHeader(h); err != nil {
			return files, content, err
		}
		if h.Typeflag == tar.TypeReg {
			files++
			content += h.Size
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return files, content, fmt.Errorf("read the engine's archive: %w", err)
		}
	}
}

// Close ends the export (Write closes it too): the engine's stream, the
// export slot, a sandbox started for it.
func (e *Export) Close() error {
	var err error
	e.once.Do(func() {
		if e.rc != nil {
			err = e.rc.Close()
		}
		e.done()
	})
	return err
}

// copyTar copies the engine's tar to w unchanged, counting its regular
// files and their bytes on the way.
func copyTar(w io.Writer, r io.Reader) (files int, content int64, err error) {
	tr := tar.NewReader(io.TeeReader(r, w))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return files, content, fmt.Errorf("read the engine's archive: %w", err)
		}
		if h.Typeflag == tar.TypeReg {
			files++
			content += h.Size
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return files, content, fmt.Errorf("read the engine's archive: %w", err)
		}
	}
	// What follows the last entry (the end-of-archive blocks, padding).
	if _, err := io.Copy(w, r); err != nil {
		return files, content, fmt.Errorf("read the engine's archive: %w", err)
	}
	return files, content, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// slots bounds work done at once to a limit read at each acquire (the
// settings may change).
type slots struct {
	mu   sync.Mutex
	n    int
	wake chan struct{}
}

func (s *slots) acquire(ctx context.Context, limit int) error {
	for {
		s.mu.Lock()
		if s.n < limit {
			s.n++
			s.mu.Unlock()
			return nil
		}
		if s.wake == nil {
			s.wake = make(chan struct{})
		}
		ch := s.wake
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *slots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n--
	if s.wake != nil {
		close(s.wake)
		s.wake = nil
	}
}

// Trailers of an export served over HTTP (ServeExport): what the archive
// holds, known once it is written. A client compares Thon-Sha256 with the
// digest of what it received; Thon-Error set means the archive is cut.
const (
	TrailerSHA256       = "Thon-Sha256"
	TrailerFiles        = "Thon-Files"
	TrailerContentBytes = "Thon-Content-Bytes"
	TrailerError        = "Thon-Error"
)

// ServeExport answers r with user's workspace as a .tar.gz download
// ({user}.tar.gz) and its digest, file count and size as trailers. The API
// and the participant's own /_thon/export both serve it. An error before
// anything is written (no such user, no sandbox, the engine) is returned
// for the caller to answer in its own way; once the download has begun,
// a failure is the Thon-Error trailer and a cut stream.
func (o *Orchestrator) ServeExport(w http.ResponseWriter, r *http.Request, actor, user string) error {
	e, err := o.OpenExport(r.Context(), actor, user)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/gzip")
	h.Set("Content-Disposition", `attachment; filename="`+e.User+`.tar.gz"`)
	h.Set("Thon-Group", e.Group)
	h.Set("Cache-Control", "no-store")
	h.Set("Trailer", strings.Join([]string{TrailerSHA256, TrailerFiles, TrailerContentBytes, TrailerError}, ", "))
	w.WriteHeader(http.StatusOK)
	res, err := e.Write(w)
	if err != nil {
		h.Set(TrailerError, res.Error)
		return nil
	}
	h.Set(TrailerSHA256, res.SHA256)
	h.Set(TrailerFiles, strconv.Itoa(res.Files))
	h.Set(TrailerContentBytes, strconv.FormatInt(res.ContentBytes, 10))
	return nil
}

// ServeGroupExport answers r with a group's workspaces in one .tar.gz
// ({group}.tar.gz, manifest included; see GroupExport.Write).
func (o *Orchestrator) ServeGroupExport(w http.ResponseWriter, r *http.Request, actor, group string) error {
	g, err := o.OpenGroupExport(r.Context(), group)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/gzip")
	h.Set("Content-Disposition", `attachment; filename="`+group+`.tar.gz"`)
	h.Set("Cache-Control", "no-store")
	h.Set("Trailer", TrailerError)
	w.WriteHeader(http.StatusOK)
	if _, err := g.Write(r.Context(), actor, w); err != nil {
		h.Set(TrailerError, userMessage(err))
	}
	return nil
}
