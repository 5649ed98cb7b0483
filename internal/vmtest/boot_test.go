package vmtest_test

import (
	"archive/tar"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labbake/labbake/internal/cli"
	"github.com/labbake/labbake/internal/vmtest"
)

// rootfsTar is a Debian tree with a kernel: $LABBAKE_TEST_ROOTFS, or
// bench/out/bootable.tar, which `make test` makes first (mmdebstrap, a few
// minutes, once).
func rootfsTar(t *testing.T) string {
	if p := os.Getenv("LABBAKE_TEST_ROOTFS"); p != "" {
		return p
	}
	p, err := filepath.Abs("../../bench/out/bootable.tar")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("LABBAKE_REQUIRE_TOOLS") != "" {
			t.Fatalf("no Debian rootfs tar with a kernel: run `make bench/out/bootable.tar` (%v)", err)
		}
		t.Skipf("no Debian rootfs tar with a kernel: run `make bench/out/bootable.tar` or set LABBAKE_TEST_ROOTFS (%v)", err)
	}
	return p
}

// TestBootDirectKernel bakes a Debian tar through the real pipeline and
// boots the image with its own kernel passed by -kernel (the image has no
// boot loader here): multi-user is reached, and the checks unit reports a
// passing and a failing check. The kernel command line has no
// labbake.test=1: the checks run because of the fw_cfg file, the route a
// baked boot loader's command line leaves open.
func TestBootDirectKernel(t *testing.T) {
	res, log := bootTest(t, "root=UUID=%s ro console=ttyS0,115200")
	checkBoot(t, res, log)
}

func bootTest(t *testing.T, appendFmt string) (*vmtest.Result, string) {
	if testing.Short() {
		t.Skip("boots a VM: skipped with -short")
	}
	if _, err := exec.LookPath(vmtest.DefaultQEMU); err != nil {
		if os.Getenv("LABBAKE_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s not installed (run make deps): %v", vmtest.DefaultQEMU, err)
		}
		t.Skipf("%s not installed: %v", vmtest.DefaultQEMU, err)
	}
	rootfs := rootfsTar(t)
	lab := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(lab, "lab.yaml"), "name: boot\nnodes: [{name: m, role: master, ip: 172.18.0.2}]\n")
	// Recipe paths stay inside the lab dir: the tar goes in by a hard link
	// (a copy across file systems).
	linkOrCopy(t, rootfs, filepath.Join(lab, "rootfs.tar"))
	write(filepath.Join(lab, "recipes/master.yaml"), `base: {tar: rootfs.tar}
disk: {size: 3GiB, boot: []}
checks:
  units_active: [systemd-journald.service, does-not-exist.service]
  files: [/etc/fstab, /etc/nonexistent]
  commands:
    - {run: "grep -c . /etc/os-release", expect: ""}
    - {run: "cat /etc/os-release", expect: "VERSION_CODENAME=bookworm"}
`)
	args := []string{"-C", lab, "--cache", filepath.Join(t.TempDir(), "cache"), "build", "master"}
	var stdout, stderr strings.Builder
	if err := cli.Run(context.Background(), args, &stdout, &stderr, func(string) string { return "" }); err != nil {
		t.Fatalf("labbake build: %v\n%s", err, stderr.String())
	}
	image := filepath.Join(lab, "output", "master.qcow2")
	var man struct {
		Root struct{ UUID string } `json:"root"`
	}
	b, err := os.ReadFile(filepath.Join(lab, "output", "master.manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &man); err != nil || man.Root.UUID == "" {
		t.Fatalf("manifest root uuid: %v %q", err, man.Root.UUID)
	}
	kernel, initrd := extractBoot(t, rootfs)
	logPath := filepath.Join(lab, "output", "test", "master.log")
	start := time.Now()
	opts := vmtest.Options{
		Image:    image,
		Firmware: vmtest.BIOS,
		LogPath:  logPath,
		Timeout:  4 * time.Minute,
		Kernel:   kernel,
		Initrd:   initrd,
		Append:   strings.Replace(appendFmt, "%s", man.Root.UUID, 1),
		OnMilestone: func(m vmtest.Milestone) {
			t.Logf("milestone %-10s %6.1fs  %s", m.Name, m.At.Seconds(), m.Line)
		},
		OnCheck: func(c vmtest.CheckResult) { t.Logf("check %+v", c) },
	}
	res, err := vmtest.Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	t.Logf("accel %s, took %s", res.Accel, time.Since(start).Round(100*time.Millisecond))
	log, _ := os.ReadFile(logPath)
	return res, string(log)
}

// linkOrCopy makes dst hold src's bytes: a hard link, or a copy.
func linkOrCopy(t *testing.T, src, dst string) {
	t.Helper()
	if os.Link(src, dst) == nil {
		return
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func checkBoot(t *testing.T, res *vmtest.Result, log string) {
	t.Helper()
	for _, name := range []string{vmtest.Firmware, vmtest.Kernel, vmtest.Initramfs, vmtest.MultiUser, vmtest.Checks} {
		if _, ok := res.Milestone(name); !ok {
			t.Errorf("milestone %s not reached", name)
		}
	}
	want := map[string]bool{
		"units_active systemd-journald.service": true,
		"units_active does-not-exist.service":   false,
		"files /etc/fstab":                      true,
		"files /etc/nonexistent":                false,
		"commands grep -c . /etc/os-release":    true,
		"commands cat /etc/os-release":          true,
	}
	if len(res.Checks) != len(want) || res.Expected != len(want) {
		t.Errorf("%d checks (%d announced), want %d: %+v", len(res.Checks), res.Expected, len(want), res.Checks)
	}
	for _, c := range res.Checks {
		ok, found := want[c.Kind+" "+c.Name]
		if !found || ok != c.OK {
			t.Errorf("check %+v: want ok=%v (known: %v)", c, ok, found)
		}
	}
	if res.Passed {
		t.Error("Passed with failing checks")
	}
	if !strings.Contains(log, "Linux version") || !strings.Contains(log, "LABBAKE-CHECKS done ok=4 fail=2") {
		t.Errorf("console log lacks the kernel or the done line:\n%s", log)
	}
}

// extractBoot copies the kernel and initramfs of the tar's /boot out.
func extractBoot(t *testing.T, rootfs string) (string, string) {
	t.Helper()
	f, err := os.Open(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	var kernel, initrd string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		var dst *string
		switch {
		case h.Typeflag != tar.TypeReg:
			continue
		case strings.HasPrefix(name, "boot/vmlinuz-"):
			dst = &kernel
		case strings.HasPrefix(name, "boot/initrd.img-"):
			dst = &initrd
		default:
			continue
		}
		*dst = filepath.Join(dir, filepath.Base(name))
		out, err := os.Create(*dst)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, tr); err != nil {
			t.Fatal(err)
		}
		out.Close()
	}
	if kernel == "" || initrd == "" {
		t.Fatalf("%s: no /boot/vmlinuz-* and /boot/initrd.img-*", rootfs)
	}
	return kernel, initrd
}
