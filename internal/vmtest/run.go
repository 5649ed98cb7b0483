package vmtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/labbake/labbake/builders/boot"
	"github.com/labbake/labbake/builders/checks"
	"github.com/labbake/labbake/builders/qcow2"
)

// Firmware choices: the boot methods an image is baked with.
const (
	UEFI = boot.UEFI // OVMF, machine q35
	BIOS = boot.BIOS // SeaBIOS (QEMU's default), machine pc
)

// Default paths and sizes.
const (
	DefaultQEMU      = "qemu-system-x86_64"
	DefaultOVMFCode  = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	DefaultOVMFVars  = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	DefaultMemoryMiB = 2048
	DefaultCPUs      = 2
	DefaultTimeout   = 600 * time.Second
	tailLines        = 40
)

// Options for Run.
type Options struct {
	Image    string // the qcow2 image to boot; never written
	Firmware string // UEFI or BIOS; "" means UEFI
	LogPath  string // the whole console goes here ("" = nowhere)
	Timeout  time.Duration
	// Accel is "kvm", "tcg" or "" (KVM when /dev/kvm can be opened).
	Accel     string
	MemoryMiB int
	CPUs      int
	// Kernel, Initrd and Append boot a kernel directly (-kernel), for
	// images without a boot loader. The checks need no labbake.test=1 in
	// Append: the fw_cfg file is passed on every boot.
	Kernel, Initrd, Append string
	QEMU                   string // the binary; "" = qemu-system-x86_64 from PATH
	OVMFCode, OVMFVars     string // "" = Debian's ovmf package files
	TempDir                string // where the overlay goes; "" = os.TempDir()
	// Seed is a NoCloud seed ISO attached as a read-only CD on the disk's
	// SCSI bus ("" = none).
	Seed string
	// NIC, when set, is the machine's lab NIC on a QEMU user-mode network
	// with the lab's addressing, restricted to this host.
	NIC *NIC
	// OnDone, when set, is called once the checks are done and before the
	// guest is stopped (a test may still talk to it then).
	OnDone func()
	// OnMilestone and OnCheck, when set, are called as the console shows
	// a milestone or a check result, from Run's goroutine.
	OnMilestone func(Milestone)
	OnCheck     func(CheckResult)
	Logger      *slog.Logger
}

// NIC is a lab NIC for a test boot: QEMU's user-mode network set up with
// the lab's network and gateway, so that a machine keeps its static lab
// address from its seed. restrict=on: the guest reaches nothing but the
// forwarded ports (never an outside address).
type NIC struct {
	MAC     string       // the lab MAC of the machine
	Net     netip.Prefix // the lab network (user-mode net=)
	Gateway netip.Addr   // the lab gateway (user-mode host=)
	Guest   netip.Addr   // the machine's lab address, target of the forwards
	// SSHPort, if not 0, forwards 127.0.0.1:SSHPort to the guest's port 22.
	SSHPort int
}

func (n *NIC) args() []string {
	netdev := fmt.Sprintf("user,id=lab,restrict=on,net=%s,host=%s", n.Net, n.Gateway)
	if n.SSHPort != 0 {
		netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-%s:22", n.SSHPort, n.Guest)
	}
	return []string{"-netdev", netdev, "-device", "virtio-net-pci,netdev=lab,mac=" + n.MAC}
}

// Result is what one boot showed.
type Result struct {
	Milestones []Milestone
	Checks     []CheckResult
	Expected   int  // checks the guest announced; -1 when it did not
	Passed     bool // the done line came and every check passed
	LogPath    string
	Accel      string
	Took       time.Duration
}

