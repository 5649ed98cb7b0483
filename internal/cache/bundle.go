package cache

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/labbake/labbake/internal/iox"
	"golang.org/x/sys/unix"
)

// Names inside a bundle.
const (
	bundleIndexName = "labbake-bundle.json"
	bundleLockName  = "labbake.lock"
	bundleBlobDir   = "blobs/sha256/"
	bundleFormat    = 1

	maxIndexSize    = 16 << 20 // bytes of labbake-bundle.json
	maxLockSize     = 16 << 20 // bytes of labbake.lock
	maxTrailingData = 1 << 20  // zero bytes tolerated after the tar trailer
	maxZstdWindow   = 64 << 20 // the encoder here uses at most 8 MiB

	// maxZstdExpansion bounds how many bytes one byte of a zstd stream
	// can decompress to: a block regenerates at most 128 KiB (RFC 8878,
	// Block_Maximum_Size) and takes at least 4 bytes (an RLE block: a
	// 3-byte header and the byte to repeat); frame headers only add input.
	maxZstdExpansion = (128 << 10) / 4
	tarBlock         = 512
)

// ErrBadBundle is wrapped by every ImportBundle error that the bundle's
// content causes (truncated, tampered, malformed, declaring more than it
// can hold, a lock that CheckLock refuses), and by no other: not by a
// failure to read the bundle or to write the cache, nor by ctx being done.
var ErrBadBundle = errors.New("bad bundle")

// bundleError marks an error as the bundle's fault without changing its
// message.
type bundleError struct{ err error }

func (e *bundleError) Error() string        { return e.err.Error() }
func (e *bundleError) Unwrap() error        { return e.err }
func (e *bundleError) Is(target error) bool { return target == ErrBadBundle }

// localError marks a failure of the cache (its disk), never the bundle's.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// ImportOptions are the optional settings of ImportBundle.
type ImportOptions struct {
	// Size is the length of the bundle as stored (compressed or not), 0
	// if unknown. With it, an index declaring more blob bytes than a
	// bundle of that size can hold is refused, at the first blob that
	// cannot fit, before any blob is read or written: a small compressed
	// bundle cannot make the import write gigabytes before it fails.
	Size int64
	// CheckLock, if set, validates the bundle's lock file as soon as it
	// is read; its error refuses the bundle (wrapping ErrBadBundle), and
	// the cache is left unchanged.
	CheckLock func(lock []byte) error
}

var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// bundleEpoch is the mtime of every entry of a bundle.
var bundleEpoch = time.Unix(0, 0).UTC()

// BundleInfo is what ImportBundle found in a bundle.
type BundleInfo struct {
	Lock  []byte            // the lab's lock file; nil if the bundle has none
	Refs  map[string]string // key → digest, as set in the cache
	Blobs []string          // digests of the bundle's blobs, sorted
}

type bundleIndex struct {
	Format int               `json:"format"`
	Blobs  []bundleBlob      `json:"blobs"`
	Refs   map[string]string `json:"refs"`
}

