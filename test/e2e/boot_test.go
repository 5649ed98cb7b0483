// Package e2e boots baked images under QEMU and reads their serial console.
// The tests skip with -short and when QEMU, OVMF or mmdebstrap is missing.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labbake/labbake/internal/cli"
)

const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	// bootTimeout bounds one boot; under TCG a Debian minbase reaches
	// login: in about 30 s.
	bootTimeout = 300 * time.Second
)

// TestBoot bakes a Debian trixie base with a kernel, systemd-boot, GRUB
// i386-pc and etcd through the CLI; boots the image with the original lab's
// QEMU command line (SeaBIOS, machine pc, virtio-scsi disk with
// discard=unmap,cache=writeback, no -kernel: GRUB from the MBR loads the
// kernel) until systemd reaches the multi-user target; then runs
// `labbake test` under UEFI (OVMF, systemd-boot from the ESP) and under
// BIOS, both of which must report etcd.service active and etcd healthy,
// and once with a check that must fail.
//
// LABBAKE_E2E_CACHE names a cache dir to keep the Debian base between runs
// (mmdebstrap takes about a minute); by default the cache is temporary.
func TestBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("runs mmdebstrap and boots four VMs (about 5 minutes)")
	}
	qemu := requireBootTools(t)

	lab := t.TempDir()
	write(t, lab, "lab.yaml", "name: e2e\nepoch: 1735689600\nnodes:\n  - {name: master, role: master, ip: 172.18.0.10}\n  - {name: broken, role: broken, ip: 172.18.0.11}\n")
	write(t, lab, "recipes/common.yaml", `base:
  debian:
    suite: trixie
    packages: [`+strings.Join(basePackages, ", ")+`]
disk: {size: 2GiB}
checks:
  units_active: [etcd.service]
  commands:
    - {run: "etcdctl endpoint health", expect: "is healthy"}
`)
	write(t, lab, "recipes/master.yaml", "extends: common\n")
	// The negative case: a check that must fail. Its image hides
	// systemd-boot, so that UEFI boots GRUB (grub-efi-amd64-bin) instead.
	write(t, lab, "recipes/broken.yaml", "extends: common\nfiles:\n  - {path: /usr/lib/systemd/boot/efi/systemd-bootx64.efi, symlink: /nonexistent}\n"+
		"checks:\n  units_active: [does-not-exist.service]\n")
	cache := e2eCache(t)
	out := t.TempDir()
	start := time.Now()
	var stdout, stderr bytes.Buffer
	err := cli.Run(context.Background(), []string{"-C", lab, "--cache", cache, "--out", out, "build", "--all"}, &stdout, &stderr, os.Getenv)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, tail(stderr.String(), 40))
	}
	t.Logf("baked in %s: %s", time.Since(start).Round(time.Second), strings.TrimSpace(stdout.String()))

	// With boot loaders in it the image is still byte-reproducible, and
	// passes the checks of qemu-img, sgdisk, e2fsck and fsck.fat.
	out2 := t.TempDir()
	if err := cli.Run(context.Background(), []string{"-C", lab, "--cache", cache, "--out", out2, "build", "master", "--keep-raw"}, io.Discard, io.Discard, os.Getenv); err != nil {
		t.Fatalf("second build: %v", err)
	}
	a, _ := os.ReadFile(filepath.Join(out, "master.qcow2"))
	b, _ := os.ReadFile(filepath.Join(out2, "master.qcow2"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Error("two builds of master differ")
	}
	checkDisk(t, filepath.Join(out2, "master.qcow2"), filepath.Join(out2, "master.raw"), filepath.Join(out2, "master.manifest.json"))

	// The original set-up's run-qemu.sh: an overlay of the image on a
	// virtio-scsi disk, SeaBIOS.
	overlay := filepath.Join(t.TempDir(), "master-overlay.qcow2")
	if o, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", filepath.Join(out, "master.qcow2"), overlay).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, o)
	}
	serial := filepath.Join(t.TempDir(), "serial.log")
	console := boot(t, qemu, serial,
		"-machine", "type=pc", "-accel", "tcg", "-m", "1024", "-smp", "2", "-nographic", "-monitor", "none",
		"-device", "virtio-scsi-pci,id=scsi0",
		"-drive", "file="+overlay+",format=qcow2,if=none,id=disk0,discard=unmap,cache=writeback",
		"-device", "scsi-hd,drive=disk0,bus=scsi0.0",
		"-serial", "file:"+serial,
	)
	cmdline := regexp.MustCompile(`Command line: (.*)`).FindStringSubmatch(console)
	if cmdline == nil || !strings.Contains(cmdline[1], "root=UUID=") || !strings.Contains(cmdline[1], "console=ttyS0,115200") {
		t.Errorf("kernel command line %q lacks the root by UUID or the serial console", cmdline)
	}
	if !strings.Contains(console, "GRUB loading") || strings.Contains(console, "EFI v") {
		t.Error("the kernel was not started by GRUB from the MBR under BIOS")
	}

	// labbake test: the baked checks run in the guest; etcd must be up,
	// under either firmware.
	test := func(role, firmware string) (string, string, error) {
		var so, se bytes.Buffer
		err := cli.Run(context.Background(), []string{"-C", lab, "--cache", cache, "--out", out, "test", role, "--firmware", firmware, "--accel", "tcg", "--timeout", "400s"}, &so, &se, os.Getenv)
		return so.String(), se.String(), err
	}
	for _, fw := range []string{"uefi", "bios"} {
		start := time.Now()
		so, se, err := test("master", fw)
		if err != nil || !strings.Contains(so, "etcd.service") || !strings.Contains(so, "etcdctl endpoint health") {
			t.Errorf("labbake test master --firmware %s: %v\nstdout:\n%s\nstderr:\n%s", fw, err, so, tail(se, 20))
		}
		for _, m := range []string{"kernel", "multi-user", "checks"} {
			if !strings.Contains(se, m) {
				t.Errorf("labbake test --firmware %s printed no %s milestone:\n%s", fw, m, se)
			}
		}
		log, err := os.ReadFile(filepath.Join(out, "test", "master.log"))
		if err != nil {
			t.Errorf("no console log: %v", err)
		}
		if want := map[string]string{"uefi": "EFI v", "bios": "GRUB loading"}[fw]; !strings.Contains(string(log), want) {
			t.Errorf("--firmware %s: the console log lacks %q", fw, want)
		}
		t.Logf("labbake test --firmware %s: %s\n%s", fw, time.Since(start).Round(time.Second), strings.TrimSpace(so))
	}
	so, _, err := test("broken", "uefi")
	if err == nil || cli.ExitCode(err) == 0 || !strings.Contains(err.Error()+so, "does-not-exist.service") {
		t.Errorf("labbake test with a failing check: %v, want a non-zero exit naming does-not-exist.service\nstdout:\n%s", err, so)
	}
	// GRUB for UEFI got that far: the other checks passed.
	if !strings.Contains(so, "ok    units_active  etcd.service") {
		t.Errorf("under GRUB for UEFI etcd did not come up:\n%s", so)
	}
	if log, _ := os.ReadFile(filepath.Join(out, "test", "broken.log")); !strings.Contains(string(log), "EFI v") || !strings.Contains(string(log), "Booting `") {
		t.Errorf("broken's console shows no GRUB under UEFI:\n%s", tail(string(log), 30))
	}
	m, err := os.ReadFile(filepath.Join(out, "broken.manifest.json"))
	if err != nil || !strings.Contains(string(m), `"uefi: grub x86_64-efi"`) {
		t.Errorf("broken's manifest names no GRUB for UEFI: %v", err)
	}
}

