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
// returns its name, sha256 and size; the caller renames it.
func writeQcow2(ctx context.Context, rawPath, dst string, size int64, compress qcow2.Compression, progress io.Writer) (string, string, int64, error) {
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
	err = qcow2.Write(ctx, bw, raw, size, qcow2.Options{Compress: compress, TempDir: filepath.Dir(rawPath)})
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
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", dst, err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
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

// commitPair gives two finished temporary files their names so that the
// second never appears without the first: the image's manifest goes
// first, the image last. If the second rename fails, the first is rolled
// back (the previous manifest put back, or the new one removed when there
// was none), so a failed build leaves the pair as it was. A crash between
// the two renames leaves a new manifest beside the old image, which its
// sha256 tells apart; never a new image without its manifest.
func commitPair(tmpFirst, first, tmpSecond, second string) error {
	// Keep the previous first file under a temporary name (a hard link,
	// so nothing is copied) to put it back on failure.
	backup := ""
	if _, err := os.Lstat(first); err == nil {
		backup = tmpFirst + ".old"
		if err := os.Link(first, backup); err != nil {
			return fmt.Errorf("writing %s: %w", first, err)
		}
		defer os.Remove(backup)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("writing %s: %w", first, err)
	}
	if err := rename(tmpFirst, first); err != nil {
		return fmt.Errorf("writing %s: %w", first, err)
	}
	if err := rename(tmpSecond, second); err != nil {
		if backup != "" {
			err = errors.Join(err, rename(backup, first))
		} else {
			err = errors.Join(err, os.Remove(first))
		}
		_ = atomicfile.SyncDir(filepath.Dir(first))
		return fmt.Errorf("writing %s: %w", second, err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(second)); err != nil {
		return fmt.Errorf("writing %s: %w", second, err)
	}
	return nil
}

// removeStale removes temporary files that a killed build of the same role
// left behind; the caller holds the role's lock.
func removeStale(dir, prefix string) {
	matches, _ := filepath.Glob(filepath.Join(dir, prefix+"*.tmp-*"))
	for _, m := range matches {
		os.Remove(m)
	}
}
