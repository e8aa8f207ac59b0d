// Command sandboxd is a tiny stand-in for code-server in tests: a static HTTP
// server that answers the way THON expects an IDE to answer (health check,
// a page, a WebSocket), and that can prove where a workspace lives and what a
// sandbox can reach on the network.
//
// It is built with CGO_ENABLED=0 into a FROM scratch image by
// internal/testenv.SandboxImage.
//
//	sandboxd                  serve on 0.0.0.0:$PORT (default 8080)
//	sandboxd dial HOST:PORT   try a TCP connect (2s timeout); print "ok" or the error
//	sandboxd fetch [-H 'K: V']... [-d BODY] URL
//	                          an HTTP request (POST with -d); print the status
//	                          code on the first line, then the body; $VARS in
//	                          the URL, headers and body are expanded
//	chown UID[:GID] PATH...   (when invoked as chown) a minimal numeric chown
//
// Environment:
//
//	PORT            port to listen on (default 8080)
//	THON_USER       shown by / and /whoami
//	THON_GROUP      shown by / and /whoami
//	THON_WORKSPACE  directory served by /files/{name}
//	HEALTH_DELAY    /healthz fails until this long after start (for example "2s")
//	HEALTH_FAIL     "1": /healthz fails forever
//	IGNORE_SIGTERM  "1": ignore SIGTERM (to see a stop's grace period run out)
//	WS_ANY_ORIGIN   "1": /ws accepts any Origin (to test the proxy's own check)
//	FAIL_USERS      comma-separated users for whom it exits at start (code 3),
//	                to see one failing sandbox among many
//
// Endpoints:
//
//	GET  /healthz        200 "ok" once healthy, 503 before
//	GET  /               small HTML page with user, group and hostname
//	GET  /ws             WebSocket echo
//	GET  /env            the environment as a JSON object
//	GET  /whoami         {user, group, workspace, hostname, uid}
//	GET  /headers        the request as received: {host, path, headers}
//	PUT  /files/{name}   write the body to $THON_WORKSPACE/{name}
//	GET  /files/{name}   read it back
//	GET  /stat?path=P    {uid, gid, mode, dir, data} of any path (files THON wrote)
//	PUT  /write?path=P   write the body to any path, as the IDE's user
//	GET  /slow?n=N       N lines, one every 100ms (a long download in flight)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

func main() {
	// Installed as /bin/chown too, so that sandboxes running as a non-root
	// user can have their workspace handed over like in the real image.
	if filepath.Base(os.Args[0]) == "chown" {
		os.Exit(chown(os.Args[1:]))
	}
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "dial":
			os.Exit(dial(os.Args[2:]))
		case "fetch":
			os.Exit(fetch(os.Args[2:]))
		default:
			fmt.Fprintf(os.Stderr, "usage: sandboxd [dial HOST:PORT | fetch [-H 'K: V']... [-d BODY] URL]\n")
			os.Exit(2)
		}
	}
	if slices.Contains(strings.Split(os.Getenv("FAIL_USERS"), ","), os.Getenv("THON_USER")) && os.Getenv("THON_USER") != "" {
		fmt.Fprintf(os.Stderr, "sandboxd: failing on purpose for %s (FAIL_USERS)\n", os.Getenv("THON_USER"))
		os.Exit(3)
	}
	if err := serve(); err != nil {
		fmt.Fprintln(os.Stderr, "sandboxd:", err)
		os.Exit(1)
	}
}

// dial tries a TCP connection and reports the outcome on stdout.
func dial(args []string) int {
	if len(args) != 1 {
		fmt.Println("usage: sandboxd dial HOST:PORT")
		return 2
	}
	c, err := net.DialTimeout("tcp", args[0], 2*time.Second)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	c.Close()
	fmt.Println("ok")
	return 0
}

// fetch makes one HTTP request from inside the sandbox, like curl.
func fetch(args []string) int {
	for i := range args {
		args[i] = os.ExpandEnv(args[i])
	}
	var body *string
	hdr := http.Header{}
	for len(args) > 1 {
		switch args[0] {
		case "-H":
			k, v, _ := strings.Cut(args[1], ":")
			hdr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		case "-d":
			b := args[1]
			body = &b
		default:
			fmt.Println("usage: sandboxd fetch [-H 'K: V']... [-d BODY] URL")
			return 2
		}
		args = args[2:]
	}
	if len(args) != 1 {
		fmt.Println("usage: sandboxd fetch [-H 'K: V']... [-d BODY] URL")
		return 2
	}
	method, rd := http.MethodGet, io.Reader(nil)
	if body != nil {
		method, rd = http.MethodPost, strings.NewReader(*body)
		if hdr.Get("Content-Type") == "" {
			hdr.Set("Content-Type", "application/json")
		}
	}
	req, err := http.NewRequest(method, args[0], rd)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	req.Header = hdr
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer resp.Body.Close()
	fmt.Println(resp.StatusCode)
	io.Copy(os.Stdout, resp.Body)
	return 0
}

// chown is a minimal chown(1): numeric OWNER[:GROUP] only (scratch has no
// user database), no options.
func chown(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: chown UID[:GID] PATH...")
		return 2
	}
	u, g, _ := strings.Cut(args[0], ":")
	uid, err := strconv.Atoi(u)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chown: invalid user %q (numeric ids only)\n", u)
		return 1
	}
	gid := -1
	if g != "" {
		if gid, err = strconv.Atoi(g); err != nil {
			fmt.Fprintf(os.Stderr, "chown: invalid group %q (numeric ids only)\n", g)
			return 1
		}
	}
	status := 0
	for _, p := range args[1:] {
		if err := os.Chown(p, uid, gid); err != nil {
			fmt.Fprintln(os.Stderr, "chown:", err)
			status = 1
		}
	}
	return status
}