// basePackages are the Debian packages of the e2e tests' one base (built
// once by mmdebstrap, shared through e2eCache): a kernel, both boot
// loaders, etcd, and cloud-init with openssh-server for the seeds; dbus so
// that systemd-logind runs and turns the ACPI power button (labbake down)
// into a clean shutdown.
var basePackages = []string{
	"linux-image-amd64", "systemd-sysv", "udev", "systemd-boot-efi", "grub-pc-bin", "grub-efi-amd64-bin",
	"etcd-server", "etcd-client", "cloud-init", "openssh-server", "iproute2", "iputils-ping", "dbus",
}

// networkdFiles enable systemd-networkd in a recipe (files: section) and
// make it cloud-init's renderer: Debian leaves networkd disabled, and
// without ifupdown or netplan cloud-init wrote no network configuration
// at all (only the udev rename rule).
const networkdFiles = "files:\n" +
	"  - {path: /etc/cloud/cloud.cfg.d/10-labbake-network.cfg, content: \"system_info:\\n  network:\\n    renderers: [networkd]\\n    activators: [networkd]\\n\"}\n" +
	"  - {path: /etc/systemd/system/multi-user.target.wants/systemd-networkd.service, symlink: /usr/lib/systemd/system/systemd-networkd.service}\n" +
	"  - {path: /etc/systemd/system/sockets.target.wants/systemd-networkd.socket, symlink: /usr/lib/systemd/system/systemd-networkd.socket}\n"

var sharedCache string

