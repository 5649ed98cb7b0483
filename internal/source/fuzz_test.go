package source

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/labbake/labbake/internal/iox"
)

// formatSums writes sums as sha256sum does, escaping names that hold a
// backslash, CR or LF.
func formatSums(s Sums) string {
	if len(s.Sums) == 1 && s.Sums[0].Name == "" {
		return strings.TrimPrefix(s.Sums[0].Digest, "sha256:") + "\n"
	}
	var b strings.Builder
	for _, sum := range s.Sums {
		name := sum.Name
		if strings.ContainsAny(name, "\\\n\r") {
			name = strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`).Replace(name)
			b.WriteString(`\`)
		}
		b.WriteString(strings.TrimPrefix(sum.Digest, "sha256:") + "  " + name + "\n")
	}
	return b.String()
}

func FuzzParseChecksum(f *testing.F) {
	files, _ := filepath.Glob("testdata/checksums/*")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	h := strings.Repeat("0123456789abcdef", 4)
	for _, s := range []string{
		"", h, h + "  -\n", h + " *a\n", `\` + h + `  a\\b\n` + "\n", "SHA256 (x) = " + h,
		"SHA256(x)= " + h + "\r\n", "sha256 ()) = " + h, h + "\t\t\n", "#" + h + "\n" + h + "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := ParseChecksums(data)
		lines := strings.Count(string(data), "\n") + 1
		if len(s.Sums)+s.Skipped > lines {
			t.Fatalf("%d sums and %d skipped from %d lines", len(s.Sums), s.Skipped, lines)
		}
		for _, sum := range s.Sums {
			if _, err := iox.ParseDigest(sum.Digest); err != nil {
				t.Fatal(err)
			}
			if sum.Name == "" && len(s.Sums) != 1 {
				t.Fatalf("a lone sum among %d", len(s.Sums))
			}
			if sum.Name != "" && strings.TrimSpace(sum.Name) == "" {
				t.Fatalf("blank name %q", sum.Name)
			}
			d, err := s.Lookup(sum.Name)
			if err != nil {
				t.Fatalf("Lookup(%q): %v", sum.Name, err)
			}
			if sum.Name != "" {
				want := strings.TrimPrefix(sum.Name, "./")
				ok := false
				for _, o := range s.Sums {
					ok = ok || o.Digest == d && strings.TrimPrefix(o.Name, "./") == want
				}
				if !ok {
					t.Fatalf("Lookup(%q) = %s, which no sum of that name has", sum.Name, d)
				}
			}
		}
		// Written out as sha256sum would, the sums read back the same.
		if len(s.Sums) == 1 && s.Sums[0].Name == "-" {
			return // a lone sum once alone
		}
		again := ParseChecksums([]byte(formatSums(s)))
		if again.Skipped != 0 || !reflect.DeepEqual(again.Sums, s.Sums) {
			t.Fatalf("round trip:\n%q\n→ %+v\n→ %q\n→ %+v", data, s.Sums, formatSums(s), again)
		}
	})
}

// memStore is a Store in memory, for the fuzz target: it verifies nothing.
type memStore map[string][]byte

func (s memStore) Has(digest string) bool { _, ok := s[digest]; return ok }

func (s memStore) Put(ctx context.Context, r io.Reader, want string) (string, int64, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", 0, err
	}
	d := digestOf(b)
	if want != "" && d != want {
		return "", 0, errors.New("digest mismatch")
	}
	s[d] = b
	return d, int64(len(b)), nil
}

func (s memStore) Open(digest string) (io.ReadCloser, error) {
	b, ok := s[digest]
	if !ok {
		return nil, os.ErrNotExist
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// FuzzExtract extracts arbitrary bytes as an archive of any kind detect
// tells (tar, compressed tar, zip, .deb): it must not panic, every member
// handed over must have a clean name inside the archive and a regular
// file exactly its size, errors must name the archive, and a zip's
// temporary file must go.
//
//	go test ./internal/source/ -run '^$' -fuzz '^FuzzExtract$' -fuzztime 60s
func FuzzExtract(f *testing.F) {
	tree := makeTar(f, etcdTree())
	small := makeTar(f, []entry{{name: "./", typ: tar.TypeDir}, {name: "./usr/bin/tool", body: "tool", mode: 0o755},
		{name: "./usr/sbin/tool", typ: tar.TypeSymlink, link: "../bin/tool"}, {name: "./usr/bin/t2", typ: tar.TypeLink, link: "./usr/bin/tool"}})
	version := arEntry{name: "debian-binary", body: "2.0\n"}
	control := arEntry{name: "control.tar.gz", body: string(compress(f, "gz", makeTar(f, []entry{{name: "./control", body: "Package: tool\n"}})))}
	for _, b := range [][]byte{
		tree, compress(f, "gz", tree), compress(f, "zst", small), compress(f, "xz", small),
		makeZip(f, []entry{{name: "bin/", typ: tar.TypeDir, mode: 0o755}, {name: "bin/tool", body: "tool", mode: 0o755}, {name: "bin/l", typ: tar.TypeSymlink, link: "tool"}}),
		makeAr(version, control, arEntry{name: "data.tar.xz", body: string(compress(f, "xz", small))}),
		makeAr(arEntry{name: "debian-binary/", body: "2.0\n"}, arEntry{name: "control.tar/", body: string(small)},
			arEntry{name: "_gpgbuilder", body: "sig"}, arEntry{name: "data.tar/", body: string(small)}),
		makeAr(version, control, arEntry{name: "data.tar.zst", body: string(compress(f, "zst", small)), size: "99999"}),
		makeAr(version, arEntry{name: "control.tar.gz", body: "x", size: "-1"}),
		[]byte(arMagic), nil,
	} {
		f.Add(b)
	}
	tmp := f.TempDir() // a worker runs its inputs one at a time
	f.Fuzz(func(t *testing.T, data []byte) {
		if kind := detect(data); kind == "deb" && !bytes.HasPrefix(data, []byte(arMagic)) {
			t.Fatalf("detect: deb without ar magic")
		}
		store := memStore{}
		d, _, err := store.Put(context.Background(), bytes.NewReader(data), "")
		if err != nil {
			t.Fatal(err)
		}
		err = Extract(context.Background(), store, d, []string{"."}, tmp, func(m Member, r io.Reader) error {
			names := []string{m.Name}
			if m.Type == tar.TypeLink { // a hard link's target is a member; a symlink's is as written
				names = append(names, m.Linkname)
			}
			for _, n := range names {
				if n == "" || n == "." || path.Clean(n) != n || n == ".." || strings.HasPrefix(n, "../") || strings.HasPrefix(n, "/") {
					t.Fatalf("member %+v: name %q is not clean or leads out", m, n)
				}
			}
			const most = 1 << 20 // a sparse tar member may claim terabytes
			b, err := io.ReadAll(io.LimitReader(r, most))
			if err != nil {
				return err
			}
			if m.Type == tar.TypeReg && m.Size <= most && int64(len(b)) != m.Size {
				t.Fatalf("member %+v: %d bytes", m, len(b))
			}
			if m.Type != tar.TypeReg && len(b) != 0 {
				t.Fatalf("member %+v: %d bytes of content", m, len(b))
			}
			return nil
		})
		if err != nil && !strings.HasPrefix(err.Error(), "archive "+d+": ") {
			t.Fatalf("error does not name the archive: %v", err)
		}
		if left, _ := os.ReadDir(tmp); len(left) != 0 {
			t.Fatalf("left in tmpDir: %v", left)
		}
	})
}
