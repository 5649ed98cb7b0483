package cli

import (
	"encoding/json"
	"errors"
	"fmt"
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

labbake test --node NAME (a node's seed ISO attached) comes with the seeds.`,
		Example: `  labbake build master && labbake test master
  labbake test master --firmware bios --timeout 300s
  labbake -C examples/lab test node --accel tcg`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runTest(cmd, g, o, args[0]) },
	}
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
	logPath := filepath.Join(g.outDir(), "test", role+".log")
	res, err := vmtest.Run(cmd.Context(), vmtest.Options{
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
