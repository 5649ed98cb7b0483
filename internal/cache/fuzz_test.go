package cache

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzImportBundle feeds arbitrary bytes to ImportBundle: it must never
// panic, never write outside the cache directory, never leave ingest files
// behind, and leave the cache unchanged whenever it fails.
func FuzzImportBundle(f *testing.F) {
	src, err := Open(f.TempDir(), nil)
	if err != nil {
		f.Fatal(err)
	}
	var digests []string
	for _, b := range [][]byte{nil, []byte("small blob\n"), bytes.Repeat([]byte("labbake "), 300)} {
		d, _, err := src.Put(context.Background(), bytes.NewReader(b), "")
		if err != nil {
			f.Fatal(err)
		}
		digests = append(digests, d)
	}
	refs := map[string]string{"debian:sha256:" + strings.Repeat("a", 64): digests[2]}
	for _, compress := range []bool{false, true} {
		for _, lock := range [][]byte{nil, []byte("lock: 1\n")} {
			var buf bytes.Buffer
			if err := src.ExportBundle(context.Background(), &buf, lock, refs, digests[:2], compress); err != nil {
				f.Fatal(err)
			}
			b := buf.Bytes()
			f.Add(b)
			f.Add(b[:len(b)/2])
			f.Add(b[:len(b)-1])
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd})
	f.Add(make([]byte, 1024))

	// One cache per fuzz worker, reset after each input: making a fresh
	// one each time would cost more than the import.
	root := f.TempDir()
	dir := filepath.Join(root, "cache")
	c, err := Open(dir, nil)
	if err != nil {
		f.Fatal(err)
	}
	c.noSync = true // fsync would dominate the run time
	// A blob and a ref that every failed import must leave alone.
	base, _, err := c.Put(context.Background(), strings.NewReader("base"), "")
	if err != nil {
		f.Fatal(err)
	}
	if err := c.SetRef("debian:sha256:"+strings.Repeat("a", 64), base); err != nil {
		f.Fatal(err)
	}
	reset := func(t *testing.T) {
		t.Helper()
		for _, d := range []string{c.blobDir(), c.refDir()} {
			entries, err := os.ReadDir(d)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				p := filepath.Join(d, e.Name())
				if p == c.blobPath(base[len("sha256:"):]) {
					continue
				}
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := c.SetRef("debian:sha256:"+strings.Repeat("a", 64), base); err != nil {
			t.Fatal(err)
		}
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		before := snapshot(t, dir)
		// Half the inputs with their size, so that the checks made while
		// reading are reached too.
		opts := ImportOptions{}
		if len(data)%2 == 0 {
			opts.Size = int64(len(data))
		}
		info, err := c.ImportBundle(context.Background(), bytes.NewReader(data), opts)
		if err != nil {
			if info != nil {
				t.Errorf("ImportBundle returned info with an error: %v", err)
			}
			// Reading from memory into a working cache: every failure is
			// the bundle's.
			if !errors.Is(err, ErrBadBundle) {
				t.Errorf("error is not ErrBadBundle: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "cache: import bundle: ") {
				t.Errorf("error lacks the prefix: %v", err)
			}
			if after := snapshot(t, dir); after != before {
				t.Errorf("failed import changed the cache: %v\nbefore:\n%s\nafter:\n%s", err, before, after)
			}
		} else {
			for _, d := range info.Blobs {
				if err := c.Verify(d); err != nil {
					t.Errorf("imported blob: %v", err)
				}
			}
		}
		entries, err := os.ReadDir(root)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || entries[0].Name() != "cache" {
			t.Errorf("import wrote outside the cache dir: %v", entries)
		}
		top, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range top {
			switch e.Name() {
			case "blobs", "refs", "ingest", "locks", tagName:
			default:
				t.Errorf("unexpected %s in the cache dir", e.Name())
			}
		}
		if files := ingestFiles(t, c); len(files) != 0 {
			t.Errorf("ingest files left: %v", files)
		}
		if err == nil {
			reset(t)
		}
	})
}
