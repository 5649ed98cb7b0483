package kit

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/labbake/labbake/builders/boot"
	"github.com/labbake/labbake/internal/macaddr"
)

// Network modes.
const (
	// ModeBridge puts every machine's NIC on a host bridge (qemu-bridge-helper),
	// as the original lab did: the host routes and NATs the lab, dnsmasq gives
	// out the addresses. Needs root once to set up the host (the kit files).
	ModeBridge = "bridge"
	// ModeUser needs no root: the machines share an L2 segment carried by a
	// UDP multicast group on 127.0.0.1, and each has a second, user-mode NIC
	// (QEMU's slirp) for the way out and for host ports forwarded to it.
	ModeUser = "user"
)

// Firmwares and accelerators. A machine's firmware is the boot method its
// image was baked for (the manifest's boot.methods): the same names.
const (
	FirmwareUEFI = boot.UEFI
	FirmwareBIOS = boot.BIOS
	AccelKVM     = "kvm"
	AccelTCG     = "tcg"
)

// Machine is one VM of the lab.
type Machine struct {
	Name      string     // host name, also the systemd instance (qemu@NAME) and the MAC's source
	Role      string     // the image's role (master, node); informational
	IP        netip.Addr // address on the lab network
	CPUs      int
	MemoryMiB int64
	Image     string // the role's baked qcow2 image (backing file of Overlay)
	Overlay   string // this machine's thin qcow2 overlay; made by the launcher if missing
	Seed      string // this machine's NoCloud seed ISO
	Firmware  string // FirmwareUEFI or FirmwareBIOS
	// Vars is the machine's writable copy of Host.OVMFVars (UEFI only);
	// empty means beside Overlay, see VarsPath.
	Vars string
	// SSHPort is the host port (on 127.0.0.1) forwarded to the guest's 22 in
	// user mode.
	SSHPort int
	// Forwards are more host→guest TCP ports in user mode (6443 on the
	// master, NodePorts), also bound to 127.0.0.1 only.
	Forwards []Forward
}

// Forward is a TCP port of the host's 127.0.0.1 forwarded to a guest port.
type Forward struct {
	HostPort, GuestPort int
}

// Network is the lab network.
type Network struct {
	Mode    string // ModeBridge or ModeUser
	Bridge  string // bridge mode: the host bridge, e.g. qemu0
	CIDR    netip.Prefix
	Gateway netip.Addr // bridge mode: the host's address on the bridge
	Domain  string     // DNS domain of the machines, e.g. mylab.internal
	// McastGroup is the L2 segment in user mode: an IPv4 multicast group
	// and port (e.g. 230.0.0.1:5555), sent and received on 127.0.0.1.
	McastGroup string
	// Restrict isolates the user-mode NIC (QEMU's restrict=on): the guest
	// reaches no outside address, forwarded host ports still work. Tests
	// use it; a lab that must reach a mirror does not.
	Restrict bool
}

// Host is where QEMU runs.
type Host struct {
	Accel    string // AccelKVM or AccelTCG
	OVMFCode string // UEFI firmware code, read-only (e.g. /usr/share/OVMF/OVMF_CODE_4M.fd)
	OVMFVars string // UEFI variable store template, copied per machine
	RunDir   string // QMP and console sockets, console logs, pid files
}

// SSH is how the host's user logs in to the machines (ssh_config).
type SSH struct {
	User           string // empty means root
	IdentityFile   string // the private key whose public key the seeds authorize
	KnownHostsFile string // the machines' host keys, each line naming its machine (HostKeyAlias)
}

// Lab is everything Render needs.
type Lab struct {
	Name     string // the lab's name, in comments and the README
	Machines []Machine
	Network  Network
	Host     Host
	SSH      SSH
}

// UplinkMAC returns the MAC address of a machine's user-mode NIC: 52:55:
// followed by the CRC32 of name, like the lab NIC's (macaddr.String) but
// with 0x55 as the second byte, so the two can never be equal. Both are
// locally administered unicast addresses. The seeds match the NIC by it.
func UplinkMAC(name string) string { return macaddr.UplinkString(name) }

