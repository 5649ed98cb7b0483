package bake

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// imageWriter writes an image file and hashes it on the side. The sha256
// runs in its own goroutine (on the other core), and written ranges are
// handed to the kernel's writeback as they complete, so that the fsync
// before the rename finds little left to do.
type imageWriter struct {
	f       *os.File
	n       int64
	written atomic.Int64 // n, for a progress display
	flushed int64        // bytes already handed to writeback
	blocks  chan []byte
	sum     chan string
}

// writebackChunk is how much is written before writeback is started.
const writebackChunk = 32 << 20

func newImageWriter(f *os.File) *imageWriter {
	w := &imageWriter{f: f, blocks: make(chan []byte, 8), sum: make(chan string, 1)}
	go func() {
		h := sha256.New()
		for b := range w.blocks {
			h.Write(b)
		}
		w.sum <- hex.EncodeToString(h.Sum(nil))
	}()
	return w
}

func (w *imageWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if n > 0 {
		w.blocks <- append([]byte(nil), p[:n]...)
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

// Close stops the hashing and returns the sha256 of everything written.
func (w *imageWriter) Close() string {
	close(w.blocks)
	return <-w.sum
}
