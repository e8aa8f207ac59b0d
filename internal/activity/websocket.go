package activity

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
)

// A WebSocket the front door proxies is read through Tap on the browser's
// side, so THON sees what the browser sends without changing a byte of it.
//
// An open VS Code tab keeps talking to its server when nobody touches it:
// its remote connection (a WebSocket whose URL carries reconnectionToken)
// carries VS Code's own protocol, whose messages each start with a 13-byte
// header — type, id, ack, data length — and an idle tab sends only
// keep-alive and acknowledgement messages. Only messages with content
// (regular and control messages: an edit, a keystroke in the terminal, a
// command) count as activity there. On any other WebSocket (a participant's
// own app through the IDE's port forwarding) every message counts. Pings,
// pongs and close frames never do.
//
// Browsers compress what they send (permessage-deflate, usually keeping the
// compression context between messages); Tap inflates the browser's
// messages on the VS Code connection to read the headers inside.

// VS Code's protocol message types (src/vs/base/parts/ipc/common/ipc.net.ts).
const (
	vscodeRegular = 1
	vscodeControl = 2
	vscodeHeader  = 13
)

// Limits that keep a hostile or broken client from costing more than it
// sends: past them the connection's messages all count as activity, unread.
const (
	maxCompressedMessage = 1 << 20 // bytes of one compressed message kept to inflate it
	maxInflated          = 64 << 20
	window               = 32 << 10 // deflate's window: the dictionary kept between messages
)

// Options says how to read one WebSocket.
type Options struct {
	// VSCode: the connection carries VS Code's remote protocol (its URL has
	// reconnectionToken): only messages with content count.
	VSCode bool
	// Deflate: permessage-deflate was agreed (the server's 101 said so), and
	// NoContextTakeover whether the client resets its compressor each message.
	Deflate, NoContextTakeover bool
}

// IsVSCode says whether a WebSocket upgrade's query is VS Code's remote
// connection.
func IsVSCode(rawQuery string) bool { return strings.Contains(rawQuery, "reconnectionToken=") }

// ParseExtensions reads a 101 response's Sec-WebSocket-Extensions.
func ParseExtensions(header string) (deflate, noContextTakeover bool) {
	for _, ext := range strings.Split(header, ",") {
		params := strings.Split(ext, ";")
		if strings.TrimSpace(params[0]) != "permessage-deflate" {
			continue
		}
		deflate = true
		for _, p := range params[1:] {
			if strings.TrimSpace(p) == "client_no_context_takeover" {
				noContextTakeover = true
			}
		}
	}
	return deflate, noContextTakeover
}

// Tap returns c, reading through a parser of what the browser sends that
// calls touch for every message a person caused.
func Tap(c net.Conn, o Options, touch func()) net.Conn {
	return &tapConn{Conn: c, p: &wsParser{o: o, touch: touch}}
}

type tapConn struct {
	net.Conn
	p *wsParser
}

func (c *tapConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.p.feed(b[:n])
	}
	return n, err
}

// wsParser follows the client's WebSocket frames (RFC 6455) as they stream
// past, in whatever pieces the reads bring them.
type wsParser struct {
	o     Options
	touch func()
	blind bool // gave up reading (limits, or not WebSocket): every read counts

	hdr    [14]byte
	hdrN   int
	need   int    // header bytes needed (2 until the length is known)
	left   uint64 // payload bytes left in the current frame
	mask   [4]byte
	maskAt int
	fin    bool // the current frame ends its message
	data   bool // the current frame belongs to a data message

	// The current message (data frames until FIN).
	compressed bool
	buf        []byte // a compressed message, unmasked
	dict       []byte // what the client's compressor remembers (context takeover)
	inflated   int

	vs vscodeParser
}

func (p *wsParser) feed(b []byte) {
	if p.blind {
		p.touch()
		return
	}
	for len(b) > 0 {
		if p.left == 0 {
			b = p.header(b)
			continue
		}
		n := min(uint64(len(b)), p.left)
		p.payload(b[:n])
		b = b[n:]
		p.left -= n
		if p.left == 0 {
			p.endFrame()
		}
	}
}