// Failed returns the checks that failed.
func (r *Result) Failed() []CheckResult {
	var out []CheckResult
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

// Milestone returns the named milestone and whether it was reached.
func (r *Result) Milestone(name string) (Milestone, bool) {
	for _, m := range r.Milestones {
		if m.Name == name {
			return m, true
		}
	}
	return Milestone{}, false
}

// machine is what Command needs besides Options: the files Run made.
type machine struct {
	overlay string // the throw-away overlay
	vars    string // the copy of the OVMF variables (UEFI)
	monitor string // the monitor's unix socket
	accel   string // kvm or tcg
}

// Command returns QEMU's arguments (without the binary) for opts on m.
// The disk is attached like the original lab's run-qemu.sh: virtio-scsi,
// discard=unmap, cache=writeback.
func command(opts Options, m machine) []string {
	mem := opts.MemoryMiB
	if mem <= 0 {
		mem = DefaultMemoryMiB
	}
	cpus := opts.CPUs
	if cpus <= 0 {
		cpus = DefaultCPUs
	}
	args := []string{"-name", "labbake-test"}
	if firmware(opts) == BIOS {
		args = append(args, "-machine", "pc")
	} else {
		args = append(args, "-machine", "q35")
	}
	if m.accel == "kvm" {
		args = append(args, "-accel", "kvm", "-cpu", "host")
	} else {
		// One thread for all vCPUs: multi-threaded TCG can run a stale
		// translation of kernel text another vCPU is patching (a
		// static key flipped through int3) and the guest panics; seen
		// once in CI with Debian's 6.12 kernel and 2 vCPUs.
		args = append(args, "-accel", m.accel+",thread=single")
	}
	args = append(args,
		"-smp", strconv.Itoa(cpus),
		"-m", strconv.Itoa(mem),
		"-nographic",
		"-serial", "stdio",
		"-monitor", "unix:"+m.monitor+",server=on,wait=off",
		"-no-reboot",
	)
	if opts.NIC != nil {
		args = append(args, opts.NIC.args()...)
	} else {
		args = append(args, "-nic", "none")
	}
	if firmware(opts) == UEFI {
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+drivePath(orDefault(opts.OVMFCode, DefaultOVMFCode)),
			"-drive", "if=pflash,format=raw,unit=1,file="+drivePath(m.vars),
		)
	}
	args = append(args,
		"-device", "virtio-scsi-pci,id=scsi0",
		"-drive", "file="+drivePath(m.overlay)+",format=qcow2,if=none,id=disk0,discard=unmap,cache=writeback",
		"-device", "scsi-hd,drive=disk0,bus=scsi0.0,bootindex=1",
		"-fw_cfg", "name="+checks.FwCfgName+",string=1",
		// Entropy from the host: the guest's random pool is ready at
		// once instead of after seconds of emulated interrupts.
		"-device", "virtio-rng-pci",
	)
	if opts.Seed != "" {
		args = append(args,
			"-drive", "file="+drivePath(opts.Seed)+",format=raw,if=none,id=seed,media=cdrom,readonly=on",
			"-device", "scsi-cd,drive=seed,bus=scsi0.0",
		)
	}
	if opts.Kernel != "" {
		args = append(args, "-kernel", opts.Kernel)
		if opts.Initrd != "" {
			args = append(args, "-initrd", opts.Initrd)
		}
		if opts.Append != "" {
			args = append(args, "-append", opts.Append)
		}
	}
	return args
}

// drivePath escapes a path for a -drive option list (a comma is doubled).
func drivePath(p string) string { return strings.ReplaceAll(p, ",", ",,") }

