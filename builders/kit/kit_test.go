package kit

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labbake/labbake/internal/macaddr"
)

// testLab is the original lab (master 172.18.100.187, node-one .122,
// node-two .123 on 172.18.0.0/16 behind qemu0), with its files under dir
// and its sockets under run. master and node-one boot with UEFI, node-two
// with BIOS.
func testLab(mode, dir, run string) Lab {
	m := func(name, role string, ip string, fw string, ssh int, fwd ...Forward) Machine {
		return Machine{
			Name: name, Role: role, IP: netip.MustParseAddr(ip), CPUs: 2, MemoryMiB: 2048,
			Image:    filepath.Join(dir, role+".qcow2"),
			Overlay:  filepath.Join(dir, "vm", name+".qcow2"),
			Seed:     filepath.Join(dir, "seed", name+".iso"),
			Firmware: fw, SSHPort: ssh, Forwards: fwd,
		}
	}
	return Lab{
		Name: "mylab",
		Machines: []Machine{
			m("master", "master", "172.18.100.187", FirmwareUEFI, 2201, Forward{6443, 6443}),
			m("node-one", "node", "172.18.100.122", FirmwareUEFI, 2202, Forward{30080, 30080}),
			m("node-two", "node", "172.18.100.123", FirmwareBIOS, 2203),
		},
		Network: Network{
			Mode: mode, Bridge: "qemu0",
			CIDR: netip.MustParsePrefix("172.18.0.0/16"), Gateway: netip.MustParseAddr("172.18.0.1"),
			Domain: "mylab.internal", McastGroup: "230.0.0.1:5555", Restrict: true,
		},
		Host: Host{
			Accel:    AccelTCG,
			OVMFCode: "/usr/share/OVMF/OVMF_CODE_4M.fd", OVMFVars: "/usr/share/OVMF/OVMF_VARS_4M.fd",
			RunDir: run,
		},
		SSH: SSH{IdentityFile: filepath.Join(dir, "pki/id_ed25519"), KnownHostsFile: filepath.Join(dir, "pki/known_hosts")},
	}
}

