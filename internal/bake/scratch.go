package bake

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/labbake/labbake/internal/cache"
	"github.com/labbake/labbake/internal/iox"
)

// scratchHeadroom is the memory a raw disk held in memory must leave
// available to the rest of the machine (the page cache of the bake's own
// files, mke2fs, other roles).
const scratchHeadroom = 2 << 30

// scratchDisk names where the raw disk of a bake is written: an anonymous
// file in memory (memfd) when the machine has memory available for what it
// will hold (need bytes) plus scratchHeadroom, else OUT's work dir. The raw
// disk is scratch, read back once by the qcow2 writer: in memory, mke2fs's
// and debugfs's fsyncs of it cost nothing and no byte of it is written to
// storage; it is freed when the process ends, even killed. The path given
// to the e2fsprogs programs is the memfd's /proc entry. close releases it.
func scratchDisk(work string, need int64, keep bool) (path string, inMemory bool, close func(), err error) {
	onDisk := filepath.Join(work, "disk.raw")
	if keep || cache.OnDiskOnly() || iox.MemAvailable() < need+scratchHeadroom {
		return onDisk, false, func() {}, nil
	}
	fd, err := unix.MemfdCreate("labbake-disk", unix.MFD_CLOEXEC)
	if err != nil {
		return onDisk, false, func() {}, nil // no memfd (old kernel, seccomp): storage it is
	}
	f := os.NewFile(uintptr(fd), "labbake-disk")
	path = fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), fd)
	if _, err := os.Stat(path); err != nil { // no /proc to name it by
		f.Close()
		return onDisk, false, func() {}, nil
	}
	return path, true, func() { f.Close() }, nil
}

// moveSparse renames src to dst or, across file systems (a work dir in
// memory), copies its data ranges into a temporary file next to dst,
// leaving its holes, and renames that; then removes src.
func moveSparse(src, dst string) error {
	err := os.Rename(src, dst)
	if !errors.Is(err, unix.EXDEV) {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name()) // a no-op once renamed
	defer out.Close()
	if err := out.Truncate(fi.Size()); err != nil {
		return err
	}
	for off := int64(0); off < fi.Size(); {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // a hole to the end
		}
		if err != nil {
			return err
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		if _, err := in.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyN(out, in, hole-data); err != nil {
			return err
		}
		off = hole
	}
	if err := finish(out); err != nil {
		return err
	}
	if err := os.Rename(out.Name(), dst); err != nil {
		return err
	}
	return os.Remove(src)
}
