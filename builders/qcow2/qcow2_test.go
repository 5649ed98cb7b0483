package qcow2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fill returns n bytes of the given kind, deterministic for a seed:
// "zero", "random" (incompressible), "text" (compressible), "repeat" (a
// random block repeated every 20000 bytes, so deflate refers back further
// than QEMU's 4 KiB window), "partial" (each 4 KiB random for the first
// 1..4095 bytes, zeros after: compressible in part, by varied amounts) or
// "mixed" (all of these, by 32 KiB pieces).
func fill(kind string, n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	switch kind {
	case "random":
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	case "text":
		words := strings.Fields("the quick brown fox jumps over a lazy dog etcd calico kubelet containerd")
		var sb strings.Builder
		for sb.Len() < n {
			sb.WriteString(words[rng.IntN(len(words))])
			sb.WriteByte(" \n"[rng.IntN(2)])
		}
		copy(b, sb.String())
	case "repeat":
		blk := fill("random", 20000, seed)
		for i := 0; i < n; i += len(blk) {
			copy(b[i:], blk)
		}
	case "partial":
		for i := 0; i < n; i += 4096 {
			k := 1 + rng.IntN(4095)
			for j := i; j < min(i+k, n); j++ {
				b[j] = byte(rng.Uint32())
			}
		}
	case "mixed":
		kinds := []string{"zero", "random", "text", "repeat", "text"}
		for i := 0; i < n; i += 32 << 10 {
			copy(b[i:], fill(kinds[rng.IntN(len(kinds))], 32<<10, rng.Uint64()))
		}
	}
	return b
}

