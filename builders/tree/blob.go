package tree

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
)

// prepareBlobDir returns dir made absolute, creating it when missing.
func prepareBlobDir(dir string) (string, error) {
	if dir == "" {
		return "", fmt.Errorf("blob dir: empty path")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("blob dir: %w", err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", fmt.Errorf("blob dir: %w", err)
	}
	return abs, nil
}

// holeBlock is the granularity of holes in blobs: a block of this many zero
// bytes is skipped (seeked over) instead of written.
const holeBlock = 64 << 10

// copier holds the buffers blob writing reuses.
type copier struct {
	buf  []byte    // read buffer, a multiple of holeBlock
	zero []byte    // holeBlock zero bytes
	hash hash.Hash // sha256 of the blob being written
}

func newCopier() *copier {
	return &copier{buf: make([]byte, copyBufSize), zero: make([]byte, holeBlock), hash: sha256.New()}
}

// writeBlob copies r into a new owned blob in dir (absolute). The blob's
// name is generated, never derived from the entry's name. Whole blocks of
// zeros become holes, so sparse files (and zero-filled bombs) cost no disk
// space; the bytes read back are the same. mke2fs -d makes holes of zero
// blocks anyway.
func (c *copier) writeBlob(dir string, r io.Reader) (*Blob, error) {
	f, err := os.CreateTemp(dir, "blob-")
	if err != nil {
		return nil, fmt.Errorf("creating blob: %w", err)
	}
	c.hash.Reset()
	n, err := c.copySparse(f, io.TeeReader(r, c.hash))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return nil, fmt.Errorf("writing blob: %w", err)
	}
	return &Blob{Path: f.Name(), Size: n, Owned: true, Digest: hex.EncodeToString(c.hash.Sum(nil))}, nil
}

// copySparse copies r to f, seeking over whole zero blocks; it returns the
// number of bytes copied (holes included).
func (c *copier) copySparse(f *os.File, r io.Reader) (int64, error) {
	var size, hole int64
	for {
		n, eof, err := fill(r, c.buf)
		chunk := c.buf[:n]
		for len(chunk) > 0 {
			// Find the run of non-zero blocks at the start of chunk.
			run := 0
			for run < len(chunk) {
				k := min(holeBlock, len(chunk)-run)
				if k == holeBlock && bytes.Equal(chunk[run:run+k], c.zero) {
					break
				}
				run += k
			}
			if run > 0 {
				if hole > 0 {
					if _, err := f.Seek(hole, io.SeekCurrent); err != nil {
						return size, err
					}
					hole = 0
				}
				if _, err := f.Write(chunk[:run]); err != nil {
					return size, err
				}
				size += int64(run)
				chunk = chunk[run:]
			}
			for len(chunk) >= holeBlock && bytes.Equal(chunk[:holeBlock], c.zero) {
				hole += holeBlock
				size += holeBlock
				chunk = chunk[holeBlock:]
			}
		}
		if err != nil {
			return size, err
		}
		if eof {
			break
		}
	}
	if hole > 0 {
		if err := f.Truncate(size); err != nil {
			return size, err
		}
	}
	return size, nil
}

// fill reads from r until buf is full or r is at EOF. Unlike io.ReadFull it
// reports a short read at EOF as eof, not as io.ErrUnexpectedEOF, so a
// truncated tar (which archive/tar reports as io.ErrUnexpectedEOF) stays an
// error.
func fill(r io.Reader, buf []byte) (n int, eof bool, err error) {
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}

// writeBlobBytes stores b as a new owned blob in dir (absolute).
func writeBlobBytes(dir string, b []byte) (*Blob, error) {
	f, err := os.CreateTemp(dir, "blob-")
	if err != nil {
		return nil, fmt.Errorf("creating blob: %w", err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return nil, fmt.Errorf("writing blob: %w", err)
	}
	sum := sha256.Sum256(b)
	return &Blob{Path: f.Name(), Size: int64(len(b)), Owned: true, Digest: hex.EncodeToString(sum[:])}, nil
}

// dropBlob removes an owned blob that no entry references.
func dropBlob(b *Blob) {
	if b != nil && b.Owned {
		_ = os.Remove(b.Path)
	}
}
