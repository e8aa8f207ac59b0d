package frontdoor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"syscall"

	"github.com/thon-dev/thon/internal/config"
)

// Sync makes the port-mode listeners match the participants in the store:
// every participant gets a port (kept across restarts) with its own HTTPS
// server; removed participants' ports close. Other modes need nothing.
func (f *FrontDoor) Sync(ctx context.Context) error {
	a := f.a
	if a.Mode != config.ModePort {
		return nil
	}
	first, last, err := a.Ports()
	if err != nil {
		return err
	}
	ports, full, err := f.o.Addresses.Assign(ctx)
	if err != nil {
		return err
	}
	if len(full) > 0 {
		f.log.Error("access.port_range has no free port left: widen it", "range", a.PortRange, "without_port", full)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for user, ps := range f.ports {
		if p, ok := ports[user]; !ok || p != ps.port {
			ps.srv.Close()
			delete(f.ports, user)
		}
	}
	for user, port := range ports {
		if f.ports[user] != nil {
			continue
		}
		ln, port, err := f.listenPort(ctx, user, port, first, last, ports)
		if err != nil {
			f.log.Error("cannot open the participant's port", "user", user, "err", err)
			continue
		}
		srv := f.server(f.sandboxHandler(user))
		f.ports[user] = &portServer{port: port, srv: srv}
		go f.serve(srv, tls.NewListener(ln, f.o.TLS), "port "+strconv.Itoa(port))
	}
	return nil
}

// listenPort opens user's port; when another program holds it, the user
// moves to the next port of the range that nobody uses.
func (f *FrontDoor) listenPort(ctx context.Context, user string, port, first, last int, taken map[string]int) (net.Listener, int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(port)))
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
		return ln, port, err
	}
	used := map[int]bool{f.a.HTTPSPort: true, f.a.HTTPPort: true, f.a.Dashboard(): true}
	for _, p := range taken {
		used[p] = true
	}
	for p := first; p <= last; p++ {
		if used[p] {
			continue
		}
		if ln, err2 := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(p))); err2 == nil {
			if err := f.o.Addresses.moved(ctx, user, p); err != nil {
				ln.Close()
				return nil, 0, err
			}
			taken[user] = p
			f.log.Warn("participant's port was taken by another program; moved", "user", user, "from", port, "to", p)
			return ln, p, nil
		}
	}
	return nil, 0, fmt.Errorf("port %d is taken and access.port_range %s has no free port left: %w", port, f.a.PortRange, err)
}

// sandboxHandler serves one participant's port: their IDE at the root.
func (f *FrontDoor) sandboxHandler(user string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.serveSandbox(w, r, user, "")
	})
}
