package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/labbake/labbake/builders/kit"
	"github.com/labbake/labbake/internal/atomicfile"
)

// accel picks the accelerator: the one asked for, else KVM when it really
// runs a guest here, else TCG. /dev/kvm can open and still fail to run a
// vCPU (nested virtualization without the MSRs QEMU wants), so the probe
// starts a tiny VM with KVM for a moment; its answer is kept for this
// host boot and this QEMU binary in OUT/run/accel.json.
func (s *Lab) accel(ctx context.Context) (string, error) {
	switch s.opts.Accel {
	case kit.AccelKVM, kit.AccelTCG:
		return s.opts.Accel, nil
	case "", "auto":
	default:
		return "", &UsageError{fmt.Errorf("--accel %q: want auto, kvm or tcg", s.opts.Accel)}
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return kit.AccelTCG, nil
	}
	f.Close()
	qemu, err := exec.LookPath(s.qemu)
	if err != nil {
		return "", fmt.Errorf("QEMU: %w (Debian package qemu-system-x86)", err)
	}
	key := probeKey(qemu)
	cache := filepath.Join(s.RunDir, "accel.json")
	var c struct{ Key, Accel string }
	if b, err := os.ReadFile(cache); err == nil && json.Unmarshal(b, &c) == nil && c.Key == key {
		return c.Accel, nil
	}
	accel := kit.AccelTCG
	if kvmRuns(ctx, qemu) {
		accel = kit.AccelKVM
	}
	c.Key, c.Accel = key, accel
	b, _ := json.Marshal(c)
	if err := atomicfile.WriteFile(cache, append(b, '\n'), 0o644); err != nil {
		return "", err
	}
	if accel == kit.AccelTCG {
		s.log.Warn("/dev/kvm cannot run guests here: using TCG (slower)")
	}
	return accel, nil
}

// probeKey names this host boot and QEMU binary.
func probeKey(qemu string) string {
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	st, err := os.Stat(qemu)
	mod := ""
	if err == nil {
		mod = st.ModTime().UTC().Format(time.RFC3339Nano)
	}
	return strings.TrimSpace(string(boot)) + " " + qemu + " " + mod
}

// kvmRuns starts QEMU with KVM and the host CPU on no disk for a second:
// where KVM cannot run a vCPU, QEMU dies at once.
func kvmRuns(ctx context.Context, qemu string) bool {
	ctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-accel", "kvm", "-cpu", "host", "-machine", "pc", "-m", "64",
		"-nodefaults", "-display", "none", "-no-reboot")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	// Killed by the timeout: it ran (SeaBIOS finds nothing to boot and waits).
	return ctx.Err() != nil && err != nil && stderr.Len() == 0
}
