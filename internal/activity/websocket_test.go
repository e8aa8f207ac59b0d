package activity

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// vscodeMessage is one message of VS Code's protocol: type, id, ack, data.
func vscodeMessage(typ byte, id uint32, data []byte) []byte {
	b := make([]byte, vscodeHeader, vscodeHeader+len(data))
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:5], id)
	binary.BigEndian.PutUint32(b[5:9], id)
	binary.BigEndian.PutUint32(b[9:13], uint32(len(data)))
	return append(b, data...)
}

const (
	vscodeAck       = 3
	vscodeKeepAlive = 9
)

// tapped is a real WebSocket server and a client that reaches it through a
// TCP relay that reads the client's bytes through Tap, in small, uneven
// pieces (as the proxy's reads may split frames anywhere).
type tapped struct {
	client  *websocket.Conn
	touches atomic.Int64
	got     chan []byte // what the server received, message by message
}

func newTapped(t *testing.T, mode websocket.CompressionMode, vscode bool) *tapped {
	t.Helper()
	tp := &tapped{got: make(chan []byte, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: mode, CompressionThreshold: 1})
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(8 << 20)
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				return
			}
			tp.got <- b
		}
	}))
	t.Cleanup(srv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
			if err != nil {
				in.Close()
				return
			}
			// The 101's extensions say what the client will do.
			br := &teeResponse{Conn: out, ext: make(chan string, 1)}
			go func() {
				io.Copy(in, br)
				in.Close()
			}()
			go func() {
				// Let the handshake through first, then read the client via the tap.
				buf := make([]byte, 4096)
				n, _ := in.Read(buf)
				out.Write(buf[:n])
				ext := <-br.ext
				deflate, nct := ParseExtensions(ext)
				tc := Tap(in, Options{VSCode: vscode, Deflate: deflate, NoContextTakeover: nct}, func() { tp.touches.Add(1) })
				r := rand.New(rand.NewPCG(1, 2))
				for {
					piece := make([]byte, 1+r.IntN(7))
					n, err := tc.Read(piece)
					if n > 0 {
						out.Write(piece[:n])
					}
					if err != nil {
						out.Close()
						return
					}
				}
			}()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String()+"/?reconnectionToken=x", &websocket.DialOptions{CompressionMode: mode, CompressionThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	tp.client = c
	return tp
}

// teeResponse passes the server's bytes on and reports the 101's
// Sec-WebSocket-Extensions once.
type teeResponse struct {
	net.Conn
	seen bytes.Buffer
	done bool
	ext  chan string
}

func (t *teeResponse) Read(b []byte) (int, error) {
	n, err := t.Conn.Read(b)
	if !t.done {
		t.seen.Write(b[:n])
		if head, _, ok := bytes.Cut(t.seen.Bytes(), []byte("\r\n\r\n")); ok {
			t.done = true
			ext := ""
			for _, line := range strings.Split(string(head), "\r\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Sec-WebSocket-Extensions") {
					ext = strings.TrimSpace(v)
				}
			}
			t.ext <- ext
		}
	}
	return n, err
}

func (tp *tapped) send(t *testing.T, msgs ...[]byte) {
	t.Helper()
	for _, m := range msgs {
		if err := tp.client.Write(context.Background(), websocket.MessageBinary, m); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-tp.got:
			if !bytes.Equal(got, m) {
				t.Fatalf("the server got %d bytes, not the %d sent: the tap changed the stream", len(got), len(m))
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the server did not get the message")
		}
	}
}

func TestVSCodeKeepAlivesAreNotActivity(t *testing.T) {
	for _, c := range []struct {
		name string
		mode websocket.CompressionMode
	}{
		{"uncompressed", websocket.CompressionDisabled},
		{"deflate, context kept", websocket.CompressionContextTakeover},
		{"deflate, no context", websocket.CompressionNoContextTakeover},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp := newTapped(t, c.mode, true)
			// What an idle tab sends: keep-alives and acknowledgements.
			for i := range 50 {
				tp.send(t, vscodeMessage(vscodeKeepAlive, 0, nil), vscodeMessage(vscodeAck, uint32(i), nil))
			}
			if n := tp.touches.Load(); n != 0 {
				t.Fatalf("an idle tab's keep-alives counted as activity %d times", n)
			}
			// A keystroke: a regular message with data (the same text again,
			// so a compressor keeping its context refers back to it).
			edit := bytes.Repeat([]byte(`{"type":"edit","text":"hello"}`), 20)
			tp.send(t, vscodeMessage(vscodeRegular, 1, edit), vscodeMessage(vscodeKeepAlive, 0, nil))
			if n := tp.touches.Load(); n != 1 {
				t.Fatalf("one edit counted %d times", n)
			}
			// Several messages in one WebSocket message, and a big one.
			two := append(vscodeMessage(vscodeAck, 7, nil), vscodeMessage(vscodeRegular, 2, edit)...)
			big := vscodeMessage(vscodeRegular, 3, bytes.Repeat([]byte("x"), 200<<10))
			tp.send(t, two, big, vscodeMessage(vscodeKeepAlive, 0, nil), vscodeMessage(vscodeRegular, 4, edit))
			if n := tp.touches.Load(); n != 4 {
				t.Fatalf("after 4 messages with content: %d touches", n)
			}
		})
	}
}

func TestOtherWebSocketsCountEveryMessage(t *testing.T) {
	tp := newTapped(t, websocket.CompressionContextTakeover, false)
	tp.send(t, vscodeMessage(vscodeKeepAlive, 0, nil), []byte("hello"))
	if n := tp.touches.Load(); n < 2 {
		t.Fatalf("a participant's own WebSocket: %d touches for 2 messages", n)
	}
}

