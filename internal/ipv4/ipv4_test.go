package ipv4

import (
	"net/netip"
	"testing"
)

func TestBroadcast(t *testing.T) {
	for _, tc := range []struct{ prefix, want string }{
		{"172.18.0.0/16", "172.18.255.255"},
		{"172.18.3.4/16", "172.18.255.255"},
		{"10.1.2.0/24", "10.1.2.255"},
		{"10.1.2.4/30", "10.1.2.7"},
		{"0.0.0.0/0", "255.255.255.255"},
		{"10.1.2.4/31", "invalid IP"},
		{"10.1.2.4/32", "invalid IP"},
		{"fd00::/64", "invalid IP"},
	} {
		if got := Broadcast(netip.MustParsePrefix(tc.prefix)).String(); got != tc.want {
			t.Errorf("Broadcast(%s) = %s, want %s", tc.prefix, got, tc.want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, s := range []string{"0.0.0.0", "172.18.0.5", "255.255.255.255"} {
		a := netip.MustParseAddr(s)
		if got := From(Uint32(a)); got != a {
			t.Errorf("From(Uint32(%s)) = %s", s, got)
		}
	}
}
