package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/internal/bake"
	"github.com/labbake/labbake/internal/vmtest"
)

type testOptions struct {
	node     string
	sshPort  int
	firmware string
	timeout  time.Duration
	accel    string
}

func newTestCmd(g *globals) *cobra.Command {
	o := &testOptions{}
	cmd := &cobra.Command{
		Use:   "test ROLE",
		Short: "Boot a role's image under QEMU and run its recipe's checks inside",
		Long: `Test boots OUT/ROLE.qcow2 (build it first with labbake build ROLE) on a
throw-away qcow2 overlay with QEMU — KVM when /dev/kvm works, TCG otherwise —
and runs the checks of the recipe's checks: section inside the guest:

  checks:
    units_active: [etcd.service]          # active (waits up to 120 s each)
    files: [/etc/kubernetes/admin.conf]   # exists
    commands:                             # exit 0 (retried up to 60 s, 30 s a try)
      - {run: "etcdctl endpoint health", expect: "is healthy"}

Every image carries labbake-checks.service, which does nothing unless QEMU
passes the fw_cfg file opt/labbake/test=1 (labbake test does) or the kernel
command line has labbake.test=1. It prints one line per check on the serial
console. The time to each milestone (firmware, kernel, initramfs,
multi-user, checks) goes to stderr as it happens, the check results to
stdout, and the whole console to OUT/test/ROLE.log. The exit code is 0 only
when every check passed, 1 when one failed (named in the error) or the boot
did not finish within --timeout (QEMU is killed; the error shows the last
40 console lines).

--firmware defaults to the image's first boot method (disk.boot: uefi, then
bios); asking for one the image was not baked with is an error.

--node NAME boots the image as that machine: its seed (OUT/seed/NAME.iso,
labbake seed NAME) is attached and its lab NIC (the MAC derived from its
name) sits on a QEMU user-mode network with the lab's addressing, restricted
to this host; --ssh-port forwards 127.0.0.1:PORT to its port 22 while it
runs. In the guest the checks' commands see the machine's
/etc/network-environment, and expect strings may name its values:

  commands:
    - {run: hostname, expect: "${NODE_NAME}"}`,
		Example: `  labbake build master && labbake test master
  labbake test master --firmware bios --timeout 300s
  labbake -C examples/lab test node --accel tcg
  labbake test master --node master`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runTest(cmd, g, o, args[0]) },
	}
	cmd.Flags().StringVar(&o.node, "node", "", "boot as this machine of lab.yaml: its seed and lab NIC attached")
	cmd.Flags().IntVar(&o.sshPort, "ssh-port", 0, "with --node: forward 127.0.0.1:PORT to the machine's ssh while it runs")
	cmd.Flags().StringVar(&o.firmware, "firmware", "", "firmware: uefi (OVMF, q35) or bios (SeaBIOS, pc); default: the image's first boot method")
	cmd.Flags().DurationVar(&o.timeout, "timeout", vmtest.DefaultTimeout, "give up (and kill QEMU) when the checks are not done by then")
	cmd.Flags().StringVar(&o.accel, "accel", "auto", "auto (KVM when it works, else TCG), kvm or tcg")
	return cmd
}

