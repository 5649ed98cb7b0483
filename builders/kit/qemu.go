package kit

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/labbake/labbake/internal/macaddr"
)

// QEMU is the program QEMUArgs' arguments are for.
const QEMU = "qemu-system-x86_64"

// StopTimeout is how many seconds a machine gets to power off after the
// ACPI power button before the launcher quits QEMU.
const StopTimeout = 60

// The QEMU command line is written once, here, as data: words with
// {placeholders}, in groups that apply when a setting has a value.
// QEMUArgs fills the placeholders with a machine's values; the launcher
// script (run-qemu) is generated from the same groups with each
// placeholder replaced by the env file variable that holds its value, so
// the two cannot drift apart.

// setting is one value of a machine's command line: its placeholder key
// and the env file variable that carries it.
type setting struct {
	key, env, doc string
}

// settings lists every value, in the env files' order.
var settings = []setting{
	{"name", "LB_NAME", "machine name"},
	{"role", "LB_ROLE", "role of its image"},
	{"firmware", "LB_FIRMWARE", "uefi or bios"},
	{"machine", "LB_MACHINE", "QEMU machine type (q35 for UEFI, pc for BIOS)"},
	{"accel", "LB_ACCEL", "kvm or tcg"},
	{"cpus", "LB_CPUS", "virtual CPUs"},
	{"memory", "LB_MEMORY_MIB", "memory in MiB"},
	{"image", "LB_IMAGE", "the role's image, backing file of the overlay"},
	{"overlay", "LB_OVERLAY", "this machine's disk, a qcow2 overlay of the image"},
	{"seed", "LB_SEED", "cloud-init NoCloud seed ISO"},
	{"ovmfcode", "LB_OVMF_CODE", "UEFI firmware"},
	{"ovmfvars", "LB_OVMF_VARS", "UEFI variable store template"},
	{"vars", "LB_VARS", "this machine's UEFI variable store, copied from the template"},
	{"mac", "LB_MAC", "MAC address on the lab network"},
	{"netdev", "LB_NETDEV", "QEMU -netdev of the lab NIC"},
	{"upmac", "LB_UPLINK_MAC", "MAC address of the user-mode NIC (user mode)"},
	{"upnetdev", "LB_UPLINK_NETDEV", "QEMU -netdev of the user-mode NIC (user mode)"},
	{"rundir", "LB_RUN_DIR", "directory of the sockets, logs and pid file"},
	{"qmp", "LB_QMP", "QMP socket"},
	{"console", "LB_CONSOLE", "serial console socket"},
	{"log", "LB_CONSOLE_LOG", "serial console log"},
	{"pidfile", "LB_PIDFILE", "QEMU's pid file"},
	{"stoptimeout", "LB_STOP_TIMEOUT", "seconds to wait for an ACPI power-off before quitting QEMU"},
}

// cond selects a group: it applies when the setting key equals value, or,
// with value empty, when the setting is not empty.
type cond struct{ key, value string }

type group struct {
	when  cond // zero: always
	words []string
}

var cmdline = []group{
	{words: []string{
		"-name", "{name}",
		"-nodefaults",
		"-machine", "{machine}",
	}},
	{when: cond{"accel", AccelKVM}, words: []string{"-accel", "kvm", "-cpu", "host"}},
	// One host thread for all vCPUs under emulation: with a thread per
	// vCPU, QEMU's TCG can run a stale translation of kernel text that
	// another vCPU is patching (a static key flipped through int3), and
	// the guest panics in the int3 handler. Seen booting Debian's 6.12
	// kernel with 2 vCPUs; never with one thread.
	{when: cond{"accel", AccelTCG}, words: []string{"-accel", "tcg,thread=single"}},
	{words: []string{
		"-smp", "{cpus}",
		"-m", "{memory}M",
	}},
	{when: cond{"firmware", FirmwareUEFI}, words: []string{
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file={ovmfcode}",
		"-drive", "if=pflash,format=raw,unit=1,file={vars}",
	}},
	{words: []string{
		"-device", "virtio-scsi-pci,id=scsi0",
		"-drive", "if=none,id=disk0,format=qcow2,cache=writeback,discard=unmap,file={overlay}",
		"-device", "scsi-hd,bus=scsi0.0,drive=disk0,bootindex=0",
		"-drive", "if=none,id=seed,format=raw,media=cdrom,readonly=on,file={seed}",
		"-device", "scsi-cd,bus=scsi0.0,drive=seed",
		"-device", "virtio-rng-pci",
		"-netdev", "{netdev}",
		"-device", "virtio-net-pci,netdev=lab,mac={mac}",
	}},
	{when: cond{key: "upnetdev"}, words: []string{
		"-netdev", "{upnetdev}",
		"-device", "virtio-net-pci,netdev=up,mac={upmac}",
	}},
	{words: []string{
		"-chardev", "socket,id=console,path={console},server=on,wait=off,logfile={log}",
		"-serial", "chardev:console",
		"-qmp", "unix:{qmp},server=on,wait=off",
		"-display", "none",
		"-daemonize",
		"-pidfile", "{pidfile}",
	}},
}

