package kit

import (
	"net/netip"
	"slices"
)

// usable reports whether a is a host address of p: inside it, neither its
// network nor its broadcast address.
func usable(p netip.Prefix, a netip.Addr) bool {
	return a.IsValid() && a.Is4() && p.Contains(a) && a != p.Addr() && a != broadcast(p)
}

// broadcast returns the last address of an IPv4 prefix.
func broadcast(p netip.Prefix) netip.Addr {
	return addr4(ip4(p.Addr()) | (uint32(1)<<(32-p.Bits()) - 1))
}

// ip4 returns a as a uint32.
func ip4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// addr4 returns the IPv4 address v.
func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// dhcpRange returns the longest run of host addresses of the lab network
// that are neither the gateway nor a machine's (the first, if several are
// as long): dnsmasq's dynamic range, so a lease can never take a
// machine's address.
func dhcpRange(l Lab) (start, end netip.Addr, ok bool) {
	p := l.Network.CIDR
	taken := []uint32{ip4(p.Addr()), ip4(broadcast(p)), ip4(l.Network.Gateway)}
	for _, m := range l.Machines {
		if p.Contains(m.IP) {
			taken = append(taken, ip4(m.IP))
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
	return addr4(best), addr4(best + bestLen - 1), true
}
