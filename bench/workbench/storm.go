package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/thon-dev/thon/bench/internal/benchkit"
	thonclient "github.com/thon-dev/thon/client"
)

// The login storm: -storm clients load the real workbench at once, as a
// room does when the event opens. What one load is comes from the real
// code-server: Chromium opens one participant's workbench through the
// front door and every request it makes to that origin is recorded (the
// page, its scripts, styles, fonts, icons, the extensions' files) with the
// WebSockets it opens. Each client then makes the same requests, over
// HTTP/2 on one connection of its own as a browser does (the page first,
// then everything else at once), and opens the same WebSockets (HTTP/1.1,
// as Chromium does), once through THON's front door with the participant's
// session and once through nginx in front of the same sandboxes (one
// server per participant on a port of its own, as THON's port mode does;
// TLS, HTTP/2, WebSocket upgrade; nginx checks no session). A load is
// complete when every response was read whole and every WebSocket was
// upgraded.

// capture is one workbench load as Chromium made it.
type capture struct {
	workspace string   // the recorded participant's workspace, which the paths may name
	page      string   // the workbench page: path and query
	assets    []string // every other GET to the origin answered 200, in order
	sockets   []string // the WebSockets' paths and queries (tokenMark: a fresh reconnection token)
	bytes     int64    // what Chromium received for them (encoded, as sent)
	proto     string   // the page's protocol as Chromium saw it (h2)
}

// tokenMark stands for a WebSocket's reconnection token, fresh per load.
const tokenMark = "RECONNECTION-TOKEN"

// chromiumPath finds the Chromium that records the workbench's load.
func chromiumPath() (string, error) {
	exe, err := exec.LookPath("chromium")
	if err != nil {
		return "", errors.New("chromium is not on PATH; the login storm records a real workbench load with it: apt-get install -y chromium")
	}
	return exe, nil
}

// captureLoad opens user's access link in a headless Chromium, waits for
// the workbench to be drawn and the network to be quiet for 3 s, and
// records what it fetched from the IDE's origin.
func captureLoad(ctx context.Context, api *thonclient.Client, pool *x509.CertPool, user, workspace, tmp string) (capture, error) {
	c := capture{workspace: workspace}
	exe, err := chromiumPath()
	if err != nil {
		return c, err
	}
	l, err := api.IssueLink(ctx, user)
	if err != nil {
		return c, err
	}
	origin, err := url.Parse(l.URL)
	if err != nil {
		return c, err
	}
	spki, err := leafSPKI(origin.Host, pool)
	if err != nil {
		return c, err
	}
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(filepath.Join(tmp, "chromium")),
		// Chromium trusts exactly the key of the leaf THON's CA issued.
		chromedp.Flag("ignore-certificate-errors-spki-list", spki),
		chromedp.WindowSize(1280, 800))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	type req struct {
		url, method string
		typ         network.ResourceType
		status      int64
		proto       string
		size        float64
		done        bool
	}
	var (
		mu      sync.Mutex
		reqs    = map[network.RequestID]*req{}
		order   []network.RequestID
		sockets []string
		lastNew = time.Now()
	)
	// Listen starts the browser and the tab.
	if err := chromedp.Listen(bctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			if _, ok := reqs[ev.RequestID]; !ok {
				order = append(order, ev.RequestID)
			}
			reqs[ev.RequestID] = &req{url: ev.Request.URL, method: ev.Request.Method, typ: ev.Type} // a redirect replaces it
			lastNew = time.Now()
		case *network.EventResponseReceived:
			if r := reqs[ev.RequestID]; r != nil && ev.Response != nil {
				r.status, r.proto = ev.Response.Status, ev.Response.Protocol
			}
		case *network.EventLoadingFinished:
			if r := reqs[ev.RequestID]; r != nil {
				r.size, r.done = ev.EncodedDataLength, true
			}
		case *network.EventWebSocketCreated:
			sockets = append(sockets, ev.URL)
			lastNew = time.Now()
		}
	}); err != nil {
		return c, fmt.Errorf("start chromium (%s): %w", exe, err)
	}
	cctx, ccancel := context.WithTimeout(bctx, 2*time.Minute)
	defer ccancel()
	if _, err := chromedp.Run(cctx, chromedp.Navigate(l.Link)); err != nil {
		return c, fmt.Errorf("chromium: open %s's access link: %w", user, err)
	}
	const drawn = `!!document.querySelector(".monaco-workbench .part.editor") && !!document.querySelector(".monaco-workbench .part.statusbar")`
	for {
		if ok, err := chromedp.Run(cctx, chromedp.Evaluate[bool](drawn)); err == nil && ok {
			break
		}
		if cctx.Err() != nil {
			return c, fmt.Errorf("chromium: the workbench was not drawn within 2 minutes of opening %s's link", user)
		}
		time.Sleep(250 * time.Millisecond)
	}
	for {
		mu.Lock()
		quiet := time.Since(lastNew)
		mu.Unlock()
		if quiet >= 3*time.Second || cctx.Err() != nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}

	mu.Lock()
	defer mu.Unlock()
	local := func(raw string) (string, bool) {
		u, err := url.Parse(raw)
		if err != nil || u.Host != origin.Host {
			return "", false
		}
		return u.RequestURI(), true
	}
	for _, id := range order {
		r := reqs[id]
		path, ok := local(r.url)
		if !ok || r.method != http.MethodGet || r.status != http.StatusOK || !r.done {
			continue
		}
		c.bytes += int64(r.size)
		if r.typ == network.ResourceTypeDocument && c.page == "" {
			c.page, c.proto = path, r.proto
			continue
		}
		c.assets = append(c.assets, path)
	}
	for _, s := range sockets {
		u, err := url.Parse(s)
		if err != nil || u.Host != origin.Host {
			continue
		}
		q := u.Query()
		if q.Has("reconnectionToken") {
			q.Set("reconnectionToken", tokenMark)
		}
		u.RawQuery = q.Encode()
		c.sockets = append(c.sockets, u.RequestURI())
	}
	if c.page == "" || len(c.assets) == 0 {
		return c, fmt.Errorf("chromium's load of %s recorded no workbench page or no assets (%d requests)", origin, len(order))
	}
	return c, nil
}

