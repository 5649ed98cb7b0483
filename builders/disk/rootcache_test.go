package disk

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sparseFile makes a file of size bytes holding data at the given offsets
// (zeros written as data where the value is all zeros), holes elsewhere.
func sparseFile(t *testing.T, path string, size int64, data map[int64][]byte) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for off, b := range data {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func readAll(t *testing.T, f *os.File, off, n int64) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCopyChunks: a range copied into a file gives it the same bytes and
// digest, whether its zeros were holes or written zeros, at any place in
// the destination; a different byte gives a different digest.
func TestCopyChunks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const size = 10*chunk + 123
	data := map[int64][]byte{
		0:             []byte("superblock"),
		3*chunk - 5:   bytes.Repeat([]byte{0xaa}, 10), // across a chunk boundary
		5 * chunk:     make([]byte, chunk),            // zeros as data
		7*chunk + 100: bytes.Repeat([]byte{1}, chunk),
		size - 3:      []byte("end"),
	}
	holes := map[int64][]byte{}
	for k, v := range data {
		if !bytes.Equal(v, make([]byte, len(v))) {
			holes[k] = v
		}
	}
	const srcOff = 3 << 20
	shifted := map[int64][]byte{}
	for k, v := range data {
		shifted[srcOff+k] = v
	}
	src := sparseFile(t, filepath.Join(dir, "src"), srcOff+size, shifted)
	alt := sparseFile(t, filepath.Join(dir, "alt"), size, holes)
	dst := sparseFile(t, filepath.Join(dir, "dst"), 1<<20+size, nil)

	d1, err := copyChunks(ctx, src, srcOff, dst, 1<<20, size)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := readAll(t, dst, 1<<20, size), readAll(t, src, srcOff, size); !bytes.Equal(got, want) {
		t.Fatal("the copy's bytes differ from the source range")
	}
	d2, err := copyChunks(ctx, alt, 0, sparseFile(t, filepath.Join(dir, "dst2"), size, nil), 0, size)
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Errorf("digest with zeros as data %s, as holes %s: want equal", d1, d2)
	}
	if _, err := alt.WriteAt([]byte{0xab}, 3*chunk-5); err != nil {
		t.Fatal(err)
	}
	d3, err := copyChunks(ctx, alt, 0, sparseFile(t, filepath.Join(dir, "dst3"), size, nil), 0, size)
	if err != nil {
		t.Fatal(err)
	}
	if d3 == d2 {
		t.Error("a changed byte kept the digest")
	}
}