// VarsPath is where a UEFI machine's variable store lives: m.Vars, or
// Overlay with its extension replaced by ".vars.fd".
func (m Machine) VarsPath() string {
	if m.Vars != "" {
		return m.Vars
	}
	return strings.TrimSuffix(m.Overlay, filepath.Ext(m.Overlay)) + ".vars.fd"
}

// Paths are the files QEMU makes for a running machine.
type Paths struct {
	QMP     string // QMP socket (unix, server)
	Console string // serial console socket (unix, server)
	Log     string // everything the serial console printed since QEMU started
	PID     string // QEMU's pid file; QEMU removes it when it exits
}

// RunPaths returns m's files in h.RunDir.
func RunPaths(m Machine, h Host) Paths {
	p := func(ext string) string { return filepath.Join(h.RunDir, m.Name+ext) }
	return Paths{QMP: p(".qmp"), Console: p(".console"), Log: p(".log"), PID: p(".pid")}
}

// maxSocketPath is the longest path of a unix socket (sun_path less its
// terminating NUL).
const maxSocketPath = 107

var (
	// hostname is one DNS label: the machine's name goes into DNS, DHCP,
	// ssh_config and a systemd instance name.
	hostname = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	domain   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
	ifname   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
	// safePath is what a path may hold so that it needs no quoting in a
	// QEMU option (no comma), an env file read by both systemd and bash, a
	// systemd unit (no %) or an ssh_config (no space).
	safePath = regexp.MustCompile(`^/[A-Za-z0-9._/+@-]*$`)
	// slirpNet is the network QEMU's user-mode NIC uses by default.
	slirpNet = netip.MustParsePrefix("10.0.2.0/24")
)

