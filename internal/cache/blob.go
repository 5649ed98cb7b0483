package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/labbake/labbake/internal/iox"
)

// Put streams r into the cache and returns its digest and size. The data is
// hashed while it is written to a temp file in DIR/ingest; if want is not
// empty and the content hashes to another digest, Put fails with an error
// wrapping iox.ErrDigestMismatch and stores nothing. Otherwise the file is made
// read-only, fsynced and renamed into place. An interrupted Put (an error of
// r, ctx done, the process killed) never leaves an entry behind. Concurrent
// Puts of the same content are safe: the last rename wins, with equal bytes.
func (c *Cache) Put(ctx context.Context, r io.Reader, want string) (digest string, size int64, err error) {
	if want != "" {
		if _, err := parseDigest(want); err != nil {
			return "", 0, fmt.Errorf("cache: put: %w", err)
		}
	}
	in, err := c.newIngest("put")
	if err != nil {
		return "", 0, fmt.Errorf("cache: put: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			in.discard()
		}
	}()
	h := sha256.New()
	n, err := copyHashed(in.f, iox.Reader(ctx, r), h, -1)
	if err != nil {
		return "", 0, fmt.Errorf("cache: put: after %d bytes: %w", n, err)
	}
	got := digestPrefix + hex.EncodeToString(h.Sum(nil))
	if want != "" && got != want {
		return "", 0, fmt.Errorf("cache: put: %w: want %s, got %s (%d bytes)", iox.ErrDigestMismatch, want, got, n)
	}
	if err := ctx.Err(); err != nil {
		return "", 0, fmt.Errorf("cache: put %s: %w", got, err)
	}
	if err := in.finish(); err != nil {
		return "", 0, fmt.Errorf("cache: put %s: %w", got, err)
	}
	dst := c.blobPath(got[len(digestPrefix):])
	if err := in.commitTo(dst); err != nil {
		return "", 0, fmt.Errorf("cache: put %s: %w", got, err)
	}
	committed = true
	if err := c.syncDir(c.blobDir()); err != nil {
		return "", 0, fmt.Errorf("cache: put %s: %w", got, err)
	}
	c.log.Debug("cache: put", "digest", got, "size", n)
	return got, n, nil
}

// Open returns a reader of the blob that verifies its digest as it is read:
// at EOF a mismatch is reported as an error wrapping ErrCorrupt instead of
// io.EOF. Callers must read to EOF to get that guarantee. A missing blob is
// an error wrapping ErrNotFound (and fs.ErrNotExist).
func (c *Cache) Open(digest string) (io.ReadCloser, error) {
	h, err := blobHex(digest)
	if err != nil {
		return nil, err
	}
	p := c.blobPath(h)
	f, err := os.Open(p)
	if err != nil {
		return nil, c.openErr(digest, err)
	}
	return &verifyReader{f: f, h: sha256.New(), digest: digest, path: p}, nil
}

func (c *Cache) openErr(digest string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cache: blob %s: %w", digest, ErrNotFound)
	}
	return fmt.Errorf("cache: blob %s: %w", digest, err)
}

type verifyReader struct {
	f      *os.File
	h      hash.Hash
	digest string
	path   string
	err    error
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.f.Read(p)
	v.h.Write(p[:n])
	switch {
	case err == io.EOF:
		if got := digestPrefix + hex.EncodeToString(v.h.Sum(nil)); got != v.digest {
			v.err = corruptErr(v.digest, v.path, got)
		} else {
			v.err = io.EOF
		}
		return n, v.err
	case err != nil:
		v.err = fmt.Errorf("cache: reading blob %s: %w", v.digest, err)
		return n, v.err
	}
	return n, nil
}

func (v *verifyReader) Close() error { return v.f.Close() }

func corruptErr(digest, path, got string) error {
	return fmt.Errorf("cache: blob %s (%s): %w: content hashes to %s; remove it and fetch it again", digest, path, ErrCorrupt, got)
}

