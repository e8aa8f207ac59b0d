package frontdoor

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/store"
)

// Addresses is where the front door is reached: its main URL, the
// dashboard's, and every participant's IDE (in port mode, the port the
// store keeps for them). It is made before anything that hands out links,
// and the front door, made last, serves what it says.
type Addresses struct {
	access config.Access
	st     *store.Store

	mu    sync.Mutex
	host  string         // the host part of every URL handed out
	ports map[string]int // port mode: user → their port
}

// NewAddresses starts from access (external_ip already resolved).
func NewAddresses(access config.Access, st *store.Store) *Addresses {
	a := &Addresses{access: access, st: st, ports: map[string]int{}}
	a.SetExternalIP(access.ExternalIP)
	return a
}

// Access is the configuration the addresses come from.
func (a *Addresses) Access() config.Access { return a.access }

// SetExternalIP changes the address in the URLs handed out from now on
// (unless a host name is configured: names win over addresses).
func (a *Addresses) SetExternalIP(ip string) {
	host := ip
	for _, h := range a.access.Hostnames {
		if !strings.HasPrefix(h, "*.") {
			host = h
			break
		}
	}
	if strings.Contains(host, ":") { // an IPv6 address
		host = "[" + host + "]"
	}
	a.mu.Lock()
	a.host = host
	a.mu.Unlock()
}

func (a *Addresses) currentHost() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.host
}

// MainURL is the front door's main address: API, CA download, path mode.
func (a *Addresses) MainURL() string {
	return "https://" + hostPort(a.currentHost(), a.access.HTTPSPort) + "/"
}

// DashboardURL is where organizers open the dashboard.
func (a *Addresses) DashboardURL() string {
	return "https://" + hostPort(a.currentHost(), a.access.Dashboard()) + "/"
}

// URL is where a participant's IDE is ("" when port mode has no port for
// them yet: Assign gives one).
func (a *Addresses) URL(user string) string {
	switch a.access.Mode {
	case config.ModePath:
		return a.MainURL() + "u/" + user + "/"
	case config.ModeSubdomain:
		return "https://" + hostPort(user+"."+a.access.Domain, a.access.HTTPSPort) + "/"
	}
	a.mu.Lock()
	port, ok := a.ports[user]
	host := a.host
	a.mu.Unlock()
	if !ok {
		return ""
	}
	return "https://" + hostPort(host, port) + "/"
}

// Assign gives every participant in the store a port (port mode; kept
// across restarts) and forgets removed participants' ports. It returns
// the ports, and the participants for whom the range had none left.
func (a *Addresses) Assign(ctx context.Context) (ports map[string]int, full []string, err error) {
	if a.access.Mode != config.ModePort {
		return nil, nil, nil
	}
	first, last, err := a.access.Ports()
	if err != nil {
		return nil, nil, err
	}
	avoid := map[int]bool{a.access.HTTPSPort: true, a.access.HTTPPort: true, a.access.Dashboard(): true}
	if full, err = a.st.AssignPorts(ctx, first, last, avoid); err != nil {
		return nil, nil, fmt.Errorf("assign ports: %w", err)
	}
	if ports, err = a.st.Ports(ctx); err != nil {
		return nil, nil, err
	}
	a.mu.Lock()
	a.ports = make(map[string]int, len(ports))
	for u, p := range ports {
		a.ports[u] = p
	}
	a.mu.Unlock()
	return ports, full, nil
}

// Ensure makes sure user has an address: in port mode, a port.
func (a *Addresses) Ensure(ctx context.Context, user string) (string, error) {
	if u := a.URL(user); u != "" {
		return u, nil
	}
	if _, _, err := a.Assign(ctx); err != nil {
		return "", err
	}
	if u := a.URL(user); u != "" {
		return u, nil
	}
	return "", fmt.Errorf("%s has no port: access.port_range %s is full or its ports are taken; widen it", user, a.access.PortRange)
}

// moved records that user's port changed (the old one was taken).
func (a *Addresses) moved(ctx context.Context, user string, port int) error {
	if err := a.st.MovePort(ctx, user, port); err != nil {
		return err
	}
	a.mu.Lock()
	a.ports[user] = port
	a.mu.Unlock()
	return nil
}

func hostPort(host string, port int) string {
	if port == 443 {
		return host
	}
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(port)
}
