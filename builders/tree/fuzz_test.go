package tree

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzApplyTar applies arbitrary bytes as a tar layer over a small base
// (which holds symlinks pointing out of the root). It must not panic, must
// keep the tree's invariants and must create nothing outside the blob dir.
func FuzzApplyTar(f *testing.F) {
	seeds := [][]byte{
		mkTar(f, dir("etc/"), file("etc/a", "a"), hardlink("etc/b", "etc/a"), symlink("l", "/")),
		mkTar(f, file("evil/etc/owned", "x"), file("up/x", "y"), file("../x", "z")),
		mkTar(f, file("loop/f", "x"), hardlink("h", "../../outside")),
		mkTar(f, dir("opq/"), file("opq/.wh..wh..opq", ""), file("etc/.wh.a", ""), file("n", "n")),
		mkTar(f, tarEnt{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Devmajor: 1, Devminor: 3}},
			tarEnt{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo"}}),
	}
	pax := file("x", "cap")
	pax.hdr.Format = tar.FormatPAX
	pax.hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": "\x01\x02", "LIBARCHIVE.xattr.user.a": "YQ"}
	seeds = append(seeds, mkTar(f, pax))
	for _, s := range seeds[:3] {
		f.Add(s)
	}
	for _, s := range seeds[3:] {
		f.Add(compress(f, "gzip", s))
	}
	f.Add(sparseTar(f, "sparse", 1<<20))
	f.Add(compress(f, "zstd", seeds[0]))
	f.Add(compress(f, "xz", seeds[1]))

	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		blobDir := filepath.Join(base, "work", "blobs")
		if err := os.MkdirAll(blobDir, 0o755); err != nil {
			t.Fatal(err)
		}
		before := listTree(t, base)

		tr := New(testEpoch)
		for _, e := range []Entry{
			{Path: "evil", Type: Symlink, Linkname: "/"},
			{Path: "up", Type: Symlink, Linkname: "../../.."},
			{Path: "host", Type: Symlink, Linkname: base},
			{Path: "loop", Type: Symlink, Linkname: "loop2"},
			{Path: "loop2", Type: Symlink, Linkname: "loop"},
			{Path: "etc/a", Type: Regular, Content: &Blob{Path: "/nonexistent", Size: 0}},
		} {
			if err := tr.Add(e); err != nil {
				t.Fatal(err)
			}
		}
		_ = tr.ApplyTar(bytes.NewReader(data), "fuzz", blobDir)
		checkInvariants(t, tr, blobDir)

		after := slices.DeleteFunc(listTree(t, base), func(p string) bool {
			return strings.HasPrefix(p, filepath.Join("work", "blobs")+"/")
		})
		if !slices.Equal(before, after) {
			t.Fatalf("files appeared outside the blob dir:\nbefore %v\nafter  %v", before, after)
		}
		owned := 0
		for _, e := range tr.Entries() {
			if e.Type == Regular && e.Content.Owned {
				owned++
			}
		}
		if blobs, _ := os.ReadDir(blobDir); len(blobs) != owned {
			t.Fatalf("%d blobs for %d owned regular entries", len(blobs), owned)
		}
	})
}
