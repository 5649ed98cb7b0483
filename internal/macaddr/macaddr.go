package macaddr

import (
	"fmt"
	"hash/crc32"
	"net"
)

// FromName returns 52:54: followed by the CRC32 (IEEE) of name, most
// significant byte first: the QEMU OUI prefix with the locally administered
// bit set, so it never clashes with a real NIC.
func FromName(name string) net.HardwareAddr {
	c := crc32.ChecksumIEEE([]byte(name))
	return net.HardwareAddr{0x52, 0x54, byte(c >> 24), byte(c >> 16), byte(c >> 8), byte(c)}
}

// String is FromName formatted as QEMU and cloud-init spell it
// (lower-case, colon separated).
func String(name string) string { return FromName(name).String() }

// Collision is two names that give the same MAC address.
type Collision struct {
	First, Second string
	MAC           string
}

func (c Collision) Error() string {
	return fmt.Sprintf("machines %q and %q have the same MAC address %s (CRC32 collision): rename one", c.First, c.Second, c.MAC)
}

// Collisions returns every name whose MAC equals that of an earlier name.
func Collisions(names []string) []Collision {
	seen := map[string]string{}
	var out []Collision
	for _, n := range names {
		m := String(n)
		if first, ok := seen[m]; ok && first != n {
			out = append(out, Collision{First: first, Second: n, MAC: m})
			continue
		}
		seen[m] = n
	}
	return out
}

// Uplink returns the MAC of a machine's second NIC, the user-mode uplink
// `labbake up` gives it when the lab runs without root: 52:55: and the
// same CRC32, so it never equals any machine's lab MAC (52:54:…).
func Uplink(name string) net.HardwareAddr {
	m := FromName(name)
	m[1] = 0x55
	return m
}

// UplinkString is Uplink formatted like String.
func UplinkString(name string) string { return Uplink(name).String() }
