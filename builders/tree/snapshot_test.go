package tree

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// snapshotTree is richLayer applied to an empty tree, with a sparse file.
func snapshotTree(t *testing.T) *Tree {
	t.Helper()
	tr := New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	tr.SetOrigin("base")
	if err := tr.ApplyTar(bytes.NewReader(richLayer(t)), "", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	tr.SetOrigin("layers[0]")
	if err := tr.ApplyTar(bytes.NewReader(sparseTar(t, "var/sparse", 1<<20)), "", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return tr
}

// comparable is e without where its blob lies.
func comparable(e Entry) Entry {
	if e.Content != nil {
		e.Content = &Blob{Size: e.Content.Size, Digest: e.Content.Digest}
	}
	return e
}

// TestSnapshot: a tree written as a snapshot reads back as the same
// entries (owners, modes, times, xattrs, links, devices, origins), each
// blob's bytes the same, read only and not owned.
func TestSnapshot(t *testing.T) {
	tr := snapshotTree(t)
	dir := t.TempDir()
	if err := WriteSnapshot(context.Background(), dir, tr.Entries()); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSnapshot(dir, tr.Epoch())
	if err != nil {
		t.Fatal(err)
	}
	want, have := tr.Entries(), got.Entries()
	if len(want) != len(have) {
		t.Fatalf("%d entries read back, want %d", len(have), len(want))
	}
	for i := range want {
		w, h := comparable(want[i]), comparable(have[i])
		if w.Content != nil && (h.Content == nil || *w.Content != *h.Content) {
			t.Errorf("%s: blob %+v, want %+v", w.Path, h.Content, w.Content)
			continue
		}
		w.Content, h.Content = nil, nil
		if w.Path != h.Path || w.Type != h.Type || w.Mode != h.Mode || w.UID != h.UID || w.GID != h.GID ||
			!w.ModTime.Equal(h.ModTime) || w.Linkname != h.Linkname || w.Devmajor != h.Devmajor ||
			w.Devminor != h.Devminor || w.Origin != h.Origin || len(w.Xattrs) != len(h.Xattrs) {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, h, w)
		}
		for k, v := range w.Xattrs {
			if !bytes.Equal(h.Xattrs[k], v) {
				t.Errorf("%s: xattr %s = %x, want %x", w.Path, k, h.Xattrs[k], v)
			}
		}
	}
	for _, p := range []string{"etc/hostname", "pair/b", "usr/lib/libc.so", "var/sparse"} {
		if a, b := content(t, tr, p), content(t, got, p); a != b {
			t.Errorf("%s reads %q, want %q", p, b, a)
		}
	}
	e := mustGet(t, got, "etc/hostname")
	if e.Content.Owned || !filepath.IsAbs(e.Content.Path) || filepath.Dir(e.Content.Path) != filepath.Join(dir, "files") {
		t.Errorf("blob %+v: want a read only blob in the snapshot", e.Content)
	}
	if fi, err := os.Stat(e.Content.Path); err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("blob file: %v %v, want mode 0444", fi.Mode(), err)
	}
	// Replacing an entry of a snapshot's tree leaves the snapshot whole.
	if err := got.AddFiles([]File{{Path: "/etc/hostname", Content: []byte("other"), Mode: 0o644}}, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSnapshot(dir, tr.Epoch()); err != nil {
		t.Errorf("after an entry of its tree was replaced: %v", err)
	}
}

// TestSnapshotDamaged: a snapshot missing a file, with a short file, or
// without its index is refused with ErrSnapshot.
func TestSnapshotDamaged(t *testing.T) {
	tr := snapshotTree(t)
	blob := mustGet(t, tr, "etc/hostname").Content.Digest
	for _, tc := range []struct {
		name   string
		damage func(dir string) error
	}{
		{"no index", func(dir string) error { return os.Remove(filepath.Join(dir, "index")) }},
		{"index cut short", func(dir string) error { return os.Truncate(filepath.Join(dir, "index"), 100) }},
		{"blob missing", func(dir string) error { return os.Remove(filepath.Join(dir, "files", blob)) }},
		{"blob cut short", func(dir string) error {
			p := filepath.Join(dir, "files", blob)
			if err := os.Chmod(p, 0o644); err != nil {
				return err
			}
			return os.Truncate(p, 1)
		}},
		{"blob replaced by a dir", func(dir string) error {
			p := filepath.Join(dir, "files", blob)
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Mkdir(p, 0o755)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := WriteSnapshot(context.Background(), dir, tr.Entries()); err != nil {
				t.Fatal(err)
			}
			if err := tc.damage(dir); err != nil {
				t.Fatal(err)
			}
			if _, err := ReadSnapshot(dir, tr.Epoch()); !errors.Is(err, ErrSnapshot) {
				t.Errorf("ReadSnapshot: %v, want ErrSnapshot", err)
			}
		})
	}
}

// TestBlobDigest: blobs written from a tar or from bytes carry the
// sha256 of their bytes.
func TestBlobDigest(t *testing.T) {
	tr := snapshotTree(t)
	if err := tr.AddFiles([]File{{Path: "/etc/motd", Content: []byte("hello\n"), Mode: 0o644}}, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, copyBufSize)
	n := 0
	for _, e := range tr.Entries() {
		if e.Type != Regular {
			continue
		}
		sum, _, err := hashFile(e.Content.Path, buf)
		if err != nil {
			t.Fatal(err)
		}
		if e.Content.Digest != sum {
			t.Errorf("%s: digest %q, its bytes hash to %s", e.Path, e.Content.Digest, sum)
		}
		n++
	}
	if n < 2000 {
		t.Errorf("only %d regular files checked", n)
	}
}