// sparseFile writes data into a sparse file of size bytes, leaving holes
// wherever data is zero by the MiB.
func sparseFile(t testing.TB, data []byte) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "src.raw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(int64(len(data))); err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 1<<20)
	for off := 0; off < len(data); off += 1 << 20 {
		p := data[off:min(off+1<<20, len(data))]
		if bytes.Equal(p, zero[:len(p)]) {
			continue
		}
		if _, err := f.WriteAt(p, int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

type roundTrip struct {
	name string
	size int
	data func(size int) []byte // nil: all zero
	opts Options
}

func roundTrips() []roundTrip {
	kind := func(k string) func(int) []byte { return func(n int) []byte { return fill(k, n, uint64(n)) } }
	holes := func(n int) []byte { // data islands between large zero ranges
		b := make([]byte, n)
		for off := 0; off < n; off += 3 << 20 {
			copy(b[off:], fill("mixed", min(300<<10, n-off), uint64(off)))
		}
		return b
	}
	var cases []roundTrip
	for _, cs := range []int{512, 4096, 65536, 2 << 20} {
		for _, comp := range []Compression{NoCompression, Zlib, Zstd} {
			o := Options{ClusterSize: cs, Compress: comp}
			name := fmt.Sprintf("cs%d/compress=%v", cs, comp)
			cases = append(cases,
				roundTrip{name + "/empty", 0, nil, o},
				roundTrip{name + "/zero", 5 << 20, nil, o},
				roundTrip{name + "/random", 3<<20 + 1536, kind("random"), o},
				roundTrip{name + "/text", 2<<20 + 512, kind("text"), o},
				roundTrip{name + "/mixed", 6<<20 + 4096, kind("mixed"), o},
				roundTrip{name + "/holes", 10 << 20, holes, o},
			)
		}
	}
	cases = append(cases,
		roundTrip{"odd-size/plain", 1<<20 + 777, kind("text"), Options{}},
		roundTrip{"odd-size/compress", 100001, kind("mixed"), Options{ClusterSize: 4096, Compress: Zlib}},
		roundTrip{"repeat/compress", 4 << 20, kind("repeat"), Options{Compress: Zlib}},
		roundTrip{"spill/compress", 8 << 20, kind("mixed"), Options{Compress: Zlib, spillLimit: 100 << 10}},
		roundTrip{"backing/plain", 9 << 20, holes, Options{BackingFile: "base.qcow2", BackingFormat: "qcow2"}},
		roundTrip{"backing/compress", 9 << 20, holes, Options{ClusterSize: 4096, Compress: Zlib, BackingFile: "base.qcow2"}},
		roundTrip{"odd-size/zstd", 100001, kind("mixed"), Options{ClusterSize: 4096, Compress: Zstd}},
		roundTrip{"repeat/zstd", 4 << 20, kind("repeat"), Options{Compress: Zstd}},
		roundTrip{"partial/zstd", 6 << 20, kind("partial"), Options{Compress: Zstd}},
		roundTrip{"partial-2m/zstd", 6 << 20, kind("partial"), Options{ClusterSize: 2 << 20, Compress: Zstd}},
		roundTrip{"spill/zstd", 8 << 20, kind("mixed"), Options{Compress: Zstd, spillLimit: 100 << 10}},
		roundTrip{"backing/zstd", 9 << 20, holes, Options{ClusterSize: 4096, Compress: Zstd, BackingFile: "base.qcow2", BackingFormat: "qcow2"}},
	)
	return cases
}

func (rt roundTrip) source(t testing.TB) []byte {
	if rt.data == nil {
		return make([]byte, rt.size)
	}
	return rt.data(rt.size)
}

// writeImage converts data (through a sparse *os.File when sparse is set)
// and returns the image bytes.
func writeImage(t testing.TB, data []byte, opts Options, sparse bool) []byte {
	t.Helper()
	var src io.ReaderAt = bytes.NewReader(data)
	if sparse {
		src = sparseFile(t, data)
	}
	var out bytes.Buffer
	if err := Write(context.Background(), &out, src, int64(len(data)), opts); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return out.Bytes()
}

// checkReads opens img and compares the virtual disk with data, whole and
// in odd pieces.
func checkReads(t testing.TB, img, data []byte) *Image {
	t.Helper()
	im, err := Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	want := alignUp(int64(len(data)), sectorSize)
	if im.Size() != want {
		t.Fatalf("Size() = %d, want %d", im.Size(), want)
	}
	got := make([]byte, im.Size())
	if n, err := im.ReadAt(got, 0); n != len(got) || (err != nil && err != io.EOF) {
		t.Fatalf("ReadAt whole: n=%d err=%v", n, err)
	}
	if !bytes.Equal(got[:len(data)], data) || !bytes.Equal(got[len(data):], make([]byte, len(got)-len(data))) {
		t.Fatalf("read back differs from the source (first difference at %d)", firstDiff(got, data))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		if len(data) == 0 {
			break
		}
		off := rng.IntN(len(data))
		p := make([]byte, rng.IntN(3*im.ClusterSize()))
		n, err := im.ReadAt(p, int64(off))
		if err != nil && err != io.EOF {
			t.Fatalf("ReadAt(%d, %d): %v", len(p), off, err)
		}
		if !bytes.Equal(p[:n], got[off:off+n]) {
			t.Fatalf("ReadAt(%d, %d) differs", len(p), off)
		}
	}
	return im
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestRoundTrip(t *testing.T) {
	for _, rt := range roundTrips() {
		t.Run(rt.name, func(t *testing.T) {
			data := rt.source(t)
			for _, sparse := range []bool{false, true} {
				img := writeImage(t, data, rt.opts, sparse)
				im := checkReads(t, img, data)
				if im.BackingFile() != rt.opts.BackingFile || im.BackingFormat() != rt.opts.BackingFormat {
					t.Errorf("backing = %q (%q), want %q (%q)", im.BackingFile(), im.BackingFormat(), rt.opts.BackingFile, rt.opts.BackingFormat)
				}
			}
		})
	}
}

func TestZeroClustersNotAllocated(t *testing.T) {
	data := make([]byte, 64<<20)
	copy(data[10<<20:], fill("random", 1000, 1))
	img := writeImage(t, data, Options{}, true)
	// header, L1, refcount table, refcount block, one L2 table, one cluster
	if want := 6 * defaultClusterSize; len(img) != want {
		t.Errorf("image is %d bytes, want %d", len(img), want)
	}
}

func TestCompressSmaller(t *testing.T) {
	// "repeat" compresses only through back references longer than
	// QEMU's 4 KiB window (TestQemuAccepts shows QEMU reads them).
	for kind, ratio := range map[string]float64{"mixed": 0.75, "repeat": 0.5, "partial": 0.75} {
		data := fill(kind, 8<<20, 3)
		plain := writeImage(t, data, Options{}, false)
		for _, c := range []Compression{Zlib, Zstd} {
			comp := writeImage(t, data, Options{Compress: c}, false)
			t.Logf("%s: plain %d bytes, %v %d bytes", kind, len(plain), c, len(comp))
			if float64(len(comp)) >= float64(len(plain))*ratio {
				t.Errorf("%s: %v image %d bytes not much smaller than %d", kind, c, len(comp), len(plain))
			}
		}
	}
}

func TestDeterministic(t *testing.T) {
	data := fill("mixed", 12<<20, 4)
	for _, opts := range []Options{
		{},
		{Compress: Zlib},
		{ClusterSize: 4096, Compress: Zlib, spillLimit: 1 << 20},
		{Compress: Zstd},
		{ClusterSize: 2 << 20, Compress: Zstd},
		{ClusterSize: 512, Compress: Zstd, spillLimit: 1 << 20},
	} {
		t.Run(fmt.Sprintf("cs%d/%v", opts.ClusterSize, opts.Compress), func(t *testing.T) {
			a := sha256.Sum256(writeImage(t, data, opts, false))
			if b := sha256.Sum256(writeImage(t, data, opts, true)); a != b {
				t.Errorf("a sparse source gives other bytes")
			}
			// As many compressing goroutines as GOMAXPROCS: one, two,
			// five (and workers finishing in another order).
			for _, n := range []int{1, 2, 5} {
				procs := runtime.GOMAXPROCS(n)
				c := sha256.Sum256(writeImage(t, data, opts, false))
				runtime.GOMAXPROCS(procs)
				if a != c {
					t.Errorf("GOMAXPROCS %d gives other bytes", n)
				}
			}
		})
	}
}

// TestZstdPinned pins the bytes of a zstd-compressed image: they depend on
// the version of github.com/klauspost/compress (go.mod pins it) and on the
// encoder settings of newZstdEncoder. If this fails after a change of
// either, images built from the same inputs differ from those built before:
// note it in the change and update the digest.
func TestZstdPinned(t *testing.T) {
	data := fill("mixed", 4<<20, 11)
	for _, tc := range []struct {
		cs   int
		want string
	}{
		{65536, "7bf551dcd98ad7211f6db468fb23fd6d111ac876016b34ed2f939197ddce6475"},
		{512, "7aef6c4e4b85bf997a7dbe5145f772088c2ed147a1299e66202cb2ca9f0d661c"},
		{2 << 20, "ec03eb86e9c90eda657df1363ff6b67c4685e0d0b2d89d4eef9f1664a0fc6a81"},
	} {
		img := writeImage(t, data, Options{ClusterSize: tc.cs, Compress: Zstd}, false)
		if got := fmt.Sprintf("%x", sha256.Sum256(img)); got != tc.want {
			t.Errorf("cluster size %d: zstd image sha256 %s, pinned %s", tc.cs, got, tc.want)
		}
	}
}

func TestParseCompression(t *testing.T) {
	for s, want := range map[string]Compression{"none": NoCompression, "zlib": Zlib, "deflate": Zlib, "zstd": Zstd} {
		c, err := ParseCompression(s)
		if err != nil || c != want {
			t.Errorf("ParseCompression(%q) = %v, %v; want %v", s, c, err, want)
		}
	}
	for _, s := range []string{"", "gzip", "ZSTD", "lz4"} {
		if _, err := ParseCompression(s); err == nil {
			t.Errorf("ParseCompression(%q): no error", s)
		}
	}
	for c, s := range map[Compression]string{NoCompression: "none", Zlib: "zlib", Zstd: "zstd"} {
		if c.String() != s {
			t.Errorf("%d.String() = %q, want %q", c, c.String(), s)
		}
	}
}

// TestHeaderCompressionType checks the header fields of each compression:
// zstd adds compression_type at 104 and its incompatible feature bit, in
// a header of 112 bytes; zlib and no compression keep the 104-byte header.
func TestHeaderCompressionType(t *testing.T) {
	data := fill("text", 1<<20, 12)
	for _, tc := range []struct {
		opts      Options
		headerLen uint32
		incompat  uint64
		ctype     byte
		want      Compression
	}{
		{Options{}, 104, 0, 0, Zlib},
		{Options{Compress: Zlib}, 104, 0, 0, Zlib},
		{Options{Compress: Zstd}, 112, 1 << 3, 1, Zstd},
		{Options{Compress: Zstd, ClusterSize: 512, BackingFile: "b.qcow2", BackingFormat: "qcow2"}, 112, 1 << 3, 1, Zstd},
	} {
		img := writeImage(t, data, tc.opts, false)
		h, err := unmarshalHeader(img[:512])
		if err != nil {
			t.Fatal(err)
		}
		if h.headerLen != tc.headerLen || h.incompatible != tc.incompat || h.compressionType != tc.ctype {
			t.Errorf("%v: header length %d, incompatible %#x, compression type %d; want %d, %#x, %d",
				tc.opts.Compress, h.headerLen, h.incompatible, h.compressionType, tc.headerLen, tc.incompat, tc.ctype)
		}
		if h.headerLen > headerLenV3 && !bytes.Equal(img[headerLenV3+1:h.headerLen], make([]byte, h.headerLen-headerLenV3-1)) {
			t.Errorf("%v: header padding not zero", tc.opts.Compress)
		}
		if im := checkReads(t, img, data); im.CompressionType() != tc.want {
			t.Errorf("%v: CompressionType() = %v, want %v", tc.opts.Compress, im.CompressionType(), tc.want)
		}
	}
	var buf bytes.Buffer
	if err := Create(&buf, 1<<30, Options{Compress: Zstd, BackingFile: "base.qcow2"}); err != nil {
		t.Fatal(err)
	}
	im, err := Open(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if im.CompressionType() != Zstd {
		t.Errorf("Create with zstd: compression type %v", im.CompressionType())
	}
}

func TestCreate(t *testing.T) {
	var out bytes.Buffer
	if err := Create(&out, 10<<30+100, Options{BackingFile: "/images/master.qcow2", BackingFormat: "qcow2"}); err != nil {
		t.Fatal(err)
	}
	im, err := Open(bytes.NewReader(out.Bytes()), int64(out.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if im.Size() != 10<<30+512 || im.BackingFile() != "/images/master.qcow2" || im.BackingFormat() != "qcow2" {
		t.Errorf("got size %d backing %q format %q", im.Size(), im.BackingFile(), im.BackingFormat())
	}
	p := make([]byte, 1<<20)
	p[0] = 1
	if _, err := im.ReadAt(p, 5<<30); err != nil || !bytes.Equal(p, make([]byte, len(p))) {
		t.Errorf("ReadAt: err %v, non-zero data", err)
	}
}

func TestBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64
		opts Options
	}{
		{"cluster size not a power of two", 1 << 20, Options{ClusterSize: 3000}},
		{"cluster size too small", 1 << 20, Options{ClusterSize: 256}},
		{"cluster size too large", 1 << 20, Options{ClusterSize: 4 << 20}},
		{"negative size", -1, Options{}},
		{"format without backing", 1 << 20, Options{BackingFormat: "qcow2"}},
		{"backing name too long", 1 << 20, Options{BackingFile: strings.Repeat("a", 1024)}},
		{"backing name beyond header cluster", 1 << 20, Options{ClusterSize: 512, BackingFile: strings.Repeat("a", 500)}},
		{"virtual size too large for L1", 1 << 50, Options{ClusterSize: 512}},
		{"unknown compression", 1 << 20, Options{Compress: Zstd + 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Create(io.Discard, tc.size, tc.opts)
			if err == nil || !strings.HasPrefix(err.Error(), "qcow2: ") {
				t.Errorf("Create: err = %v, want a qcow2: error", err)
			}
		})
	}
}

func TestWriteCanceled(t *testing.T) {
	data := fill("mixed", 16<<20, 5)
	for _, comp := range []Compression{NoCompression, Zlib, Zstd} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := Write(ctx, io.Discard, bytes.NewReader(data), int64(len(data)), Options{Compress: comp})
		if err == nil || !strings.Contains(err.Error(), "context canceled") {
			t.Errorf("compress=%v: err = %v, want context canceled", comp, err)
		}
	}
}

type failingReader struct{}

func (failingReader) ReadAt([]byte, int64) (int, error) { return 0, fmt.Errorf("disk on fire") }

func TestWriteReadError(t *testing.T) {
	for _, comp := range []Compression{NoCompression, Zlib, Zstd} {
		err := Write(context.Background(), io.Discard, failingReader{}, 1<<20, Options{Compress: comp})
		if err == nil || !strings.Contains(err.Error(), "disk on fire") {
			t.Errorf("compress=%v: err = %v", comp, err)
		}
	}
}

func TestOpenRejects(t *testing.T) {
	good := writeImage(t, fill("text", 1<<20, 6), Options{ClusterSize: 4096}, false)
	mod := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	put32 := func(off int, v uint32) func([]byte) {
		return func(b []byte) { b[off], b[off+1], b[off+2], b[off+3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v) }
	}
	put64 := func(off int, v uint64) func([]byte) {
		return func(b []byte) { put32(off, uint32(v>>32))(b); put32(off+4, uint32(v))(b) }
	}
	for _, tc := range []struct {
		name string
		img  []byte
	}{
		{"empty", nil},
		{"truncated header", good[:50]},
		{"bad magic", mod(put32(0, 0x12345678))},
		{"version 4", mod(put32(4, 4))},
		{"cluster bits 8", mod(put32(20, 8))},
		{"cluster bits 22", mod(put32(20, 22))},
		{"encrypted", mod(put32(32, 1))},
		{"L1 too small", mod(put32(36, 0))},
		{"L1 unaligned", mod(put64(40, 4096+8))},
		{"L1 beyond file", mod(put64(40, 1<<40))},
		{"refcount table beyond file", mod(put64(48, 1<<40))},
		{"unknown incompatible feature", mod(put64(72, 1<<10))},
		{"header length too small", mod(put32(100, 64))},
		{"header length too large", mod(put32(100, 8192))},
		{"bad L1 entry", mod(put64(4096, 0x8000_0000_0000_0001))},
		{"L2 beyond file", mod(put64(4096, 1<<40))},
		{"truncated file", good[:len(good)-4096*10]},
		// The header is followed by the end of the extensions, 8 zero
		// bytes: a header of 112 bytes holds compression_type 0 there.
		{"compression type bit without the field", mod(put64(72, 1<<3))},
		{"compression type bit with zlib", mod(func(b []byte) { put32(100, 112)(b); put64(72, 1<<3)(b) })},
		{"zstd without the compression type bit", mod(func(b []byte) { put32(100, 112)(b); b[104] = 1 })},
		{"unknown compression type", mod(func(b []byte) { put32(100, 112)(b); put64(72, 1<<3)(b); b[104] = 2 })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Open(bytes.NewReader(tc.img), int64(len(tc.img))); err == nil || !strings.HasPrefix(err.Error(), "qcow2: ") {
				t.Errorf("Open: err = %v, want a qcow2: error", err)
			}
		})
	}
}

// failingWriter accepts n bytes, then fails.
type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, fmt.Errorf("disk full")
	}
	w.n -= len(p)
	return len(p), nil
}

func TestWriteDstError(t *testing.T) {
	data := fill("mixed", 24<<20, 10)
	before := runtime.NumGoroutine()
	for _, opts := range []Options{{}, {Compress: Zlib}, {Compress: Zlib, spillLimit: 1 << 20}, {Compress: Zstd, spillLimit: 1 << 20}} {
		full := len(writeImage(t, data, opts, false))
		for _, n := range []int{0, 100 << 10, 2 << 20, full - 1} {
			err := Write(context.Background(), &failingWriter{n}, bytes.NewReader(data), int64(len(data)), opts)
			if err == nil || !strings.Contains(err.Error(), "disk full") {
				t.Errorf("%+v after %d bytes: err = %v", opts, n, err)
			}
		}
	}
	time.Sleep(10 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("%d goroutines left running", after-before)
	}
}