// Validate reports every problem of the lab at once, each naming its field.
// QEMUArgs and Render expect a lab that passes it.
func (l Lab) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	path := func(field, p string) {
		switch {
		case p == "":
			bad(field, "missing")
		case !safePath.MatchString(p):
			bad(field, "%q must be an absolute path of letters, digits and . _ / + @ -", p)
		case filepath.Clean(p) != p:
			bad(field, "%q is not a clean path (want %q)", p, filepath.Clean(p))
		}
	}

	n := l.Network
	switch n.Mode {
	case ModeBridge:
		if !ifname.MatchString(n.Bridge) {
			bad("network.bridge", "%q is not an interface name (1-15 of A-Z a-z 0-9 _ . -)", n.Bridge)
		}
	case ModeUser:
		g, err := netip.ParseAddrPort(n.McastGroup)
		if err != nil || !g.Addr().Is4() || !g.Addr().IsMulticast() || g.Port() == 0 {
			bad("network.mcastGroup", "%q must be an IPv4 multicast group and port, e.g. 230.0.0.1:5555", n.McastGroup)
		}
		if n.CIDR.IsValid() && n.CIDR.Overlaps(slirpNet) {
			bad("network.cidr", "%s overlaps %s, the user-mode NIC's network", n.CIDR, slirpNet)
		}
	default:
		bad("network.mode", "%q must be %q or %q", n.Mode, ModeBridge, ModeUser)
	}
	if !n.CIDR.IsValid() || !n.CIDR.Addr().Is4() || n.CIDR.Bits() > 30 || n.CIDR.Masked() != n.CIDR {
		bad("network.cidr", "%q must be an IPv4 network of at least 4 addresses, e.g. 172.18.0.0/16", n.CIDR)
	} else if !usable(n.CIDR, n.Gateway) {
		bad("network.gateway", "%s is not a host address of %s", n.Gateway, n.CIDR)
	}
	if !domain.MatchString(n.Domain) {
		bad("network.domain", "%q is not a DNS domain (lower-case labels)", n.Domain)
	}

	h := l.Host
	if h.Accel != AccelKVM && h.Accel != AccelTCG {
		bad("host.accel", "%q must be %q or %q", h.Accel, AccelKVM, AccelTCG)
	}
	path("host.runDir", h.RunDir)
	uefi := false
	for _, m := range l.Machines {
		uefi = uefi || m.Firmware == FirmwareUEFI
	}
	if uefi {
		path("host.ovmfCode", h.OVMFCode)
		path("host.ovmfVars", h.OVMFVars)
	}
	if l.SSH.User != "" && !hostname.MatchString(l.SSH.User) {
		bad("ssh.user", "%q is not a plain user name", l.SSH.User)
	}
	path("ssh.identityFile", l.SSH.IdentityFile)
	path("ssh.knownHostsFile", l.SSH.KnownHostsFile)

	if len(l.Machines) == 0 {
		bad("machines", "none")
	}
	names := map[string]int{}
	ips := map[netip.Addr]string{}
	ports := map[int]string{}
	port := func(field, owner string, p int) {
		if p < 1 || p > 65535 {
			bad(field, "%d is not a TCP port", p)
			return
		}
		if other, ok := ports[p]; ok {
			bad(field, "host port %d is also %s", p, other)
			return
		}
		ports[p] = owner
	}
	var nameList []string
	for i, m := range l.Machines {
		f := func(name string) string { return fmt.Sprintf("machines[%d].%s", i, name) }
		if !hostname.MatchString(m.Name) {
			bad(f("name"), "%q is not a host name (lower-case letters, digits, inner -)", m.Name)
		} else if j, ok := names[m.Name]; ok {
			bad(f("name"), "%q is also machines[%d]", m.Name, j)
		} else {
			names[m.Name] = i
			nameList = append(nameList, m.Name)
		}
		if n.CIDR.IsValid() && !usable(n.CIDR, m.IP) {
			bad(f("ip"), "%s is not a host address of %s", m.IP, n.CIDR)
		} else if m.IP == n.Gateway && n.Mode == ModeBridge {
			bad(f("ip"), "%s is the gateway", m.IP)
		} else if other, ok := ips[m.IP]; ok {
			bad(f("ip"), "%s is also %s's", m.IP, other)
		} else {
			ips[m.IP] = m.Name
		}
		if m.CPUs < 1 || m.CPUs > 255 {
			bad(f("cpus"), "%d is not 1 to 255", m.CPUs)
		}
		if m.MemoryMiB < 128 {
			bad(f("memoryMiB"), "%d is less than 128", m.MemoryMiB)
		}
		path(f("image"), m.Image)
		path(f("overlay"), m.Overlay)
		path(f("seed"), m.Seed)
		switch m.Firmware {
		case FirmwareUEFI:
			path(f("vars"), m.VarsPath())
		case FirmwareBIOS:
		default:
			bad(f("firmware"), "%q must be %q or %q", m.Firmware, FirmwareUEFI, FirmwareBIOS)
		}
		if p := RunPaths(m, h); len(p.Console) > maxSocketPath || len(p.QMP) > maxSocketPath {
			bad("host.runDir", "%s is too long for %s's sockets (%s: %d bytes, a unix socket path has at most %d)", h.RunDir, m.Name, p.Console, len(p.Console), maxSocketPath)
		}
		if m.Overlay != "" && m.Overlay == m.Image {
			bad(f("overlay"), "is the image itself")
		}
		if n.Mode == ModeUser {
			port(f("sshPort"), m.Name+"'s ssh port", m.SSHPort)
			for j, fw := range m.Forwards {
				port(f(fmt.Sprintf("forwards[%d].hostPort", j)), m.Name+"'s forward to "+strconv.Itoa(fw.GuestPort), fw.HostPort)
				if fw.GuestPort < 1 || fw.GuestPort > 65535 {
					bad(f(fmt.Sprintf("forwards[%d].guestPort", j)), "%d is not a TCP port", fw.GuestPort)
				}
			}
		}
	}
	for _, c := range macaddr.Collisions(nameList) {
		errs = append(errs, fmt.Errorf("machines: %w", c))
	}
	if l.Network.Mode == ModeBridge && len(errs) == 0 {
		if _, _, ok := dhcpRange(l); !ok {
			bad("network.cidr", "%s has no address left for DHCP beside the gateway and the machines", n.CIDR)
		}
	}
	return errors.Join(errs...)
}
