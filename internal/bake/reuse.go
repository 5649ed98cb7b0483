package bake

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/labbake/labbake/internal/atomicfile"
)

// Where the file system shares extents between files (btrfs, XFS with
// reflink, bcachefs), a new image takes the blocks it has in common with
// the image it replaces from that image, as a clone of their extents,
// instead of writing them again: after a one-file edit nearly all of an
// image's bytes are the same, and writing and syncing them is most of the
// rebuild. The new image is still made whole under a temporary name and
// its bytes are exactly those a full write gives.
//
// Which blocks are the same is known from a block map the previous build
// left in CACHE/images: the sha256 of each 64 KiB block of the image, and
// the identity of the image file it describes (device, inode, size,
// modification and change times), so that an image changed since (booted
// directly, copied over) is not taken from. Where the file system cannot
// share extents, no map is made and images are written as before.

// reuseBlock is the unit of comparison: qcow2's clusters, aligned.
const reuseBlock = 64 << 10

// blockMapMagic starts a block map file.
const blockMapMagic = "labbake block map 1\n"

// blockMap is what a block map file holds.
type blockMap struct {
	id   string     // identity of the image file it describes
	sums [][32]byte // sha256 of each block; the last may be partial
}

// fileIdentityOf names an open file as the host knows it.
func fileIdentityOf(f *os.File) (string, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d:%d %d %d.%d %d.%d", st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec), nil
}

func readBlockMap(p string) (*blockMap, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	rest, ok := bytes.CutPrefix(b, []byte(blockMapMagic))
	if !ok {
		return nil, errors.New("not a block map")
	}
	id, rest, ok := bytes.Cut(rest, []byte("\n"))
	if !ok || len(rest)%32 != 0 {
		return nil, errors.New("block map cut short")
	}
	m := &blockMap{id: string(id), sums: make([][32]byte, len(rest)/32)}
	for i := range m.sums {
		copy(m.sums[i][:], rest[i*32:])
	}
	return m, nil
}

