package docker

import (
	"net/netip"
	"testing"
)

// A route of the host's own (not the default one) to a network makes its
// addresses routable; the default route does not.
func TestRoutedTo(t *testing.T) {
	table := []byte(`Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	00000000	010200C0	0003	0	0	0	00000000	0	0	0
docker0	000011AC	00000000	0001	0	0	0	0000FFFF	0	0	0
thonh1	0000D20A	02FED20A	0003	0	0	0	0080FFFF	0	0	0
`)
	for ip, want := range map[string]bool{
		"172.17.0.1":   true,  // docker0's network
		"10.210.3.1":   true,  // 10.210.0.0/17, through a veth
		"10.210.200.1": false, // outside the /17
		"192.168.5.1":  false, // only the default route
		"fd00::1":      false,
	} {
		if got := routedTo(table, netip.MustParseAddr(ip)); got != want {
			t.Errorf("routedTo(%s) = %v, want %v", ip, got, want)
		}
	}
}
