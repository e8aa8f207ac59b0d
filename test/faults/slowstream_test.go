package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/gateway"
	"github.com/thon-dev/thon/internal/testenv"
)

// TestSlowStreamReaderHurtsNoOne: alice asks THON's llama-server, through
// the AI gateway, for a long streamed answer and then does not read it
// (her client's receive buffer is 4 KiB). Bob meanwhile asks short
// questions. Bob's every answer comes, the gateway's heap stays bounded
// (what alice does not read backs up to the server, not into the gateway),
// and once alice reads again her answer is whole: nothing was dropped.
func TestSlowStreamReaderHurtsNoOne(t *testing.T) {
	l := testenv.LlamaServer(t, testenv.LlamaOptions{Image: testenv.LLMImage(t), Slots: 2, Ctx: 65536})
	aliceKey, aliceHash := gateway.NewKey()
	bobKey, bobHash := gateway.NewKey()
	ks := keys{aliceHash: {ID: "user:alice", Owner: "alice", Group: "alpha"}, bobHash: {ID: "user:bob", Owner: "bob", Group: "alpha"}}
	gw, err := gateway.New(gateway.Options{Upstream: l.URL + "/v1", Keys: ks, QueueTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	gw.SetSlots(map[string]int{"thon-test": 2})
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); gw.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	post := func(hc *http.Client, key, body string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		return hc.Do(req)
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	// Warm the gateway up, so that the baseline holds its buffers.
	if r, err := post(http.DefaultClient, bobKey, `{"model":"thon-test","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`); err != nil || r.StatusCode != 200 {
		t.Fatalf("bob's first question: %v %v", r, err)
	} else {
		r.Body.Close()
	}
	base := heap()

	// Alice, with a receive buffer of 4 KiB, reads the headers and stops.
	small := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return serr
	}}
	alice := &http.Client{Transport: &http.Transport{DialContext: small.DialContext}}
	// 30,000 tokens are some 5 MiB of events: more than the sockets between
	// the server and alice hold, so the stream backs up.
	const tokens = 30000
	resp, err := post(alice, aliceKey, fmt.Sprintf(`{"model":"thon-test","stream":true,"stream_options":{"include_usage":true},"max_tokens":%d,"ignore_eos":true,"messages":[{"role":"user","content":"go on"}]}`, tokens))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("alice's stream: %v %v", resp, err)
	}
	defer resp.Body.Close()

	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	})

	// Bob's questions, for 5 s while alice does not read.
	var lat []time.Duration
	for i, end := 0, time.Now().Add(5*time.Second); time.Now().Before(end); i++ {
		start := time.Now()
		r, err := post(http.DefaultClient, bobKey, `{"model":"thon-test","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`)
		if err != nil {
			t.Fatalf("bob's question %d while alice does not read: %v", i, err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != 200 || !strings.Contains(string(b), `"content"`) {
			t.Fatalf("bob's question %d while alice does not read: %d %s", i, r.StatusCode, b)
		}
		lat = append(lat, time.Since(start))
	}
	close(stop)
	wg.Wait()
	grew := int64(peak.Load()) - int64(base)

	// Alice reads again: her answer is whole.
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	var bytes, completion int
	finish := ""
	for sc.Scan() {
		line := strings.TrimPrefix(sc.Text(), "data: ")
		bytes += len(sc.Text()) + 1
		if line == "" || line == "[DONE]" {
			continue
		}
		var ev struct {
			Choices []struct {
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
			Error any `json:"error"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Error != nil {
			t.Fatalf("alice's stream: %.200s (%v)", line, err)
		}
		for _, c := range ev.Choices {
			if c.FinishReason != "" {
				finish = c.FinishReason
			}
		}
		if ev.Usage != nil {
			completion = ev.Usage.CompletionTokens
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("alice's stream after %d bytes: %v", bytes, err)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("bob: %d answers while alice did not read, median %v, slowest %v; gateway heap in use %d MiB before, %d MiB at the peak (%+d KiB); alice's stream then read whole: %d KiB, %d tokens, finish %q",
		len(lat), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), base>>20, peak.Load()>>20, grew>>10, bytes>>10, completion, finish)
	if finish != "length" || completion != tokens {
		t.Errorf("alice's answer after she read again: finish %q, %d tokens, want length and %d", finish, completion, tokens)
	}
	// Bounded: what alice did not read was not held by the gateway.
	if grew > int64(bytes)/2 || grew > 16<<20 {
		t.Errorf("the gateway's heap grew %d KiB while alice did not read a %d KiB stream", grew>>10, bytes>>10)
	}
}