// goldenLab is testLab with fixed paths, for golden files.
func goldenLab(mode string) Lab { return testLab(mode, "/srv/labbake/mylab", "/run/user/1000/labbake") }

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mode  string
		edit  func(*Lab)
		wants []string // each must be in the error; none: valid
	}{
		{name: "bridge", mode: ModeBridge, edit: func(*Lab) {}},
		{name: "user", mode: ModeUser, edit: func(*Lab) {}},
		{name: "bad mode", mode: "nat", edit: func(*Lab) {}, wants: []string{"network.mode"}},
		{name: "bridge name too long", mode: ModeBridge, edit: func(l *Lab) { l.Network.Bridge = "a-very-long-bridge" }, wants: []string{"network.bridge"}},
		{name: "mcast not multicast", mode: ModeUser, edit: func(l *Lab) { l.Network.McastGroup = "127.0.0.1:5555" }, wants: []string{"network.mcastGroup"}},
		{name: "mcast no port", mode: ModeUser, edit: func(l *Lab) { l.Network.McastGroup = "230.0.0.1" }, wants: []string{"network.mcastGroup"}},
		{name: "lab on slirp's network", mode: ModeUser, edit: func(l *Lab) {
			l.Network.CIDR = netip.MustParsePrefix("10.0.0.0/16")
			l.Network.Gateway = netip.MustParseAddr("10.0.0.1")
			for i := range l.Machines {
				l.Machines[i].IP = netip.MustParseAddr("10.0.9." + string(rune('1'+i)))
			}
		}, wants: []string{"network.cidr: 10.0.0.0/16 overlaps"}},
		{name: "cidr not masked", mode: ModeBridge, edit: func(l *Lab) { l.Network.CIDR = netip.MustParsePrefix("172.18.0.1/16") }, wants: []string{"network.cidr"}},
		{name: "ipv6", mode: ModeBridge, edit: func(l *Lab) { l.Network.CIDR = netip.MustParsePrefix("fd00::/64") }, wants: []string{"network.cidr"}},
		{name: "gateway outside", mode: ModeBridge, edit: func(l *Lab) { l.Network.Gateway = netip.MustParseAddr("172.19.0.1") }, wants: []string{"network.gateway"}},
		{name: "bad domain", mode: ModeBridge, edit: func(l *Lab) { l.Network.Domain = "My Lab" }, wants: []string{"network.domain"}},
		{name: "accel", mode: ModeBridge, edit: func(l *Lab) { l.Host.Accel = "hvf" }, wants: []string{"host.accel"}},
		{name: "relative run dir", mode: ModeBridge, edit: func(l *Lab) { l.Host.RunDir = "run" }, wants: []string{"host.runDir"}},
		{name: "run dir too long for sockets", mode: ModeBridge, edit: func(l *Lab) { l.Host.RunDir = "/run/" + strings.Repeat("d", 90) }, wants: []string{"host.runDir: /run/ddd", "is too long for master's sockets", "node-one"}},
		{name: "comma in path", mode: ModeBridge, edit: func(l *Lab) { l.Machines[1].Seed = "/srv/a,b.iso" }, wants: []string{"machines[1].seed"}},
		{name: "space in path", mode: ModeBridge, edit: func(l *Lab) { l.SSH.IdentityFile = "/home/me/my key" }, wants: []string{"ssh.identityFile"}},
		{name: "unclean path", mode: ModeBridge, edit: func(l *Lab) { l.Machines[0].Image = "/srv/../etc/x" }, wants: []string{"machines[0].image"}},
		{name: "uefi without ovmf", mode: ModeBridge, edit: func(l *Lab) { l.Host.OVMFCode = "" }, wants: []string{"host.ovmfCode"}},
		{name: "bios needs no ovmf", mode: ModeBridge, edit: func(l *Lab) {
			l.Host.OVMFCode, l.Host.OVMFVars = "", ""
			for i := range l.Machines {
				l.Machines[i].Firmware = FirmwareBIOS
			}
		}},
		{name: "firmware", mode: ModeBridge, edit: func(l *Lab) { l.Machines[2].Firmware = "coreboot" }, wants: []string{"machines[2].firmware"}},
		{name: "no machines", mode: ModeBridge, edit: func(l *Lab) { l.Machines = nil }, wants: []string{"machines: none"}},
		{name: "name", mode: ModeBridge, edit: func(l *Lab) { l.Machines[0].Name = "Master_1" }, wants: []string{"machines[0].name"}},
		{name: "same name", mode: ModeBridge, edit: func(l *Lab) { l.Machines[2].Name = "master" }, wants: []string{`machines[2].name: "master" is also machines[0]`}},
		{name: "mac collision", mode: ModeBridge, edit: func(l *Lab) {
			l.Machines[0].Name, l.Machines[1].Name = "plumless", "buckeroo"
		}, wants: []string{"same MAC address"}},
		{name: "same ip", mode: ModeBridge, edit: func(l *Lab) { l.Machines[1].IP = l.Machines[0].IP }, wants: []string{"machines[1].ip: 172.18.100.187 is also master's"}},
		{name: "ip is gateway", mode: ModeBridge, edit: func(l *Lab) { l.Machines[1].IP = l.Network.Gateway }, wants: []string{"machines[1].ip: 172.18.0.1 is the gateway"}},
		{name: "ip is broadcast", mode: ModeBridge, edit: func(l *Lab) { l.Machines[1].IP = netip.MustParseAddr("172.18.255.255") }, wants: []string{"machines[1].ip"}},
		{name: "ip outside", mode: ModeBridge, edit: func(l *Lab) { l.Machines[1].IP = netip.MustParseAddr("10.1.1.1") }, wants: []string{"machines[1].ip"}},
		{name: "cpus and memory", mode: ModeBridge, edit: func(l *Lab) { l.Machines[0].CPUs, l.Machines[0].MemoryMiB = 0, 64 }, wants: []string{"machines[0].cpus", "machines[0].memoryMiB"}},
		{name: "overlay is image", mode: ModeBridge, edit: func(l *Lab) { l.Machines[0].Overlay = l.Machines[0].Image }, wants: []string{"machines[0].overlay: is the image"}},
		{name: "ports ignored in bridge mode", mode: ModeBridge, edit: func(l *Lab) { l.Machines[0].SSHPort = 0 }},
		{name: "no ssh port", mode: ModeUser, edit: func(l *Lab) { l.Machines[0].SSHPort = 0 }, wants: []string{"machines[0].sshPort: 0 is not a TCP port"}},
		{name: "same host port", mode: ModeUser, edit: func(l *Lab) { l.Machines[2].Forwards = []Forward{{6443, 443}} }, wants: []string{"machines[2].forwards[0].hostPort: host port 6443 is also master's forward to 6443"}},
		{name: "guest port", mode: ModeUser, edit: func(l *Lab) { l.Machines[2].Forwards = []Forward{{8443, 70000}} }, wants: []string{"machines[2].forwards[0].guestPort"}},
		{name: "ssh user", mode: ModeUser, edit: func(l *Lab) { l.SSH.User = "root; rm" }, wants: []string{"ssh.user"}},
		{name: "no room for dhcp", mode: ModeBridge, edit: func(l *Lab) {
			l.Network.CIDR = netip.MustParsePrefix("172.18.0.0/30")
			l.Machines = l.Machines[:1]
			l.Machines[0].IP = netip.MustParseAddr("172.18.0.2")
		}, wants: []string{"network.cidr: 172.18.0.0/30 has no address left for DHCP"}},
		{name: "several at once", mode: ModeBridge, edit: func(l *Lab) { l.Host.Accel, l.Network.Domain = "", "" }, wants: []string{"host.accel", "network.domain"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := goldenLab(tc.mode)
			tc.edit(&l)
			err := l.Validate()
			if len(tc.wants) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted the lab, want errors %q", tc.wants)
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v\nwant it to say %q", err, w)
				}
			}
			if _, rerr := Render(l); rerr == nil {
				t.Error("Render accepted a lab that Validate refuses")
			}
		})
	}
}

