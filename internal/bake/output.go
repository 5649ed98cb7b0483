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

// writeQcow2 converts the raw disk into a temporary file next to dst and
// returns its name, sha256 and size; the caller renames it. Compressed
// data beyond the writer's memory budget spills into tempDir (the work
// dir): not the raw disk's dir, which for a disk in memory is /proc/PID/fd.
func writeQcow2(ctx context.Context, rawPath, dst, tempDir string, size int64, compress qcow2.Compression, progress io.Writer) (string, string, int64, error) {
	raw, err := os.Open(rawPath)
	if err != nil {
		return "", "", 0, fmt.Errorf("opening raw disk: %w", err)
	}
	defer raw.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return "", "", 0, fmt.Errorf("creating image: %w", err)
	}
	fail := func(err error) (string, string, int64, error) {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", "", 0, err
	}
	iw := newImageWriter(tmp)
	bw := bufio.NewWriterSize(iw, 4<<20)
	total := allocated(rawPath) // what an uncompressed image holds, about
	if compress != qcow2.NoCompression {
		total = -1
	}
	stopWatch := watch(progress, filepath.Base(dst), total, iw.written.Load)
	err = qcow2.Write(ctx, bw, raw, size, qcow2.Options{Compress: compress, TempDir: tempDir})
	stopWatch()
	if err == nil {
		err = bw.Flush()
	}
	sum := iw.Close()
	if err != nil {
		return fail(fmt.Errorf("writing qcow2: %w", err))
	}
	if err := finish(tmp); err != nil {
		return fail(err)
	}
	return tmp.Name(), sum, iw.n, nil
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