// forUser is a recorded path for another participant (their workspace
// for the recorded one's, plain or escaped) and load (a fresh token).
func (c capture) forUser(p, ws string) string {
	for _, esc := range []func(string) string{url.QueryEscape, url.PathEscape, func(s string) string { return s }} {
		p = strings.ReplaceAll(p, esc(c.workspace), esc(ws))
	}
	return strings.ReplaceAll(p, tokenMark, randomUUID())
}

func randomUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// leafSPKI dials addr trusting only pool and returns the base64 SHA-256 of
// the leaf's public key, as --ignore-certificate-errors-spki-list takes it.
func leafSPKI(addr string, pool *x509.CertPool) (string, error) {
	host, _, _ := net.SplitHostPort(addr)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: host})
	if err != nil {
		return "", fmt.Errorf("TLS to the front door at %s with only THON's CA trusted: %w", addr, err)
	}
	defer conn.Close()
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:]), nil
}

// --- the two ways in ---

// door is one way to every participant's workbench.
type door struct {
	name    string
	origins map[string]string         // user → https://host:port
	jars    map[string]http.CookieJar // user → their session (THON); nil for nginx
	pool    *x509.CertPool
	// skip is a path prefix this door does not serve: THON's own files
	// (its idle banner's script) that the recorded page asks for through
	// the front door; nginx has none, so it is spared those requests.
	skip string
	// pids are the proxy's processes (THON's daemon; nginx's master and
	// workers), whose CPU time a storm reports.
	pids func() []int
}