type bundleBlob struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// ExportBundle writes a bundle to w: a tar stream with "labbake-bundle.json"
// (the index: format, blobs with digest and size, refs) first, then
// "labbake.lock" (omitted when lock is empty), then "blobs/sha256/<hex>" for
// each blob in digest order. The blobs are those of digests plus those the
// refs point at. Entries have fixed times and owners, so the same inputs
// give the same bytes. With compress, the stream is zstd-compressed. Each
// blob is verified as it is copied: a missing or corrupt blob is an error
// naming it, and w then holds a partial bundle that the caller must discard.
func (c *Cache) ExportBundle(ctx context.Context, w io.Writer, lock []byte, refs map[string]string, digests []string, compress bool) error {
	set := map[string]bool{}
	for _, d := range digests {
		if _, err := parseDigest(d); err != nil {
			return fmt.Errorf("cache: export bundle: %w", err)
		}
		set[d] = true
	}
	idx := bundleIndex{Format: bundleFormat, Refs: map[string]string{}, Blobs: []bundleBlob{}}
	for k, d := range refs {
		if err := checkKey(k); err != nil {
			return fmt.Errorf("cache: export bundle: %w", err)
		}
		if _, err := parseDigest(d); err != nil {
			return fmt.Errorf("cache: export bundle: ref %q: %w", k, err)
		}
		idx.Refs[k] = d
		set[d] = true
	}
	sorted := make([]string, 0, len(set))
	for d := range set {
		sorted = append(sorted, d)
	}
	slices.Sort(sorted)
	var missing []string
	for _, d := range sorted {
		fi, err := os.Stat(c.blobPath(d[len(digestPrefix):]))
		if err != nil {
			missing = append(missing, d)
			continue
		}
		idx.Blobs = append(idx.Blobs, bundleBlob{Digest: d, Size: fi.Size()})
	}
	if len(missing) > 0 {
		return fmt.Errorf("cache: export bundle: %s: %w", listDigests(missing), ErrNotFound)
	}
	index, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return fmt.Errorf("cache: export bundle: %w", err)
	}
	index = append(index, '\n')

	var zw *zstd.Encoder
	dst := w
	if compress {
		// One encoder goroutine and no parallel blocks: the output must not
		// depend on the number of CPUs.
		zw, err = zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
		if err != nil {
			return fmt.Errorf("cache: export bundle: %w", err)
		}
		defer zw.Close()
		dst = zw
	}
	tw := tar.NewWriter(dst)
	buf := make([]byte, copyBufSize)
	writeEntry := func(name string, size int64, r io.Reader) error {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     name,
			Size:     size,
			Mode:     0o644,
			ModTime:  bundleEpoch,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := io.CopyBuffer(tw, iox.Reader(ctx, r), buf)
		return err
	}
	if err := writeEntry(bundleIndexName, int64(len(index)), bytes.NewReader(index)); err != nil {
		return fmt.Errorf("cache: export bundle: %s: %w", bundleIndexName, err)
	}
	if len(lock) > 0 {
		if err := writeEntry(bundleLockName, int64(len(lock)), bytes.NewReader(lock)); err != nil {
			return fmt.Errorf("cache: export bundle: %s: %w", bundleLockName, err)
		}
	}
	for _, b := range idx.Blobs {
		if err := c.exportBlob(writeEntry, b); err != nil {
			return fmt.Errorf("cache: export bundle: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("cache: export bundle: %w", err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return fmt.Errorf("cache: export bundle: %w", err)
		}
	}
	c.log.Debug("cache: exported bundle", "blobs", len(idx.Blobs), "refs", len(idx.Refs), "compressed", compress)
	return nil
}