// TestRootCacheEntry: a stored entry loads back as the same bytes; one
// changed byte in it is a miss that drops the entry and clears the range.
func TestRootCacheEntry(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	slot := filepath.Join(dir, "stage", "r-1")
	const off, size = 1 << 20, 6 * chunk
	raw := sparseFile(t, filepath.Join(dir, "raw"), off+size, map[int64][]byte{off + 10: []byte("root fs"), off + 4*chunk: []byte("more")})
	if err := storeRoot(ctx, slot, "k1", raw, off, size); err != nil {
		t.Fatal(err)
	}
	if hit, err := loadRoot(ctx, slot, "k2", sparseFile(t, filepath.Join(dir, "x"), off+size, nil), off, size); hit || err != nil {
		t.Fatalf("another key: hit %v, %v", hit, err)
	}
	into := sparseFile(t, filepath.Join(dir, "into"), off+size, nil)
	if hit, err := loadRoot(ctx, slot, "k1", into, off, size); !hit || err != nil {
		t.Fatalf("load: hit %v, %v", hit, err)
	}
	if !bytes.Equal(readAll(t, into, 0, off+size), readAll(t, raw, 0, off+size)) {
		t.Fatal("loaded bytes differ")
	}
	f, err := os.OpenFile(filepath.Join(slot, "k1.ext4"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("R"), 10)
	f.Close()
	into2 := sparseFile(t, filepath.Join(dir, "into2"), off+size, nil)
	hit, err := loadRoot(ctx, slot, "k1", into2, off, size)
	if hit || !errors.Is(err, errDamaged) {
		t.Fatalf("damaged entry: hit %v, %v", hit, err)
	}
	if !bytes.Equal(readAll(t, into2, 0, off+size), make([]byte, off+size)) {
		t.Error("the range was not cleared after a damaged entry")
	}
	if _, err := os.Stat(filepath.Join(slot, "k1.ext4")); !os.IsNotExist(err) {
		t.Errorf("the damaged entry was kept: %v", err)
	}
}

// TestPruneSlots keeps the most recently used slots.
func TestPruneSlots(t *testing.T) {
	pool := t.TempDir()
	base := time.Now().Add(-time.Hour)
	for i, name := range []string{"a", "b", "c", "d"} {
		p := filepath.Join(pool, name)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		at := base.Add(time.Duration(i) * time.Minute)
		if name == "a" {
			at = time.Now() // used last
		}
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	pruneSlots(pool, 2)
	var left []string
	entries, _ := os.ReadDir(pool)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if len(left) != 2 || left[0] != "a" || left[1] != "d" {
		t.Errorf("left %v, want [a d]", left)
	}
}

// TestRootCacheNoRoom: an entry that would leave the disk with less than
// minFree is not kept.
func TestRootCacheNoRoom(t *testing.T) {
	old := minFree
	minFree = func(total int64) int64 { return total } // nothing is room enough
	t.Cleanup(func() { minFree = old })
	dir := t.TempDir()
	raw := sparseFile(t, filepath.Join(dir, "raw"), 2*chunk, map[int64][]byte{0: []byte("fs")})
	slot := filepath.Join(dir, "stage", "r-1")
	if err := storeRoot(context.Background(), slot, "k", raw, 0, 2*chunk); !errors.Is(err, errNoRoom) {
		t.Fatalf("storeRoot on a full disk: %v", err)
	}
	if _, err := os.Stat(filepath.Join(slot, "k.ext4")); !os.IsNotExist(err) {
		t.Errorf("an entry was kept: %v", err)
	}
}

// benchRoot writes a sparse file of size bytes shaped roughly like a
// root file system image: runs of random bytes (file contents), holes,
// zeros written as data (zeroed tables) and runs where only some 4 KiB
// blocks hold data (bitmaps, inode tables), in runs of 4 KiB to 8 MiB.
// The layout is the same on every call.
func benchRoot(b *testing.B, path string, size int64) *os.File {
	b.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	seed := [32]byte{'l', 'a', 'b'}
	rnd := rand.NewChaCha8(seed)
	rng := rand.New(rnd)
	buf := make([]byte, 8<<20)
	for pos := int64(0); pos < size; {
		n := min(size-pos, 4096*(1+rng.Int64N(2048)))
		switch kind := rng.IntN(20); {
		case kind < 11: // random bytes
			rnd.Read(buf[:n])
			if _, err := f.WriteAt(buf[:n], pos); err != nil {
				b.Fatal(err)
			}
		case kind < 17: // a hole
		case kind < 19: // zeros as data
			clear(buf[:n])
			if _, err := f.WriteAt(buf[:n], pos); err != nil {
				b.Fatal(err)
			}
		default: // one 4 KiB block in 8 holds data
			for blk := int64(0); blk < n; blk += 4096 {
				if rng.IntN(8) == 0 {
					if _, err := f.WriteAt([]byte{byte(rng.Uint32()) | 1}, pos+blk+int64(rng.IntN(4096))); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		pos += n
	}
	return f
}

// memFile is an anonymous file in memory, like the raw disk of a bake.
func memFile(b *testing.B) *os.File {
	b.Helper()
	fd, err := unix.MemfdCreate("bench-disk", unix.MFD_CLOEXEC)
	if err != nil {
		b.Skipf("no memfd: %v", err)
	}
	f := os.NewFile(uintptr(fd), "bench-disk")
	b.Cleanup(func() { f.Close() })
	return f
}

// BenchmarkCopyChunks copies a 512 MiB root-like range the two ways the
// stage cache does: load (a file in the cache's directory into a raw disk
// in memory, freed before each copy so that its pages are allocated again
// as in a build) and store (the raw disk in memory into a new file in the
// directory). Run it short: go test -run '^$' -bench CopyChunks
// -benchtime 3x ./builders/disk/
func BenchmarkCopyChunks(b *testing.B) {
	const size = 512 << 20
	ctx := context.Background()
	dir := b.TempDir()
	cached := benchRoot(b, filepath.Join(dir, "cached"), size)
	b.Run("load", func(b *testing.B) {
		raw := memFile(b)
		b.SetBytes(size)
		for b.Loop() {
			b.StopTimer()
			if err := raw.Truncate(0); err != nil {
				b.Fatal(err)
			}
			if err := raw.Truncate(size); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := copyChunks(ctx, cached, 0, raw, 0, size); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("store", func(b *testing.B) {
		raw := memFile(b)
		if err := raw.Truncate(size); err != nil {
			b.Fatal(err)
		}
		if _, err := copyChunks(ctx, cached, 0, raw, 0, size); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(size)
		for b.Loop() {
			b.StopTimer()
			out := filepath.Join(dir, "stored")
			os.Remove(out) // the last copy: its dirty pages go unwritten
			entry, err := os.Create(out)
			if err != nil {
				b.Fatal(err)
			}
			if err := entry.Truncate(size); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := copyChunks(ctx, raw, 0, entry, 0, size); err != nil {
				b.Fatal(err)
			}
			entry.Close()
		}
	})
}
