package bake

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/plan"
)

// fileDigests remembers the digests of the lab's files that a batch has
// read whole (the tar files it applied), so that completing the plan reads
// none of them again. It is the plan.Files of a batch.
type fileDigests struct {
	mu sync.Mutex
	m  map[string]fileDigest
}

type fileDigest struct {
	digest string
	size   int64
	id     fileID
}

// fileID tells whether a file is the one that was read: same inode, size
// and modification time.
type fileID struct {
	dev, ino    uint64
	size, mtime int64
}

func idOf(fi os.FileInfo) fileID {
	id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
	}
	return id
}

func newFileDigests() *fileDigests { return &fileDigests{m: map[string]fileDigest{}} }

// FileDigest returns the digest of the file at path: the one taken while
// it was read, if it is still that file, else read now.
func (f *fileDigests) FileDigest(ctx context.Context, path string) (string, int64, error) {
	f.mu.Lock()
	d, ok := f.m[path]
	f.mu.Unlock()
	if ok {
		if fi, err := os.Stat(path); err == nil && idOf(fi) == d.id {
			return d.digest, d.size, nil
		}
	}
	return plan.DigestFile(ctx, path)
}

// remember records digest and size for the file at path as it is now
// (from a tree snapshot, whose key holds the file's identity).
func (f *fileDigests) remember(path, digest string, size int64) {
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	f.mu.Lock()
	f.m[path] = fileDigest{digest: digest, size: size, id: idOf(fi)}
	f.mu.Unlock()
}

// known returns the digest and size taken while the file at path was
// read, if it was.
func (f *fileDigests) known(path string) (string, int64, bool) {
	f.mu.Lock()
	d, ok := f.m[path]
	f.mu.Unlock()
	return d.digest, d.size, ok
}

// read opens the file at path (name is for errors) and hands it to use,
// hashing what use reads on another goroutine; the rest of the file, if
// use stops before its end, is hashed after. The digest is remembered.
func (f *fileDigests) read(ctx context.Context, path, name string, use func(io.Reader) error) error {
	file, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	h := newHasher()
	r := io.TeeReader(iox.Reader(ctx, file), h)
	err = use(r)
	if err == nil {
		_, err = io.Copy(io.Discard, r)
	}
	sum, n := h.Close()
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.m[path] = fileDigest{digest: sum, size: n, id: idOf(fi)}
	f.mu.Unlock()
	return nil
}

// hasher computes a sha256 on its own goroutine (on the other core) of
// what is written to it; Close returns it with the count of bytes.
type hasher struct {
	n      int64
	blocks chan []byte
	sum    chan string
}

func newHasher() *hasher {
	h := &hasher{blocks: make(chan []byte, 8), sum: make(chan string, 1)}
	go func() {
		s := sha256.New()
		for b := range h.blocks {
			s.Write(b)
		}
		h.sum <- iox.DigestOf(s.Sum(nil))
	}()
	return h
}

func (h *hasher) Write(p []byte) (int, error) {
	if len(p) > 0 {
		h.blocks <- append([]byte(nil), p...)
		h.n += int64(len(p))
	}
	return len(p), nil
}

// Close stops the hashing and returns the digest and the bytes written.
func (h *hasher) Close() (string, int64) {
	close(h.blocks)
	return <-h.sum, h.n
}