// Path verifies the blob (once per process and Cache) and returns the path
// of its file, for tools that need a file. The file is read-only and must
// not be changed. A corrupt blob is an error wrapping ErrCorrupt.
func (c *Cache) Path(digest string) (string, error) {
	h, err := blobHex(digest)
	if err != nil {
		return "", err
	}
	p := c.blobPath(h)
	c.mu.Lock()
	ok := c.verified[digest]
	c.mu.Unlock()
	if ok {
		if _, err := os.Stat(p); err != nil {
			c.forget(digest)
			return "", c.openErr(digest, err)
		}
		return p, nil
	}
	if err := c.verify(context.Background(), digest, h); err != nil {
		return "", err
	}
	return p, nil
}

func (c *Cache) forget(digest string) {
	c.mu.Lock()
	delete(c.verified, digest)
	c.mu.Unlock()
}

// Verify reads the whole blob and checks its digest.
func (c *Cache) Verify(digest string) error {
	h, err := blobHex(digest)
	if err != nil {
		return err
	}
	return c.verify(context.Background(), digest, h)
}

func (c *Cache) verify(ctx context.Context, digest, h string) error {
	p := c.blobPath(h)
	f, err := os.Open(p)
	if err != nil {
		c.forget(digest)
		return c.openErr(digest, err)
	}
	defer f.Close()
	size := int64(-1)
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	sum := sha256.New()
	if _, err := copyHashed(nil, iox.Reader(ctx, f), sum, size); err != nil {
		return fmt.Errorf("cache: verifying blob %s: %w", digest, err)
	}
	if got := digestPrefix + hex.EncodeToString(sum.Sum(nil)); got != digest {
		c.forget(digest)
		return corruptErr(digest, p, got)
	}
	c.mu.Lock()
	c.verified[digest] = true
	c.mu.Unlock()
	return nil
}

// Problem is one thing wrong in the cache found by VerifyAll.
type Problem struct {
	Digest string // the blob concerned, if any
	Path   string // the file concerned
	Err    error
}

func (p Problem) String() string { return p.Err.Error() }

// VerifyAll verifies every blob (with one worker per usable CPU) and checks
// every ref. It returns the problems found, sorted by path: corrupt blobs
// (ErrCorrupt), stray files in the blob directory, unreadable refs and refs
// pointing to a missing blob (ErrNotFound). The error is for failures to do
// the check at all, ctx being done among them.
func (c *Cache) VerifyAll(ctx context.Context) ([]Problem, error) {
	entries, err := os.ReadDir(c.blobDir())
	if err != nil {
		return nil, fmt.Errorf("cache: verify: %w", err)
	}
	var (
		mu       sync.Mutex
		problems []Problem
		fatal    error
	)
	add := func(p Problem) {
		mu.Lock()
		problems = append(problems, p)
		mu.Unlock()
	}
	work := make(chan string)
	var wg sync.WaitGroup
	workers := max(1, runtime.GOMAXPROCS(0))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for h := range work {
				d := digestPrefix + h
				err := c.verify(ctx, d, h)
				switch {
				case err == nil, errors.Is(err, ErrNotFound):
					// Removed meanwhile: not a problem.
				case errors.Is(err, ErrCorrupt):
					add(Problem{Digest: d, Path: c.blobPath(h), Err: err})
				case ctx.Err() != nil:
					mu.Lock()
					fatal = ctx.Err()
					mu.Unlock()
				default:
					add(Problem{Digest: d, Path: c.blobPath(h), Err: err})
				}
			}
		}()
	}
feed:
	for _, e := range entries {
		name := e.Name()
		if !isBlobName(name) || !e.Type().IsRegular() {
			add(Problem{Path: filepath.Join(c.blobDir(), name),
				Err: fmt.Errorf("cache: unexpected file %s in the blob directory", filepath.Join(c.blobDir(), name))})
			continue
		}
		select {
		case work <- name:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cache: verify: %w", err)
	}
	if fatal != nil {
		return nil, fmt.Errorf("cache: verify: %w", fatal)
	}

	refs, refProblems, err := c.readRefs()
	if err != nil {
		return nil, fmt.Errorf("cache: verify: %w", err)
	}
	problems = append(problems, refProblems...)
	for key, d := range refs {
		h := d[len(digestPrefix):]
		if _, err := os.Stat(c.blobPath(h)); err != nil {
			problems = append(problems, Problem{Digest: d, Path: c.refPath(key),
				Err: fmt.Errorf("cache: ref %q points to blob %s: %w", key, d, ErrNotFound)})
		}
	}
	sort.Slice(problems, func(i, j int) bool {
		if problems[i].Path != problems[j].Path {
			return problems[i].Path < problems[j].Path
		}
		return problems[i].Err.Error() < problems[j].Err.Error()
	})
	return problems, nil
}