// header consumes header bytes; when the header is whole, it starts the frame.
func (p *wsParser) header(b []byte) []byte {
	if p.need == 0 {
		p.need = 2
	}
	for len(b) > 0 && p.hdrN < p.need {
		p.hdr[p.hdrN] = b[0]
		p.hdrN++
		b = b[1:]
		if p.hdrN == 2 {
			p.need = 2
			switch p.hdr[1] & 0x7f {
			case 126:
				p.need += 2
			case 127:
				p.need += 8
			}
			if p.hdr[1]&0x80 != 0 {
				p.need += 4
			}
		}
	}
	if p.hdrN < p.need {
		return b
	}
	h := p.hdr[:p.hdrN]
	fin, rsv1, opcode := h[0]&0x80 != 0, h[0]&0x40 != 0, h[0]&0x0f
	length := uint64(h[1] & 0x7f)
	i := 2
	switch length {
	case 126:
		length = uint64(binary.BigEndian.Uint16(h[2:4]))
		i = 4
	case 127:
		length = binary.BigEndian.Uint64(h[2:10])
		i = 10
	}
	p.maskAt = 0
	p.mask = [4]byte{}
	if h[1]&0x80 != 0 {
		copy(p.mask[:], h[i:i+4])
	}
	p.hdrN, p.need = 0, 0
	p.left, p.fin = length, fin
	switch opcode {
	case 0x1, 0x2: // a new data message
		p.data = true
		p.compressed = rsv1 && p.o.Deflate
		p.buf, p.inflated = p.buf[:0], 0
	case 0x0: // its continuation
		p.data = true
	case 0x8, 0x9, 0xa: // close, ping, pong
		p.data = false
	default: // not a WebSocket we can follow
		p.blind = true
		p.touch()
		return nil
	}
	if p.left == 0 {
		p.endFrame()
	}
	return b
}

func (p *wsParser) payload(b []byte) {
	if !p.data {
		return
	}
	if !p.o.VSCode {
		if len(b) > 0 {
			p.touch()
		}
		return
	}
	// Unmask into a scratch buffer (the read buffer belongs to the proxy).
	u := scratch(len(b))
	defer release(u)
	for i, c := range b {
		u[i] = c ^ p.mask[(p.maskAt+i)&3]
	}
	p.maskAt += len(b)
	if !p.compressed {
		p.vs.feed(u, p.touch)
		return
	}
	if len(p.buf)+len(u) > maxCompressedMessage {
		p.giveUp()
		return
	}
	p.buf = append(p.buf, u...)
}

func (p *wsParser) endFrame() {
	if !p.data || !p.fin {
		return
	}
	if p.compressed {
		p.inflate()
	}
	p.compressed = false
}

// inflate decompresses one whole message (RFC 7692: the message plus
// 0x00 0x00 0xff 0xff is a deflate stream ending in a sync flush), with
// what the client's compressor remembers as the dictionary.
func (p *wsParser) inflate() {
	if p.o.NoContextTakeover {
		p.dict = p.dict[:0]
	}
	// A final empty stored block after the sync flush ends the stream cleanly.
	src := io.MultiReader(bytes.NewReader(p.buf), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}))
	fr := inflaters.Get().(io.ReadCloser)
	defer inflaters.Put(fr)
	if err := fr.(flate.Resetter).Reset(src, p.dict); err != nil {
		p.giveUp()
		return
	}
	out := scratch(16 << 10)
	defer release(out)
	for {
		n, err := fr.Read(out)
		if n > 0 {
			p.inflated += n
			if p.inflated > maxInflated {
				p.giveUp()
				return
			}
			p.vs.feed(out[:n], p.touch)
			if !p.o.NoContextTakeover {
				p.remember(out[:n])
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			p.giveUp()
			return
		}
	}
}

// remember keeps the last window of what the client sent, inflated.
func (p *wsParser) remember(b []byte) {
	if len(b) >= window {
		p.dict = append(p.dict[:0], b[len(b)-window:]...)
		return
	}
	if over := len(p.dict) + len(b) - window; over > 0 {
		p.dict = append(p.dict[:0], p.dict[over:]...)
	}
	p.dict = append(p.dict, b...)
}

func (p *wsParser) giveUp() {
	p.blind = true
	p.buf, p.dict = nil, nil
	p.touch()
}

// vscodeParser reads VS Code's messages from the inflated byte stream:
// a 13-byte header (type, id, ack, data length, big-endian), then the data.
// The start of each regular message's data is read to tell the calls an
// open workbench makes by itself (see automatic) from the rest.
type vscodeParser struct {
	hdr  [vscodeHeader]byte
	n    int
	skip uint32 // data bytes of the current message still to pass

	head    [vscodeSniff]byte // the start of the current message's data
	headN   int
	want    int  // bytes of head to read before deciding (0: decided)
	control bool // the current message is a control message
}

// vscodeSniff is how much of a message's data is read to decide: enough
// for an IPC call's channel and command (and the start of its argument),
// or an RPC request's method name.
const vscodeSniff = 160

