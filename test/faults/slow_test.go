package faults

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/cookiejar"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/thon-dev/thon/client"
	"github.com/thon-dev/thon/internal/thontest"
)

// participant is a browser signed in to its IDE through the front door.
type participant struct {
	hc  *http.Client
	ws  *http.Client // HTTP/1.1 only, for WebSocket upgrades
	ide string
}

// browserClients are a browser's: one cookie jar, trusting only pool, and
// an HTTP/1.1-only client beside the first for WebSocket upgrades.
func browserClients(pool *x509.CertPool) (hc, ws *http.Client) {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	wtr := tr.Clone()
	wtr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	return &http.Client{Jar: jar, Transport: tr, Timeout: 30 * time.Second}, &http.Client{Jar: jar, Transport: wtr}
}

func signedIn(t *testing.T, h *thontest.Harness, user string) participant {
	t.Helper()
	var p participant
	p.hc, p.ws = browserClients(h.Daemon.CA.CAPool())
	l, err := h.Client.IssueLink(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.hc.Get(l.Link)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s's link: %d", user, resp.StatusCode)
	}
	p.ide = l.URL
	return p
}

func (p participant) dial(ctx context.Context) (*websocket.Conn, error) {
	c, _, err := websocket.Dial(ctx, strings.Replace(p.ide, "https://", "wss://", 1)+"ws", &websocket.DialOptions{HTTPClient: p.ws})
	if err == nil {
		c.SetReadLimit(1 << 20)
	}
	return c, err
}

// TestSlowReaderHurtsNoOne: alice's browser pushes WebSocket messages to her
// IDE (which echoes each back) and never reads an answer, so everything
// between them backs up. Meanwhile bob uses his IDE over HTTP and a
// WebSocket. Bob's every request and echo is answered, and the daemon's
// heap stays bounded however much alice pushes: the front door holds no
// more than its buffers for her.
func TestSlowReaderHurtsNoOne(t *testing.T) {
	h := thontest.New(t, thontest.Groups(event...), thontest.FakeEngine())
	h.Config.Sandbox.Env = map[string]string{"WS_ANY_ORIGIN": "1"}
	ctx := context.Background()
	if _, err := h.Client.Import(ctx, h.Config); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Client.Bulk(ctx, client.BulkRequest{Action: "start"}, nil); err != nil {
		t.Fatal(err)
	}
	alice, bob := signedIn(t, h, "alice"), signedIn(t, h, "bob")

	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	base := heap()

	const push = 5 * time.Second
	actx, cancel := context.WithTimeout(ctx, push)
	defer cancel()
	slow, err := alice.dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.CloseNow()
	var pushed atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		msg := make([]byte, 64<<10)
		for actx.Err() == nil {
			if err := slow.Write(actx, websocket.MessageBinary, msg); err != nil {
				return
			}
			pushed.Add(int64(len(msg)))
		}
	})
	var peak atomic.Uint64
	wg.Go(func() {
		for actx.Err() == nil {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	// Bob, meanwhile.
	conn, err := bob.dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	var lat []time.Duration
	for actx.Err() == nil {
		start := time.Now()
		bctx, bcancel := context.WithTimeout(ctx, 10*time.Second)
		if err := conn.Write(bctx, websocket.MessageText, []byte("ping")); err != nil {
			t.Fatalf("bob's WebSocket while alice does not read: %v", err)
		}
		if _, msg, err := conn.Read(bctx); err != nil || string(msg) != "ping" {
			t.Fatalf("bob's echo while alice does not read: %q %v", msg, err)
		}
		resp, err := bob.hc.Get(bob.ide + "whoami")
		if err != nil {
			t.Fatalf("bob's HTTP while alice does not read: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		bcancel()
		if resp.StatusCode != 200 || !strings.Contains(string(b), "bob") {
			t.Fatalf("bob's HTTP while alice does not read: %d %s", resp.StatusCode, b)
		}
		lat = append(lat, time.Since(start))
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	grew := int64(peak.Load()) - int64(base)
	t.Logf("alice pushed %d MiB in %v without reading; bob: %d echo+GET round trips, median %v, slowest %v; heap in use %d MiB before, %d MiB at the peak (+%d MiB)",
		pushed.Load()>>20, push, len(lat), lat[len(lat)/2], lat[len(lat)-1], base>>20, peak.Load()>>20, grew>>20)
	if len(lat) == 0 {
		t.Fatal("bob got nothing done")
	}
	// Bounded: alice's backed-up traffic is not held in memory. The heap
	// may grow by buffers, not by what she pushed once that is larger.
	if pushed.Load() > 64<<20 && grew > pushed.Load()/2 {
		t.Fatalf("the heap grew %d MiB while alice pushed %d MiB she never read", grew>>20, pushed.Load()>>20)
	}
	if grew > 64<<20 {
		t.Fatalf("the heap grew %d MiB under one reader that does not read", grew>>20)
	}
}
