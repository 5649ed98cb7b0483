package bake

import (
	"os"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// imageWriter writes an image file and hashes it on the side (on the
// other core), and hands written ranges to the kernel's writeback as they
// complete, so that the fsync before the rename finds little left to do.
type imageWriter struct {
	f       *os.File
	blocks  *blockWriter // nil: written front to back with f.Write
	h       *hasher
	n       int64
	written atomic.Int64 // n, for a progress display
	flushed int64        // bytes already handed to writeback
}

// writebackChunk is how much is written before writeback is started.
const writebackChunk = 32 << 20

// newImageWriter writes into f, through blocks unless it is nil.
func newImageWriter(f *os.File, blocks *blockWriter) *imageWriter {
	return &imageWriter{f: f, blocks: blocks, h: newHasher()}
}

func (w *imageWriter) Write(p []byte) (int, error) {
	var n int
	var err error
	if w.blocks != nil {
		n, err = w.blocks.Write(p)
	} else {
		n, err = w.f.Write(p)
	}
	if n > 0 {
		_, _ = w.h.Write(p[:n])
		w.n += int64(n)
		w.written.Store(w.n)
		if w.n-w.flushed >= writebackChunk {
			// Only a hint: errors show up in the final fsync.
			_ = unix.SyncFileRange(int(w.f.Fd()), w.flushed, w.n-w.flushed, unix.SYNC_FILE_RANGE_WRITE)
			w.flushed = w.n
		}
	}
	return n, err
}

// Close stops the hashing and returns the hex sha256 of everything
// written.
func (w *imageWriter) Close() string {
	sum, _ := w.h.Close()
	return strings.TrimPrefix(sum, "sha256:")
}
