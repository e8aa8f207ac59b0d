package daemon

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"
)

// callers maps sandbox addresses to their participants, for the gateway's
// check that a request from a sandbox carries that participant's key. It
// is rebuilt from the store when an address is not known (at most every
// refreshEvery), so a sandbox that just started is found at its first
// request.
type callers struct {
	d *Daemon

	mu    sync.Mutex
	byIP  map[netip.Addr][2]string // user, group
	built time.Time
}

const refreshEvery = 2 * time.Second

func (c *callers) lookup(ctx context.Context, ip netip.Addr) (user, group string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if who, ok := c.byIP[ip]; ok {
		return who[0], who[1], true
	}
	if time.Since(c.built) < refreshEvery {
		return "", "", false
	}
	c.built = time.Now()
	boxes, err := c.d.Store.Sandboxes(ctx)
	if err != nil {
		return "", "", false
	}
	users, err := c.d.Store.Users(ctx)
	if err != nil {
		return "", "", false
	}
	groupOf := make(map[string]string, len(users))
	for _, u := range users {
		groupOf[u.Name] = u.Group
	}
	m := make(map[netip.Addr][2]string, len(boxes))
	for user, b := range boxes {
		host, _, err := net.SplitHostPort(b.Endpoint)
		if err != nil {
			continue
		}
		a, err := netip.ParseAddr(host)
		// A sandbox reached on a port published on this host (an engine
		// whose containers are not routable) has no address of its own.
		if err != nil || a.IsLoopback() || a.IsUnspecified() {
			continue
		}
		m[a.Unmap()] = [2]string{user, groupOf[user]}
	}
	c.byIP = m
	who, ok := m[ip]
	return who[0], who[1], ok
}
