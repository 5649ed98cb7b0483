package bake

import (
	"os"
	"os/exec"
	"path/filepath"

	"github.com/labbake/labbake/internal/iox"
	"strings"
	"testing"
)

// TestScratchDisk: the in-memory raw disk can be written by a program
// labbake runs (as mke2fs and debugfs do, by its /proc name) and read
// back; it is gone once released. --keep-raw keeps it in the work dir.
func TestScratchDisk(t *testing.T) {
	work := t.TempDir()
	if p, inMem, release, err := scratchDisk(work, 1<<20, true); err != nil || inMem || p != filepath.Join(work, "disk.raw") {
		t.Fatalf("keep: %s %v %v", p, inMem, err)
	} else {
		release()
	}
	p, inMem, release, err := scratchDisk(work, 1<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	if !inMem {
		t.Skipf("raw disk not in memory here (memory available: %d bytes)", iox.MemAvailable())
	}
	cmd := exec.Command("dd", "of="+p, "bs=1", "seek=4096", "conv=notrunc", "status=none")
	cmd.Stdin = strings.NewReader("written by a child")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dd: %v %s", err, out)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 4096+len("written by a child") || string(b[4096:]) != "written by a child" {
		t.Errorf("read back %d bytes: %q", len(b), b[min(4096, len(b)):])
	}
	release()
	if _, err := os.Stat(p); err == nil {
		t.Error("the raw disk outlived its release")
	}
}
