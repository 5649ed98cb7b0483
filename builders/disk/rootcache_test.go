package disk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labbake/labbake/internal/iox"
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

// chunksDigest is the digest copyChunks must give for a range holding b,
// written the plain way: for each chunk that is not all zeros, in order,
// its place and the sha256 of its bytes.
func chunksDigest(b []byte) string {
	h := sha256.New()
	for c := 0; c < len(b); c += chunk {
		data := b[c:min(c+chunk, len(b))]
		if bytes.Equal(data, make([]byte, len(data))) {
			continue
		}
		var place [8]byte
		binary.BigEndian.PutUint64(place[:], uint64(c))
		sum := sha256.Sum256(data)
		h.Write(place[:])
		h.Write(sum[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestCopyChunksCases: for ranges with data at chunk and job boundaries,
// of zeros only, not a multiple of the chunk, or cut short (a torn
// entry), whether the zeros are holes or data and however many workers
// copy, copyChunks gives the range's bytes at the destination, leaves
// its zero chunks unwritten and gives the digest of its chunks.
func TestCopyChunksCases(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}
	split := random(2 * copyUnit) // data with zero chunks inside
	for _, c := range []int{3, 4, 17, 31} {
		clear(split[c*chunk : (c+1)*chunk])
	}
	tests := []struct {
		name string
		size int64
		data map[int64][]byte // at places in the range
		cut  int64            // bytes of the range missing from the file's end
	}{
		{"empty", 0, nil, 0},
		{"holes only", 5 * chunk, nil, 0},
		{"zeros only", 5*chunk + 7, map[int64][]byte{0: make([]byte, 5*chunk+7)}, 0},
		{"not a multiple of the chunk", 10*chunk + 123, map[int64][]byte{0: []byte("superblock"), 10*chunk + 120: []byte("end")}, 0},
		{"across a chunk boundary", 4 * chunk, map[int64][]byte{3*chunk - 5: bytes.Repeat([]byte{0xaa}, 10)}, 0},
		{"across job boundaries", 3*copyUnit + chunk/2, map[int64][]byte{
			copyUnit - 100:           random(200),
			2*copyUnit - chunk:       random(2 * chunk),
			3*copyUnit + chunk/2 - 1: {1},
		}, 0},
		{"zero chunks inside data", 2*copyUnit + 3*chunk, map[int64][]byte{chunk: split}, 0},
		{"all data", 2*copyUnit + 777, map[int64][]byte{0: random(2*copyUnit + 777)}, 0},
		{"torn inside a chunk", 2 * copyUnit, map[int64][]byte{0: random(2 * copyUnit)}, copyUnit - 100},
		{"torn at a job boundary", 2 * copyUnit, map[int64][]byte{0: random(2 * copyUnit)}, copyUnit},
	}
	ctx := context.Background()
	const srcOff, dstOff = 3<<20 + 12<<10, 1<<20 + 4<<10 // not multiples of the chunk
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := make([]byte, tt.size)
			for off, b := range tt.data {
				copy(want[off:], b)
			}
			clear(want[tt.size-tt.cut:])
			digest := chunksDigest(want)
			// The same bytes three ways: as given, every byte written,
			// only the 4 KiB blocks that are not zeros written.
			given, dense, sparse := map[int64][]byte{}, map[int64][]byte{srcOff: want}, map[int64][]byte{}
			for off, b := range tt.data {
				given[srcOff+off] = b
			}
			for blk := int64(0); blk < tt.size; blk += 4096 {
				if b := want[blk:min(blk+4096, tt.size)]; !bytes.Equal(b, make([]byte, len(b))) {
					sparse[srcOff+blk] = b
				}
			}
			dir := t.TempDir()
			for name, data := range map[string]map[int64][]byte{"given": given, "dense": dense, "sparse": sparse} {
				src := sparseFile(t, filepath.Join(dir, name), srcOff+tt.size, data)
				if err := src.Truncate(srcOff + tt.size - tt.cut); err != nil {
					t.Fatal(err)
				}
				for _, procs := range []int{1, 2, 5} {
					old := runtime.GOMAXPROCS(procs)
					dst := sparseFile(t, filepath.Join(dir, fmt.Sprintf("%s-%d", name, procs)), dstOff+tt.size, nil)
					got, err := copyChunks(ctx, src, srcOff, dst, dstOff, tt.size)
					runtime.GOMAXPROCS(old)
					if err != nil {
						t.Fatalf("%s, %d workers: %v", name, procs, err)
					}
					if got != digest {
						t.Errorf("%s, %d workers: digest %s, want %s", name, procs, got, digest)
					}
					if tt.size > 0 && !bytes.Equal(readAll(t, dst, dstOff, tt.size), want) {
						t.Errorf("%s, %d workers: the copy's bytes differ", name, procs)
					}
					for c := int64(0); c < tt.size; c += chunk {
						n := min(chunk, tt.size-c)
						if !bytes.Equal(want[c:c+n], make([]byte, n)) {
							continue
						}
						data, err := unix.Seek(int(dst.Fd()), dstOff+c, unix.SEEK_DATA)
						if err == nil && data < dstOff+c+n {
							t.Errorf("%s, %d workers: the zero chunk at %d was written", name, procs, c)
						}
					}
				}
			}
		})
	}
}