func (c *Cache) exportBlob(writeEntry func(string, int64, io.Reader) error, b bundleBlob) error {
	rc, err := c.Open(b.Digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	// Exactly Size bytes go into the entry; the verifying reader must then
	// report a clean EOF.
	if err := writeEntry(bundleBlobDir+b.Digest[len(digestPrefix):], b.Size, io.LimitReader(rc, b.Size)); err != nil {
		return fmt.Errorf("blob %s: %w", b.Digest, err)
	}
	var one [1]byte
	n, err := io.ReadFull(rc, one[:])
	if n != 0 {
		return fmt.Errorf("blob %s: grew while being exported", b.Digest)
	}
	if err != io.EOF {
		return err
	}
	return nil
}

func listDigests(ds []string) string {
	const show = 5
	if len(ds) <= show {
		return "blob " + strings.Join(ds, ", ")
	}
	return fmt.Sprintf("%d blobs: %s, …", len(ds), strings.Join(ds[:show], ", "))
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ImportBundle reads a bundle (plain or zstd-compressed tar) and adds its
// blobs and refs to the cache. Every blob is checked against the index, by
// digest and size, while it is streamed into an ingest temp file; only when
// the whole bundle has been read and found complete and correct are the
// blobs renamed into place and the refs set. Any defect — truncation, a blob
// with a wrong digest or size, an entry not in the index, an index blob
// missing, sizes the bundle cannot hold (see ImportOptions) — is an error
// naming it and wrapping ErrBadBundle, and the cache is left unchanged.
// Blobs already in the cache are verified from the bundle but not written
// again.
func (c *Cache) ImportBundle(ctx context.Context, r io.Reader, opts ImportOptions) (*BundleInfo, error) {
	src := &sourceReader{r: r}
	info, err := c.importBundle(ctx, src, opts)
	if err != nil {
		var local *localError
		if ctx.Err() == nil && src.err == nil && !errors.As(err, &local) {
			err = &bundleError{err}
		}
		return nil, fmt.Errorf("cache: import bundle: %w", err)
	}
	return info, nil
}

// sourceReader remembers the first error of reading the bundle itself,
// other than its end, so that such an error is not taken for a defect of
// the bundle.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// errWriter remembers the first error of writing to w.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

// checkCapacity refuses an index whose blobs need more tar bytes than a
// bundle of size bytes can hold (plain: size; zstd: size ×
// maxZstdExpansion), naming the first blob, in index order, past that
// bound. indexEnd is where the index's data ends in the tar stream.
func checkCapacity(idx *bundleIndex, size int64, compressed bool, indexEnd int64) error {
	if size <= 0 {
		return nil
	}
	capacity, kind := size, "plain"
	if compressed {
		kind = "zstd-compressed"
		capacity = math.MaxInt64
		if size < math.MaxInt64/maxZstdExpansion {
			capacity = size * maxZstdExpansion
		}
	}
	// The index, its padding and the end-of-archive marker; each blob
	// then takes a header block and its data padded to whole blocks.
	need := roundBlock(indexEnd) + 2*tarBlock
	for _, b := range idx.Blobs {
		// room cannot overflow; once b.Size fits, neither can roundBlock.
		room := capacity - need - tarBlock
		if b.Size > room || roundBlock(b.Size) > room {
			return fmt.Errorf("%s: blob %s is declared with %d bytes: with the entries before it, more than a %s bundle of %d bytes can hold (%d bytes of tar at most, %d of them needed before it): damaged or forged",
				bundleIndexName, b.Digest, b.Size, kind, size, capacity, need)
		}
		need += roundBlock(b.Size) + tarBlock
	}
	return nil
}

// freeBytes is how many bytes the file system of dir has free for labbake
// (statfs f_bavail); a variable for tests.
var freeBytes = func(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// checkSpace refuses a bundle whose new blobs (those not in the cache yet)
// do not fit in the free space of the cache's file system, naming the
// first that does not, before anything is written. When the free space
// cannot be known, the writes themselves will tell.
func (c *Cache) checkSpace(idx *bundleIndex) error {
	free, err := freeBytes(c.ingestDir())
	if err != nil {
		return nil
	}
	var need int64
	for _, b := range idx.Blobs {
		if c.Has(b.Digest) {
			continue
		}
		if b.Size > free-need {
			return &localError{fmt.Errorf("blob %s (%d bytes) and the new blobs before it do not fit in the %d bytes free in %s", b.Digest, b.Size, free, c.dir)}
		}
		need += b.Size
	}
	return nil
}

func roundBlock(n int64) int64 { return (n + tarBlock - 1) / tarBlock * tarBlock }

func (c *Cache) importBundle(ctx context.Context, r io.Reader, opts ImportOptions) (*BundleInfo, error) {
	br := bufio.NewReaderSize(iox.Reader(ctx, r), 64<<10)
	var src io.Reader = br
	magic, _ := br.Peek(len(zstdMagic))
	compressed := bytes.Equal(magic, zstdMagic)
	if compressed {
		zr, err := zstd.NewReader(br,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		src = zr
	}
	cr := &countingReader{r: src}
	tr := tar.NewReader(cr)

	// Staged new blobs, hex → locked ingest file; discarded unless committed.
	staged := map[string]*ingestFile{}
	committed := false
	defer func() {
		if !committed {
			for _, in := range staged {
				in.discard()
			}
		}
	}()

	hdr, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("reading the index: %w", tarErr(err))
	}
	if hdr.Name != bundleIndexName {
		return nil, fmt.Errorf("first entry is %q, want %s: not a labbake bundle", truncate(hdr.Name), bundleIndexName)
	}
	data, err := readEntry(tr, hdr, maxIndexSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", bundleIndexName, err)
	}
	idx, err := parseIndex(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", bundleIndexName, err)
	}
	if err := checkCapacity(idx, opts.Size, compressed, cr.n); err != nil {
		return nil, err
	}
	if err := c.checkSpace(idx); err != nil {
		return nil, err
	}
	want := make(map[string]int64, len(idx.Blobs)) // hex → size
	for _, b := range idx.Blobs {
		want[b.Digest[len(digestPrefix):]] = b.Size
	}
	for k, d := range idx.Refs {
		if _, ok := want[d[len(digestPrefix):]]; !ok && !c.Has(d) {
			return nil, fmt.Errorf("%s: ref %q points to blob %s, which is neither in the bundle nor in the cache", bundleIndexName, truncate(k), d)
		}
	}
	end := cr.n // where the last entry's data ended

	info := &BundleInfo{Refs: idx.Refs}
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("after %d blobs: %w", len(seen), tarErr(err))
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("entry %q: type %q: only regular files belong in a bundle", truncate(hdr.Name), hdr.Typeflag)
		}
		switch {
		case hdr.Name == bundleLockName:
			if info.Lock != nil {
				return nil, fmt.Errorf("entry %s: appears twice", bundleLockName)
			}
			lock, err := readEntry(tr, hdr, maxLockSize)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", bundleLockName, err)
			}
			if opts.CheckLock != nil {
				if err := opts.CheckLock(lock); err != nil {
					return nil, fmt.Errorf("the bundle's %s is refused: %w", bundleLockName, err)
				}
			}
			info.Lock = lock
		case strings.HasPrefix(hdr.Name, bundleBlobDir):
			h := hdr.Name[len(bundleBlobDir):]
			d := digestPrefix + h
			size, ok := want[h]
			switch {
			case !isBlobName(h):
				return nil, fmt.Errorf("entry %q: not a blob name", truncate(hdr.Name))
			case !ok:
				return nil, fmt.Errorf("blob %s: not in the bundle's index", d)
			case seen[h]:
				return nil, fmt.Errorf("blob %s: appears twice", d)
			case hdr.Size != size:
				return nil, fmt.Errorf("blob %s: %d bytes in the tar, %d in the index", d, hdr.Size, size)
			}
			seen[h] = true
			in, err := c.importBlob(tr, d, size)
			if err != nil {
				return nil, err
			}
			if in != nil {
				staged[h] = in
			}
		default:
			return nil, fmt.Errorf("entry %q: unexpected in a bundle", truncate(hdr.Name))
		}
		end = cr.n
	}
	// archive/tar takes a clean EOF where the end-of-archive marker should
	// be for the end of the archive: demand the marker, two zero blocks.
	if trailerEnd := (end+511)/512*512 + 1024; cr.n < trailerEnd {
		return nil, fmt.Errorf("truncated bundle: the end-of-archive marker is missing: %w", io.ErrUnexpectedEOF)
	}
	var missing []string
	for _, b := range idx.Blobs {
		if !seen[b.Digest[len(digestPrefix):]] {
			missing = append(missing, b.Digest)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s listed in the index but missing from the bundle", listDigests(missing))
	}
	// Read to the end of the stream: for zstd this checks the last block and
	// the frame checksum. Only zero padding may follow the tar.
	if err := checkTrailing(src); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// Everything checked out: commit.
	committed = true
	hexes := make([]string, 0, len(staged))
	for h := range staged {
		hexes = append(hexes, h)
	}
	slices.Sort(hexes)
	var errs []error
	for _, h := range hexes {
		in := staged[h]
		if err := in.commitTo(c.blobPath(h)); err != nil {
			in.discard()
			errs = append(errs, &localError{fmt.Errorf("blob %s: %w", digestPrefix+h, err)})
			continue
		}
		c.mu.Lock()
		c.verified[digestPrefix+h] = true
		c.mu.Unlock()
	}
	if err := c.syncDir(c.blobDir()); err != nil {
		errs = append(errs, &localError{err})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, &localError{err}
	}
	keys := make([]string, 0, len(idx.Refs))
	for k := range idx.Refs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := c.SetRef(k, idx.Refs[k]); err != nil {
			return nil, &localError{err}
		}
	}
	info.Blobs = make([]string, 0, len(idx.Blobs))
	for _, b := range idx.Blobs {
		info.Blobs = append(info.Blobs, b.Digest)
	}
	slices.Sort(info.Blobs)
	c.log.Debug("cache: imported bundle", "blobs", len(info.Blobs), "new", len(hexes), "refs", len(info.Refs))
	return info, nil
}