func serve() error {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	var delay time.Duration
	if d := os.Getenv("HEALTH_DELAY"); d != "" {
		var err error
		if delay, err = time.ParseDuration(d); err != nil {
			return fmt.Errorf("HEALTH_DELAY: %w", err)
		}
	}
	s := &server{
		started:   time.Now(),
		delay:     delay,
		fail:      os.Getenv("HEALTH_FAIL") == "1",
		user:      os.Getenv("THON_USER"),
		group:     os.Getenv("THON_GROUP"),
		workspace: os.Getenv("THON_WORKSPACE"),
	}
	s.hostname, _ = os.Hostname()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /ws", s.ws)
	mux.HandleFunc("GET /env", s.env)
	mux.HandleFunc("GET /whoami", s.whoami)
	mux.HandleFunc("GET /headers", headers)
	mux.HandleFunc("PUT /files/{name}", s.putFile)
	mux.HandleFunc("GET /files/{name}", s.getFile)
	mux.HandleFunc("GET /stat", stat)
	mux.HandleFunc("PUT /write", write)
	mux.HandleFunc("GET /slow", slow)

	ln, err := net.Listen("tcp", "0.0.0.0:"+port)
	if err != nil {
		return err
	}
	// Both streams, so tests can check that logs merge them.
	fmt.Printf("sandboxd listening on %s user=%s group=%s\n", ln.Addr(), s.user, s.group)
	fmt.Fprintf(os.Stderr, "sandboxd stderr ready\n")

	sigs := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if os.Getenv("IGNORE_SIGTERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
		sigs = sigs[:1]
	}
	ctx, stop := signal.NotifyContext(context.Background(), sigs...)
	defer stop()
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	fmt.Println("sandboxd stopping")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	return nil
}

type server struct {
	started                time.Time
	delay                  time.Duration
	fail                   bool
	user, group, workspace string
	hostname               string
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	if s.fail {
		http.Error(w, "unhealthy (HEALTH_FAIL=1)", http.StatusServiceUnavailable)
		return
	}
	if left := s.delay - time.Since(s.started); left > 0 {
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok")
}

func (s *server) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<!doctype html>
<html><head><title>sandboxd</title></head>
<body><h1>sandboxd</h1>
<p>user: <span id="user">%s</span></p>
<p>group: <span id="group">%s</span></p>
<p>hostname: <span id="hostname">%s</span></p>
</body></html>
`, html.EscapeString(s.user), html.EscapeString(s.group), html.EscapeString(s.hostname))
}

// ws echoes every message back. Like code-server, it refuses an upgrade whose
// Origin names another host than the one the request was sent to — unless
// WS_ANY_ORIGIN=1, so tests can prove a proxy in front refuses it by itself.
func (s *server) ws(w http.ResponseWriter, r *http.Request) {
	if origin := r.Header.Get("Origin"); origin != "" && os.Getenv("WS_ANY_ORIGIN") != "1" {
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
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}

func (s *server) env(w http.ResponseWriter, r *http.Request) {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	writeJSON(w, env)
}

func (s *server) whoami(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]any{
		"user":      s.user,
		"group":     s.group,
		"workspace": s.workspace,
		"hostname":  s.hostname,
		"uid":       os.Getuid(),
	})
}

// filePath resolves a plain file name inside the workspace.
func (s *server) filePath(name string) (string, error) {
	if s.workspace == "" {
		return "", errors.New("THON_WORKSPACE is not set")
	}
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || filepath.Base(name) != name {
		return "", fmt.Errorf("%q is not a plain file name", name)
	}
	return filepath.Join(s.workspace, name), nil
}

func (s *server) putFile(w http.ResponseWriter, r *http.Request) {
	p, err := s.filePath(r.PathValue("name"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := os.WriteFile(p, body, 0o644); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

func (s *server) getFile(w http.ResponseWriter, r *http.Request) {
	p, err := s.filePath(r.PathValue("name"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b, err := os.ReadFile(p)
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

// stat describes any path: owner, permission bits and, for a file, its text.
func stat(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Query().Get("path")
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	out := map[string]any{"uid": st.Uid, "gid": st.Gid, "mode": fmt.Sprintf("%04o", fi.Mode().Perm()), "dir": fi.IsDir()}
	if !fi.IsDir() {
		b, err := os.ReadFile(p)
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		out["data"] = string(b)
	}
	writeJSON(w, out)
}

// write puts the body at any path, with this process's rights.
func write(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err == nil {
		err = os.WriteFile(r.URL.Query().Get("path"), b, 0o644)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// headers shows the request as it arrived, so tests can see what a proxy
// in front passed on (and what it kept back).
func headers(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"host": r.Host, "path": r.URL.Path, "headers": r.Header})
}

// slow writes n numbered lines, one every 100ms, flushing each.
func slow(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || n < 1 || n > 6000 {
		http.Error(w, "n: a number of lines from 1 to 6000", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	rc := http.NewResponseController(w)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for i := range n {
		fmt.Fprintf(w, "%d\n", i)
		if rc.Flush() != nil {
			return
		}
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	}
}
