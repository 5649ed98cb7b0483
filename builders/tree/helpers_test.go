package tree

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

var testEpoch = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// tarEnt is one entry of a generated tar: a header and, for regular files,
// a body.
type tarEnt struct {
	hdr  tar.Header
	body string
}

func file(name, body string) tarEnt {
	return tarEnt{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, ModTime: time.Unix(1e9, 0)}, body: body}
}

func dir(name string) tarEnt {
	return tarEnt{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: time.Unix(1e9, 0)}}
}

func symlink(name, target string) tarEnt {
	return tarEnt{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: time.Unix(1e9, 0)}}
}

func hardlink(name, target string) tarEnt {
	return tarEnt{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644, ModTime: time.Unix(1e9, 0)}}
}

// mkTar writes ents as a PAX/GNU tar.
func mkTar(tb testing.TB, ents ...tarEnt) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			tb.Fatalf("tar header %q: %v", h.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func compress(tb testing.TB, kind string, b []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	switch kind {
	case "plain":
		return b
	case "gzip":
		w := gzip.NewWriter(&buf)
		w.Write(b)
		if err := w.Close(); err != nil {
			tb.Fatal(err)
		}
	case "zstd":
		w, err := zstd.NewWriter(&buf)
		if err != nil {
			tb.Fatal(err)
		}
		w.Write(b)
		if err := w.Close(); err != nil {
			tb.Fatal(err)
		}
	case "xz":
		w, err := xz.NewWriter(&buf)
		if err != nil {
			tb.Fatal(err)
		}
		w.Write(b)
		if err := w.Close(); err != nil {
			tb.Fatal(err)
		}
	default:
		tb.Fatalf("unknown compression %q", kind)
	}
	return buf.Bytes()
}

// mustGet returns the entry at p or fails.
func mustGet(tb testing.TB, tr *Tree, p string) Entry {
	tb.Helper()
	e, ok := tr.Get(p)
	if !ok {
		tb.Fatalf("entry %q missing; have %v", p, paths(tr))
	}
	return e
}

func paths(tr *Tree) []string {
	var ps []string
	for _, e := range tr.Entries() {
		ps = append(ps, e.Path)
	}
	return ps
}

func content(tb testing.TB, tr *Tree, p string) string {
	tb.Helper()
	e := mustGet(tb, tr, p)
	if e.Type == Hardlink {
		e = mustGet(tb, tr, e.Linkname)
	}
	if e.Type != Regular {
		tb.Fatalf("entry %q is a %s, not a regular file", p, e.Type)
	}
	b, err := os.ReadFile(e.Content.Path)
	if err != nil {
		tb.Fatal(err)
	}
	if int64(len(b)) != e.Content.Size {
		tb.Fatalf("entry %q: blob has %d bytes, Size says %d", p, len(b), e.Content.Size)
	}
	return string(b)
}

// checkInvariants verifies what every Tree must satisfy.
func checkInvariants(tb testing.TB, tr *Tree, blobDir string) {
	tb.Helper()
	es := tr.Entries()
	if len(es) != tr.Len() {
		tb.Fatalf("Entries has %d entries, Len says %d", len(es), tr.Len())
	}
	if len(es) == 0 || es[0].Path != "." || es[0].Type != Dir {
		tb.Fatalf("first entry is not the root dir: %+v", es[0])
	}
	byPath := make(map[string]Entry, len(es))
	for i, e := range es {
		if i > 0 && e.Path <= es[i-1].Path && es[i-1].Path != "." {
			tb.Fatalf("entries not sorted: %q after %q", e.Path, es[i-1].Path)
		}
		byPath[e.Path] = e
	}
	for _, e := range es {
		if e.Path != "." {
			c, err := cleanRel(e.Path)
			if err != nil || c != e.Path || strings.HasPrefix(e.Path, "/") {
				tb.Fatalf("entry path %q not clean (%v)", e.Path, err)
			}
			d, _ := splitLast(e.Path)
			if p, ok := byPath[d]; !ok || p.Type != Dir {
				tb.Fatalf("entry %q: parent %q missing or not a dir", e.Path, d)
			}
		}
		if e.ModTime.After(tr.Epoch()) {
			tb.Fatalf("entry %q: time %v after epoch", e.Path, e.ModTime)
		}
		if e.Mode&^0o7777 != 0 {
			tb.Fatalf("entry %q: mode %#o", e.Path, e.Mode)
		}
		switch e.Type {
		case Hardlink:
			tgt, ok := byPath[e.Linkname]
			if !ok || tgt.Type != Regular {
				tb.Fatalf("hardlink %q -> %q: target missing or not regular", e.Path, e.Linkname)
			}
		case Regular:
			if e.Content == nil {
				tb.Fatalf("regular %q without content", e.Path)
			}
			if e.Content.Owned && blobDir != "" {
				abs, _ := filepath.Abs(blobDir)
				if filepath.Dir(e.Content.Path) != abs {
					tb.Fatalf("blob of %q at %q, outside the blob dir %q", e.Path, e.Content.Path, abs)
				}
			}
		}
	}
}

// listTree returns every path below root (relative), for detecting stray
// writes.
func listTree(tb testing.TB, root string) []string {
	tb.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, rel)
		return nil
	})
	slices.Sort(out)
	return out
}

func runtimeCaller() (uintptr, string, int, bool) { return runtime.Caller(0) }

// sparseTar returns a tar holding one GNU 1.0 sparse file: PAX records plus
// a sparse map at the start of the data section ("0\n": no data fragments,
// all hole). archive/tar does not write GNU.sparse records, so the PAX
// header is patched in.
func sparseTar(tb testing.TB, name string, realsize int64) []byte {
	tb.Helper()
	recs := ""
	for _, kv := range [][2]string{
		{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"},
		{"GNU.sparse.name", name}, {"GNU.sparse.realsize", fmt.Sprint(realsize)},
	} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec) + 1
		for len(fmt.Sprint(n))+len(rec) != n {
			n++
		}
		recs += fmt.Sprint(n) + rec
	}
	data := mkTar(tb, file("PaxHeaders/"+name, recs), file(name, "0\n"+strings.Repeat("\x00", 510)))
	data[156] = 'x' // typeflag of the first header
	copy(data[148:156], "        ")
	sum := 0
	for _, b := range data[:512] {
		sum += int(b)
	}
	copy(data[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return data
}