// importBlob reads one blob entry of size bytes from tr, checking its
// digest. A blob not yet in the cache is written to a locked, finished
// ingest file that the caller commits or discards; for one already present
// only the check is done and in is nil.
func (c *Cache) importBlob(tr io.Reader, d string, size int64) (in *ingestFile, err error) {
	sum := sha256.New()
	var w *errWriter // nil: only hash
	if !c.Has(d) {
		in, err = c.newIngest("import")
		if err != nil {
			return nil, &localError{fmt.Errorf("blob %s: %w", d, err)}
		}
		defer func() {
			if err != nil {
				in.discard()
				in = nil
			}
		}()
		w = &errWriter{w: in.f}
	}
	var dst io.Writer
	if w != nil {
		dst = w
	}
	n, err := copyHashed(dst, tr, sum, size)
	if err != nil {
		if w != nil && w.err != nil {
			return in, &localError{fmt.Errorf("blob %s: writing to the cache: %w", d, err)}
		}
		return in, fmt.Errorf("blob %s: after %d of %d bytes: %w", d, n, size, tarErr(err))
	}
	if n != size {
		return in, fmt.Errorf("blob %s: %d bytes, want %d: %w", d, n, size, io.ErrUnexpectedEOF)
	}
	if got := digestPrefix + hex.EncodeToString(sum.Sum(nil)); got != d {
		return in, fmt.Errorf("blob %s: %w: content hashes to %s", d, iox.ErrDigestMismatch, got)
	}
	if in != nil {
		if err := in.finish(); err != nil {
			return in, &localError{fmt.Errorf("blob %s: %w", d, err)}
		}
	}
	return in, nil
}

