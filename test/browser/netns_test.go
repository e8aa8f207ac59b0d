package browser

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/chromedp/chromedp"
)

// Chromium aborts every request in flight, loopback ones included, with
// net::ERR_NETWORK_CHANGED whenever an address appears on or leaves any of
// the host's interfaces, and Docker does that all the time: each container
// started or stopped adds or removes a veth interface, whether it is this
// test's (TestDashboard stops and moves sandboxes) or another package's
// running beside it. No switch turns that off. So the browser runs in a
// network namespace of its own, where nothing but its loopback exists and
// nothing ever changes, and reaches the host through a SOCKS proxy served by
// this process on that loopback. The proxy is a plain TCP tunnel (TLS, HTTP/2
// and WebSockets pass through it untouched), and Chromium still resolves
// names itself (--host-resolver-rules apply), since SOCKS4 carries addresses.

// isolation is a network namespace for one browser and the proxy in it.
type isolation struct {
	ns    *os.File     // the namespace (/proc/thread-self/ns/net of the thread that made it)
	proxy net.Listener // on 127.0.0.1 inside the namespace

	mu    sync.Mutex
	open  map[net.Conn]bool // the browser's connections to the proxy
	conns sync.WaitGroup    // their tunnels
}

// isolate makes a network namespace with its loopback up and the proxy
// listening in it. It fails without CAP_SYS_ADMIN (not root).
func isolate() (*isolation, error) {
	type made struct {
		ns  *os.File
		ln  net.Listener
		err error
	}
	c := make(chan made, 1)
	go func() {
		// The thread enters the new namespace and never leaves it: the
		// goroutine ends locked, so the runtime ends the thread with it.
		runtime.LockOSThread()
		if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
			c <- made{err: fmt.Errorf("a network namespace for the browser: %w", err)}
			return
		}
		if err := loopbackUp(); err != nil {
			c <- made{err: err}
			return
		}
		ns, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			c <- made{err: err}
			return
		}
		// A socket belongs to the namespace of the thread that made it.
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			ns.Close()
			c <- made{err: fmt.Errorf("the browser's proxy: %w", err)}
			return
		}
		c <- made{ns: ns, ln: ln}
	}()
	m := <-c
	if m.err != nil {
		return nil, m.err
	}
	iso := &isolation{ns: m.ns, proxy: m.ln, open: map[net.Conn]bool{}}
	go iso.serve()
	return iso, nil
}

// loopbackUp sets lo up in the calling thread's network namespace.
func loopbackUp() error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	defer syscall.Close(fd)
	var ifr struct {
		name  [syscall.IFNAMSIZ]byte
		flags uint16
		_     [24]byte
	}
	copy(ifr.name[:], "lo")
	for _, req := range []uintptr{syscall.SIOCGIFFLAGS, syscall.SIOCSIFFLAGS} {
		if req == syscall.SIOCSIFFLAGS {
			ifr.flags |= syscall.IFF_UP
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
			return fmt.Errorf("loopback up: %w", errno)
		}
	}
	return nil
}

// options start Chromium inside the namespace (through nsenter, which
// enters it from this process's descriptor) and send all its traffic,
// loopback included, to the proxy.
func (iso *isolation) options(t *testing.T) []chromedp.ExecAllocatorOption {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Fatal("nsenter is missing (apt-get install util-linux): the browser runs in a network namespace of its own")
	}
	enter := "--net=/proc/" + strconv.Itoa(os.Getpid()) + "/fd/" + strconv.Itoa(int(iso.ns.Fd()))
	return []chromedp.ExecAllocatorOption{
		chromedp.ProxyServer("socks4://" + iso.proxy.Addr().String()),
		chromedp.Flag("proxy-bypass-list", "<-loopback>"), // loopback through the proxy too
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			cmd.Args = append([]string{"nsenter", enter, "--"}, cmd.Args...)
			cmd.Path = nsenter
			// What chromedp does by default: the browser dies with the test.
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		}),
	}
}

// close stops the proxy and its tunnels, once the browser is gone.
func (iso *isolation) close() {
	iso.proxy.Close()
	iso.mu.Lock()
	for c := range iso.open {
		c.Close()
	}
	iso.mu.Unlock()
	iso.conns.Wait()
	iso.ns.Close()
}

func (iso *isolation) serve() {
	for {
		c, err := iso.proxy.Accept()
		if err != nil {
			return
		}
		iso.mu.Lock()
		iso.open[c] = true
		iso.conns.Add(1)
		iso.mu.Unlock()
		go func() {
			defer iso.conns.Done()
			tunnel(c)
			iso.mu.Lock()
			delete(iso.open, c)
			iso.mu.Unlock()
		}()
	}
}

// tunnel serves one SOCKS4 CONNECT: the request names an IPv4 address and
// port, which is dialled on the host's network; then bytes flow both ways
// until either side closes.
func tunnel(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second)) // for the request only
	// Version 4, command 1 (CONNECT), port, IPv4 address, then a user ID.
	var req [8]byte
	if _, err := io.ReadFull(c, req[:]); err != nil || req[0] != 4 || req[1] != 1 {
		return
	}
	for b := []byte{1}; b[0] != 0; { // the user ID, up to its NUL
		if _, err := io.ReadFull(c, b); err != nil {
			return
		}
	}
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte(req[4:8])), binary.BigEndian.Uint16(req[2:4]))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	up, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr.String())
	cancel()
	if err != nil {
		c.Write([]byte{0, 91, 0, 0, 0, 0, 0, 0}) // rejected: the browser sees the connection fail
		return
	}
	defer up.Close()
	if _, err := c.Write([]byte{0, 90, 0, 0, 0, 0, 0, 0}); err != nil { // granted
		return
	}
	c.SetDeadline(time.Time{})
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done // one side closed: close both (the defers), which ends the other copy
}
