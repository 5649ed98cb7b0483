package testfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Reflink returns a directory on a fresh btrfs of size bytes (a sparse
// file on a loop device, unmounted when the test ends). It skips the test
// where that cannot be made (not root, no mkfs.btrfs, no loop devices or
// no btrfs in the kernel), saying why; under LABBAKE_REQUIRE_TOOLS=1 a
// missing mkfs.btrfs fails it instead.
func Reflink(tb testing.TB, size int64) string {
	tb.Helper()
	mkfs, err := exec.LookPath("mkfs.btrfs")
	if err != nil {
		for _, d := range []string{"/usr/sbin", "/sbin"} {
			if p := filepath.Join(d, "mkfs.btrfs"); fileExists(p) {
				mkfs, err = p, nil
			}
		}
	}
	if err != nil {
		if os.Getenv("LABBAKE_REQUIRE_TOOLS") == "1" {
			tb.Fatal("mkfs.btrfs is missing (Debian's btrfs-progs)")
		}
		tb.Skip("no mkfs.btrfs (Debian's btrfs-progs)")
	}
	if os.Geteuid() != 0 {
		tb.Skip("mounting a btrfs needs root")
	}
	dir := tb.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		tb.Fatal(err)
	}
	f, err := os.Create(img)
	if err != nil {
		tb.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		tb.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command(mkfs, "-q", "-f", img).CombinedOutput(); err != nil {
		tb.Fatalf("mkfs.btrfs: %v\n%s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		tb.Skipf("cannot mount a btrfs here: %v: %s", err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			tb.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