// TestCopyChunksCancel: a cancelled copy stops with the context's error,
// and loading with it leaves the entry in place.
func TestCopyChunksCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	const size = 3 * copyUnit
	src := sparseFile(t, filepath.Join(dir, "src"), size, map[int64][]byte{0: bytes.Repeat([]byte{7}, size)})
	dst := sparseFile(t, filepath.Join(dir, "dst"), size, nil)
	if _, err := copyChunks(ctx, src, 0, dst, 0, size); !errors.Is(err, context.Canceled) {
		t.Fatalf("copyChunks with a cancelled context: %v", err)
	}
	slot := filepath.Join(dir, "stage", "r-1")
	if err := storeRoot(context.Background(), slot, "k", src, 0, size); err != nil {
		t.Fatal(err)
	}
	if hit, err := loadRoot(ctx, slot, "k", dst, 0, size); hit || !errors.Is(err, context.Canceled) {
		t.Fatalf("loadRoot with a cancelled context: hit %v, %v", hit, err)
	}
	if _, err := os.Stat(filepath.Join(slot, "k.ext4")); err != nil {
		t.Errorf("a cancelled load dropped the entry: %v", err)
	}
}

// TestRootCacheTorn: an entry cut short (torn) is a miss that drops it.
func TestRootCacheTorn(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	slot := filepath.Join(dir, "stage", "r-1")
	const size = 3 * copyUnit
	raw := sparseFile(t, filepath.Join(dir, "raw"), size, map[int64][]byte{0: []byte("root fs"), 2 * copyUnit: []byte("tail")})
	if err := storeRoot(ctx, slot, "k", raw, 0, size); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(slot, "k.ext4"), 2*copyUnit+2); err != nil {
		t.Fatal(err)
	}
	into := sparseFile(t, filepath.Join(dir, "into"), size, nil)
	if hit, err := loadRoot(ctx, slot, "k", into, 0, size); hit || !errors.Is(err, errDamaged) {
		t.Fatalf("torn entry: hit %v, %v", hit, err)
	}
	if !bytes.Equal(readAll(t, into, 0, size), make([]byte, size)) {
		t.Error("the range was not cleared after a torn entry")
	}
	if _, err := os.Stat(filepath.Join(slot, "k.ext4")); !os.IsNotExist(err) {
		t.Errorf("the torn entry was kept: %v", err)
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
	iox.PruneDirs(pool, 2)
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
// iox.MinFree is not kept.
func TestRootCacheNoRoom(t *testing.T) {
	old := iox.MinFree
	iox.MinFree = func(total int64) int64 { return total } // nothing is room enough
	t.Cleanup(func() { iox.MinFree = old })
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