func firmware(opts Options) string {
	if opts.Firmware == "" {
		return UEFI
	}
	return opts.Firmware
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// KVMUsable reports whether /dev/kvm can be opened for reading and writing.
func KVMUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// consoleLine is one line of the console and when it came.
type consoleLine struct {
	at   time.Duration
	text string
}

// Run boots opts.Image on a throw-away overlay and waits for the checks'
// done line, the timeout or ctx. It returns a Result whenever the checks
// reported (Passed says whether they passed), and an error when they did
// not (timeout, QEMU exited, kernel panic), with the last console lines.
//
// With Accel "" it uses KVM when /dev/kvm opens, and boots again with TCG
// when KVM fails before the guest printed anything (nested KVM often
// opens but cannot run a guest: "KVM internal error", MSR assertions).
func Run(ctx context.Context, opts Options) (*Result, error) {
	if opts.Accel != "" || !KVMUsable() {
		if opts.Accel == "" {
			opts.Accel = "tcg"
		}
		return runOnce(ctx, opts)
	}
	kvm := opts
	kvm.Accel = "kvm"
	res, err := runOnce(ctx, kvm)
	if !errors.Is(err, errKVM) {
		return res, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log.Warn("KVM cannot run the guest; booting again with TCG", "reason", kvmReason(err))
	log.Debug("KVM failure", "err", err)
	opts.Accel = "tcg"
	return runOnce(ctx, opts)
}

// kvmReason is the line of a KVM failure that says what went wrong
// (QEMU's "error:" line), or its first line.
func kvmReason(err error) string {
	lines := strings.Split(err.Error(), "\n")
	for _, l := range lines {
		if i := strings.Index(l, "error: "); i >= 0 {
			return strings.TrimSpace(l[i+len("error: "):])
		}
	}
	return lines[0]
}

// errKVM marks a KVM failure before the guest printed anything.
var errKVM = errors.New("kvm failed before any console output")

func runOnce(ctx context.Context, opts Options) (_ *Result, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch firmware(opts) {
	case UEFI, BIOS:
	default:
		return nil, fmt.Errorf("vmtest: firmware %q: want uefi or bios", opts.Firmware)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	image, err := filepath.Abs(opts.Image)
	if err != nil {
		return nil, fmt.Errorf("vmtest: %w", err)
	}
	size, err := virtualSize(image)
	if err != nil {
		return nil, err
	}
	qemu, err := exec.LookPath(orDefault(opts.QEMU, DefaultQEMU))
	if err != nil {
		return nil, fmt.Errorf("vmtest: %w", err)
	}
	dir, err := os.MkdirTemp(opts.TempDir, "labbake-test-")
	if err != nil {
		return nil, fmt.Errorf("vmtest: %w", err)
	}
	defer os.RemoveAll(dir)

	m := machine{overlay: filepath.Join(dir, "overlay.qcow2"), monitor: filepath.Join(dir, "monitor.sock"), accel: opts.Accel}
	if err := createOverlay(m.overlay, image, size); err != nil {
		return nil, err
	}
	if firmware(opts) == UEFI {
		m.vars = filepath.Join(dir, "OVMF_VARS.fd")
		if err := copyFile(orDefault(opts.OVMFVars, DefaultOVMFVars), m.vars); err != nil {
			return nil, fmt.Errorf("vmtest: UEFI variables (install the ovmf package): %w", err)
		}
		if _, err := os.Stat(orDefault(opts.OVMFCode, DefaultOVMFCode)); err != nil {
			return nil, fmt.Errorf("vmtest: UEFI firmware (install the ovmf package): %w", err)
		}
	}

	var logw io.Writer = io.Discard
	if opts.LogPath != "" {
		if err := os.MkdirAll(filepath.Dir(opts.LogPath), 0o755); err != nil {
			return nil, fmt.Errorf("vmtest: %w", err)
		}
		f, err := os.Create(opts.LogPath)
		if err != nil {
			return nil, fmt.Errorf("vmtest: %w", err)
		}
		defer func() {
			if cerr := f.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("vmtest: writing the console log: %w", cerr)
			}
		}()
		logw = f
	}

	args := command(opts, m)
	log.Info("booting", "image", image, "firmware", firmware(opts), "accel", m.accel, "overlay", m.overlay)
	log.Debug("qemu", "cmd", qemu+" "+strings.Join(args, " "))
	cmd := exec.Command(qemu, args...)
	cmd.Stdin = nil
	var stderr strings.Builder
	kvmErr := make(chan struct{})
	cmd.Stderr = &stderrWatch{limitedWriter: limitedWriter{w: &stderr, n: 64 << 10}, kvm: kvmErr}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("vmtest: %w", err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("vmtest: starting qemu: %w", err)
	}
	lines := make(chan consoleLine, 256)
	go readConsole(io.TeeReader(out, logw), start, lines)

	p := newParser()
	recent := &tail{n: tailLines}
	res := &Result{LogPath: opts.LogPath, Accel: m.accel, Expected: -1}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var panicTimer <-chan time.Time
	finish := func() {
		res.Milestones = p.milestones
		res.Checks = p.checks
		res.Expected = p.expected
		res.Passed = p.passed()
		res.Took = time.Since(start)
	}
	fail := func(format string, a ...any) (*Result, error) {
		stop(cmd, m.monitor, lines, log)
		finish()
		msg := fmt.Sprintf(format, a...)
		if s := strings.TrimSpace(stderr.String()); s != "" {
			msg += "\nqemu: " + s
		}
		if m.accel == "kvm" && len(p.milestones) == 0 {
			return res, fmt.Errorf("vmtest: %w: %s", errKVM, msg)
		}
		return res, fmt.Errorf("vmtest: %s (reached: %s); last console lines:\n%s", msg, reached(p.milestones), recent)
	}
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				// Wait only once the console is read to its end: it closes the pipe.
				err := cmd.Wait()
				finish()
				if p.done() {
					return res, nil
				}
				return fail("qemu exited before the checks were done: %v", exitStatus(err))
			}
			recent.add(l.text)
			ev := p.line(l.at, l.text)
			for _, ms := range ev.milestones {
				log.Debug("milestone", "name", ms.Name, "at", ms.At)
				if opts.OnMilestone != nil {
					opts.OnMilestone(ms)
				}
			}
			if ev.check != nil && opts.OnCheck != nil {
				opts.OnCheck(*ev.check)
			}
			if p.done() {
				if opts.OnDone != nil {
					opts.OnDone()
				}
				stop(cmd, m.monitor, lines, log)
				finish()
				return res, nil
			}
			if p.panicked && panicTimer == nil {
				panicTimer = time.After(3 * time.Second) // the rest of the trace
			}
		case <-kvmErr:
			kvmErr = nil
			if len(p.milestones) == 0 {
				return fail("KVM internal error")
			}
		case <-panicTimer:
			return fail("kernel panic")
		case <-deadline.C:
			return fail("timed out after %s", timeout)
		case <-ctx.Done():
			return fail("%v", ctx.Err())
		}
	}
}

