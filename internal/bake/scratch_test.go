package bake

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labbake/labbake/builders/qcow2"
	"github.com/labbake/labbake/internal/iox"
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

// TestMoveSparse moves a sparse file from memory (/dev/shm) to storage:
// the same bytes, its holes kept, the source gone.
func TestMoveSparse(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "labbake-test-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	defer os.RemoveAll(shm)
	src := filepath.Join(shm, "disk.raw")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(64 << 20)
	f.WriteAt([]byte("head"), 0)
	f.WriteAt([]byte("middle"), 20<<20)
	f.WriteAt([]byte("tail"), 64<<20-4)
	f.Close()
	want, _ := os.ReadFile(src)
	dst := filepath.Join(t.TempDir(), "ROLE.raw")
	if err := moveSparse(src, dst); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("moved bytes differ (%v)", err)
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Errorf("source left behind: %v", err)
	}
	if a := allocated(dst); a > 4<<20 {
		t.Errorf("moved file takes %d bytes: holes filled", a)
	}
}

// TestCompressFromMemory: a compressed image of a raw disk in memory
// whose compressed clusters outgrow the writer's memory budget (64 MiB)
// spills them into the work dir. It once tried /proc/PID/fd, the raw
// disk's "dir", and every such build failed.
func TestCompressFromMemory(t *testing.T) {
	work := t.TempDir()
	const size = 160 << 20
	p, inMem, release, err := scratchDisk(work, size, false)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if !inMem {
		t.Skipf("raw disk not in memory here (memory available: %d bytes)", iox.MemAvailable())
	}
	// Each 64 KiB cluster half random, half zeros: it compresses to about
	// 32 KiB (an incompressible cluster is stored as it is), 80 MiB in all.
	data := make([]byte, size)
	rnd := rand.NewChaCha8([32]byte{1})
	for off := 0; off < size; off += 64 << 10 {
		rnd.Read(data[off : off+32<<10])
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "m.qcow2")
	q, err := writeQcow2(context.Background(), qcow2Job{raw: p, dst: dst, tempDir: work, size: size, compress: qcow2.Zstd})
	if err != nil {
		t.Fatalf("writeQcow2: %v", err)
	}
	f, err := os.Open(q.tmp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	im, err := qcow2.Open(f, q.size)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, size)
	if _, err := im.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Error("the image does not read back as the raw disk")
	}
}