func (v *vscodeParser) feed(b []byte, touch func()) {
	for len(b) > 0 {
		if v.skip > 0 {
			n := min(uint32(len(b)), v.skip)
			if v.want > 0 {
				k := copy(v.head[v.headN:v.want], b[:n])
				v.headN += k
				if v.headN == v.want {
					v.decide(touch)
				}
			}
			b = b[n:]
			v.skip -= n
			continue
		}
		k := copy(v.hdr[v.n:], b)
		v.n += k
		b = b[k:]
		if v.n < vscodeHeader {
			return
		}
		v.n = 0
		v.skip = binary.BigEndian.Uint32(v.hdr[9:13])
		if t := v.hdr[0]; (t == vscodeRegular || t == vscodeControl) && v.skip > 0 {
			v.control = t == vscodeControl
			v.headN, v.want = 0, int(min(v.skip, vscodeSniff))
		}
	}
}

// decide counts the message whose data starts with head, unless it is one
// the workbench sends by itself.
func (v *vscodeParser) decide(touch func()) {
	v.want = 0
	if v.control || !automatic(v.head[:v.headN]) {
		touch()
	}
}

// automatic says whether a VS Code message, by the start of its data, is
// one an open workbench sends with nobody at it. Found by reading what the
// real code-server's workbench sent while its tab sat untouched
// (test/browser's TestCodeServerIdle):
//
//   - on the remote extension host's connection, RPC messages
//     (src/vs/workbench/services/extensions/common/rpcProtocol.ts) whose
//     first byte is their type: acknowledgements, cancellations and
//     replies to the extension host's own requests (types 5 to 12), and
//     the window's state changing ($onDidChangeWindowActive and
//     $onDidChangeWindowFocus, sent when the browser window loses or gains
//     focus: coming back to the tab is not using it yet);
//   - on the management connection, IPC calls (an array [type, id,
//     channel, command] first): the telemetry channel's ping, every two
//     seconds while the workbench starts; and (VS Code 1.139) the agent
//     host's keep-alive, a JSON-RPC "ping" sent through the agentHostProxy
//     channel every five seconds; and (VS Code 1.139, once a terminal has
//     been opened) the workbench's own state files, stat, readdir and
//     writeFile on the remoteFilesystem channel every five seconds, all
//     under code-server's user data directory (~/.local/share/code-server),
//     never in the workspace.
//
// Everything else — a keystroke in a terminal, an edit reaching the
// extension host, a file opened or saved, a command — counts.
func automatic(head []byte) bool {
	if len(head) == 0 {
		return true
	}
	if t := head[0]; t >= rpcAcknowledged && t <= rpcReplyErrEmpty {
		return true
	}
	return bytes.Contains(head, ipcTelemetryPing) || bytes.Contains(head, rpcWindowActive) || bytes.Contains(head, rpcWindowFocus) ||
		bytes.Contains(head, ipcAgentHostSend) && bytes.Contains(head, jsonRPCPing) ||
		bytes.Contains(head, ipcRemoteFilesystem) && bytes.Contains(head, codeServerUserData)
}

// The markers automatic looks for.
const (
	rpcAcknowledged  = 5  // MessageType.Acknowledged; 6 Cancel, 7-12 replies
	rpcReplyErrEmpty = 12 // MessageType.ReplyErrEmpty, the last reply type
)

var (
	ipcTelemetryPing = []byte("\x01\ttelemetry\x01\x04ping") // channel "telemetry", command "ping", as IPC serializes strings
	rpcWindowActive  = []byte("$onDidChangeWindowActive")
	rpcWindowFocus   = []byte("$onDidChangeWindowFocus")
	ipcAgentHostSend = []byte("\x01\x0eagentHostProxy\x01\x04send")
	jsonRPCPing      = []byte(`"method":"ping"`)
	// remoteFilesystem's calls name the file's path after the command.
	ipcRemoteFilesystem = []byte("\x01\x10remoteFilesystem\x01")
	codeServerUserData  = []byte("/.local/share/code-server/")
)

var inflaters = sync.Pool{New: func() any { return flate.NewReader(bytes.NewReader(nil)) }}

var scratchPool = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

func scratch(n int) []byte {
	if n > 16<<10 {
		return make([]byte, n)
	}
	return (*scratchPool.Get().(*[]byte))[:n]
}

func release(b []byte) {
	if cap(b) == 16<<10 {
		b = b[:cap(b)]
		scratchPool.Put(&b)
	}
}
