package faults

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/thon-dev/thon/internal/daemon"
	"github.com/thon-dev/thon/internal/pki"
	"github.com/thon-dev/thon/internal/testenv"
)

// browser is a participant's browser signed in through the front door of a
// daemon run by the organizer's thon binary.
type browser struct {
	hc, ws *http.Client // ws: HTTP/1.1 only, for WebSocket upgrades
	ide    string       // the IDE's URL, ending in /
}

func signIn(t *testing.T, o *organizer, user string) browser {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(o.data(), "ca", pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate in the data directory")
	}
	var b browser
	b.hc, b.ws = browserClients(pool)
	out, err := o.cmd(context.Background(), "access", user).Output()
	if err != nil {
		t.Fatalf("thon access %s: %v", user, err)
	}
	link := strings.TrimSpace(string(out))
	resp, err := b.hc.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s's link: %d", user, resp.StatusCode)
	}
	u := *resp.Request.URL
	u.Path, u.RawQuery = "/", ""
	b.ide = u.String()
	return b
}

// page GETs the IDE's page: nil when it answers 200 with the user's name.
func (b browser) page(ctx context.Context, user string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.ide, nil)
	resp, err := b.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), user) {
		return fmt.Errorf("GET %s: %d %.80q", b.ide, resp.StatusCode, body)
	}
	return nil
}

// echo opens the IDE's WebSocket, as the browser's page does (its Origin
// is the IDE's), and has one message echoed.
func (b browser) echo(ctx context.Context) (*websocket.Conn, error) {
	u, _ := url.Parse(b.ide)
	h := http.Header{"Origin": {"https://" + u.Host}}
	c, _, err := websocket.Dial(ctx, "wss://"+u.Host+"/ws", &websocket.DialOptions{HTTPClient: b.ws, HTTPHeader: h})
	if err != nil {
		return nil, err
	}
	if err := roundTrip(ctx, c); err != nil {
		c.CloseNow()
		return nil, err
	}
	return c, nil
}

func roundTrip(ctx context.Context, c *websocket.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		return err
	}
	_, msg, err := c.Read(ctx)
	if err == nil && string(msg) != "ping" {
		err = fmt.Errorf("echo %q", msg)
	}
	return err
}

// TestDaemonRestartedWhileParticipantsConnected: alice's browser is signed
// in to her IDE, with a WebSocket open and a long download in flight, when
// the organizer's daemon gets SIGTERM (systemctl restart, a reboot). The
// daemon stops accepting at once, lets the download finish, exits 0, and
// leaves the sandboxes running. Once `thon run` starts a daemon again,
// alice's browser is let in with the cookie it has (no new link), and a new
// WebSocket works, as her IDE's reconnect does; no sandbox was recreated.
func TestDaemonRestartedWhileParticipantsConnected(t *testing.T) {
	cli := testenv.Docker(t)
	o := newOrganizer(t, "", 3)
	ctx := context.Background()
	if out, err := o.cmd(ctx, "run").CombinedOutput(); err != nil {
		t.Fatalf("thon run: %v\n%s", err, out)
	}
	before := o.containers(cli)
	alice := signIn(t, o, "p00")
	if err := alice.page(ctx, "p00"); err != nil {
		t.Fatal(err)
	}
	ws, err := alice.echo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()

	// A download of 3 s in flight when the signal comes.
	const lines = 30
	dl, err := alice.hc.Get(alice.ide + "slow?n=" + fmt.Sprint(lines))
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Body.Close()
	rd := bufio.NewReader(dl.Body)
	if _, err := rd.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	pid := o.daemonPid()
	if pid == 0 {
		t.Fatal("no daemon pid")
	}
	host := strings.TrimSuffix(strings.TrimPrefix(alice.ide, "https://"), "/")
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()

	// New connections are refused while the download goes on.
	refused := time.Duration(-1)
	for time.Since(signalled) < 20*time.Second {
		c, err := net.DialTimeout("tcp", host, time.Second)
		if err != nil {
			refused = time.Since(signalled)
			break
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	if refused < 0 {
		t.Fatal("the front door still accepted connections 20 s after SIGTERM")
	}
	got := 1
	for {
		_, err := rd.ReadString('\n')
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Errorf("the download in flight was cut after %d of %d lines: %v", got, lines, err)
			}
			break
		}
		got++
	}
	downloaded := time.Since(signalled)
	if got != lines {
		t.Errorf("the download in flight got %d of %d lines", got, lines)
	}
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("daemon %d still runs 30 s after SIGTERM", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	exited := time.Since(signalled)
	// The WebSocket, a hijacked connection, ends with the daemon.
	if err := roundTrip(ctx, ws); err == nil {
		t.Error("alice's WebSocket still echoes with no daemon")
	}
	t.Logf("SIGTERM: new connections refused after %v; the download in flight finished (%d lines) after %v; the daemon exited after %v",
		refused.Round(time.Millisecond), got, downloaded.Round(time.Millisecond), exited.Round(time.Millisecond))
	log, _ := os.ReadFile(filepath.Join(o.data(), daemon.LogFile))
	if strings.Contains(string(log), "panic") {
		t.Errorf("the daemon's log has a panic:\n%s", log)
	}

	// The daemon again: alice's browser, as it was, gets in.
	restart := time.Now()
	run := o.cmd(ctx, "run")
	if out, err := run.CombinedOutput(); err != nil {
		t.Fatalf("thon run again: %v\n%s", err, out)
	}
	ran := time.Since(restart)
	var httpBack, wsBack time.Duration
	deadline = time.Now().Add(time.Minute)
	for httpBack == 0 || wsBack == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("alice's IDE not back a minute after the restart (HTTP %v, WebSocket %v)", httpBack, wsBack)
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if httpBack == 0 && alice.page(rctx, "p00") == nil {
			httpBack = time.Since(restart)
		}
		if wsBack == 0 {
			if c, err := alice.echo(rctx); err == nil {
				wsBack = time.Since(restart)
				c.Close(websocket.StatusNormalClosure, "")
			}
		}
		cancel()
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("restart: thon run took %v; alice's page answered %v and a new WebSocket echoed %v after it began, with the cookie from before",
		ran.Round(time.Millisecond), httpBack.Round(time.Millisecond), wsBack.Round(time.Millisecond))

	after := o.containers(cli)
	if len(after) != len(before) {
		t.Fatalf("%d sandboxes after the restart, %d before", len(after), len(before))
	}
	ids := map[string]string{}
	for _, c := range before {
		ids[c.user] = c.id
	}
	for _, c := range after {
		if ids[c.user] != c.id || c.state != "running" {
			t.Errorf("%s's sandbox: %s %s after the restart, %s before", c.user, c.id[:12], c.state, ids[c.user][:12])
		}
	}
}