func TestUplinkMAC(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"master", "52:55:2d:09:a3:d6"},
		{"node-one", "52:55:c8:7f:cc:9d"},
		{"node-two", "52:55:a3:d9:c0:0a"},
	} {
		got := UplinkMAC(tc.name)
		if got != tc.want {
			t.Errorf("UplinkMAC(%q) = %s, want %s", tc.name, got, tc.want)
		}
		lab := macaddr.String(tc.name)
		if got == lab || got[5:] != lab[5:] {
			t.Errorf("UplinkMAC(%q) = %s, want the lab MAC %s with 55 as its second byte", tc.name, got, lab)
		}
	}
}

func TestDHCPRange(t *testing.T) {
	lab := func(cidr, gw string, ips ...string) Lab {
		l := Lab{Network: Network{CIDR: netip.MustParsePrefix(cidr), Gateway: netip.MustParseAddr(gw)}}
		for _, ip := range ips {
			l.Machines = append(l.Machines, Machine{IP: netip.MustParseAddr(ip)})
		}
		return l
	}
	for _, tc := range []struct {
		name       string
		lab        Lab
		start, end string // empty: none
	}{
		{"original lab", lab("172.18.0.0/16", "172.18.0.1", "172.18.100.187", "172.18.100.122", "172.18.100.123"), "172.18.100.188", "172.18.255.254"},
		{"machines at the top", lab("10.1.0.0/24", "10.1.0.1", "10.1.0.250", "10.1.0.254"), "10.1.0.2", "10.1.0.249"},
		{"gateway in the middle, tie takes the first", lab("10.1.0.0/29", "10.1.0.4"), "10.1.0.1", "10.1.0.3"},
		{"full", lab("10.1.0.0/30", "10.1.0.1", "10.1.0.2"), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start, end, ok := dhcpRange(tc.lab)
			if tc.start == "" {
				if ok {
					t.Fatalf("dhcpRange = %s-%s, want none", start, end)
				}
				return
			}
			if !ok || start.String() != tc.start || end.String() != tc.end {
				t.Fatalf("dhcpRange = %s-%s %v, want %s-%s", start, end, ok, tc.start, tc.end)
			}
		})
	}
}

func TestVarsPath(t *testing.T) {
	m := Machine{Overlay: "/srv/vm/master.qcow2"}
	if got := m.VarsPath(); got != "/srv/vm/master.vars.fd" {
		t.Errorf("VarsPath = %s", got)
	}
	m.Vars = "/var/lib/x.fd"
	if got := m.VarsPath(); got != "/var/lib/x.fd" {
		t.Errorf("VarsPath with Vars = %s", got)
	}
}
