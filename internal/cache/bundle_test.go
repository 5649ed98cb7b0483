package cache

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/labbake/labbake/internal/iox"
)

// bundleFixture is a source cache with three blobs and two refs.
type bundleFixture struct {
	c       *Cache
	data    map[string][]byte // digest → content
	digests []string          // exported explicitly
	refs    map[string]string
	lock    []byte
}

func newBundleFixture(t *testing.T) *bundleFixture {
	t.Helper()
	f := &bundleFixture{c: openCache(t), data: map[string][]byte{}}
	var ds []string
	for i, size := range []int{0, 70 << 10, 3<<20 + 123} {
		b := content(uint64(40+i), size)
		d := mustPut(t, f.c, b)
		f.data[d] = b
		ds = append(ds, d)
	}
	f.digests = ds[:2]
	// The third blob is in the bundle only because a ref points at it.
	f.refs = map[string]string{"debian:sha256:" + strings.Repeat("1", 64): ds[2], "layer:x": ds[0]}
	for k, d := range f.refs {
		if err := f.c.SetRef(k, d); err != nil {
			t.Fatal(err)
		}
	}
	f.lock = []byte("# labbake.lock\nversion: 1\n")
	return f
}

func (f *bundleFixture) export(t *testing.T, compress bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := f.c.ExportBundle(context.Background(), &buf, f.lock, f.refs, f.digests, compress); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tarNames(t *testing.T, b []byte) []string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Uid != 0 || hdr.Gid != 0 || !hdr.ModTime.Equal(time.Unix(0, 0)) || hdr.Uname != "" {
			t.Errorf("entry %s: uid %d gid %d mtime %v uname %q", hdr.Name, hdr.Uid, hdr.Gid, hdr.ModTime, hdr.Uname)
		}
		names = append(names, hdr.Name)
	}
}

func TestBundleRoundTrip(t *testing.T) {
	f := newBundleFixture(t)
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("compress=%v", compress), func(t *testing.T) {
			b1 := f.export(t, compress)
			b2 := f.export(t, compress)
			if !bytes.Equal(b1, b2) {
				t.Fatal("two exports differ")
			}
			if compress {
				if !bytes.HasPrefix(b1, zstdMagic) {
					t.Fatal("compressed bundle lacks the zstd magic")
				}
				// The bytes must not depend on the number of CPUs.
				old := runtime.GOMAXPROCS(1)
				b3 := f.export(t, compress)
				runtime.GOMAXPROCS(old)
				if !bytes.Equal(b1, b3) {
					t.Fatal("export with GOMAXPROCS=1 differs")
				}
			} else {
				var want []string
				want = append(want, bundleIndexName, bundleLockName)
				for d := range f.data {
					want = append(want, "blobs/sha256/"+d[len("sha256:"):])
				}
				slices.Sort(want[2:])
				if got := tarNames(t, b1); !slices.Equal(got, want) {
					t.Errorf("entries %v, want %v", got, want)
				}
			}

			dst := openCache(t)
			info, err := dst.ImportBundle(context.Background(), bytes.NewReader(b1), ImportOptions{Size: int64(len(b1))})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(info.Lock, f.lock) {
				t.Errorf("Lock = %q, want %q", info.Lock, f.lock)
			}
			if fmt.Sprint(info.Refs) != fmt.Sprint(f.refs) {
				t.Errorf("info.Refs = %v, want %v", info.Refs, f.refs)
			}
			if len(info.Blobs) != 3 || !slices.IsSorted(info.Blobs) {
				t.Errorf("info.Blobs = %v", info.Blobs)
			}
			assertSameContent(t, f.c, dst)
			if files := ingestFiles(t, dst); len(files) != 0 {
				t.Errorf("ingest files left: %v", files)
			}
			// Importing again changes nothing and still succeeds.
			before := snapshot(t, dst.Dir())
			if _, err := dst.ImportBundle(context.Background(), bytes.NewReader(b1), ImportOptions{Size: int64(len(b1))}); err != nil {
				t.Fatal(err)
			}
			if after := snapshot(t, dst.Dir()); !sameBlobsAndRefs(before, after) {
				t.Error("a second import changed blobs")
			}
		})
	}
}