// TestMain gives the tests one cache, so the Debian base is built once.
func TestMain(m *testing.M) {
	code := func() int {
		flag.Parse()
		if c := os.Getenv("LABBAKE_E2E_CACHE"); c != "" {
			sharedCache = c
		} else {
			dir, err := os.MkdirTemp("", "labbake-e2e-cache-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			sharedCache = dir
		}
		startUpstream(sharedCache)
		code := m.Run()
		waitUpstream()
		return code
	}()
	os.Exit(code)
}

// e2eCache is the labbake cache the tests share: LABBAKE_E2E_CACHE (kept
// between runs: mmdebstrap takes about two minutes) or a temporary one.
func e2eCache(t *testing.T) string {
	t.Helper()
	return sharedCache
}

// requireBootTools skips the test without QEMU, OVMF or mmdebstrap (fails
// it when LABBAKE_REQUIRE_TOOLS is set) and returns QEMU's path.
func requireBootTools(t *testing.T) string {
	t.Helper()
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		missingTool(t, "qemu-system-x86_64 not installed")
	}
	if _, err := os.Stat(ovmfCode); err != nil {
		missingTool(t, "%s missing (Debian package ovmf)", ovmfCode)
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		missingTool(t, "mmdebstrap not installed")
	}
	return qemu
}

// missingTool skips the test, or fails it when LABBAKE_REQUIRE_TOOLS is
// set (as in CI), where every tool is installed.
func missingTool(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("LABBAKE_REQUIRE_TOOLS") != "" {
		t.Fatalf(format+" (LABBAKE_REQUIRE_TOOLS is set)", args...)
	}
	t.Skipf(format, args...)
}

// boot starts QEMU, waits until the serial log shows the multi-user target
// (or a login prompt, which getty prints once there), logs the time to
// the kernel and to multi-user, kills QEMU and returns the console.
func boot(t *testing.T, qemu, serial string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, args...)
	var qout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &qout, &qout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cancel() // kills QEMU if it still runs
		<-exited
	}()
	var kernelAt time.Duration
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			exited <- err
			log, _ := os.ReadFile(serial)
			t.Fatalf("qemu exited before multi-user: %v\n%s\nconsole:\n%s", err, qout.String(), tail(string(log), 40))
		case <-ctx.Done():
			log, _ := os.ReadFile(serial)
			t.Fatalf("no multi-user target after %s; console:\n%s", bootTimeout, tail(string(log), 40))
		case <-tick.C:
		}
		b, _ := os.ReadFile(serial)
		log := string(b)
		if kernelAt == 0 && strings.Contains(log, "Linux version ") {
			kernelAt = time.Since(start)
		}
		if strings.Contains(log, "Reached target multi-user.target") || regexp.MustCompile(`(?m)^\S+ login: `).MatchString(strings.ReplaceAll(log, "\r", "")) {
			t.Logf("kernel started after %s, multi-user after %s", kernelAt.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))
			return log
		}
	}
}

// checkDisk runs the tools users trust on a baked image: qemu-img check on
// the qcow2, sgdisk -v on the raw disk, e2fsck -fn on its root and
// fsck.fat -n on its ESP; and checks the MBR carries GRUB's boot code.
func checkDisk(t *testing.T, qcow2, raw, manifest string) {
	t.Helper()
	var m struct {
		Partitions []struct {
			Name   string `json:"name"`
			Offset int64  `json:"offset"`
			Size   int64  `json:"size"`
		} `json:"partitions"`
		Boot struct {
			Loaders []string `json:"loaders"`
		} `json:"boot"`
	}
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil || len(m.Partitions) != 3 {
		t.Fatalf("manifest: %v, %d partitions", err, len(m.Partitions))
	}
	if want := []string{"uefi: systemd-boot", "bios: grub i386-pc"}; !slices.Equal(m.Boot.Loaders, want) {
		t.Errorf("manifest boot loaders %q, want %q", m.Boot.Loaders, want)
	}
	run := func(name string, args ...string) {
		if o, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, o)
		}
	}
	run("qemu-img", "check", qcow2)
	run("sgdisk", "-v", raw)
	root, esp := m.Partitions[2], m.Partitions[1]
	run("e2fsck", "-fn", fmt.Sprintf("%s?offset=%d", raw, root.Offset))
	espImg := filepath.Join(t.TempDir(), "esp.img")
	f, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := os.Create(espImg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(g, io.NewSectionReader(f, esp.Offset, esp.Size)); err != nil {
		t.Fatal(err)
	}
	g.Close()
	run("fsck.fat", "-n", espImg)
	mbr := make([]byte, 512)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	// GRUB's boot.img says "GRUB " before its error messages.
	if !bytes.Contains(mbr[:440], []byte("GRUB ")) || mbr[510] != 0x55 || mbr[511] != 0xAA {
		t.Error("the MBR holds no GRUB boot code or lost its signature")
	}
}

func write(t *testing.T, dir, rel, content string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(s, "\r", ""), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
