package tree

import (
	"bufio"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A snapshot is a tree kept on the host between builds: its entries in
// DIR/index and each distinct blob content once, read only, as
// DIR/files/SHA256. Reading it back costs a stat per file instead of
// extracting and hashing the tarballs it came from.

// snapshotVersion changes whenever the index's layout does.
const snapshotVersion = 1

type snapshotIndex struct {
	Version int
	Entries []Entry // Content.Path holds the blob's digest
}

// ErrSnapshot says a snapshot is missing a file or does not hold what its
// index says: the caller drops it and builds the tree again.
var ErrSnapshot = errors.New("tree snapshot damaged")

// WriteSnapshot writes entries (a tree's Entries) into dir, which must
// exist and be empty, durably: every file is synced before the index is
// written, and the index last, so that a snapshot with an index is whole.
// Blobs without a Digest are hashed first.
func WriteSnapshot(ctx context.Context, dir string, entries []Entry) error {
	files := filepath.Join(dir, "files")
	if err := os.Mkdir(files, 0o755); err != nil {
		return fmt.Errorf("tree snapshot: %w", err)
	}
	idx := snapshotIndex{Version: snapshotVersion, Entries: make([]Entry, len(entries))}
	todo := map[string]*Blob{} // digest → a blob that holds it
	buf := make([]byte, copyBufSize)
	for i, e := range entries {
		if e.Type == Regular && e.Content != nil {
			b := *e.Content
			if b.Digest == "" {
				sum, _, err := hashFile(b.Path, buf)
				if err != nil {
					return fmt.Errorf("tree snapshot: %w", err)
				}
				b.Digest = sum
			}
			todo[b.Digest] = &b
			e.Content = &Blob{Path: b.Digest, Size: b.Size, Digest: b.Digest}
		}
		idx.Entries[i] = e
	}
	if err := copyBlobs(ctx, files, todo); err != nil {
		return fmt.Errorf("tree snapshot: %w", err)
	}
	// One syncfs instead of an fsync per file: thousands of small fsyncs
	// take a minute on a slow disk, one flush of them all seconds.
	if err := syncFS(files); err != nil {
		return fmt.Errorf("tree snapshot: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, ".index"))
	if err != nil {
		return fmt.Errorf("tree snapshot: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	err = gob.NewEncoder(w).Encode(&idx)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(filepath.Join(dir, ".index"), filepath.Join(dir, "index"))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("tree snapshot: %w", err)
	}
	return nil
}

// copyBlobs copies each blob of todo into dir as its digest, on all
// cores, holes kept, each file read only.
func copyBlobs(ctx context.Context, dir string, todo map[string]*Blob) error {
	work := make(chan *Blob)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newCopier()
			for b := range work {
				if err := copyBlob(c, dir, b); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for _, b := range todo {
		if ctx.Err() != nil {
			break
		}
		work <- b
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	return ctx.Err()
}

func copyBlob(c *copier, dir string, b *Blob) error {
	src, err := os.Open(b.Path)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(dir, b.Digest), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o444)
	if err != nil {
		return err
	}
	n, err := c.copySparse(dst, src)
	if err == nil && n != b.Size {
		err = fmt.Errorf("%s holds %d bytes, not %d", b.Path, n, b.Size)
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncFS flushes the whole file system that holds dir.
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// ReadSnapshot returns the tree kept in dir, at epoch, its blobs read
// only (not Owned) in dir/files with their Digest. Every blob must be
// there with its size; otherwise the error wraps ErrSnapshot.
func ReadSnapshot(dir string, epoch time.Time) (*Tree, error) {
	f, err := os.Open(filepath.Join(dir, "index"))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	defer f.Close()
	var idx snapshotIndex
	if err := gob.NewDecoder(bufio.NewReaderSize(f, 1<<20)).Decode(&idx); err != nil {
		return nil, fmt.Errorf("%w: index: %w", ErrSnapshot, err)
	}
	if idx.Version != snapshotVersion {
		return nil, fmt.Errorf("%w: index version %d, not %d", ErrSnapshot, idx.Version, snapshotVersion)
	}
	files := filepath.Join(dir, "files")
	checked := map[string]bool{}
	for i := range idx.Entries {
		e := &idx.Entries[i]
		if e.Type != Regular || e.Content == nil {
			continue
		}
		d := e.Content.Digest
		if len(d) != 64 || e.Content.Path != d {
			return nil, fmt.Errorf("%w: entry %q has no digest", ErrSnapshot, e.Path)
		}
		p := filepath.Join(files, d)
		if !checked[d] {
			fi, err := os.Lstat(p)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrSnapshot, err)
			}
			if !fi.Mode().IsRegular() || fi.Size() != e.Content.Size {
				return nil, fmt.Errorf("%w: %s is not a file of %d bytes", ErrSnapshot, p, e.Content.Size)
			}
			checked[d] = true
		}
		e.Content = &Blob{Path: p, Size: e.Content.Size, Digest: d}
	}
	t, err := Restore(epoch, idx.Entries)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	return t, nil
}

// Restore returns a tree at epoch holding entries as Entries returns them
// (parents before children, hardlinks naming regular entries), with their
// origins. Add's checks apply to each.
func Restore(epoch time.Time, entries []Entry) (*Tree, error) {
	t := New(epoch)
	// Hardlinks last: their target may sort after them.
	for _, links := range []bool{false, true} {
		for _, e := range entries {
			if (e.Type == Hardlink) != links {
				continue
			}
			if err := t.Add(e); err != nil {
				return nil, err
			}
		}
	}
	return t, nil
}