func writeBlockMap(p string, m *blockMap) error {
	var b bytes.Buffer
	b.WriteString(blockMapMagic + m.id + "\n")
	for _, s := range m.sums {
		b.Write(s[:])
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(p, b.Bytes(), 0o644)
}

// canClone reports whether the file system of dir shares extents between
// files: it clones a block between two scratch files.
func canClone(dir string) bool {
	a, err := os.CreateTemp(dir, ".clone-probe-*")
	if err != nil {
		return false
	}
	defer os.Remove(a.Name())
	defer a.Close()
	b, err := os.CreateTemp(dir, ".clone-probe-*")
	if err != nil {
		return false
	}
	defer os.Remove(b.Name())
	defer b.Close()
	if _, err := a.Write(make([]byte, reuseBlock)); err != nil {
		return false
	}
	return cloneRange(a, 0, b, 0, reuseBlock) == nil
}

func cloneRange(src *os.File, soff int64, dst *os.File, doff, n int64) error {
	return unix.IoctlFileCloneRange(int(dst.Fd()), &unix.FileCloneRange{
		Src_fd: int64(src.Fd()), Src_offset: uint64(soff), Src_length: uint64(n), Dest_offset: uint64(doff),
	})
}

// previousImage opens the image at p if the block map at mapPath
// describes it as it is now, and returns it with the place of each of its
// whole blocks by digest; nil when there is nothing to take from.
func previousImage(p, mapPath string) (*os.File, map[[32]byte]int64) {
	m, err := readBlockMap(mapPath)
	if err != nil {
		return nil, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, nil
	}
	id, err := fileIdentityOf(f)
	if err != nil || id != m.id {
		f.Close()
		return nil, nil
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil
	}
	at := make(map[[32]byte]int64, len(m.sums))
	for i, s := range m.sums {
		off := int64(i) * reuseBlock
		if off+reuseBlock > fi.Size() {
			break // a partial block is written, never cloned
		}
		if _, dup := at[s]; !dup {
			at[s] = off
		}
	}
	return f, at
}

// blockWriter writes an image front to back into dst, block by block,
// recording each block's digest; a whole block the previous image holds
// (at, by digest) is cloned from it instead of written. Runs of such
// blocks that follow each other in both files are cloned at once.
type blockWriter struct {
	dst  *os.File
	prev *os.File           // nil: write everything
	at   map[[32]byte]int64 // where prev holds a block
	sums [][32]byte         // of every block written so far
	pend []byte             // the bytes of the block being filled
	off  int64              // where pend starts in dst
	run  struct{ src, dst, n int64 }
	// cloned and wrote count bytes.
	cloned, wrote int64
}

func newBlockWriter(dst, prev *os.File, at map[[32]byte]int64) *blockWriter {
	return &blockWriter{dst: dst, prev: prev, at: at, pend: make([]byte, 0, reuseBlock)}
}

func (w *blockWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), reuseBlock-len(w.pend))
		w.pend = append(w.pend, p[:k]...)
		p = p[k:]
		if len(w.pend) == reuseBlock {
			if err := w.block(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

// block places the full block in pend.
func (w *blockWriter) block() error {
	sum := sha256.Sum256(w.pend)
	w.sums = append(w.sums, sum)
	if src, ok := w.at[sum]; ok && w.prev != nil {
		if w.run.n > 0 && w.run.src+w.run.n == src && w.run.dst+w.run.n == w.off {
			w.run.n += reuseBlock
		} else {
			if err := w.flushRun(); err != nil {
				return err
			}
			w.run.src, w.run.dst, w.run.n = src, w.off, reuseBlock
		}
	} else {
		if err := w.flushRun(); err != nil {
			return err
		}
		if _, err := w.dst.WriteAt(w.pend, w.off); err != nil {
			return err
		}
		w.wrote += int64(len(w.pend))
	}
	w.off += int64(len(w.pend))
	w.pend = w.pend[:0]
	return nil
}

// flushRun clones the pending run; where the file system refuses, its
// bytes are copied from the previous image instead.
func (w *blockWriter) flushRun() error {
	r := w.run
	w.run.n = 0
	if r.n == 0 {
		return nil
	}
	if err := cloneRange(w.prev, r.src, w.dst, r.dst, r.n); err == nil {
		w.cloned += r.n
		return nil
	} else if !errors.Is(err, syscall.EOPNOTSUPP) && !errors.Is(err, syscall.EXDEV) && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("cloning %d bytes of the previous image: %w", r.n, err)
	}
	if _, err := io.Copy(io.NewOffsetWriter(w.dst, r.dst), io.NewSectionReader(w.prev, r.src, r.n)); err != nil {
		return fmt.Errorf("copying %d bytes of the previous image: %w", r.n, err)
	}
	w.wrote += r.n
	return nil
}

// Close places what is left (a last, partial block is always written) and
// returns the digests of all blocks.
func (w *blockWriter) Close() ([][32]byte, error) {
	if err := w.flushRun(); err != nil {
		return nil, err
	}
	if len(w.pend) > 0 {
		w.sums = append(w.sums, sha256.Sum256(w.pend))
		if _, err := w.dst.WriteAt(w.pend, w.off); err != nil {
			return nil, err
		}
		w.wrote += int64(len(w.pend))
		w.off += int64(len(w.pend))
		w.pend = w.pend[:0]
	}
	return w.sums, nil
}

// blockMapPath is where the block map of the image at image is kept.
func blockMapPath(cacheDir, image string) string {
	abs, err := filepath.Abs(image)
	if err != nil {
		abs = image
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(cacheDir, "images", fmt.Sprintf("%x", sum[:12])+".blocks")
}

// keepBlockMap records sums as the block map of the image now at image.
func keepBlockMap(mapPath, image string, sums [][32]byte) error {
	f, err := os.Open(image)
	if err != nil {
		return err
	}
	defer f.Close()
	id, err := fileIdentityOf(f)
	if err != nil {
		return err
	}
	return writeBlockMap(mapPath, &blockMap{id: id, sums: sums})
}