// Blob describes one stored blob.
type Blob struct {
	Digest  string
	Size    int64
	ModTime time.Time // when it was written
	Refs    []string  // keys of the refs pointing at it, sorted
}

// List returns every stored blob, sorted by digest.
func (c *Cache) List() ([]Blob, error) {
	refs, err := c.Refs()
	if err != nil {
		return nil, fmt.Errorf("cache: list: %w", err)
	}
	byDigest := map[string][]string{}
	for k, d := range refs {
		byDigest[d] = append(byDigest[d], k)
	}
	entries, err := os.ReadDir(c.blobDir())
	if err != nil {
		return nil, fmt.Errorf("cache: list: %w", err)
	}
	blobs := make([]Blob, 0, len(entries))
	for _, e := range entries {
		if !isBlobName(e.Name()) || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("cache: list: %w", err)
		}
		d := digestPrefix + e.Name()
		keys := byDigest[d]
		slices.Sort(keys)
		blobs = append(blobs, Blob{Digest: d, Size: fi.Size(), ModTime: fi.ModTime(), Refs: keys})
	}
	// ReadDir sorts by name, and names are the hex digests.
	return blobs, nil
}

// Remove deletes a blob, e.g. a corrupt one so that it can be fetched again.
// Refs pointing to it are left alone. A missing blob is an error wrapping
// ErrNotFound; in a cache directory labbake did not create, Remove removes
// nothing and fails with ErrForeign.
func (c *Cache) Remove(digest string) error {
	h, err := blobHex(digest)
	if err != nil {
		return err
	}
	if !c.owned {
		return c.foreignErr("remove " + digest)
	}
	c.forget(digest)
	if err := os.Remove(c.blobPath(h)); err != nil {
		return c.openErr(digest, err)
	}
	c.log.Debug("cache: removed blob", "digest", digest)
	return nil
}

// Prune removes every blob for which keep returns false (a nil keep keeps
// nothing) and no ref points to it, then every ref whose blob is missing.
// It returns the number of blobs removed and the bytes freed. Blobs being
// written by a concurrent Put or ImportBundle are not in the blob directory
// yet and so are never touched; a blob that is Put and only then given a ref
// can be removed in between, so callers that prune while builds run should
// say through keep what those builds use. In a cache directory labbake did
// not create, Prune removes nothing and fails with ErrForeign.
func (c *Cache) Prune(keep func(digest string) bool) (removed int, freed int64, err error) {
	if !c.owned {
		return 0, 0, c.foreignErr("prune")
	}
	refs, err := c.Refs()
	if err != nil {
		// An unreadable ref could protect a blob: prune nothing.
		return 0, 0, fmt.Errorf("cache: prune: %w", err)
	}
	referenced := map[string]bool{}
	for _, d := range refs {
		referenced[d] = true
	}
	entries, err := os.ReadDir(c.blobDir())
	if err != nil {
		return 0, 0, fmt.Errorf("cache: prune: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if !isBlobName(e.Name()) || !e.Type().IsRegular() {
			continue
		}
		d := digestPrefix + e.Name()
		if referenced[d] || (keep != nil && keep(d)) {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.forget(d)
		if err := os.Remove(c.blobPath(e.Name())); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		removed++
		freed += fi.Size()
		c.log.Debug("cache: pruned blob", "digest", d, "size", fi.Size())
	}
	for key, d := range refs {
		if c.Has(d) {
			continue
		}
		if err := c.RemoveRef(key); err != nil {
			errs = append(errs, err)
			continue
		}
		c.log.Debug("cache: pruned dangling ref", "key", key, "digest", d)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, freed, fmt.Errorf("cache: prune: %w", err)
	}
	return removed, freed, nil
}