// thonDoor signs every participant in with an access link (not timed) and
// takes their IDE's origin from it.
func thonDoor(ctx context.Context, api *thonclient.Client, pool *x509.CertPool, users []string, daemon int) (*door, error) {
	d := &door{name: "THON", origins: map[string]string{}, jars: map[string]http.CookieJar{}, pool: pool,
		pids: func() []int { return []int{daemon} }}
	for _, u := range users {
		l, err := api.IssueLink(ctx, u)
		if err != nil {
			return nil, err
		}
		jar, _ := cookiejar.New(nil)
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		hc := &http.Client{Jar: jar, Transport: tr, Timeout: 10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := hc.Get(l.Link)
		if err != nil {
			return nil, fmt.Errorf("sign %s in: %w", u, err)
		}
		resp.Body.Close()
		tr.CloseIdleConnections()
		ide, _ := url.Parse(l.URL)
		if len(jar.Cookies(ide)) == 0 {
			return nil, fmt.Errorf("opening %s's access link answered %s and set no cookie", u, resp.Status)
		}
		d.origins[u] = ide.Scheme + "://" + ide.Host
		d.jars[u] = jar
	}
	return d, nil
}

// nginxConf serves each participant's sandbox on a port of its own.
var stormNginxConf = template.Must(template.New("nginx.conf").Parse(`# written by bench/workbench; removed with its directory
worker_processes auto;
worker_rlimit_nofile 65536;
pid {{.Prefix}}/nginx.pid;
error_log {{.Prefix}}/error.log warn;

events {
    worker_connections 8192;
}

http {
` + benchkit.NginxHTTPPrelude + `
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      '';
    }
    ssl_certificate     {{.Prefix}}/server.crt;
    ssl_certificate_key {{.Prefix}}/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
{{range .Servers}}
    upstream {{.Name}} {
        server {{.Backend}};
        keepalive 16;
    }
    server {
        listen 127.0.0.1:{{.Port}} ssl{{if not $.HTTP2Directive}} http2{{end}};
{{- if $.HTTP2Directive}}
        http2 on;
{{- end}}
        location / {
            proxy_pass http://{{.Name}};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_read_timeout 86400s;
        }
    }
{{end}}
}
`))

// findStormNginx finds the nginx the login storm compares THON with.
func findStormNginx() (bin, version string, err error) {
	return benchkit.FindNginx("the login storm compares THON's front door with it")
}

// startStormNginx starts nginx with a server per participant in front of
// their sandbox's endpoint.
func startStormNginx(ctx context.Context, dir string, endpoints map[string]string) (*benchkit.Proc, *door, error) {
	bin, version, err := findStormNginx()
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	pool, err := benchkit.WriteCertificate(dir, "bench/workbench")
	if err != nil {
		return nil, nil, err
	}
	type server struct {
		Name, Backend string
		Port          int
	}
	d := &door{name: "nginx " + version, origins: map[string]string{}, pool: pool, skip: "/_thon/"}
	var servers []server
	for _, u := range slices.Sorted(maps.Keys(endpoints)) {
		port, err := benchkit.FreePort()
		if err != nil {
			return nil, nil, err
		}
		servers = append(servers, server{Name: "ide_" + u, Backend: endpoints[u], Port: port})
		d.origins[u] = "https://127.0.0.1:" + strconv.Itoa(port)
	}
	var conf bytes.Buffer
	if err := stormNginxConf.Execute(&conf, map[string]any{"Prefix": dir, "Servers": servers, "HTTP2Directive": benchkit.VersionAtLeast(version, "1.25.1")}); err != nil {
		return nil, nil, err
	}
	p, err := benchkit.StartNginx(ctx, bin, dir, conf.Bytes())
	if err != nil {
		return nil, nil, err
	}
	d.pids = func() []int { return append([]int{p.PID()}, benchkit.ChildrenOf(p.PID())...) }
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	last := servers[len(servers)-1]
	err = benchkit.WaitNginx(ctx, p, dir, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.origins[strings.TrimPrefix(last.Name, "ide_")]+healthPath, nil)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s answered %s", healthPath, resp.Status)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return p, d, nil
}

// --- the storm ---

// stormSide is one side's storm: when each client's load completed, and
// what went wrong.
type stormSide struct {
	loads  []time.Duration
	failed []string
	bytes  int64
	cpu    time.Duration // the proxy's own CPU time during the storm
}

type stormRound struct {
	first      string
	thon, base stormSide
}

// storm has n clients (client i is participant i mod the participants)
// load the workbench through d at once.
func storm(ctx context.Context, d *door, c capture, users []string, workspaces map[string]string, n int) stormSide {
	var s stormSide
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		bytes atomic.Int64
	)
	gate := make(chan struct{})
	cpu0, cpuErr := benchkit.ProcCPU(d.pids()...)
	for i := range n {
		u := users[i%len(users)]
		wg.Go(func() {
			<-gate
			t0 := time.Now()
			err := load(ctx, d, c, u, workspaces[u], &bytes)
			took := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				s.failed = append(s.failed, fmt.Sprintf("client %d (%s): %v", i, u, err))
				return
			}
			s.loads = append(s.loads, took)
		})
	}
	close(gate)
	wg.Wait()
	if cpu1, err := benchkit.ProcCPU(d.pids()...); err == nil && cpuErr == nil {
		s.cpu = cpu1 - cpu0
	}
	s.bytes = bytes.Load()
	slices.Sort(s.loads)
	return s
}

