package kit

import (
	"net/netip"
	"slices"

	"github.com/labbake/labbake/internal/ipv4"
)

// usable reports whether a is a host address of p: inside it, neither its
// network nor its broadcast address.
func usable(p netip.Prefix, a netip.Addr) bool {
	return a.IsValid() && a.Is4() && p.Contains(a) && a != p.Addr() && a != ipv4.Broadcast(p)
}

// dhcpRange returns the longest run of host addresses of the lab network
// that are neither the gateway nor a machine's (the first, if several are
// as long): dnsmasq's dynamic range, so a lease can never take a
// machine's address.
func dhcpRange(l Lab) (start, end netip.Addr, ok bool) {
	p := l.Network.CIDR
	taken := []uint32{ipv4.Uint32(p.Addr()), ipv4.Uint32(l.Network.Gateway)}
	if b := ipv4.Broadcast(p); b.IsValid() { // a /31 has none
		taken = append(taken, ipv4.Uint32(b))
	}
	for _, m := range l.Machines {
		if p.Contains(m.IP) {
			taken = append(taken, ipv4.Uint32(m.IP))
		}
	}
	slices.Sort(taken)
	taken = slices.Compact(taken)
	var best, bestLen uint32
	for i := 1; i < len(taken); i++ {
		if n := taken[i] - taken[i-1] - 1; n > bestLen {
			best, bestLen = taken[i-1]+1, n
		}
	}
	if bestLen == 0 {
		return netip.Addr{}, netip.Addr{}, false
	}
	return ipv4.From(best), ipv4.From(best + bestLen - 1), true
}
