package kit

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"
	"text/template"

	"github.com/labbake/labbake/internal/ipv4"
	"github.com/labbake/labbake/internal/macaddr"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

var templates = template.Must(template.New("kit").Option("missingkey=error").ParseFS(templateFS, "templates/*.tmpl"))

// KitDir is where the user installs the launcher and the env files,
// relative to the home directory; qemu@.service names it as %h/KitDir.
const KitDir = ".config/labbake"

// Launcher is the kit's launcher script, the one executable file.
const Launcher = "run-qemu"

// FileMode is the mode a kit file is installed with.
func FileMode(name string) fs.FileMode {
	if name == Launcher {
		return 0o755
	}
	return 0o644
}

// machineData is a machine as the templates see it.
type machineData struct {
	Machine
	MAC     string
	SSHHost string
	Port    int // the ssh port, 0 for the default
}

// data is what the templates see.
type data struct {
	Lab            Lab
	Bridge, UEFI   bool
	Machines       []machineData
	User           string
	GatewayPrefix  netip.Prefix
	DHCPStart      netip.Addr
	DHCPEnd        netip.Addr
	Netmask        netip.Addr
	KitDir         string // as qemu@.service names it
	ShellKitDir    string // as the README's commands name it
	QEMU           string
	Args           string // the launcher's QEMU command line
	StopTimeout    int
	TimeoutStopSec int
	Underline      string
}

// Render returns every file of the host kit by its path in the kit
// directory (slash-separated):
//
//   - README: which file goes where, in what order
//   - run-qemu: the launcher (bash), its QEMU command line made from the
//     same data as QEMUArgs'
//   - vm/NAME.env: each machine's settings
//   - qemu@.service: the systemd user unit running the launcher
//   - ssh_config: one Host per machine
//
// and in bridge mode the host network, installed by root:
//
//   - BRIDGE.netdev, BRIDGE.network: systemd-networkd's bridge and address
//   - labbake-networkd.conf: IPv4 forwarding (networkd.conf.d drop-in)
//   - nftables.nft, labbake-nat.service: NAT in a table of its own
//   - dnsmasq.conf, labbake-dnsmasq.service: DHCP and DNS on the bridge
//   - bridge.conf: lets qemu-bridge-helper use the bridge
//
// The output depends on lab only. It fails if lab does not pass Validate.
func Render(lab Lab) (map[string][]byte, error) {
	if err := lab.Validate(); err != nil {
		return nil, fmt.Errorf("kit: %w", err)
	}
	n := lab.Network
	d := data{
		Lab:            lab,
		Bridge:         n.Mode == ModeBridge,
		User:           lab.SSH.User,
		GatewayPrefix:  netip.PrefixFrom(n.Gateway, n.CIDR.Bits()),
		Netmask:        netmask(n.CIDR.Bits()),
		KitDir:         "%h/" + KitDir,
		ShellKitDir:    "~/" + KitDir,
		QEMU:           QEMU,
		Args:           shellArgs("\t"),
		StopTimeout:    StopTimeout,
		TimeoutStopSec: StopTimeout + 30,
		Underline:      strings.Repeat("=", len("labbake kit of the lab "+lab.Name)),
	}
	if d.User == "" {
		d.User = "root"
	}
	d.DHCPStart, d.DHCPEnd, _ = dhcpRange(lab)
	for _, m := range lab.Machines {
		md := machineData{Machine: m, MAC: macaddr.String(m.Name), SSHHost: m.IP.String()}
		if !d.Bridge {
			md.SSHHost, md.Port = "127.0.0.1", m.SSHPort
		}
		d.Machines = append(d.Machines, md)
		d.UEFI = d.UEFI || m.Firmware == FirmwareUEFI
	}

	files := map[string]string{
		"README":        "README.tmpl",
		Launcher:        "run-qemu.tmpl",
		"qemu@.service": "qemu@.service.tmpl",
		"ssh_config":    "ssh_config.tmpl",
	}
	if d.Bridge {
		files[n.Bridge+".netdev"] = "netdev.tmpl"
		files[n.Bridge+".network"] = "network.tmpl"
		files["labbake-networkd.conf"] = "networkd.conf.tmpl"
		files["nftables.nft"] = "nftables.nft.tmpl"
		files["labbake-nat.service"] = "labbake-nat.service.tmpl"
		files["dnsmasq.conf"] = "dnsmasq.conf.tmpl"
		files["labbake-dnsmasq.service"] = "labbake-dnsmasq.service.tmpl"
		files["bridge.conf"] = "bridge.conf.tmpl"
	}
	out := make(map[string][]byte, len(files)+len(lab.Machines))
	for name, tmpl := range files {
		var b bytes.Buffer
		if err := templates.ExecuteTemplate(&b, tmpl, d); err != nil {
			return nil, fmt.Errorf("kit: %s: %w", name, err)
		}
		out[name] = b.Bytes()
	}
	for _, m := range lab.Machines {
		out["vm/"+m.Name+".env"] = envFile(lab, m)
	}
	return out, nil
}

// netmask returns the IPv4 netmask of a prefix length.
func netmask(bits int) netip.Addr {
	return ipv4.From(^uint32(0) << (32 - bits))
}
