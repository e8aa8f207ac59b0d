// Package faults is THON's fault-injection suite: each test breaks one real
// part under a running daemon (bad input, a killed process, a full disk, a
// restarted database) and checks what THON promises about it. The figures
// it reports are in docs/reliability.md.
package faults

import (
	"bytes"
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/daemon"
	"github.com/thon-dev/thon/internal/thontest"
)

var event = []config.Group{{Name: "alpha", Users: []string{"alice", "bob"}}, {Name: "beta", Users: []string{"carol"}}}

// volatile are columns that move on their own or with reading requests, on
// purpose: a token's last use, a sandbox's last activity, and the last time
// the usage sampler (every 15 s) saw a sandbox running. Everything else in
// the store is state that a refused request must leave alone.
var volatile = map[string]bool{"tokens.last_used": true, "sandboxes.last_active": true, "sandbox_running.seen_at": true}

// snapshot is every row of every table of the daemon's SQLite store (but
// the volatile columns), read through a connection of its own.
func snapshot(t testing.TB, db *sql.DB) string {
	t.Helper()
	ctx := context.Background()
	tables, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for tables.Next() {
		var n string
		tables.Scan(&n)
		names = append(names, n)
	}
	tables.Close()
	var b strings.Builder
	for _, tab := range names {
		rows, err := db.QueryContext(ctx, `SELECT * FROM "`+tab+`"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			var line []string
			for i, c := range cols {
				if !volatile[tab+"."+c] {
					line = append(line, fmt.Sprintf("%s=%v", c, vals[i]))
				}
			}
			lines = append(lines, strings.Join(line, " "))
		}
		rows.Close()
		sort.Strings(lines)
		fmt.Fprintf(&b, "[%s]\n%s\n", tab, strings.Join(lines, "\n"))
	}
	return b.String()
}

func openStore(t testing.TB, h *thontest.Harness) *sql.DB {
	t.Helper()
	path := filepath.Join(h.Config.Server.DataDir, daemon.DBFile)
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// diff names the first line that differs between two snapshots.
func diff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("before: %q\nafter:  %q", x, y)
		}
	}
	return ""
}

// apiRoute is one operation of the OpenAPI document.
type apiRoute struct{ method, pattern string }

// apiRoutes reads every route from the daemon's own OpenAPI document (a test
// of internal/api keeps it equal to the route table).
func apiRoutes(t testing.TB, base string) []apiRoute {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	var out []apiRoute
	for p, ops := range doc.Paths {
		for m := range ops {
			switch m {
			case "get", "post", "put", "patch", "delete":
				out = append(out, apiRoute{strings.ToUpper(m), "/api/v1" + strings.TrimPrefix(p, "/api/v1")})
			}
		}
	}
	slices.SortFunc(out, func(a, b apiRoute) int { return strings.Compare(a.method+a.pattern, b.method+b.pattern) })
	if len(out) < 40 {
		t.Fatalf("the OpenAPI document lists %d routes", len(out))
	}
	return out
}

var param = regexp.MustCompile(`\{[a-z]+\}`)

var methods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "PROPFIND"}

// streams answer 200 and go on; the test stops reading them at the headers.
func isStream(resp *http.Response) bool {
	ct := resp.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "text/event-stream") || strings.HasPrefix(ct, "application/x-ndjson") || strings.HasPrefix(ct, "text/plain")
}

// counted is how many inputs a fuzz target tried in this process; the run
// logs it (go test -fuzz reports the total over its workers).
var counted atomic.Int64

// FuzzAPI sends any method, path parameters, query, headers and body, with
// no credentials, a wrong token, the admin token or a participant's, to
// every route of the REST API of a running daemon. Whatever comes in: the
// daemon does not panic (the connection would break), answers no 500 (an
// input error is the caller's, 4xx), and a refused request (4xx) leaves
// every row of the store as it was.
//
//	go test -run '^$' -fuzz '^FuzzAPI$' -fuzztime 60s ./test/faults
func FuzzAPI(f *testing.F) {
	h := thontest.New(f, thontest.Groups(event...), thontest.FakeEngine())
	ctx := context.Background()
	if _, err := h.Client.Bulk(ctx, client.BulkRequest{Action: "start"}, nil); err != nil {
		f.Fatal(err)
	}
	part, err := h.Client.CreateToken(ctx, client.TokenRequest{Name: "alice-cli", User: "alice", Scopes: []string{"*"}})
	if err != nil {
		f.Fatal(err)
	}
	creds := []string{"", "thon_wrong", h.Daemon.Token, part.Token}
	db := openStore(f, h)
	routes := apiRoutes(f, h.Daemon.URL)
	hc := &http.Client{Transport: &http.Transport{DisableCompression: true}}

	// Seeds: every route with plausible and implausible input, each credential.
	for i, rt := range routes {
		f.Add(uint16(i), uint8(2), uint8(0), "alice", "stop", "", "application/json", []byte(`{}`), "", "")
		f.Add(uint16(i), uint8(i%4), uint8(0), "Alice/../x", "%00", "user=alice&purge=maybe&tail=-1&since=yesterday", "text/plain", []byte(`{"name":`), "X-CSRF-Token", "x")
		if rt.method != "GET" {
			f.Add(uint16(i), uint8(2), uint8(0), strings.Repeat("a", 300), "", "", "application/json", []byte(`{"name":"x","users":[1],"action":"explode","groups":null}`), "Content-Length", "5")
		}
	}
	f.Add(uint16(0), uint8(2), uint8(3), "", "", "", "application/json", bytes.Repeat([]byte("["), 2<<20), "Origin", "https://evil.example")
	f.Add(uint16(1), uint8(0), uint8(1), "", "", "", "", []byte(nil), "Cookie", "thon_admin=forged")

	f.Fuzz(func(t *testing.T, ri uint16, ci, mi uint8, p1, p2, query, ctype string, body []byte, hname, hvalue string) {
		counted.Add(1)
		rt := routes[int(ri)%len(routes)]
		cred := creds[int(ci)%len(creds)]
		method := rt.method
		if mi%8 == 1 { // now and then, a method the route does not take
			method = methods[int(mi/8)%len(methods)]
		}
		n := 0
		path := param.ReplaceAllStringFunc(rt.pattern, func(string) string {
			n++
			if n == 1 {
				return url.PathEscape(p1)
			}
			return url.PathEscape(p2)
		})
		if cred != "" && cred != creds[1] {
			// What would take the harness apart, not the input handling:
			// stopping the daemon, revoking the very token the test uses.
			if rt.pattern == "/api/v1/shutdown" && method == "POST" {
				return
			}
			if rt.pattern == "/api/v1/tokens/{name}" && method == "DELETE" && (p1 == "admin" || p1 == "alice-cli") {
				return
			}
		}
		if query != "" {
			path += "?" + query
		}
		rctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(rctx, method, h.Daemon.URL+path, bytes.NewReader(body))
		if err != nil {
			return // not a request a client can send (Go refuses the URL)
		}
		if cred != "" {
			req.Header.Set("Authorization", "Bearer "+cred)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if hname != "" && !strings.EqualFold(hname, "Content-Length") && !strings.EqualFold(hname, "Host") {
			req.Header.Set(hname, hvalue)
		}
		before := snapshot(t, db)
		resp, err := hc.Do(req)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) && strings.Contains(err.Error(), "invalid header") || strings.Contains(err.Error(), "net/http: invalid") {
				return // the client refused to send it
			}
			t.Fatalf("%s %s: no answer (a panic breaks the connection): %v", method, path, err)
		}
		defer resp.Body.Close()
		// The status is in; a streaming answer (a followed log, a bulk
		// action's progress) is read no longer than a moment.
		time.AfterFunc(2*time.Second, cancel)
		var out []byte
		if !isStream(resp) || resp.StatusCode != http.StatusOK {
			out, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		}
		if resp.StatusCode == http.StatusInternalServerError {
			t.Fatalf("%s %s (%d bytes of %s): 500: %s", method, path, len(body), ctype, out)
		}
		if resp.StatusCode >= 400 && resp.StatusCode < 500 {
			if len(out) == 0 && method != "HEAD" {
				t.Fatalf("%s %s: %d without a word of why", method, path, resp.StatusCode)
			}
			if after := snapshot(t, db); after != before {
				t.Fatalf("%s %s refused with %d (%s) but changed the store:\n%s", method, path, resp.StatusCode, out, diff(before, after))
			}
		}
	})
	f.Cleanup(func() { f.Logf("FuzzAPI: %d inputs in this process", counted.Load()) })
}

// FuzzFrontDoor sends anything to the front door's own paths on a
// participant's origin (/u/{user}/_thon/auth, /login, /logout, and the IDE
// behind them) over real HTTPS: any user name, method, query (the access
// link's token), form body, cookies, Origin and Authorization. No panic, no
// 500, and a refused request changes nothing in the store (no session, no
// password, no link used).
//
//	go test -run '^$' -fuzz '^FuzzFrontDoor$' -fuzztime 60s ./test/faults
func FuzzFrontDoor(f *testing.F) {
	h := thontest.New(f, thontest.Groups(event...), thontest.FakeEngine())
	h.Stop()
	h.Config.Access.Mode = config.ModePath
	h.Config.Access.DashboardPort = thontest.FreePort(f)
	h.Start()
	ctx := context.Background()
	if _, err := h.Client.Bulk(ctx, client.BulkRequest{Action: "start"}, nil); err != nil {
		f.Fatal(err)
	}
	if err := h.Client.SetPassword(ctx, "alice", "correct horse battery"); err != nil {
		f.Fatal(err)
	}
	link, err := h.Client.IssueLink(ctx, "bob")
	if err != nil {
		f.Fatal(err)
	}
	lu, err := url.Parse(link.URL)
	if err != nil {
		f.Fatal(err)
	}
	db := openStore(f, h)
	base := strings.TrimSuffix(h.Daemon.FrontDoor.MainURL(), "/")
	hc := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.Daemon.CA.CAPool()}, DisableCompression: true},
		// The answer itself is what is checked, not where it sends to.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	paths := []string{"/_thon/auth", "/_thon/login", "/_thon/logout", "/", "/_thon/", "/_thon/auth/"}

	f.Add("bob", uint8(0), uint8(0), lu.RawQuery, "", "", "", "")
	f.Add("alice", uint8(1), uint8(1), "", "password=correct+horse+battery", "", base, "")
	f.Add("alice", uint8(1), uint8(1), "", "password=wrong", "", base, "")
	f.Add("alice", uint8(1), uint8(1), "", "password=correct+horse+battery", "", "https://evil.example", "")
	f.Add("alice", uint8(2), uint8(1), "", "", "thon_alice=forged", base, "")
	f.Add("carol", uint8(3), uint8(0), "", "", "thon_alice=x; thon_carol=y", "", "Bearer thon_x")
	f.Add("Alice", uint8(0), uint8(0), "token=%zz", "", "", "", "")
	f.Add("alice", uint8(4), uint8(2), "token="+strings.Repeat("A", 5000), "%%%", "", "null", "Bearer "+h.Daemon.Token)
	f.Add("bob", uint8(0), uint8(3), "token=", strings.Repeat("password=a&", 1000), "", "", "Basic Ym9iOg==")

	f.Fuzz(func(t *testing.T, user string, pi, mi uint8, query, form, cookie, orig, authz string) {
		counted.Add(1)
		method := methods[int(mi)%len(methods)]
		path := "/u/" + url.PathEscape(user) + paths[int(pi)%len(paths)]
		if query != "" {
			path += "?" + query
		}
		rctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(rctx, method, base+path, strings.NewReader(form))
		if err != nil {
			return
		}
		if form != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		req.Header.Set("Accept", "text/html")
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		if orig != "" {
			req.Header.Set("Origin", orig)
		}
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		before := snapshot(t, db)
		resp, err := hc.Do(req)
		if err != nil {
			if strings.Contains(err.Error(), "net/http: invalid") || strings.Contains(err.Error(), "invalid header") {
				return
			}
			t.Fatalf("%s %s: no answer (a panic breaks the connection): %v", method, path, err)
		}
		defer resp.Body.Close()
		time.AfterFunc(2*time.Second, cancel)
		out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s: %d: %s", method, path, resp.StatusCode, out)
		}
		if resp.StatusCode >= 400 {
			if after := snapshot(t, db); after != before {
				t.Fatalf("%s %s refused with %d but changed the store:\n%s", method, path, resp.StatusCode, diff(before, after))
			}
		}
	})
	f.Cleanup(func() { f.Logf("FuzzFrontDoor: %d inputs in this process", counted.Load()) })
}