// values returns the settings of m, keyed by setting key.
func values(m Machine, n Network, h Host) map[string]string {
	p := RunPaths(m, h)
	v := map[string]string{
		"name":        m.Name,
		"role":        m.Role,
		"firmware":    m.Firmware,
		"machine":     "pc",
		"accel":       h.Accel,
		"cpus":        strconv.Itoa(m.CPUs),
		"memory":      strconv.FormatInt(m.MemoryMiB, 10),
		"image":       m.Image,
		"overlay":     m.Overlay,
		"seed":        m.Seed,
		"mac":         macaddr.String(m.Name),
		"rundir":      h.RunDir,
		"qmp":         p.QMP,
		"console":     p.Console,
		"log":         p.Log,
		"pidfile":     p.PID,
		"stoptimeout": strconv.Itoa(StopTimeout),
	}
	if m.Firmware == FirmwareUEFI {
		v["machine"] = "q35"
		v["ovmfcode"] = h.OVMFCode
		v["ovmfvars"] = h.OVMFVars
		v["vars"] = m.VarsPath()
	}
	switch n.Mode {
	case ModeUser:
		v["netdev"] = "socket,id=lab,mcast=" + n.McastGroup + ",localaddr=127.0.0.1"
		up := []string{"user", "id=up"}
		if n.Restrict {
			up = append(up, "restrict=on")
		}
		up = append(up, fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-:22", m.SSHPort))
		for _, f := range m.Forwards {
			up = append(up, fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-:%d", f.HostPort, f.GuestPort))
		}
		v["upnetdev"] = strings.Join(up, ",")
		v["upmac"] = UplinkMAC(m.Name)
	default:
		v["netdev"] = "bridge,id=lab,br=" + n.Bridge
	}
	return v
}

func (c cond) holds(v map[string]string) bool {
	switch {
	case c.key == "":
		return true
	case c.value == "":
		return v[c.key] != ""
	default:
		return v[c.key] == c.value
	}
}

var placeholder = regexp.MustCompile(`\{([a-z]+)\}`)

// QEMUArgs returns the arguments of QEMU (the program QEMU, not included)
// that start machine m in the background: -daemonize, the pid file, a QMP
// socket and the serial console's socket and log in h.RunDir (RunPaths),
// no display. The overlay, and for UEFI the variable store (VarsPath),
// must exist: the launcher and `labbake up` make them. m, n and h are
// expected to pass Lab.Validate.
func QEMUArgs(m Machine, n Network, h Host) []string {
	v := values(m, n, h)
	var args []string
	for _, g := range cmdline {
		if !g.when.holds(v) {
			continue
		}
		for _, w := range g.words {
			args = append(args, placeholder.ReplaceAllStringFunc(w, func(p string) string {
				return v[p[1:len(p)-1]]
			}))
		}
	}
	return args
}

// envName returns the env variable of a setting key.
func envName(key string) string {
	i := slices.IndexFunc(settings, func(s setting) bool { return s.key == key })
	if i < 0 {
		panic("kit: no setting " + key)
	}
	return settings[i].env
}

// shellArgs returns the launcher's bash code that fills the array args
// with the command line, each placeholder replaced by its env variable;
// every line starts with indent.
func shellArgs(indent string) string {
	var b strings.Builder
	line := func(depth int, s string) {
		b.WriteString(indent + strings.Repeat("\t", depth) + s + "\n")
	}
	line(0, "args=()")
	for _, g := range cmdline {
		depth := 0
		switch {
		case g.when.key == "":
		case g.when.value == "":
			line(0, fmt.Sprintf(`if [ -n "$%s" ]; then`, envName(g.when.key)))
			depth = 1
		default:
			line(0, fmt.Sprintf(`if [ "$%s" = %s ]; then`, envName(g.when.key), g.when.value))
			depth = 1
		}
		line(depth, "args+=(")
		for i := 0; i < len(g.words); {
			// An option and its value on one line.
			words := []string{shellWord(g.words[i])}
			i++
			if i < len(g.words) && !strings.HasPrefix(g.words[i], "-") {
				words = append(words, shellWord(g.words[i]))
				i++
			}
			line(depth+1, strings.Join(words, " "))
		}
		line(depth, ")")
		if depth > 0 {
			line(0, "fi")
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// plainWord is a word bash takes as it is.
var plainWord = regexp.MustCompile(`^[A-Za-z0-9_.,:=/-]+$`)

// shellWord quotes a word of cmdline for bash, placeholders becoming
// "${ENV}". The words' literal parts hold no character special inside
// double quotes (a test checks).
func shellWord(w string) string {
	if plainWord.MatchString(w) {
		return w
	}
	return `"` + placeholder.ReplaceAllStringFunc(w, func(p string) string {
		return "${" + envName(p[1:len(p)-1]) + "}"
	}) + `"`
}

// envFile returns a machine's env file: one VAR=value line per setting,
// read by systemd (EnvironmentFile=) and by bash (the launcher sources it).
// Values hold no character either would treat specially (Validate).
func envFile(lab Lab, m Machine) []byte {
	v := values(m, lab.Network, lab.Host)
	var b strings.Builder
	fmt.Fprintf(&b, "# labbake: machine %s of lab %s, read by run-qemu and by qemu@.service.\n", m.Name, lab.Name)
	fmt.Fprintf(&b, "# Made by labbake from the lab's description: change that and bake the kit again.\n")
	for _, s := range settings {
		fmt.Fprintf(&b, "\n# %s\n%s=%s\n", s.doc, s.env, v[s.key])
	}
	return []byte(b.String())
}