// sameBlobsAndRefs compares the blob lines of two snapshots (ref files are
// rewritten by a second import, with equal content).
func sameBlobsAndRefs(a, b string) bool {
	pick := func(s string) []string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			if strings.HasPrefix(l, "blobs/sha256/") {
				out = append(out, l)
			}
		}
		return out
	}
	return slices.Equal(pick(a), pick(b))
}

func assertSameContent(t *testing.T, src, dst *Cache) {
	t.Helper()
	sb, err := src.List()
	if err != nil {
		t.Fatal(err)
	}
	db, err := dst.List()
	if err != nil {
		t.Fatal(err)
	}
	strip := func(bs []Blob) string {
		var s []string
		for _, b := range bs {
			s = append(s, fmt.Sprintf("%s %d %v", b.Digest, b.Size, b.Refs))
		}
		return strings.Join(s, "\n")
	}
	if strip(sb) != strip(db) {
		t.Errorf("blobs differ:\nsource:\n%s\nimported:\n%s", strip(sb), strip(db))
	}
	sr, _ := src.Refs()
	dr, _ := dst.Refs()
	if fmt.Sprint(sr) != fmt.Sprint(dr) {
		t.Errorf("refs differ: %v vs %v", sr, dr)
	}
	for _, b := range db {
		if err := dst.Verify(b.Digest); err != nil {
			t.Error(err)
		}
	}
}

func TestExportBundleErrors(t *testing.T) {
	f := newBundleFixture(t)
	missing := digestOf([]byte("not stored"))
	tests := []struct {
		name    string
		refs    map[string]string
		digests []string
		setup   func(t *testing.T)
		wantIs  error
		wantSub string
	}{
		{name: "missing blob", digests: []string{f.digests[0], missing}, wantIs: ErrNotFound, wantSub: missing},
		{name: "ref to missing blob", refs: map[string]string{"k": missing}, wantIs: ErrNotFound, wantSub: missing},
		{name: "bad digest", digests: []string{"sha256:nope"}, wantSub: "sha256:nope"},
		{name: "empty ref key", refs: map[string]string{"": f.digests[0]}, wantSub: "empty ref key"},
		{name: "corrupt blob", digests: []string{f.digests[1]}, wantIs: ErrCorrupt, wantSub: f.digests[1],
			setup: func(t *testing.T) { flipByte(t, f.c.blobPath(f.digests[1][7:]), 5) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup(t)
			}
			err := f.c.ExportBundle(context.Background(), io.Discard, nil, tt.refs, tt.digests, false)
			if err == nil {
				t.Fatal("ExportBundle succeeded")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v, want %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantSub) || !strings.HasPrefix(err.Error(), "cache: ") {
				t.Errorf("error %q does not name %q", err, tt.wantSub)
			}
		})
	}
}

func TestExportBundleNoLock(t *testing.T) {
	f := newBundleFixture(t)
	var buf bytes.Buffer
	if err := f.c.ExportBundle(context.Background(), &buf, nil, nil, f.digests[:1], false); err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, buf.Bytes())
	if len(names) != 2 || names[0] != bundleIndexName || !strings.HasPrefix(names[1], "blobs/") {
		t.Errorf("entries %v", names)
	}
	info, err := openCache(t).ImportBundle(context.Background(), &buf, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Lock != nil || len(info.Refs) != 0 || len(info.Blobs) != 1 {
		t.Errorf("info = %+v", info)
	}
}

// craftEntry is one entry of a hand-made bundle.
type craftEntry struct {
	name     string
	data     []byte
	typeflag byte
	size     int64 // header size if not len(data)
}

