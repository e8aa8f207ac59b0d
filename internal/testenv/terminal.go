package testenv

import (
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// Terminal is a real pseudo-terminal for a test: a program reads and writes
// TTY as its terminal; the test reads what it shows (Expect) and types
// (Send) on the other side, as a person would.
type Terminal struct {
	TTY *os.File // the program's side

	pty  *os.File
	mu   sync.Mutex
	cond *sync.Cond
	out  strings.Builder // everything shown, escape sequences removed
	seen int             // what Expect has consumed
	done bool
}

// NewTerminal opens a 40×120 pseudo-terminal, closed when the test ends.
func NewTerminal(t testing.TB) *Terminal {
	t.Helper()
	p, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	if err := pty.Setsize(p, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	// The program gets its own descriptor of the terminal, which the test
	// never closes (the garbage collector does): a terminal program may
	// still look at it from a goroutine of its own after it returned
	// (bubbletea's resize check does), and closing it under that goroutine
	// would be a data race.
	fd, err := syscall.Dup(int(tty.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	term := &Terminal{TTY: os.NewFile(uintptr(fd), tty.Name()), pty: p}
	term.cond = sync.NewCond(&term.mu)
	go term.read()
	t.Cleanup(func() {
		tty.Close()
		p.Close()
	})
	return term
}

var escapes = regexp.MustCompile(`\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78DEHMc]`)

func (term *Terminal) read() {
	var raw []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := term.pty.Read(buf)
		term.mu.Lock()
		if n > 0 {
			raw = append(raw, buf[:n]...)
			// Keep an unfinished escape sequence for the next read.
			keep := 0
			if i := strings.LastIndexByte(string(raw), 0x1b); i >= 0 && len(raw)-i < 64 && !escapes.Match(raw[i:]) {
				keep = len(raw) - i
			}
			text := escapes.ReplaceAllString(string(raw[:len(raw)-keep]), "")
			term.out.WriteString(strings.ReplaceAll(text, "\r", ""))
			raw = append(raw[:0], raw[len(raw)-keep:]...)
		}
		if err != nil {
			term.done = true
		}
		term.cond.Broadcast()
		term.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Expect waits until the terminal shows s after what was last expected,
// and moves past it. It fails the test when s is not shown within a minute
// (a generous bound for a loaded machine, never a measure).
func (term *Terminal) Expect(t testing.TB, s string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	timer := time.AfterFunc(time.Minute, func() {
		term.mu.Lock()
		term.cond.Broadcast()
		term.mu.Unlock()
	})
	defer timer.Stop()
	term.mu.Lock()
	defer term.mu.Unlock()
	for {
		shown := term.out.String()
		if i := strings.Index(shown[term.seen:], s); i >= 0 {
			term.seen += i + len(s)
			return
		}
		if term.done || time.Now().After(deadline) {
			tail := shown[term.seen:]
			if len(tail) > 3000 {
				tail = tail[len(tail)-3000:]
			}
			t.Fatalf("the terminal did not show %q; it shows:\n%s", s, tail)
		}
		term.cond.Wait()
	}
}

// Shown is everything the terminal showed, escape sequences removed.
func (term *Terminal) Shown() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.out.String()
}

// Keys a person types.
const (
	Enter    = "\r"
	Tab      = "\t"
	CtrlC    = "\x03"
	CtrlJ    = "\n" // a new line in a multi-line field
	CtrlU    = "\x15"
	Down     = "\x1b[B"
	Up       = "\x1b[A"
	Home     = "\x1b[H"
	ShiftTab = "\x1b[Z"
)

// Send types keys.
func (term *Terminal) Send(t testing.TB, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, err := term.pty.WriteString(k); err != nil {
			t.Fatalf("type on the terminal: %v", err)
		}
	}
}