// Pings are not activity; a ping between the fragments of a message is
// allowed (RFC 6455 5.4) and must not confuse the parser.
func TestPingsAndFragments(t *testing.T) {
	var n int
	p := &wsParser{o: Options{VSCode: true}, touch: func() { n++ }}
	frame := func(fin bool, opcode byte, payload []byte) []byte {
		b0 := opcode
		if fin {
			b0 |= 0x80
		}
		mask := [4]byte{1, 2, 3, 4}
		out := []byte{b0, 0x80 | byte(len(payload))}
		out = append(out, mask[:]...)
		for i, c := range payload {
			out = append(out, c^mask[i&3])
		}
		return out
	}
	msg := vscodeMessage(vscodeRegular, 1, []byte("typed"))
	p.feed(frame(true, 0x9, []byte("ping")))
	p.feed(frame(false, 0x2, msg[:5]))
	p.feed(frame(true, 0x9, nil))
	p.feed(frame(true, 0x0, msg[5:]))
	if n != 1 {
		t.Fatalf("a fragmented message with pings around it: %d touches, want 1", n)
	}
}

// Whatever a client sends, the parser neither panics nor holds more than
// its limits.
func FuzzTap(f *testing.F) {
	f.Add([]byte{0x82, 0x8d, 1, 2, 3, 4}, true, true)
	f.Add(append([]byte{0xc2, 0xff, 0, 0, 0, 0, 0, 0, 0x10, 0}, make([]byte, 64)...), true, false)
	f.Fuzz(func(t *testing.T, b []byte, vscode, deflate bool) {
		p := &wsParser{o: Options{VSCode: vscode, Deflate: deflate}, touch: func() {}}
		for len(b) > 0 {
			n := min(len(b), 1+int(b[0])%9)
			p.feed(b[:n])
			b = b[n:]
		}
		if len(p.buf) > maxCompressedMessage || len(p.dict) > window {
			t.Fatalf("the parser holds %d compressed bytes and a %d-byte dictionary", len(p.buf), len(p.dict))
		}
	})
}

// What the real code-server's workbench sent with nobody at it (read from
// its WebSockets while its tab sat untouched) is not activity; calls a
// person causes are.
func TestVSCodeAutomaticCallsAreNotActivity(t *testing.T) {
	tp := newTapped(t, websocket.CompressionContextTakeover, true)
	automatic := [][]byte{
		[]byte("\x04\x04\x06d\x06\xc3\x03\x01\ttelemetry\x01\x04ping\x00"), // IPC: telemetry ping
		[]byte("\x05\x00\x00\x019"),                                        // RPC: acknowledged
		[]byte("\x07\x00\x00\x018"),                                        // RPC: reply, empty
		append([]byte("\x09\x00\x00\x01\x3a"), `{"result":true}`...),       // RPC: reply, JSON
		append([]byte("\x01\x00\x00\x00Fg\x18$onDidChangeWindowActive\x00\x00\x00\a"), "[false]"...),
		append([]byte("\x01\x00\x00\x00mg\x17$onDidChangeWindowFocus\x00\x00\x00\x06"), "[true]"...), // RPC: the window lost focus
		append([]byte("\x04\x04\x06d\x06\x95\a\x01\x10remoteFilesystem\x01\twriteFile\x04\x03\x05\xd9\x02"), `{"$mid":1,"external":"vscode-remote:/home/coder/.local/share/code-server/User/globalStorage/state.json","path":"/home/coder/.local/share/code-server/User/globalStorage/state.json"}`...), // IPC: the workbench's own state
		append([]byte("\x04\x04\x06d\x06\x93\a\x01\x10remoteFilesystem\x01\areaddir\x04\x01\x05\xb3\x01"), `{"$mid":1,"path":"/home/coder/.local/share/code-server/User/History","scheme":"vscode-remote"}`...),
		append([]byte("\x04\x04\x06d\x06\xed\x05\x01\x0eagentHostProxy\x01\x04send\x01L"), `{"jsonrpc":"2.0","id":10,"method":"ping","params":{"channel":"ahp-root://"}}`...), // IPC: the agent host's keep-alive (VS Code 1.139)
	}
	for i, m := range automatic {
		tp.send(t, vscodeMessage(vscodeRegular, uint32(i), m))
	}
	if n := tp.touches.Load(); n != 0 {
		t.Fatalf("the workbench's own calls counted as activity %d times", n)
	}
	person := [][]byte{
		[]byte("\x04\x04\x06d\x06\x10\x01\x0eremoteterminal\x01\x06$input\x04\x02\x06\x01\x01\x01a"),                                                        // IPC: a keystroke in a terminal
		append([]byte("\x01\x00\x00\x00Gh\x13$acceptModelChanged\x00\x00\x00\x10"), `["file:///x",{}]`...),                                                  // RPC: an edit
		[]byte("\x04\x04\x06d\x06\x11\x01\x10remoteFilesystem\x01\x09writeFile"),                                                                            // IPC: a save
		append([]byte("\x04\x04\x06d\x06\x12\x01\x0eagentHostProxy\x01\x04send\x01Q"), `{"jsonrpc":"2.0","id":11,"method":"createSession","params":{}}`...), // IPC: the agent host asked for something else
	}
	for i, m := range person {
		tp.send(t, vscodeMessage(vscodeRegular, uint32(10+i), m))
	}
	if n := tp.touches.Load(); n != int64(len(person)) {
		t.Fatalf("%d calls a person caused counted %d times", len(person), n)
	}
}