func craft(t *testing.T, entries []craftEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg}
		if e.typeflag != 0 {
			hdr.Typeflag = e.typeflag
			hdr.Size = 0
			hdr.Linkname = "/etc/passwd"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func indexOf(t *testing.T, format int, blobs map[string][]byte, refs map[string]string) []byte {
	t.Helper()
	idx := bundleIndex{Format: format, Refs: refs}
	for d, b := range blobs {
		idx.Blobs = append(idx.Blobs, bundleBlob{Digest: d, Size: int64(len(b))})
	}
	slices.SortFunc(idx.Blobs, func(a, b bundleBlob) int { return strings.Compare(a.Digest, b.Digest) })
	data, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func blobEntry(d string, b []byte) craftEntry {
	return craftEntry{name: "blobs/sha256/" + d[len("sha256:"):], data: b}
}

func flipAt(b []byte, off int) []byte {
	c := bytes.Clone(b)
	c[off] ^= 0x01
	return c
}

func TestImportBundleRejects(t *testing.T) {
	f := newBundleFixture(t)
	plain := f.export(t, false)
	zst := f.export(t, true)

	// The blob present in the target too, and the big one.
	var small, big string
	for d, b := range f.data {
		switch {
		case len(b) == 70<<10:
			small = d
		case len(b) > 1<<20:
			big = d
		}
	}
	bigAt := bytes.Index(plain, f.data[big][:64])
	smallAt := bytes.Index(plain, f.data[small][:64])
	if bigAt < 0 || smallAt < 0 {
		t.Fatal("blob data not found in the plain bundle")
	}
	a := []byte("blob a")
	b := []byte("blob b")
	da, db := digestOf(a), digestOf(b)
	two := map[string][]byte{da: a, db: b}

	tests := []struct {
		name    string
		bundle  []byte
		wantSub []string // all must appear in the error
		wantIs  error
	}{
		{"empty", nil, []string{"truncated"}, io.ErrUnexpectedEOF},
		{"garbage", []byte("hello, world"), []string{"truncated"}, nil},
		{"flipped byte in a new blob", flipAt(plain, bigAt+1000), []string{big, "hashes to"}, iox.ErrDigestMismatch},
		{"flipped byte in a blob the target has", flipAt(plain, smallAt+10), []string{small}, iox.ErrDigestMismatch},
		{"flipped byte in zstd", flipAt(zst, len(zst)/2), nil, nil},
		{"trailing data", append(bytes.Clone(plain), "junk"...), []string{"after the end"}, nil},
		{"index blob missing from the tar", craft(t, []craftEntry{
			{name: bundleIndexName, data: indexOf(t, 1, two, nil)},
			blobEntry(da, a),
		}), []string{db, "missing from the bundle"}, nil},
		{"blob not in the index", craft(t, []craftEntry{
			{name: bundleIndexName, data: indexOf(t, 1, map[string][]byte{da: a}, nil)},
			blobEntry(da, a),
			blobEntry(db, b),
		}), []string{db, "not in the bundle's index"}, nil},
		{"blob under a wrong name", craft(t, []craftEntry{
			{name: bundleIndexName, data: indexOf(t, 1, two, nil)},
			blobEntry(da, b),
			blobEntry(db, a),
		}), []string{da}, iox.ErrDigestMismatch},
		{"size differs from the index", craft(t, []craftEntry{
			{name: bundleIndexName, data: indexOf(t, 1, map[string][]byte{da: []byte("blob a, longer")}, nil)},
			blobEntry(da, a),
		}), []string{da, "6 bytes in the tar, 14 in the index"}, nil},
		{"blob twice", craft(t, []craftEntry{
			{name: bundleIndexName, data: indexOf(t, 1, map[string][]byte{da: a}, nil)},
			blobEntry(da, a),
			blobEntry(da, a),
		}), []string{da, "twice"}, nil},
		{"ref to a blob nowhere", craft(t, []craftEntry{
			{name: bundleIndexName, data: indexOf(t, 1, map[string][]byte{da: a}, map[string]string{"k": db})},
			blobEntry(da, a),
		}), []string{db, `"k"`}, nil},
		{"index not first", craft(t, []craftEntry{
			blobEntry(da, a),
			{name: bundleIndexName, data: indexOf(t, 1, map[string][]byte{da: a}, nil)},
		}), []string{"not a labbake bundle"}, nil},
		{"unknown format", craft(t, []craftEntry{
			{name: bundleIndexName, data: indexOf(t, 2, map[string][]byte{da: a}, nil)},
			blobEntry(da, a),
		}), []string{"format 2"}, nil},
		{"unknown index field", craft(t, []craftEntry{
			{name: bundleIndexName, data: []byte(`{"format":1,"blobs":[],"refs":{},"extra":1}`)},
		}), []string{"extra"}, nil},
		{"bad digest in the index", craft(t, []craftEntry{
			{name: bundleIndexName, data: []byte(`{"format":1,"blobs":[{"digest":"sha256:../x","size":1}]}`)},
		}), []string{"blobs[0]"}, nil},
		{"path traversal", craft(t, []craftEntry{
			{name: bundleIndexName, data: indexOf(t, 1, nil, nil)},
			{name: "blobs/sha256/../../../evil", data: a},
		}), []string{"not a blob name"}, nil},
		{"unknown entry", craft(t, []craftEntry{
			{name: bundleIndexName, data: indexOf(t, 1, nil, nil)},
			{name: "etc/passwd", data: a},
		}), []string{"unexpected in a bundle"}, nil},
		{"symlink", craft(t, []craftEntry{
			{name: bundleIndexName, data: indexOf(t, 1, map[string][]byte{da: a}, nil)},
			{name: "blobs/sha256/" + da[7:], typeflag: tar.TypeSymlink},
		}), []string{"only regular files"}, nil},
	}
	// Truncations of both forms, at many offsets.
	cuts := []int{1, 100, 511, 512, 513, 1024, 1536, smallAt, smallAt + 100, bigAt + 1<<20,
		len(plain) - 1024, len(plain) - 1023, len(plain) - 512, len(plain) - 1}
	for _, n := range cuts {
		tests = append(tests, struct {
			name    string
			bundle  []byte
			wantSub []string
			wantIs  error
		}{fmt.Sprintf("plain cut at %d of %d", n, len(plain)), plain[:n], []string{"truncated"}, io.ErrUnexpectedEOF})
	}
	for _, n := range []int{1, 3, 4, 10, 100, len(zst) / 3, len(zst) / 2, len(zst) - 100, len(zst) - 4, len(zst) - 1} {
		tests = append(tests, struct {
			name    string
			bundle  []byte
			wantSub []string
			wantIs  error
		}{fmt.Sprintf("zstd cut at %d of %d", n, len(zst)), zst[:n], nil, nil})
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := openCache(t)
			// The target holds a blob that is also in the bundle, another blob
			// and refs, to show that nothing changes.
			mustPut(t, dst, f.data[small])
			other := mustPut(t, dst, []byte("unrelated"))
			if err := dst.SetRef("layer:x", other); err != nil {
				t.Fatal(err)
			}
			if err := dst.SetRef("mine", other); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, dst.Dir())
			// Without the size, so that the checks made while reading
			// are under test (TestImportBundleCapacity has those made
			// before).
			info, err := dst.ImportBundle(context.Background(), bytes.NewReader(tt.bundle), ImportOptions{})
			if err == nil {
				t.Fatalf("ImportBundle succeeded: %+v", info)
			}
			if !errors.Is(err, ErrBadBundle) {
				t.Errorf("error %v is not ErrBadBundle", err)
			}
			t.Log(err)
			if !strings.HasPrefix(err.Error(), "cache: import bundle: ") {
				t.Errorf("error %q lacks the prefix", err)
			}
			for _, s := range tt.wantSub {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			if after := snapshot(t, dst.Dir()); after != before {
				t.Errorf("cache changed by a failed import:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

func TestImportBundleCancelled(t *testing.T) {
	f := newBundleFixture(t)
	plain := f.export(t, false)
	dst := openCache(t)
	before := snapshot(t, dst.Dir())
	ctx, cancel := context.WithCancel(context.Background())
	r := &cancelReader{r: bytes.NewReader(plain), after: len(plain) / 2, cancel: cancel}
	if _, err := dst.ImportBundle(ctx, r, ImportOptions{}); !errors.Is(err, context.Canceled) || errors.Is(err, ErrBadBundle) {
		t.Fatalf("ImportBundle with ctx cancelled: %v; want context.Canceled, not ErrBadBundle", err)
	}
	if after := snapshot(t, dst.Dir()); after != before {
		t.Errorf("cache changed:\n%s\n%s", before, after)
	}
}

// forgedBundle is a bundle whose index declares one blob of declared bytes
// (digest d) and whose tar then starts that entry and carries data, cut
// short; compressed with zstd if compress.
func forgedBundle(t *testing.T, d string, declared int64, data []byte, compress bool) []byte {
	t.Helper()
	idx, err := json.Marshal(bundleIndex{Format: 1, Blobs: []bundleBlob{{Digest: d, Size: declared}}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: bundleIndexName, Mode: 0o644, Size: int64(len(idx)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(idx)
	if err := tw.WriteHeader(&tar.Header{Name: bundleBlobDir + d[7:], Mode: 0o644, Size: declared, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	// No Close: the entry is short of its declared size.
	if !compress {
		return buf.Bytes()
	}
	var zbuf bytes.Buffer
	zw, err := zstd.NewWriter(&zbuf, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(buf.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return zbuf.Bytes()
}

// countReader counts what is read through it.
type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// A bundle is refused, before any blob is read or written, when its index
// declares more than a bundle of its size can hold: for zstd, 32768 bytes
// of tar per byte at most.
func TestImportBundleCapacity(t *testing.T) {
	d := digestOf([]byte("never seen"))
	zeros := make([]byte, 1<<20)
	noise := content(9, 2<<20)
	f := newBundleFixture(t)
	plain, zst := f.export(t, false), f.export(t, true)
	tests := []struct {
		name   string
		bundle []byte
		ok     bool
		// the first blob that cannot fit, for refusals
		want string
		// at most this many bytes of the bundle may be read
		maxRead int
	}{
		// The case: a few hundred bytes of zstd announcing 1 GiB.
		{name: "1 GiB declared in a small zstd bundle", bundle: forgedBundle(t, d, 1<<30, zeros, true), want: d, maxRead: 1 << 20},
		{name: "1 TiB declared in 2 MiB of zstd", bundle: forgedBundle(t, d, 1<<40, noise, true), want: d, maxRead: 1 << 20},
		{name: "more than the file in a plain bundle", bundle: forgedBundle(t, d, 3<<20, noise, false), want: d, maxRead: 128 << 10},
		{name: "a size no bundle holds", bundle: forgedBundle(t, d, math.MaxInt64, nil, true), want: d, maxRead: 128 << 10},
		{name: "the fixture, plain", bundle: plain, ok: true},
		{name: "the fixture, zstd", bundle: zst, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := openCache(t)
			before := snapshot(t, dst.Dir())
			r := &countReader{r: bytes.NewReader(tt.bundle)}
			info, err := dst.ImportBundle(context.Background(), r, ImportOptions{Size: int64(len(tt.bundle))})
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				if len(info.Blobs) != 3 {
					t.Errorf("imported %d blobs", len(info.Blobs))
				}
				return
			}
			if err == nil {
				t.Fatal("ImportBundle succeeded")
			}
			t.Log(err)
			if !errors.Is(err, ErrBadBundle) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "can hold") {
				t.Errorf("error %v: want ErrBadBundle naming %s and what the bundle can hold", err, tt.want)
			}
			if r.n > tt.maxRead {
				t.Errorf("read %d of %d bytes before refusing, want at most %d", r.n, len(tt.bundle), tt.maxRead)
			}
			if after := snapshot(t, dst.Dir()); after != before {
				t.Errorf("cache changed:\n%s\n%s", before, after)
			}
		})
	}
	// A plain bundle without a lock (whose size the index does not give)
	// holds exactly its tar: one byte less cannot hold the last blob
	// (blobs are sorted by digest).
	var buf bytes.Buffer
	if err := f.c.ExportBundle(context.Background(), &buf, nil, f.refs, f.digests, false); err != nil {
		t.Fatal(err)
	}
	exact := buf.Bytes()
	idx := plainIndex(t, exact)
	last := idx.Blobs[len(idx.Blobs)-1].Digest
	if _, err := openCache(t).ImportBundle(context.Background(), bytes.NewReader(exact), ImportOptions{Size: int64(len(exact))}); err != nil {
		t.Errorf("bundle of its exact size: %v", err)
	}
	_, err := openCache(t).ImportBundle(context.Background(), bytes.NewReader(exact), ImportOptions{Size: int64(len(exact) - 1)})
	if !errors.Is(err, ErrBadBundle) || !strings.Contains(err.Error(), "blob "+last+" is declared") {
		t.Errorf("bundle one byte short: %v; want a refusal naming %s", err, last)
	}
}

// plainIndex reads the index of a plain bundle.
func plainIndex(t *testing.T, b []byte) *bundleIndex {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := parseIndex(data)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// Of several blobs the bundle cannot hold, the first in the index is named.
func TestImportBundleCapacityFirst(t *testing.T) {
	a, b, c := digestOf([]byte("a")), digestOf([]byte("b")), digestOf([]byte("c"))
	ds := []string{a, b, c}
	slices.Sort(ds)
	idx, _ := json.Marshal(bundleIndex{Format: 1, Blobs: []bundleBlob{{ds[0], 10}, {ds[1], 1 << 30}, {ds[2], 1 << 40}}})
	bundle := craft(t, []craftEntry{{name: bundleIndexName, data: idx}})
	_, err := openCache(t).ImportBundle(context.Background(), bytes.NewReader(bundle), ImportOptions{Size: 1 << 20})
	if !errors.Is(err, ErrBadBundle) || !strings.Contains(err.Error(), "blob "+ds[1]+" is declared with 1073741824 bytes") {
		t.Errorf("error %v: want one naming %s", err, ds[1])
	}
}

func TestImportBundleCheckLock(t *testing.T) {
	f := newBundleFixture(t)
	b := f.export(t, true)
	var got []byte
	refuse := errors.New("not a lock")
	dst := openCache(t)
	before := snapshot(t, dst.Dir())
	_, err := dst.ImportBundle(context.Background(), bytes.NewReader(b), ImportOptions{
		CheckLock: func(l []byte) error { got = l; return refuse },
	})
	if !errors.Is(err, refuse) || !errors.Is(err, ErrBadBundle) || !strings.Contains(err.Error(), "the bundle's labbake.lock is refused: not a lock") {
		t.Errorf("error %v: want the check's, as ErrBadBundle", err)
	}
	if !bytes.Equal(got, f.lock) {
		t.Errorf("CheckLock got %q, want %q", got, f.lock)
	}
	if after := snapshot(t, dst.Dir()); after != before {
		t.Errorf("cache changed:\n%s\n%s", before, after)
	}
	info, err := dst.ImportBundle(context.Background(), bytes.NewReader(b), ImportOptions{CheckLock: func([]byte) error { return nil }})
	if err != nil || !bytes.Equal(info.Lock, f.lock) {
		t.Errorf("import with an accepting check: %v", err)
	}
}

// Failures that are not the bundle's are not ErrBadBundle: reading the
// bundle fails, or writing the cache does.
func TestImportBundleNotBad(t *testing.T) {
	f := newBundleFixture(t)
	plain := f.export(t, false)
	eio := errors.New("input/output error")
	r := io.MultiReader(bytes.NewReader(plain[:len(plain)/2]), iotestErrReader{eio})
	_, err := openCache(t).ImportBundle(context.Background(), r, ImportOptions{})
	if !errors.Is(err, eio) || errors.Is(err, ErrBadBundle) {
		t.Errorf("read error: %v; want it, not ErrBadBundle", err)
	}
	// The cache cannot take the blobs: its ingest dir is gone, a file
	// in its place.
	dst := openCache(t)
	if err := os.Remove(dst.ingestDir()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst.ingestDir(), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = dst.ImportBundle(context.Background(), bytes.NewReader(plain), ImportOptions{})
	if err == nil || errors.Is(err, ErrBadBundle) {
		t.Errorf("unwritable cache: %v; want an error, not ErrBadBundle", err)
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

// A bundle whose new blobs do not fit in the cache's file system is refused
// before anything is written; that is the machine's problem, not the
// bundle's.
func TestImportBundleSpace(t *testing.T) {
	f := newBundleFixture(t)
	b := f.export(t, true)
	var big string
	for d, data := range f.data {
		if len(data) > 1<<20 {
			big = d
		}
	}
	dst := openCache(t)
	mustPut(t, dst, f.data[big]) // present: needs no space
	old := freeBytes
	defer func() { freeBytes = old }()
	freeBytes = func(string) (int64, error) { return 100 << 10, nil }
	if _, err := dst.ImportBundle(context.Background(), bytes.NewReader(b), ImportOptions{}); err != nil {
		t.Fatalf("import of blobs that fit: %v", err)
	}
	dst = openCache(t)
	before := snapshot(t, dst.Dir())
	_, err := dst.ImportBundle(context.Background(), bytes.NewReader(b), ImportOptions{})
	if err == nil || errors.Is(err, ErrBadBundle) || !strings.Contains(err.Error(), big) || !strings.Contains(err.Error(), "102400 bytes free") {
		t.Errorf("error %v: want one naming %s and the free space, not ErrBadBundle", err, big)
	}
	if after := snapshot(t, dst.Dir()); after != before {
		t.Errorf("cache changed:\n%s\n%s", before, after)
	}
}

// checkCapacity at the edges of int64: no overflow lets a blob through.
func TestCheckCapacityLimits(t *testing.T) {
	d := digestOf([]byte("x"))
	for _, tc := range []struct {
		name       string
		size       int64
		compressed bool
		blobs      []int64
		ok         bool
	}{
		{"largest bundle, largest blob", math.MaxInt64, true, []int64{math.MaxInt64}, false},
		{"largest plain bundle, largest blob", math.MaxInt64, false, []int64{math.MaxInt64}, false},
		{"two blobs whose sum overflows", math.MaxInt64, true, []int64{math.MaxInt64 / 2, math.MaxInt64 / 2, math.MaxInt64 / 2}, false},
		{"blob rounding past the end", 512 + 1024 + 512 + 512, false, []int64{513}, false},
		{"blob filling the end exactly", 512 + 1024 + 512 + 512, false, []int64{512}, true},
		{"unknown size", 0, true, []int64{math.MaxInt64}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idx := &bundleIndex{}
			for _, s := range tc.blobs {
				idx.Blobs = append(idx.Blobs, bundleBlob{Digest: d, Size: s})
			}
			err := checkCapacity(idx, tc.size, tc.compressed, 100)
			if (err == nil) != tc.ok {
				t.Errorf("err = %v, want ok %v", err, tc.ok)
			}
		})
	}
}
