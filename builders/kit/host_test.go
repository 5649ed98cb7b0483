package kit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// needNetns skips the test unless it may make network and mount
// namespaces (root and unshare).
func needNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	return need(t, "unshare")
}

// TestLauncherBridge runs the kit as a user would in bridge mode, in a
// network namespace of its own with the bridge made there and the kit's
// bridge.conf as /etc/qemu/bridge.conf (an overlay on /etc, seen only
// inside): run-qemu start for a UEFI and a BIOS machine (QEMU started
// paused, -S), checks over QMP, then run-qemu stop, which presses the
// power button over QMP (socat) and, the paused guest not reacting, quits
// QEMU.
func TestLauncherBridge(t *testing.T) {
	unshare := needNetns(t)
	need(t, "socat")
	need(t, "ip")
	if _, err := os.Stat("/usr/lib/qemu/qemu-bridge-helper"); err != nil {
		t.Skipf("qemu-bridge-helper: %v", err)
	}
	lab := realLab(t, ModeBridge)
	kit := t.TempDir()
	files := writeKit(t, lab, kit)
	ns := t.TempDir()
	for _, d := range []string{"up/qemu", "work"} {
		if err := os.MkdirAll(filepath.Join(ns, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(ns, "up/qemu/bridge.conf"), files["bridge.conf"], 0o644); err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(ns, "qemu")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nexec "+QEMU+" \"$@\" -S\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	machines := []Machine{lab.Machines[0], lab.Machines[2]} // UEFI, BIOS
	script := fmt.Sprintf(`set -e
mount -t overlay overlay -o lowerdir=/etc,upperdir=%[1]s/up,workdir=%[1]s/work /etc
ip link set lo up
ip link add %[2]s type bridge
ip addr add %[3]s dev %[2]s
ip link set %[2]s up
for m in %[4]s %[5]s; do LB_QEMU=%[6]s %[7]s/run-qemu start "$m"; done
`, ns, lab.Network.Bridge, fmt.Sprintf("%s/%d", lab.Network.Gateway, lab.Network.CIDR.Bits()),
		machines[0].Name, machines[1].Name, wrapper, kit)
	for _, m := range machines {
		killAtEnd(t, lab, m)
	}
	run(t, []string{"PATH=" + os.Getenv("PATH")}, unshare, "-m", "-n", "--propagation", "private", "bash", "-c", script)

	again := exec.Command(filepath.Join(kit, Launcher), "start", machines[0].Name)
	again.Env = []string{"PATH=" + os.Getenv("PATH"), "LB_QEMU=" + wrapper}
	if out, err := again.CombinedOutput(); err == nil || !strings.Contains(string(out), "is already running") {
		t.Errorf("run-qemu start of a running machine: %v %s", err, out)
	}

	for _, m := range machines {
		t.Run(m.Firmware, func(t *testing.T) {
			checkRunning(t, lab, m)
			p := RunPaths(m, lab.Host)
			if _, err := os.Stat(p.Console); err != nil {
				t.Errorf("no console socket: %v", err)
			}
			// As systemd runs it: the env file as the environment, with a
			// shorter wait for the power-off.
			env := append([]string{"PATH=" + os.Getenv("PATH")}, envOf(t, filepath.Join(kit, "vm", m.Name+".env"))...)
			env = append(env, "LB_STOP_TIMEOUT=1")
			start := time.Now()
			_, stderr := run(t, env, filepath.Join(kit, Launcher), "stop", m.Name)
			if !strings.Contains(stderr, "did not power off in 1 s: quitting QEMU") {
				t.Errorf("run-qemu stop said %q, want that it quit QEMU after the power button", stderr)
			}
			if _, err := os.Stat(p.PID); !os.IsNotExist(err) {
				t.Errorf("run-qemu stop returned with QEMU still running (%s: %v)", p.PID, err)
			}
			t.Logf("run-qemu stop took %v", time.Since(start).Round(time.Millisecond))
			checkDiscarded(t, m)
			// Stopping a stopped machine is no error.
			if _, stderr := run(t, env, filepath.Join(kit, Launcher), "stop", m.Name); !strings.Contains(stderr, "is not running") {
				t.Errorf("second run-qemu stop said %q", stderr)
			}
		})
	}
}

// TestDnsmasq has dnsmasq check the configuration, then runs it with the
// options of labbake-dnsmasq.service on a bridge in a network namespace
// and asks it for the machines' names (TestDNSHelper, run inside).
func TestDnsmasq(t *testing.T) {
	dnsmasq := need(t, "dnsmasq")
	lab := goldenLab(ModeBridge)
	dir := t.TempDir()
	writeKit(t, lab, dir)
	conf := filepath.Join(dir, "dnsmasq.conf")
	stdout, stderr := run(t, nil, dnsmasq, "--test", "--conf-file="+conf)
	if out := stdout + stderr; !strings.Contains(out, "syntax check OK") {
		t.Errorf("dnsmasq --test: %s", out)
	}

	unshare := needNetns(t)
	need(t, "ip")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	os.Chmod(state, 0o777) // dnsmasq runs as its own user
	script := fmt.Sprintf(`set -e
ip link set lo up
ip link add %[1]s type bridge
ip addr add %[2]s dev %[1]s
ip link set %[1]s up
%[3]s --keep-in-foreground --conf-file=%[4]s --pid-file --dhcp-leasefile=%[5]s/leases --log-facility=- 2>%[5]s/log &
pid=$!
trap 'kill $pid' EXIT
for i in 1 2 3 4 5 6 7 8 9 10; do
	if KIT_DNS_HELPER=%[6]s %[7]s -test.run='^TestDNSHelper$' -test.v >%[5]s/answers 2>&1; then exit 0; fi
	sleep 0.5
done
exit 1
`, lab.Network.Bridge, fmt.Sprintf("%s/%d", lab.Network.Gateway, lab.Network.CIDR.Bits()),
		dnsmasq, conf, state, lab.Network.Gateway, self)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, unshare, "-n", "bash", "-c", script)
	res, runErr := c.CombinedOutput()
	log, _ := os.ReadFile(filepath.Join(state, "log"))
	answers, _ := os.ReadFile(filepath.Join(state, "answers"))
	if runErr != nil {
		t.Fatalf("dnsmasq in a network namespace: %v\n%s\nanswers:\n%s\ndnsmasq:\n%s", runErr, res, answers, log)
	}
	for _, want := range []string{
		"DHCP, IP range 172.18.100.188 -- 172.18.255.254, lease time 12h",
		"using only locally-known addresses for mylab.internal",
	} {
		if !strings.Contains(string(log), want) {
			t.Errorf("dnsmasq did not say %q:\n%s", want, log)
		}
	}
	for _, m := range lab.Machines {
		if want := fmt.Sprintf("ANSWER %s.%s %s", m.Name, lab.Network.Domain, m.IP); !strings.Contains(string(answers), want) {
			t.Errorf("no %q in:\n%s", want, answers)
		}
	}
	if !strings.Contains(string(answers), "ANSWER nothing.mylab.internal not found") {
		t.Errorf("a name of the lab's domain that no machine has was not refused:\n%s", answers)
	}
}

// TestDNSHelper runs inside TestDnsmasq's network namespace: it asks the
// DNS server named by KIT_DNS_HELPER for the lab's names.
func TestDNSHelper(t *testing.T) {
	server := os.Getenv("KIT_DNS_HELPER")
	if server == "" {
		t.Skip("run by TestDnsmasq")
	}
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(server, "53"))
	}}
	lab := goldenLab(ModeBridge)
	names := []string{"nothing." + lab.Network.Domain}
	for _, m := range lab.Machines {
		names = append(names, m.Name+"."+lab.Network.Domain)
	}
	for _, name := range names {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		addrs, err := r.LookupHost(ctx, name)
		cancel()
		var dnsErr *net.DNSError
		switch {
		case err == nil:
			fmt.Printf("ANSWER %s %s\n", name, strings.Join(addrs, " "))
		case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
			fmt.Printf("ANSWER %s not found\n", name)
		default:
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// TestNetworkd runs systemd-networkd with the kit's bridge files (and its
// networkd.conf drop-in) in mount and network namespaces of its own, /sys
// read-only so that it does not wait for udev, and checks the bridge it
// makes: kind, address, up without a carrier. systemd before 256 does not
// know IPv4Forwarding=: there it must be the only complaint; from 256 on,
// forwarding must be on.
func TestNetworkd(t *testing.T) {
	unshare := needNetns(t)
	need(t, "ip")
	networkd := ""
	for _, p := range []string{"/usr/lib/systemd/systemd-networkd", "/lib/systemd/systemd-networkd"} {
		if _, err := os.Stat(p); err == nil {
			networkd = p
			break
		}
	}
	if networkd == "" {
		t.Skip("systemd-networkd is not installed")
	}
	lab := goldenLab(ModeBridge)
	dir := t.TempDir()
	writeKit(t, lab, dir)
	br := lab.Network.Bridge
	script := fmt.Sprintf(`set -e
mount -t tmpfs tmpfs /run
mount -t sysfs -o ro sysfs /sys
mkdir -p /run/systemd/network /run/systemd/netif /run/systemd/networkd.conf.d
chown systemd-network: /run/systemd/netif
cp %[1]s/%[2]s.netdev %[1]s/%[2]s.network /run/systemd/network/
cp %[1]s/labbake-networkd.conf /run/systemd/networkd.conf.d/labbake.conf
ip link set lo up
SYSTEMD_LOG_LEVEL=debug %[3]s >%[1]s/networkd.log 2>&1 &
pid=$!
trap 'kill $pid' EXIT
for i in $(seq 50); do
	if ip -4 -o addr show dev %[2]s 2>/dev/null | grep -q inet; then break; fi
	sleep 0.1
done
ip -d -o link show %[2]s
ip -4 -o addr show dev %[2]s
echo "forwarding all=$(cat /proc/sys/net/ipv4/conf/all/forwarding) %[2]s=$(cat /proc/sys/net/ipv4/conf/%[2]s/forwarding)"
`, dir, br, networkd)
	out, _ := run(t, nil, unshare, "-m", "-n", "--propagation", "private", "bash", "-c", script)
	logb, _ := os.ReadFile(filepath.Join(dir, "networkd.log"))
	log := string(logb)
	if !strings.Contains(out, "bridge forward_delay") || !strings.Contains(out, "<NO-CARRIER,BROADCAST,MULTICAST,UP>") {
		t.Errorf("no bridge %s, up without carrier:\n%s\nnetworkd:\n%s", br, out, log)
	}
	if want := fmt.Sprintf("inet %s/%d", lab.Network.Gateway, lab.Network.CIDR.Bits()); !strings.Contains(out, want) {
		t.Errorf("%s has not %s:\n%s\nnetworkd:\n%s", br, want, out, log)
	}
	var complaints []string
	for _, line := range strings.Split(log, "\n") {
		if (strings.Contains(line, "/run/systemd/network") || strings.Contains(line, "networkd.conf")) &&
			(strings.Contains(line, "Unknown") || strings.Contains(line, "Failed") || strings.Contains(line, "deprecated") || strings.Contains(line, "ignoring")) {
			complaints = append(complaints, line)
		}
	}
	version := systemdVersion(t)
	for _, c := range complaints {
		if version >= 256 || !strings.Contains(c, "Unknown key 'IPv4Forwarding'") {
			t.Errorf("systemd-networkd %d complained: %s", version, c)
		}
	}
	if version >= 256 && !strings.Contains(out, "forwarding all=1 "+br+"=1") {
		t.Errorf("systemd-networkd %d did not turn on forwarding: %s", version, out)
	}
	t.Logf("systemd %d; %d complaints about IPv4Forwarding=", version, len(complaints))
}

// systemdVersion returns the version of the installed systemd.
func systemdVersion(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("systemctl", "--version").Output()
	if err != nil {
		t.Skipf("systemctl --version: %v", err)
	}
	var v int
	fmt.Sscanf(string(out), "systemd %d", &v)
	return v
}