// load is one client's load: the page, then every asset at once over
// HTTP/2 on a connection of its own, and the WebSockets.
func load(ctx context.Context, d *door, c capture, user, ws string, total *atomic.Int64) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	tlsCfg := &tls.Config{RootCAs: d.pool, NextProtos: []string{"h2", "http/1.1"}}
	h2 := &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true}
	defer h2.CloseIdleConnections()
	hc := &http.Client{Transport: h2, Jar: d.jars[user]}
	origin := d.origins[user]
	get := func(path, accept string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, origin+c.forUser(path, ws), nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", accept)
		req.Header.Set("Accept-Encoding", "gzip, deflate, br, zstd") // as Chromium asks; read as sent
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		total.Add(n)
		if err != nil {
			return fmt.Errorf("GET %s: reading the body: %w", path, err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s answered %s", path, resp.Status)
		}
		if resp.ProtoMajor != 2 {
			return fmt.Errorf("GET %s came over %s, not HTTP/2", path, resp.Proto)
		}
		return nil
	}
	if err := get(c.page, "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(c.assets)+len(c.sockets))
	for i, a := range c.assets {
		if d.skip != "" && strings.HasPrefix(a, d.skip) {
			continue
		}
		wg.Go(func() { errs[i] = get(a, "*/*") })
	}
	// WebSockets over HTTP/1.1, each on its own connection, as Chromium opens them.
	h1 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: d.pool, NextProtos: []string{"http/1.1"}}}
	defer h1.CloseIdleConnections()
	for i, p := range c.sockets {
		wg.Go(func() {
			u := "wss" + strings.TrimPrefix(origin, "https") + c.forUser(p, ws)
			conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{
				HTTPClient: &http.Client{Transport: h1, Jar: d.jars[user]},
				HTTPHeader: http.Header{"Origin": {origin}},
			})
			if err != nil {
				status := ""
				if resp != nil {
					status = " (" + resp.Status + ")"
				}
				errs[len(c.assets)+i] = fmt.Errorf("WebSocket %s%s: %w", p, status, err)
				return
			}
			conn.CloseNow()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// runStorms runs the login storm's rounds, THON and nginx taking turns at
// going first.
func runStorms(ctx context.Context, o options, api *thonclient.Client, pool *x509.CertPool, tmp string, daemon int, r *report) error {
	list, err := api.Sandboxes(ctx, nil, nil)
	if err != nil {
		return err
	}
	endpoints, workspaces := map[string]string{}, map[string]string{}
	for _, s := range list.Items {
		if s.State != "running" || s.Endpoint == "" {
			return fmt.Errorf("login storm: %s's sandbox is %s", s.User, s.State)
		}
		endpoints[s.User], workspaces[s.User] = s.Endpoint, s.Workspace
	}
	first := r.users[0]
	fmt.Fprintf(os.Stderr, "storm: recording %s's workbench load in Chromium...\n", first)
	c, err := captureLoad(ctx, api, pool, first, workspaces[first], tmp)
	if err != nil {
		return err
	}
	r.stormAssets = c
	fmt.Fprintf(os.Stderr, "storm: one load is the page, %d assets and %d WebSockets (%.1f MB as Chromium received them, page over %s)\n",
		len(c.assets), len(c.sockets), float64(c.bytes)/1e6, c.proto)
	ng, nd, err := startStormNginx(ctx, filepath.Join(tmp, "nginx"), endpoints)
	if err != nil {
		return err
	}
	defer ng.Stop(10 * time.Second)
	td, err := thonDoor(ctx, api, pool, r.users, daemon)
	if err != nil {
		return err
	}
	for i := range o.stormRounds {
		sides := []*door{td, nd}
		if i%2 == 1 {
			slices.Reverse(sides)
		}
		rd := stormRound{first: sides[0].name}
		for _, d := range sides {
			fmt.Fprintf(os.Stderr, "storm round %d: %d clients through %s...\n", i+1, o.storm, d.name)
			s := storm(ctx, d, c, r.users, workspaces, o.storm)
			if len(s.failed) > 0 {
				return fmt.Errorf("login storm through %s: %d of %d loads failed, the first: %s", d.name, len(s.failed), o.storm, s.failed[0])
			}
			if d == td {
				rd.thon = s
			} else {
				rd.base = s
			}
			time.Sleep(5 * time.Second) // let the sandboxes' Node.js settle between sides
		}
		r.storm = append(r.storm, rd)
	}
	if ng.Exited() {
		return fmt.Errorf("nginx exited during the login storm:\n%s", ng.LogTail(20))
	}
	return nil
}
