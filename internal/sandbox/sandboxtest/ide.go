package sandboxtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/thon-dev/thon/internal/sandbox"
)

// ide is the in-process stand-in for the IDE of one run of a fake sandbox. It
// answers like test/sandboxd (the test image's program), so a test above the
// engine sees the same thing on the fake as on Docker:
//
//	GET  {health path}   200 "ok" once healthy (HEALTH_DELAY, HEALTH_FAIL), 503 before
//	GET  /               a small HTML page with user, group and hostname
//	GET  /ws             WebSocket echo; like code-server, it refuses an Origin
//	                     naming another host unless WS_ANY_ORIGIN=1
//	GET  /env            the environment (Spec.Environ) as a JSON object
//	GET  /whoami         {user, group, workspace, hostname, uid}
//	GET  /headers        the request as received: {host, path, headers}
//	PUT  /files/{name}   write the body into the workspace
//	GET  /files/{name}   read it back
//	GET  /stat?path=P    {uid, gid, mode, dir, data} of a file THON wrote (Spec.Files)
//
// While the sandbox is paused every request waits, as a frozen process
// would.
type ide struct {
	spec    sandbox.Spec
	env     map[string]string
	started time.Time
	delay   time.Duration
	fail    bool
	ws      workspace
	files   map[string]fileEntry
	gate    *gate
	// requests counts what the IDE served: the fake's CPU time.
	requests atomic.Int64
}

func newIDE(spec sandbox.Spec, ws workspace, g *gate, now time.Time) *ide {
	d := &ide{spec: spec, env: map[string]string{}, started: now, ws: ws, gate: g, files: fileTree(spec)}
	for _, v := range spec.Environ() {
		d.env[v.Name] = v.Value
	}
	d.delay, _ = time.ParseDuration(d.env["HEALTH_DELAY"])
	d.fail = d.env["HEALTH_FAIL"] == "1"
	return d
}

// healthy reports whether the health path answers 2xx now.
func (d *ide) healthy(now time.Time) bool {
	return !d.fail && now.Sub(d.started) >= d.delay
}

func (d *ide) handler() http.Handler {
	mux := http.NewServeMux()
	health := d.spec.HealthPath
	if health == "" {
		health = "/healthz"
	}
	mux.HandleFunc("GET "+health, d.healthz)
	if health != "/healthz" {
		mux.HandleFunc("GET /healthz", d.healthz)
	}
	mux.HandleFunc("GET /{$}", d.index)
	mux.HandleFunc("GET /ws", d.echo)
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, d.env) })
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"user": d.spec.User, "group": d.spec.Group, "workspace": d.spec.WorkspacePath(), "hostname": d.spec.User, "uid": 0})
	})
	mux.HandleFunc("GET /headers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"host": r.Host, "path": r.URL.Path, "headers": r.Header})
	})
	mux.HandleFunc("PUT /files/{name}", d.putFile)
	mux.HandleFunc("GET /files/{name}", d.getFile)
	mux.HandleFunc("GET /stat", d.stat)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := d.gate.wait(r.Context()); err != nil {
			return // paused until the client gave up
		}
		d.requests.Add(1)
		mux.ServeHTTP(w, r)
	})
}

func (d *ide) healthz(w http.ResponseWriter, r *http.Request) {
	switch {
	case d.fail:
		http.Error(w, "unhealthy (HEALTH_FAIL=1)", http.StatusServiceUnavailable)
	case !d.healthy(time.Now()):
		http.Error(w, "starting", http.StatusServiceUnavailable)
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok")
	}
}