func readEntry(tr io.Reader, hdr *tar.Header, limit int64) ([]byte, error) {
	if hdr.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("type %q, want a regular file", hdr.Typeflag)
	}
	if hdr.Size > limit {
		return nil, fmt.Errorf("%d bytes, more than the limit of %d", hdr.Size, limit)
	}
	data := make([]byte, hdr.Size)
	if _, err := io.ReadFull(tr, data); err != nil {
		return nil, tarErr(err)
	}
	return data, nil
}

func parseIndex(data []byte) (*bundleIndex, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var idx bundleIndex
	if err := dec.Decode(&idx); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	if idx.Format != bundleFormat {
		return nil, fmt.Errorf("format %d, this labbake reads format %d", idx.Format, bundleFormat)
	}
	seen := map[string]bool{}
	for i, b := range idx.Blobs {
		if _, err := parseDigest(b.Digest); err != nil {
			return nil, fmt.Errorf("blobs[%d]: %w", i, err)
		}
		if b.Size < 0 {
			return nil, fmt.Errorf("blobs[%d]: negative size %d", i, b.Size)
		}
		if seen[b.Digest] {
			return nil, fmt.Errorf("blobs[%d]: %s listed twice", i, b.Digest)
		}
		seen[b.Digest] = true
	}
	if idx.Refs == nil {
		idx.Refs = map[string]string{}
	}
	for k, d := range idx.Refs {
		if err := checkKey(k); err != nil {
			return nil, fmt.Errorf("refs: %w", err)
		}
		if _, err := parseDigest(d); err != nil {
			return nil, fmt.Errorf("refs[%q]: %w", truncate(k), err)
		}
	}
	return &idx, nil
}

// checkTrailing reads r to its end, accepting only zero bytes, at most
// maxTrailingData of them.
func checkTrailing(r io.Reader) error {
	buf := make([]byte, 32<<10)
	var total int64
	for {
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return errors.New("unexpected data after the end of the archive")
			}
		}
		total += int64(n)
		if total > maxTrailingData {
			return errors.New("too much padding after the end of the archive")
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("after the end of the archive: %w", tarErr(err))
		}
	}
}

// tarErr makes a premature end of the bundle say so.
func tarErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
		return fmt.Errorf("truncated bundle: %w", io.ErrUnexpectedEOF)
	}
	return err
}
