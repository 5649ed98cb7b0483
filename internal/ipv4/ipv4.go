package ipv4

import "net/netip"

// Broadcast is the broadcast address of an IPv4 network with room for one
// (up to /30: a /31 has none, RFC 3021, nor has a /32), else the zero Addr.
func Broadcast(p netip.Prefix) netip.Addr {
	if !p.Addr().Is4() || p.Bits() > 30 {
		return netip.Addr{}
	}
	return From(Uint32(p.Masked().Addr()) | (1<<(32-p.Bits()) - 1))
}

// Uint32 is an IPv4 address as a number.
func Uint32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// From is the IPv4 address of a number.
func From(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
