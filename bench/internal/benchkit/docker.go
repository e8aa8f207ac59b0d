package benchkit

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

// Routable: the network's gateway is an address of this host, so container
// addresses answer from here (a local engine on Linux) — the same test THON
// makes before it decides not to publish ports.
func Routable(cfgs []network.IPAMConfig) bool {
	var gw netip.Addr
	for _, c := range cfgs {
		if c.Gateway.Is4() {
			gw = c.Gateway
			break
		}
	}
	if !gw.IsValid() {
		return false
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok && ip.Unmap() == gw {
				return true
			}
		}
	}
	return false
}

// Endpoint is where this host reaches a container's port p: its address on
// the network when routable, else the port published on 127.0.0.1 — as THON
// does.
func Endpoint(c container.InspectResponse, netName string, p network.Port, routable bool) (string, error) {
	ns := c.NetworkSettings
	if ns == nil {
		return "", errors.New("inspect: no network settings")
	}
	if routable {
		if ep := ns.Networks[netName]; ep != nil && ep.IPAddress.IsValid() {
			return net.JoinHostPort(ep.IPAddress.String(), p.Port()), nil
		}
		return "", fmt.Errorf("inspect: no address on network %s", netName)
	}
	for _, b := range ns.Ports[p] {
		if b.HostPort != "" {
			return net.JoinHostPort("127.0.0.1", b.HostPort), nil
		}
	}
	return "", errors.New("inspect: the IDE port is not published")
}
