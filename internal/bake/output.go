package bake

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/labbake/labbake/builders/qcow2"
	"github.com/labbake/labbake/internal/atomicfile"
)

// qcow2Out is a converted image under its temporary name.
type qcow2Out struct {
	tmp    string
	sha256 string // hex
	size   int64
	// blocks are the digests of its 64 KiB blocks when its file system
	// shares extents (nil otherwise), and reused what it took from the
	// image it replaces (see reuse.go).
	blocks [][32]byte
	reused int64
}

// qcow2Job is what writeQcow2 converts, and where.
type qcow2Job struct {
	raw, dst string
	// tempDir takes compressed data beyond the writer's memory budget: the
	// work dir, not the raw disk's dir, which for a disk in memory is
	// /proc/PID/fd.
	tempDir  string
	size     int64
	compress qcow2.Compression
	progress io.Writer
	// blockMap is where the block map of the image at dst is kept; ""
	// takes nothing from the image dst holds now.
	blockMap string
}

// errPreviousChanged says the image a conversion took blocks from changed
// while it ran.
var errPreviousChanged = errors.New("the previous image changed while blocks were taken from it")

// writeQcow2 converts the raw disk into a temporary file next to dst; the
// caller renames it. Where the file system shares extents, the blocks the
// image dst holds now has in common with the new one are cloned from it.
func writeQcow2(ctx context.Context, j qcow2Job) (*qcow2Out, error) {
	out, err := convert(ctx, j, j.blockMap != "")
	if errors.Is(err, errPreviousChanged) {
		out, err = convert(ctx, j, false)
	}
	return out, err
}

func convert(ctx context.Context, j qcow2Job, reuse bool) (*qcow2Out, error) {
	raw, err := os.Open(j.raw)
	if err != nil {
		return nil, fmt.Errorf("opening raw disk: %w", err)
	}
	defer raw.Close()
	tmp, err := os.CreateTemp(filepath.Dir(j.dst), "."+filepath.Base(j.dst)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("creating image: %w", err)
	}
	fail := func(err error) (*qcow2Out, error) {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, err
	}
	var blocks *blockWriter
	var prev *os.File
	prevID := ""
	if reuse && canClone(filepath.Dir(j.dst)) {
		var at map[[32]byte]int64
		prev, at = previousImage(j.dst, j.blockMap)
		if prev != nil {
			defer prev.Close()
			prevID, _ = fileIdentityOf(prev)
		}
		blocks = newBlockWriter(tmp, prev, at)
	}
	iw := newImageWriter(tmp, blocks)
	bw := bufio.NewWriterSize(iw, 4<<20)
	total := allocated(j.raw) // what an uncompressed image holds, about
	if j.compress != qcow2.NoCompression {
		total = -1
	}
	stopWatch := watch(j.progress, filepath.Base(j.dst), total, iw.written.Load)
	err = qcow2.Write(ctx, bw, raw, j.size, qcow2.Options{Compress: j.compress, TempDir: j.tempDir})
	stopWatch()
	if err == nil {
		err = bw.Flush()
	}
	out := &qcow2Out{tmp: tmp.Name(), size: iw.n}
	if err == nil && blocks != nil {
		out.blocks, err = blocks.Close()
		out.reused = blocks.cloned
	}
	out.sha256 = iw.Close()
	if err != nil {
		return fail(fmt.Errorf("writing qcow2: %w", err))
	}
	if prev != nil {
		if id, err := fileIdentityOf(prev); err != nil || id != prevID {
			return fail(errPreviousChanged)
		}
	}
	if err := finish(tmp); err != nil {
		return fail(err)
	}
	return out, nil
}

// finish makes a complete temporary file durable and closes it.
func finish(tmp *os.File) error {
	err := tmp.Chmod(0o644)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	return nil
}

// writeTemp writes v as indented JSON into a finished temporary file next
// to dst and returns its name.
func writeTemp(dst string, v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encoding %s: %w", filepath.Base(dst), err)
	}
	return writeTempBytes(dst, append(b, '\n'))
}

// writeTempBytes writes b into a finished temporary file next to dst and
// returns its name.
func writeTempBytes(dst string, b []byte) (string, error) {
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", dst, err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", fmt.Errorf("writing %s: %w", dst, err)
	}
	if err := finish(tmp); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}

// rename is os.Rename; tests make it fail.
var rename = os.Rename

// pending is a finished temporary file and the name it is to have.
type pending struct{ tmp, dst string }

// commit gives finished temporary files their names, in order, so that a
// file never appears without those before it: the SBOM goes first, then
// the manifest that names it, the image last. If a rename fails, those
// done are rolled back, last first (each previous file put back, or the
// new one removed when there was none), so a failed build leaves the
// outputs as they were. A crash between two renames leaves new files
// beside an old image, which the manifest's sha256 tells apart; never a
// new image without its manifest and SBOM.
func commit(files ...pending) (replaced []string, err error) {
	// Keep each previous file under a temporary name (a hard link, so
	// nothing is copied) to put it back on failure; "" when there was
	// none. On success the caller removes them (the last is the image:
	// freeing its blocks need not hold the commit up).
	backups := make([]string, len(files))
	defer func() {
		if err != nil {
			removeAll(backups)
		}
	}()
	for i, f := range files {
		if _, err := os.Lstat(f.dst); err == nil {
			backups[i] = f.tmp + ".old"
			if err := os.Link(f.dst, backups[i]); err != nil {
				backups[i] = ""
				return nil, fmt.Errorf("writing %s: %w", f.dst, err)
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("writing %s: %w", f.dst, err)
		}
	}
	for i, f := range files {
		if err := rename(f.tmp, f.dst); err != nil {
			err = errors.Join(err, rollBack(files[:i], backups))
			_ = atomicfile.SyncDir(filepath.Dir(f.dst))
			return nil, fmt.Errorf("writing %s: %w", f.dst, err)
		}
	}
	last := files[len(files)-1].dst
	if err := atomicfile.SyncDir(filepath.Dir(last)); err != nil {
		return nil, fmt.Errorf("writing %s: %w", last, err)
	}
	return backups, nil
}

// removeAll removes the files named in paths ("" is skipped).
func removeAll(paths []string) {
	for _, p := range paths {
		if p != "" {
			_ = os.Remove(p)
		}
	}
}

// rollBack undoes the renames of done, last first: the previous file of
// each is put back from its backup, or the new one removed.
func rollBack(done []pending, backups []string) error {
	var errs []error
	for i := len(done) - 1; i >= 0; i-- {
		if backups[i] != "" {
			errs = append(errs, rename(backups[i], done[i].dst))
			backups[i] = ""
		} else {
			errs = append(errs, os.Remove(done[i].dst))
		}
	}
	return errors.Join(errs...)
}

// removeStale removes temporary files that a killed build of the same role
// left behind; the caller holds the role's lock.
func removeStale(dir, prefix string) {
	matches, _ := filepath.Glob(filepath.Join(dir, prefix+"*.tmp-*"))
	for _, m := range matches {
		os.Remove(m)
	}
}
