package docker

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/thon-dev/thon/internal/sandbox"
)

// netInfo is what THON needs to know about the sandbox network.
type netInfo struct {
	id      string
	gateway netip.Addr
	// routable: container addresses on the network answer from this
	// process, so no port is published.
	routable bool
}

// Routable reports whether sandboxes are reached at their container address
// (Linux with a local engine: the network's gateway is an address of this
// host) rather than through a port published on 127.0.0.1 (Docker Desktop, a
// remote engine). Prepare decides it once; before, Routable is false.
func (r *Runtime) Routable() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.net != nil && r.net.routable
}

// NetworkGateway is the IPv4 gateway of the sandbox network: the address at
// which sandboxes reach the host.
func (r *Runtime) NetworkGateway(ctx context.Context) (string, error) {
	ni, err := r.loadNetwork(ctx, false)
	if err != nil {
		return "", r.wrapOp("inspect", "network "+r.network, err)
	}
	if ni == nil {
		return "", fmt.Errorf("inspect network %s: it does not exist yet (Prepare creates it)", r.network)
	}
	return ni.gateway.String(), nil
}

func (r *Runtime) forgetNetwork() {
	r.mu.Lock()
	r.net = nil
	r.mu.Unlock()
}

// loadNetwork finds (or, with create, makes) the sandbox network, checks it
// isolates sandboxes, and caches what THON needs. Without create, a missing
// network is (nil, nil).
func (r *Runtime) loadNetwork(ctx context.Context, create bool) (*netInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.net != nil {
		return r.net, nil
	}
	n, err := r.lookupNetwork(ctx)
	if err != nil {
		return nil, err
	}
	if n == nil {
		if !create {
			return nil, nil
		}
		if n, err = r.createNetwork(ctx); err != nil {
			return nil, err
		}
	}
	if err := r.checkNetwork(n); err != nil {
		return nil, err
	}
	gw := gatewayOf(n)
	if !gw.IsValid() {
		return nil, fmt.Errorf("network %s has no IPv4 gateway", r.network)
	}
	r.net = &netInfo{id: n.ID, gateway: gw, routable: r.detectRoutable(gw)}
	return r.net, nil
}

// lookupNetwork returns the network named r.network, or nil. Engines before
// API 1.44 accept two networks with one name; then the oldest is the one.
func (r *Runtime) lookupNetwork(ctx context.Context) (*network.Summary, error) {
	res, err := r.cli.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("name", r.network)})
	if err != nil {
		return nil, err
	}
	var same []network.Summary
	for _, n := range res.Items {
		if n.Name == r.network { // the filter matches substrings
			same = append(same, n)
		}
	}
	if len(same) == 0 {
		return nil, nil
	}
	slices.SortFunc(same, func(a, b network.Summary) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	})
	return &same[0], nil
}

// createNetwork makes the sandbox network: a bridge without
// inter-container communication, so a sandbox reaches the host (gateway)
// and the outside world but no other sandbox.
func (r *Runtime) createNetwork(ctx context.Context) (*network.Summary, error) {
	res, err := r.cli.NetworkCreate(ctx, r.network, client.NetworkCreateOptions{
		Driver:  "bridge",
		Options: map[string]string{iccOption: "false"},
		Labels: map[string]string{
			sandbox.LabelManaged: "true",
			LabelInstance:        r.prefix,
		},
	})
	if err != nil && !cerrdefs.IsConflict(err) {
		return nil, fmt.Errorf("create network %s: %w", r.network, err)
	}
	// Another process may have created it at the same time. Old engines
	// then hold two networks of one name: everyone keeps the oldest and the
	// loser removes its own.
	n, lerr := r.lookupNetwork(ctx)
	if lerr != nil {
		return nil, fmt.Errorf("create network %s: %w", r.network, lerr)
	}
	if n == nil {
		return nil, fmt.Errorf("create network %s: it vanished right after creation", r.network)
	}
	if res.ID != "" && res.ID != n.ID {
		_, _ = r.cli.NetworkRemove(ctx, res.ID, client.NetworkRemoveOptions{})
	}
	return n, nil
}

// checkNetwork refuses a network that would let sandboxes reach each other.
func (r *Runtime) checkNetwork(n *network.Summary) error {
	if n.Driver != "bridge" {
		return &sandbox.UserError{
			Msg:  fmt.Sprintf("Docker network %s uses the %s driver; THON needs a bridge network that isolates sandboxes", r.network, n.Driver),
			Hint: fmt.Sprintf("remove it with: docker network rm %s (THON creates it again), or configure another network name", r.network),
		}
	}
	if n.Options[iccOption] != "false" {
		return &sandbox.UserError{
			Msg:  fmt.Sprintf("Docker network %s lets containers reach each other (inter-container communication is enabled), so sandboxes would not be isolated", r.network),
			Hint: fmt.Sprintf("remove it with: docker network rm %s (THON creates it again with isolation), or configure another network name", r.network),
		}
	}
	return nil
}

func gatewayOf(n *network.Summary) netip.Addr {
	for _, c := range n.IPAM.Config {
		if c.Gateway.Is4() {
			return c.Gateway
		}
	}
	for _, c := range n.IPAM.Config {
		if c.Subnet.Addr().Is4() {
			return c.Subnet.Masked().Addr().Next() // the bridge driver's default
		}
	}
	return netip.Addr{}
}

// detectRoutable decides whether container addresses on the network answer
// from this process: only with a local engine on Linux, where the bridge's
// gateway address sits on one of this host's interfaces, or the host has a
// route of its own (not the default one) to it (an engine in a network
// namespace or VM that the organizer routed to). Docker Desktop (a VM),
// rootless Docker (its own network namespace) and remote engines fail the
// test and get published ports instead.
func (r *Runtime) detectRoutable(gw netip.Addr) bool {
	if r.forceRoutable != nil {
		return *r.forceRoutable
	}
	if runtime.GOOS != "linux" || !localEngine(r.host) {
		return false
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if ip, ok := netip.AddrFromSlice(ipn.IP); ok && ip.Unmap() == gw {
			return true
		}
	}
	routes, err := os.ReadFile("/proc/net/route")
	return err == nil && routedTo(routes, gw)
}

// routedTo reports whether a route of /proc/net/route's table, other than
// the default one, covers the IPv4 address ip.
func routedTo(table []byte, ip netip.Addr) bool {
	if !ip.Is4() {
		return false
	}
	a := ip.As4()
	addr := binary.LittleEndian.Uint32(a[:]) // the table's byte order
	for _, line := range strings.Split(string(table), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		dst, err1 := strconv.ParseUint(f[1], 16, 32)
		mask, err2 := strconv.ParseUint(f[7], 16, 32)
		if err1 == nil && err2 == nil && mask != 0 && addr&uint32(mask) == uint32(dst) {
			return true
		}
	}
	return false
}

// localEngine: the engine runs on this machine (a unix socket, or TCP on
// loopback).
func localEngine(host string) bool {
	u, err := url.Parse(host)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "unix":
		return true
	case "tcp", "http", "https":
		h := u.Hostname()
		if h == "localhost" {
			return true
		}
		ip, err := netip.ParseAddr(h)
		return err == nil && ip.IsLoopback()
	}
	return false
}
