package pki

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
)

// procNetRoute is the Linux IPv4 routing table.
const procNetRoute = "/proc/net/route"

// DetectExternalIP returns the IPv4 address participants most likely reach
// this machine on: the address of the interface holding the default route
// (from /proc/net/route), else the first global-unicast IPv4 address of an
// up, non-loopback interface (physical-looking ones first). It only reads
// local state; it sends no network traffic.
func DetectExternalIP() (net.IP, error) {
	var routeErr error
	if f, err := os.Open(procNetRoute); err == nil {
		routes, err := parseDefaultRoutes(f)
		f.Close()
		routeErr = err
		for _, r := range routes {
			ifc, err := net.InterfaceByName(r.iface)
			if err != nil || ifc.Flags&net.FlagUp == 0 {
				continue
			}
			if ip := interfaceIPv4(ifc, r.gateway); ip != nil {
				return ip, nil
			}
		}
	}
	ifcs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("detect external IP: list interfaces: %w; set access.external_ip in thon.yaml", err)
	}
	// Two passes: first running interfaces that do not look like container
	// or VM bridges, then any up, non-loopback interface.
	for pass := range 2 {
		for i := range ifcs {
			ifc := &ifcs[i]
			if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
				continue
			}
			if pass == 0 && (ifc.Flags&net.FlagRunning == 0 || virtualInterface(ifc.Name)) {
				continue
			}
			if ip := interfaceIPv4(ifc, nil); ip != nil {
				return ip, nil
			}
		}
	}
	msg := "detect external IP: no default route and no interface with a global IPv4 address; set access.external_ip in thon.yaml"
	if routeErr != nil {
		return nil, fmt.Errorf("%s (reading %s: %w)", msg, procNetRoute, routeErr)
	}
	return nil, errors.New(msg)
}

// interfaceIPv4 returns the interface's global-unicast IPv4 address, the one
// on the gateway's subnet when there are several.
func interfaceIPv4(ifc *net.Interface, gateway net.IP) net.IP {
	addrs, err := ifc.Addrs()
	if err != nil {
		return nil
	}
	var first net.IP
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip := n.IP.To4()
		if ip == nil || !ip.IsGlobalUnicast() {
			continue
		}
		if gateway != nil && n.Contains(gateway) {
			return ip
		}
		if first == nil {
			first = ip
		}
	}
	return first
}

var virtualPrefixes = []string{"docker", "br-", "veth", "virbr", "cni", "flannel", "cali", "vxlan", "tun", "tap", "wg", "zt", "tailscale", "lxc", "lxd", "podman"}

func virtualInterface(name string) bool {
	return slices.ContainsFunc(virtualPrefixes, func(p string) bool { return strings.HasPrefix(name, p) })
}

// defaultRoute is one default route from /proc/net/route.
type defaultRoute struct {
	iface   string
	gateway net.IP // nil when the route has none
	metric  int
}

// parseDefaultRoutes reads /proc/net/route and returns its default routes
// (destination and mask 0.0.0.0, flag RTF_UP), lowest metric first.
func parseDefaultRoutes(r io.Reader) ([]defaultRoute, error) {
	const (
		rtfUp      = 0x1
		rtfGateway = 0x2
	)
	var routes []defaultRoute
	sc := bufio.NewScanner(r)
	header := true
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if header {
			header = false
			if len(fields) > 0 && fields[0] == "Iface" {
				continue
			}
		}
		if len(fields) < 8 {
			continue
		}
		dest, err1 := strconv.ParseUint(fields[1], 16, 32)
		gw, err2 := strconv.ParseUint(fields[2], 16, 32)
		flags, err3 := strconv.ParseUint(fields[3], 16, 32)
		metric, err4 := strconv.Atoi(fields[6])
		mask, err5 := strconv.ParseUint(fields[7], 16, 32)
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			return nil, fmt.Errorf("parse route %q: %w", sc.Text(), err)
		}
		if dest != 0 || mask != 0 || flags&rtfUp == 0 {
			continue
		}
		rt := defaultRoute{iface: fields[0], metric: metric}
		if flags&rtfGateway != 0 && gw != 0 {
			rt.gateway = routeAddr(uint32(gw))
		}
		routes = append(routes, rt)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read routes: %w", err)
	}
	slices.SortStableFunc(routes, func(a, b defaultRoute) int { return a.metric - b.metric })
	return routes, nil
}

// routeAddr converts an address as /proc/net/route prints it (the
// network-order bytes read as a host-order integer) to an IP.
func routeAddr(v uint32) net.IP {
	ip := make(net.IP, 4)
	binary.NativeEndian.PutUint32(ip, v)
	return ip
}
