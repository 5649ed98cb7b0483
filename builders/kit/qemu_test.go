package kit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labbake/labbake/internal/golden"
	"github.com/labbake/labbake/internal/macaddr"
)

func TestQEMUArgsGolden(t *testing.T) {
	for _, mode := range []string{ModeBridge, ModeUser} {
		lab := goldenLab(mode)
		for _, tc := range []struct {
			machine int
			accel   string
		}{{0, AccelTCG}, {0, AccelKVM}, {2, AccelTCG}} {
			m := lab.Machines[tc.machine]
			h := lab.Host
			h.Accel = tc.accel
			name := fmt.Sprintf("args/%s-%s-%s-%s", mode, m.Name, m.Firmware, tc.accel)
			t.Run(name, func(t *testing.T) {
				args := QEMUArgs(m, lab.Network, h)
				golden.Check(t, filepath.Join("testdata", name), []byte(strings.Join(args, "\n")+"\n"))
				has := func(s string) bool { return slices.Contains(args, s) }
				if has("-cpu") != (tc.accel == AccelKVM) {
					t.Errorf("-cpu host must come with KVM only: %q", args)
				}
				if (m.Firmware == FirmwareUEFI) != has("q35") || has("pc") == has("q35") {
					t.Errorf("machine type: UEFI is q35, BIOS pc: %q", args)
				}
				if has("-netdev") && (mode == ModeUser) != strings.Contains(strings.Join(args, " "), "user,id=up,restrict=on") {
					t.Errorf("the user-mode NIC is for user mode only: %q", args)
				}
			})
		}
	}
}

// TestCmdlineWords checks the table both QEMUArgs and the launcher are made
// from: every placeholder is a setting, and the literal text needs no
// quoting inside bash's double quotes.
func TestCmdlineWords(t *testing.T) {
	for _, g := range cmdline {
		for _, w := range g.words {
			for _, p := range placeholder.FindAllStringSubmatch(w, -1) {
				if !slices.ContainsFunc(settings, func(s setting) bool { return s.key == p[1] }) {
					t.Errorf("%q: no setting %q", w, p[1])
				}
			}
			if lit := placeholder.ReplaceAllString(w, ""); strings.ContainsAny(lit, "\"$`\\{}!") {
				t.Errorf("%q has text bash would not take literally", w)
			}
		}
		if g.when.key != "" && !slices.ContainsFunc(settings, func(s setting) bool { return s.key == g.when.key }) {
			t.Errorf("condition on unknown setting %q", g.when.key)
		}
	}
}