// reached names the milestones seen, for errors.
func reached(ms []Milestone) string {
	if len(ms) == 0 {
		return "nothing"
	}
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = fmt.Sprintf("%s at %s", m.Name, m.At.Round(100*time.Millisecond))
	}
	return strings.Join(names, ", ")
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// readConsole sends r's lines, without line endings, to lines and closes
// it at the end of r. A line is also cut at 4 KiB so that a console that
// never ends a line still shows.
func readConsole(r io.Reader, start time.Time, lines chan<- consoleLine) {
	defer close(lines)
	br := bufio.NewReaderSize(r, 4096)
	for {
		b, err := br.ReadSlice('\n')
		if len(b) > 0 {
			s := strings.TrimRight(string(b), "\r\n")
			lines <- consoleLine{at: time.Since(start), text: s}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// stop asks QEMU to quit on its monitor, kills it when it has not after
// 5 s, and drains the console so the reader ends.
func stop(cmd *exec.Cmd, monitor string, lines <-chan consoleLine, log *slog.Logger) {
	if cmd.ProcessState != nil {
		return
	}
	if c, err := net.DialTimeout("unix", monitor, time.Second); err == nil {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		_, err = io.WriteString(c, "quit\n")
		io.Copy(io.Discard, c) // until QEMU closes it
		c.Close()
		if err != nil {
			log.Debug("qemu monitor", "err", err)
		}
	}
	done := make(chan struct{})
	go func() {
		for range lines {
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		log.Debug("qemu did not quit; killing it")
		cmd.Process.Kill()
		<-done
	}
	cmd.Wait()
}

// virtualSize reads the virtual size from the image's qcow2 header.
func virtualSize(image string) (int64, error) {
	f, err := os.Open(image)
	if err != nil {
		return 0, fmt.Errorf("vmtest: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("vmtest: %w", err)
	}
	im, err := qcow2.Open(f, st.Size())
	if err != nil {
		return 0, fmt.Errorf("vmtest: %s: %w", image, err)
	}
	return im.Size(), nil
}

// createOverlay writes a qcow2 overlay of size bytes backed by image.
func createOverlay(path, image string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("vmtest: overlay: %w", err)
	}
	w := bufio.NewWriter(f)
	err = qcow2.Create(w, size, qcow2.Options{BackingFile: image, BackingFormat: "qcow2"})
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("vmtest: overlay: %w", err)
	}
	return nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// stderrWatch closes kvm when QEMU reports a KVM error.
type stderrWatch struct {
	limitedWriter
	kvm  chan struct{}
	seen bool
}

func (w *stderrWatch) Write(p []byte) (int, error) {
	if !w.seen && (strings.Contains(string(p), "KVM internal error") || strings.Contains(string(p), "kvm_buf_set_msrs")) {
		w.seen = true
		close(w.kvm)
	}
	return w.limitedWriter.Write(p)
}

// limitedWriter keeps the first n bytes written to it.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