func runTest(cmd *cobra.Command, g *globals, o *testOptions, role string) error {
	if o.firmware != "" && o.firmware != vmtest.UEFI && o.firmware != vmtest.BIOS {
		return &UsageError{fmt.Errorf("--firmware %q: want uefi or bios", o.firmware)}
	}
	accel := o.accel
	switch accel {
	case "auto":
		accel = ""
	case "kvm", "tcg":
	default:
		return &UsageError{fmt.Errorf("--accel %q: want auto, kvm or tcg", o.accel)}
	}
	if o.node == "" && o.sshPort != 0 {
		return &UsageError{errors.New("--ssh-port needs --node: only a machine has an address to forward to")}
	}
	if o.timeout <= 0 {
		return &UsageError{errors.New("--timeout must be positive")}
	}
	if strings.ContainsAny(role, `/\`) || role == "" || role[0] == '.' {
		return &UsageError{fmt.Errorf("role %q: not a role name", role)}
	}
	log, err := g.logger()
	if err != nil {
		return err
	}
	image := filepath.Join(g.outDir(), role+".qcow2")
	if _, err := os.Stat(image); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return &UsageError{fmt.Errorf("testing %s: %s does not exist: run labbake build %s first", role, image, role)}
		}
		return fmt.Errorf("testing %s: %w", role, err)
	}
	firmware, err := pickFirmware(filepath.Join(g.outDir(), role+".manifest.json"), o.firmware)
	if err != nil {
		return fmt.Errorf("testing %s: %w", role, err)
	}
	seed, nic, err := testMachine(cmd.Context(), g, o, role)
	if err != nil {
		return err
	}
	logName := role
	if o.node != "" {
		logName = role + "-" + o.node
	}
	logPath := filepath.Join(g.outDir(), "test", logName+".log")
	res, err := vmtest.Run(cmd.Context(), vmtest.Options{
		Seed:     seed,
		NIC:      nic,
		Image:    image,
		Firmware: firmware,
		LogPath:  logPath,
		Timeout:  o.timeout,
		Accel:    accel,
		Logger:   log,
		OnMilestone: func(m vmtest.Milestone) {
			fmt.Fprintf(g.stderr, "%7.1fs  %s\n", m.At.Seconds(), m.Name)
		},
	})
	return report(g, role, logPath, res, err)
}

// report prints one line per check and turns the boot's outcome into the
// verb's error: the boot's own, the failed checks, or checks missing.
func report(g *globals, role, logPath string, res *vmtest.Result, err error) error {
	if res != nil {
		for _, c := range res.Checks {
			status := "ok  "
			if !c.OK {
				status = "FAIL"
			}
			fmt.Fprintf(g.stdout, "%s  %s  %s  %s\n", status, c.Kind, c.Name, c.Detail)
		}
	}
	if err != nil {
		return fmt.Errorf("testing %s (console in %s): %w", role, logPath, err)
	}
	fmt.Fprintf(g.stderr, "console log: %s (%s, %s)\n", logPath, res.Accel, res.Took.Round(100*time.Millisecond))
	if failed := res.Failed(); len(failed) > 0 {
		names := make([]string, len(failed))
		for i, c := range failed {
			names[i] = fmt.Sprintf("%s %s (%s)", c.Kind, c.Name, c.Detail)
		}
		return fmt.Errorf("testing %s: %d of %d checks failed: %s", role, len(failed), len(res.Checks), strings.Join(names, "; "))
	}
	if !res.Passed {
		return fmt.Errorf("testing %s: the guest announced %d checks but reported %d", role, res.Expected, len(res.Checks))
	}
	fmt.Fprintf(g.stdout, "%s: all %d checks passed\n", role, len(res.Checks))
	return nil
}

// pickFirmware checks the firmware asked for against the boot methods the
// image was baked with (its manifest), or picks the first of them when none
// was asked for. An image without a manifest is taken at its word.
func pickFirmware(manifest, asked string) (string, error) {
	b, err := os.ReadFile(manifest)
	if err != nil {
		if asked == "" {
			return vmtest.UEFI, nil
		}
		return asked, nil
	}
	var m bake.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return "", fmt.Errorf("reading %s: %w", manifest, err)
	}
	methods := m.Boot.Methods
	switch {
	case len(methods) == 0:
		return "", &UsageError{fmt.Errorf("the image was baked with disk.boot: [] and has no boot loader (%s)", manifest)}
	case asked == "":
		return methods[0], nil
	case !slices.Contains(methods, asked):
		return "", &UsageError{fmt.Errorf("--firmware %s: the image boots only with %s (disk.boot in its recipe)", asked, strings.Join(methods, ", "))}
	}
	return asked, nil
}

// testMachine finds the seed and lab NIC of --node: the machine must be of
// the role tested and its seed written.
func testMachine(ctx context.Context, g *globals, o *testOptions, role string) (string, *vmtest.NIC, error) {
	if o.node == "" {
		return "", nil, nil
	}
	if o.sshPort < 0 || o.sshPort > 65535 {
		return "", nil, &UsageError{fmt.Errorf("--ssh-port %d: want a TCP port", o.sshPort)}
	}
	lab, err := g.loadLab(ctx)
	if err != nil {
		return "", nil, err
	}
	n, ok := lab.Node(o.node)
	if !ok {
		return "", nil, &UsageError{fmt.Errorf("--node %s: no such machine in lab.yaml (machines: %s)", o.node, machineList(lab))}
	}
	if n.Role != role {
		return "", nil, &UsageError{fmt.Errorf("--node %s: that machine's role is %s, not %s", o.node, n.Role, role)}
	}
	seed := filepath.Join(g.outDir(), bake.SeedDir, n.Name+".iso")
	if _, err := os.Stat(seed); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil, &UsageError{fmt.Errorf("--node %s: %s does not exist: run labbake seed %s first", o.node, seed, o.node)}
		}
		return "", nil, err
	}
	cidr, err := netip.ParsePrefix(lab.Network.CIDR)
	if err != nil {
		return "", nil, err
	}
	gw, err := netip.ParseAddr(lab.Network.Gateway)
	if err != nil {
		return "", nil, err
	}
	ip, err := netip.ParseAddr(n.IP)
	if err != nil {
		return "", nil, err
	}
	return seed, &vmtest.NIC{MAC: n.MAC(), Net: cidr, Gateway: gw, Guest: ip, SSHPort: o.sshPort}, nil
}