// realLab is testLab with its files in a temporary directory and free
// ports, the images made by qemu-img.
func realLab(t *testing.T, mode string) Lab {
	t.Helper()
	qemuImg := need(t, "qemu-img")
	need(t, QEMU)
	for _, f := range []string{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("OVMF is not installed: %v", err)
		}
	}
	dir := t.TempDir()
	// Sockets need short paths (108 bytes).
	run, err := os.MkdirTemp("", "kit")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	lab := testLab(mode, dir, filepath.Join(run, "run"))
	ports := freePorts(t, 5)
	lab.Network.McastGroup = fmt.Sprintf("230.0.0.1:%d", ports[0])
	for i := range lab.Machines {
		lab.Machines[i].SSHPort = ports[1+i]
	}
	lab.Machines[0].Forwards = []Forward{{ports[4], 6443}}
	lab.Machines[1].Forwards = nil
	for _, role := range []string{"master", "node"} {
		runCmd(t, nil, qemuImg, "create", "-q", "-f", "qcow2", filepath.Join(dir, role+".qcow2"), "64M")
	}
	if err := os.MkdirAll(filepath.Join(dir, "seed"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, m := range lab.Machines {
		if err := os.WriteFile(m.Seed, make([]byte, 64<<10), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := lab.Validate(); err != nil {
		t.Fatal(err)
	}
	return lab
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func runCmd(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, _ := run(t, env, name, args...)
	return out
}

// qmp is a test's QMP client.
type qmp struct {
	c net.Conn
	r *bufio.Reader
}

func dialQMP(t *testing.T, path string) *qmp {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("QMP: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	q := &qmp{c: c, r: bufio.NewReader(c)}
	greeting, err := q.r.ReadBytes('\n')
	if err != nil || !bytes.Contains(greeting, []byte(`"QMP"`)) {
		t.Fatalf("QMP greeting %q: %v", greeting, err)
	}
	q.do(t, "qmp_capabilities", nil)
	return q
}

// do runs a command and returns its result.
func (q *qmp) do(t *testing.T, cmd string, args any) json.RawMessage {
	t.Helper()
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if _, err := q.c.Write(append(b, '\n')); err != nil {
		t.Fatalf("QMP %s: %v", cmd, err)
	}
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("QMP %s: %v", cmd, err)
		}
		var resp struct {
			Return json.RawMessage
			Error  *struct{ Class, Desc string }
		}
		if err := json.Unmarshal(line, &resp); err != nil {
			t.Fatalf("QMP %s: %q: %v", cmd, line, err)
		}
		if resp.Error != nil {
			t.Fatalf("QMP %s: %s: %s", cmd, resp.Error.Class, resp.Error.Desc)
		}
		if resp.Return != nil {
			return resp.Return
		}
		// An event: read on.
	}
}

func (q *qmp) hmp(t *testing.T, line string) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(q.do(t, "human-monitor-command", map[string]string{"command-line": line}), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// killAtEnd kills the QEMU of m if it still runs when the test ends.
func killAtEnd(t *testing.T, lab Lab, m Machine) {
	pidfile := RunPaths(m, lab.Host).PID
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidfile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

// quitQEMU quits the QEMU of m over QMP and waits for it to exit.
func quitQEMU(t *testing.T, lab Lab, m Machine) {
	t.Helper()
	p := RunPaths(m, lab.Host)
	q := dialQMP(t, p.QMP)
	defer q.c.Close()
	q.do(t, "quit", nil)
	waitGone(t, p.PID)
}

// waitGone waits until QEMU removed its pid file, as it does on exit.
func waitGone(t *testing.T, pidfile string) {
	t.Helper()
	for range 100 {
		if _, err := os.Stat(pidfile); os.IsNotExist(err) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("QEMU did not exit (%s is still there)", pidfile)
}

// checkRunning checks, over QMP, a machine that QEMU started paused: its
// disks and NICs, and that it listens on no address but the loopback. It
// writes and discards the disk's first cluster: checkDiscarded checks the
// overlay once QEMU is gone.
func checkRunning(t *testing.T, lab Lab, m Machine) {
	t.Helper()
	p := RunPaths(m, lab.Host)
	q := dialQMP(t, p.QMP)
	defer q.c.Close()
	var status struct{ Status string }
	json.Unmarshal(q.do(t, "query-status", nil), &status)
	if status.Status != "prelaunch" {
		t.Errorf("status %q, want prelaunch (started with -S)", status.Status)
	}

	var blocks []struct {
		Device   string
		Inserted *struct {
			File        string
			RO          bool
			Drv         string
			Cache       struct{ Writeback, Direct bool }
			BackingFile string `json:"backing_file"`
		}
	}
	if err := json.Unmarshal(q.do(t, "query-block", nil), &blocks); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, b := range blocks {
		if b.Inserted != nil {
			i := b.Inserted
			got[b.Device] = fmt.Sprintf("%s %s ro=%v writeback=%v backing=%s", i.File, i.Drv, i.RO, i.Cache.Writeback, i.BackingFile)
		}
	}
	want := map[string]string{
		"disk0": fmt.Sprintf("%s qcow2 ro=false writeback=true backing=%s", m.Overlay, m.Image),
		"seed":  fmt.Sprintf("%s raw ro=true writeback=true backing=", m.Seed),
	}
	if m.Firmware == FirmwareUEFI {
		want["pflash0"] = lab.Host.OVMFCode + " raw ro=true writeback=true backing="
		want["pflash1"] = m.VarsPath() + " raw ro=false writeback=true backing="
	}
	for dev, w := range want {
		if got[dev] != w {
			t.Errorf("block device %s: %q, want %q", dev, got[dev], w)
		}
	}
	// discard=unmap: a cluster written then discarded through the disk
	// becomes a zero cluster of the overlay (with discard=ignore, QEMU's
	// default, it stays allocated).
	q.hmp(t, `qemu-io disk0 "write -P 0xaa 0 64k"`)
	q.hmp(t, `qemu-io disk0 "discard 0 64k"`)

	network := q.hmp(t, "info network")
	if !strings.Contains(network, "macaddr="+macaddr.String(m.Name)) {
		t.Errorf("info network lacks the lab NIC's MAC %s:\n%s", macaddr.String(m.Name), network)
	}
	switch lab.Network.Mode {
	case ModeUser:
		if !strings.Contains(network, "macaddr="+UplinkMAC(m.Name)) {
			t.Errorf("info network lacks the user-mode NIC's MAC %s:\n%s", UplinkMAC(m.Name), network)
		}
		if !strings.Contains(network, "mcast="+lab.Network.McastGroup) {
			t.Errorf("info network: the lab NIC is not on %s:\n%s", lab.Network.McastGroup, network)
		}
		usernet := q.hmp(t, "info usernet")
		ports := []int{m.SSHPort}
		for _, f := range m.Forwards {
			ports = append(ports, f.HostPort)
		}
		for _, port := range ports {
			if !regexp.MustCompile(`HOST_FORWARD\]\s+\d+\s+127\.0\.0\.1\s+` + strconv.Itoa(port) + `\s`).MatchString(usernet) {
				t.Errorf("info usernet: no forward from 127.0.0.1:%d:\n%s", port, usernet)
			}
		}
	case ModeBridge:
		if !strings.Contains(network, "br="+lab.Network.Bridge) {
			t.Errorf("info network: the lab NIC is not on the bridge %s:\n%s", lab.Network.Bridge, network)
		}
	}
	if l := nonLoopbackListeners(t); len(l) > 0 {
		t.Errorf("listening on non-loopback addresses: %q", l)
	}
}

// checkDiscarded checks the overlay of m after checkRunning discarded its
// first cluster.
func checkDiscarded(t *testing.T, m Machine) {
	t.Helper()
	var extents []struct {
		Start, Length int64
		Depth         int
		Zero, Data    bool
	}
	if err := json.Unmarshal([]byte(runCmd(t, nil, "qemu-img", "map", "--output=json", m.Overlay)), &extents); err != nil {
		t.Fatal(err)
	}
	if len(extents) == 0 || extents[0].Start != 0 || extents[0].Depth != 0 || !extents[0].Zero || extents[0].Data {
		t.Errorf("the discarded cluster is not a zero cluster of the overlay (discard=unmap): %+v", extents)
	}
}

// nonLoopbackListeners returns the sockets a QEMU process owns in this
// network namespace that listen on anything but the loopback: TCP
// listeners bound to anything but 127.0.0.0/8 or ::1, and UDP sockets
// bound to anything but those or a multicast group (user mode's lab
// segment: a group joined on 127.0.0.1 only).
func nonLoopbackListeners(t *testing.T) []string {
	t.Helper()
	inodes := map[string]bool{}
	procs, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, exe := range procs {
		if target, err := os.Readlink(exe); err != nil || filepath.Base(target) != QEMU {
			continue
		}
		fds, _ := filepath.Glob(filepath.Join(filepath.Dir(exe), "fd", "*"))
		for _, fd := range fds {
			if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "socket:[") {
				inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
			}
		}
	}
	var bad []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6", "/proc/net/udp", "/proc/net/udp6"} {
		udp := strings.Contains(f, "udp")
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			// TCP: listeners (0A); UDP: every bound socket (07) receives.
			if len(fields) < 10 || (!udp && fields[3] != "0A") || !inodes[fields[9]] {
				continue
			}
			// The address as the kernel prints it: each 32-bit word in
			// host (little-endian) order, so an IPv4 address's first
			// byte is its last two hex digits.
			addr := strings.Split(fields[1], ":")[0]
			loopback := strings.HasSuffix(addr, "7F") || addr == "00000000000000000000000001000000"
			multicast := udp && ((len(addr) == 8 && addr[6] == 'E') || (len(addr) == 32 && addr[6:8] == "FF"))
			if !loopback && !multicast {
				bad = append(bad, f+" "+fields[1])
			}
		}
	}
	return bad
}

// TestQEMUAcceptsUserMode starts QEMU with QEMUArgs for real, paused (-S),
// for a UEFI and a BIOS machine under TCG, and checks what it made of them
// over QMP.
func TestQEMUAcceptsUserMode(t *testing.T) {
	lab := realLab(t, ModeUser)
	qemuImg := need(t, "qemu-img")
	for _, i := range []int{0, 2} {
		m := lab.Machines[i]
		t.Run(m.Firmware, func(t *testing.T) {
			if err := os.MkdirAll(filepath.Dir(m.Overlay), 0o755); err != nil {
				t.Fatal(err)
			}
			runCmd(t, nil, qemuImg, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", m.Image, m.Overlay)
			if m.Firmware == FirmwareUEFI {
				vars, err := os.ReadFile(lab.Host.OVMFVars)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(m.VarsPath(), vars, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.MkdirAll(lab.Host.RunDir, 0o700); err != nil {
				t.Fatal(err)
			}
			killAtEnd(t, lab, m)
			runCmd(t, nil, QEMU, append(QEMUArgs(m, lab.Network, lab.Host), "-S")...)
			checkRunning(t, lab, m)
			quitQEMU(t, lab, m)
			checkDiscarded(t, m)
		})
	}
}

// envOf reads an env file the way systemd's EnvironmentFile= does for the
// plain VAR=value lines labbake writes.
func envOf(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.Contains(line, "=") {
			t.Fatalf("%s: %q is not VAR=value", path, line)
		}
		env = append(env, line)
	}
	return env
}

// TestLauncherArgs runs the launcher with a QEMU that records its
// arguments: they must be QEMUArgs', for both network modes and both
// firmwares, whether the launcher reads the env file itself or gets it as
// its environment (as from systemd). It also checks the overlay and the
// UEFI variable store it makes.
func TestLauncherArgs(t *testing.T) {
	bash := need(t, "bash")
	qemuImg := need(t, "qemu-img")
	for _, mode := range []string{ModeBridge, ModeUser} {
		t.Run(mode, func(t *testing.T) {
			lab := realLab(t, mode)
			kit := t.TempDir()
			writeKit(t, lab, kit)
			launcher := filepath.Join(kit, Launcher)
			runCmd(t, nil, bash, "-n", launcher)
			record := filepath.Join(t.TempDir(), "args")
			fake := filepath.Join(t.TempDir(), "qemu")
			if err := os.WriteFile(fake, []byte("#!/bin/sh\nprintf '%s\\0' \"$@\" > \""+record+"\"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			base := []string{"PATH=" + os.Getenv("PATH"), "LB_QEMU=" + fake}
			for _, m := range lab.Machines {
				for _, how := range []string{"reads the env file", "given the environment"} {
					env := base
					if how == "given the environment" {
						env = append(env, envOf(t, filepath.Join(kit, "vm", m.Name+".env"))...)
					}
					os.Remove(record)
					runCmd(t, env, launcher, "start", m.Name)
					b, err := os.ReadFile(record)
					if err != nil {
						t.Fatal(err)
					}
					got := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
					if want := QEMUArgs(m, lab.Network, lab.Host); !slices.Equal(got, want) {
						t.Errorf("%s, %s: the launcher ran QEMU with\n%q\nwant QEMUArgs'\n%q", m.Name, how, got, want)
					}
				}
				var info struct {
					Format        string
					BackingFile   string `json:"backing-filename"`
					BackingFormat string `json:"backing-filename-format"`
					VirtualSize   int64  `json:"virtual-size"`
				}
				if err := json.Unmarshal([]byte(runCmd(t, nil, qemuImg, "info", "--output=json", m.Overlay)), &info); err != nil {
					t.Fatal(err)
				}
				if info.Format != "qcow2" || info.BackingFile != m.Image || info.BackingFormat != "qcow2" || info.VirtualSize != 64<<20 {
					t.Errorf("%s: overlay %+v, want qcow2 backed by %s (qcow2, 64 MiB)", m.Name, info, m.Image)
				}
				vars, err := os.ReadFile(m.VarsPath())
				switch {
				case m.Firmware == FirmwareBIOS && err == nil:
					t.Errorf("%s: BIOS machine got a UEFI variable store", m.Name)
				case m.Firmware == FirmwareUEFI:
					tmpl, _ := os.ReadFile(lab.Host.OVMFVars)
					if err != nil || !bytes.Equal(vars, tmpl) {
						t.Errorf("%s: variable store is not a copy of %s: %v", m.Name, lab.Host.OVMFVars, err)
					}
				}
			}
			// A name with no env file, or the wrong one, is refused.
			cmd := exec.Command(launcher, "start", "nobody")
			cmd.Env = base
			if out, err := cmd.CombinedOutput(); err == nil {
				t.Errorf("run-qemu start nobody succeeded: %s", out)
			}
			// An env file of another machine is refused.
			master, err := os.ReadFile(filepath.Join(kit, "vm", "master.env"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(kit, "vm", "other.env"), master, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd = exec.Command(launcher, "start", "other")
			cmd.Env = base
			if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "are for master, not other") {
				t.Errorf("run-qemu start other with master's env file: %v %s", err, out)
			}
		})
	}
}