func (d *ide) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<!doctype html>
<html><head><title>sandboxd</title></head>
<body><h1>sandboxd</h1>
<p>user: <span id="user">%s</span></p>
<p>group: <span id="group">%s</span></p>
<p>hostname: <span id="hostname">%s</span></p>
</body></html>
`, html.EscapeString(d.spec.User), html.EscapeString(d.spec.Group), html.EscapeString(d.spec.User))
}

func (d *ide) echo(w http.ResponseWriter, r *http.Request) {
	if origin := r.Header.Get("Origin"); origin != "" && d.env["WS_ANY_ORIGIN"] != "1" {
		u, err := url.Parse(origin)
		if err != nil || (!strings.EqualFold(u.Host, r.Host) && !strings.EqualFold(u.Host, r.Header.Get("X-Forwarded-Host"))) {
			http.Error(w, "origin not allowed", http.StatusForbidden)
			return
		}
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true}) // origin checked above
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := r.Context()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
				c.Close(websocket.StatusNormalClosure, "")
			}
			return
		}
		if d.gate.wait(ctx) != nil {
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}

func (d *ide) putFile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !plainName(name) {
		http.Error(w, fmt.Sprintf("%q is not a plain file name", name), http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := d.ws.put(name, body); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

func (d *ide) getFile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !plainName(name) {
		http.Error(w, fmt.Sprintf("%q is not a plain file name", name), http.StatusBadRequest)
		return
	}
	b, err := d.ws.get(name)
	if errors.Is(err, os.ErrNotExist) {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(b)
}

func (d *ide) stat(w http.ResponseWriter, r *http.Request) {
	p := path.Clean(r.URL.Query().Get("path"))
	f, ok := d.files[p]
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	out := map[string]any{"uid": f.uid, "gid": f.gid, "mode": fmt.Sprintf("%04o", f.mode), "dir": f.dir}
	if !f.dir {
		out["data"] = string(f.data)
	}
	writeJSON(w, out)
}

func plainName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, `/\`)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// fileEntry is a file or directory THON wrote into a fake sandbox.
type fileEntry struct {
	uid, gid int
	mode     int64
	dir      bool
	data     []byte
}

// fileTree is what the engines make of spec.Files: each file with its owner
// and mode, the directories from a home directory down owned by the file's
// owner (0755), other missing parents owned by root (0755), and the
// workspace directory.
func fileTree(spec sandbox.Spec) map[string]fileEntry {
	t := map[string]fileEntry{}
	for _, f := range spec.Files {
		owned := sandbox.OwnedDirs(f.Path)
		for dir := path.Dir(f.Path); dir != "/"; dir = path.Dir(dir) {
			if _, ok := t[dir]; ok {
				continue
			}
			e := fileEntry{mode: 0o755, dir: true}
			if slices.Contains(owned, dir) {
				e.uid, e.gid = f.UID, f.GID
			}
			t[dir] = e
		}
		t[f.Path] = fileEntry{uid: f.UID, gid: f.GID, mode: f.Mode, data: slices.Clone(f.Data)}
	}
	t[spec.WorkspacePath()] = fileEntry{mode: 0o755, dir: true}
	return t
}

// workspace holds a fake sandbox's files.
type workspace interface {
	put(name string, data []byte) error
	get(name string) ([]byte, error)
	// list returns every file, sorted by name.
	list() ([]wsFile, error)
}

// wsFile is one file of a workspace.
type wsFile struct {
	name    string
	data    []byte
	mode    int64
	modTime time.Time
}

// memWorkspace is a volume (kept between sandboxes) or an ephemeral
// workspace, in memory.
type memWorkspace struct {
	id    string
	mu    sync.Mutex
	files map[string][]byte
	times map[string]time.Time
}

func (m *memWorkspace) put(name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.files == nil {
		m.files = map[string][]byte{}
	}
	m.files[name] = slices.Clone(data)
	if m.times == nil {
		m.times = map[string]time.Time{}
	}
	m.times[name] = time.Now()
	return nil
}

func (m *memWorkspace) get(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.files[name]
	if !ok {
		return nil, os.ErrNotExist
	}
	return slices.Clone(b), nil
}

func (m *memWorkspace) list() ([]wsFile, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]wsFile, 0, len(m.files))
	for _, name := range slices.Sorted(maps.Keys(m.files)) {
		out = append(out, wsFile{name: name, data: slices.Clone(m.files[name]), mode: 0o644, modTime: m.times[name]})
	}
	return out, nil
}

// dirWorkspace is a bind workspace: a directory on this host.
type dirWorkspace string

func (d dirWorkspace) list() ([]wsFile, error) {
	entries, err := os.ReadDir(string(d))
	if err != nil {
		return nil, err
	}
	var out []wsFile
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		b, err := os.ReadFile(filepath.Join(string(d), e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, wsFile{name: e.Name(), data: b, mode: int64(fi.Mode().Perm()), modTime: fi.ModTime()})
	}
	return out, nil
}

func (d dirWorkspace) put(name string, data []byte) error {
	return os.WriteFile(filepath.Join(string(d), name), data, 0o644)
}

func (d dirWorkspace) get(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(d), name))
}

// gate holds requests while a sandbox is paused.
type gate struct {
	mu     sync.Mutex
	closed chan struct{} // non-nil while paused; closed on resume
}

func (g *gate) pause() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed == nil {
		g.closed = make(chan struct{})
	}
}

func (g *gate) resume() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed != nil {
		close(g.closed)
		g.closed = nil
	}
}

func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	ch := g.closed
	g.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
