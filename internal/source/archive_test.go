package source

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// entry is an archive member to write.
type entry struct {
	name string
	typ  byte // tar typeflag; 0 means a regular file
	body string
	link string
	mode int64
}

func makeTar(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Size: int64(len(e.body)), Format: tar.FormatPAX}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func compress(t testing.TB, kind string, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	var err error
	switch kind {
	case "gz":
		w = gzip.NewWriter(&buf)
	case "zst":
		w, err = zstd.NewWriter(&buf)
	case "xz":
		w, err = xz.NewWriter(&buf)
	default:
		return b
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func makeZip(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		mode := fs.FileMode(e.mode)
		switch e.typ {
		case tar.TypeDir:
			h.SetMode(fs.ModeDir | mode)
		case tar.TypeSymlink:
			h.SetMode(fs.ModeSymlink | 0o777)
			e.body = e.link
		default:
			h.SetMode(mode)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// etcdTree is an archive laid out like etcd's release tarball.
func etcdTree() []entry {
	return []entry{
		{name: "./etcd-v3.5.17-linux-amd64/", typ: tar.TypeDir, mode: 0o755},
		{name: "./etcd-v3.5.17-linux-amd64/etcd", body: "etcd binary", mode: 0o755},
		{name: "./etcd-v3.5.17-linux-amd64/etcdctl", body: "etcdctl binary", mode: 0o755},
		{name: "./etcd-v3.5.17-linux-amd64/Documentation/", typ: tar.TypeDir, mode: 0o755},
		{name: "./etcd-v3.5.17-linux-amd64/Documentation/README.md", body: "read me"},
		{name: "./etcd-v3.5.17-linux-amd64/Documentation/dev/notes.md", body: "notes"},
		{name: "./etcd-v3.5.17-linux-amd64/Documentation/latest", typ: tar.TypeSymlink, link: "README.md", mode: 0o777},
		{name: "./etcd-v3.5.17-linux-amd64/Documentation-old/x", body: "not below Documentation"},
	}
}

// got is what Extract handed to fn.
type got struct {
	Member
	Body string
}

func extractAll(t *testing.T, store Store, d string, paths []string) ([]got, error) {
	t.Helper()
	var out []got
	err := Extract(context.Background(), store, d, paths, t.TempDir(), func(m Member, r io.Reader) error {
		b, err := io.ReadAll(r)
		out = append(out, got{m, string(b)})
		return err
	})
	return out, err
}

func TestExtract(t *testing.T) {
	const dir = "etcd-v3.5.17-linux-amd64"
	etcd := got{Member{Name: dir + "/etcd", Mode: 0o755, Size: 11, Type: tar.TypeReg}, "etcd binary"}
	docs := []got{
		{Member{Name: dir + "/Documentation", Mode: 0o755, Type: tar.TypeDir}, ""},
		{Member{Name: dir + "/Documentation/README.md", Mode: 0o644, Size: 7, Type: tar.TypeReg}, "read me"},
		{Member{Name: dir + "/Documentation/dev/notes.md", Mode: 0o644, Size: 5, Type: tar.TypeReg}, "notes"},
		{Member{Name: dir + "/Documentation/latest", Mode: 0o777, Type: tar.TypeSymlink, Linkname: "README.md"}, ""},
	}
	tree := makeTar(t, etcdTree())
	zipped := makeZip(t, []entry{
		{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "bin/tool", body: "tool binary", mode: 0o755},
		{name: "bin/tool-link", typ: tar.TypeSymlink, link: "tool"},
		{name: "README", body: "zip read me", mode: 0o644},
	})
	tests := []struct {
		name    string
		blob    []byte
		paths   []string
		want    []got
		wantErr []string // substrings; DIGEST stands for the blob's digest
	}{
		{name: "tar.gz one file", blob: compress(t, "gz", tree), paths: []string{dir + "/etcd"}, want: []got{etcd}},
		{name: "tar.gz directory", blob: compress(t, "gz", tree), paths: []string{dir + "/Documentation"}, want: docs},
		{name: "tar.gz leading ./ and /", blob: compress(t, "gz", tree), paths: []string{"./" + dir + "/etcd", "/" + dir + "/Documentation/"}, want: append([]got{etcd}, docs...)},
		{name: "tar.zst", blob: compress(t, "zst", tree), paths: []string{dir + "/etcd"}, want: []got{etcd}},
		{name: "tar.xz", blob: compress(t, "xz", tree), paths: []string{dir + "/etcd"}, want: []got{etcd}},
		{name: "plain tar", blob: tree, paths: []string{dir + "/etcd"}, want: []got{etcd}},
		{name: "zip", blob: zipped, paths: []string{"bin"}, want: []got{
			{Member{Name: "bin", Mode: 0o755, Type: tar.TypeDir}, ""},
			{Member{Name: "bin/tool", Mode: 0o755, Size: 11, Type: tar.TypeReg}, "tool binary"},
			{Member{Name: "bin/tool-link", Mode: 0o777, Type: tar.TypeSymlink, Linkname: "tool"}, ""},
		}},
		{name: "zip one file", blob: zipped, paths: []string{"README"}, want: []got{
			{Member{Name: "README", Mode: 0o644, Size: 11, Type: tar.TypeReg}, "zip read me"},
		}},
		{name: "everything", blob: makeTar(t, []entry{{name: "./", typ: tar.TypeDir}, {name: "a", body: "A"}}), paths: []string{"."}, want: []got{
			{Member{Name: "a", Mode: 0o644, Size: 1, Type: tar.TypeReg}, "A"},
		}},
		{name: "absolute member", blob: makeTar(t, []entry{{name: "/etc/passwd", body: "x"}}), paths: []string{"etc/passwd"}, want: []got{
			{Member{Name: "etc/passwd", Mode: 0o644, Size: 1, Type: tar.TypeReg}, "x"},
		}},
		{name: "hard link", blob: makeTar(t, []entry{{name: "a", body: "A"}, {name: "./b", typ: tar.TypeLink, link: "./a"}}), paths: []string{"b"}, want: []got{
			{Member{Name: "b", Mode: 0o644, Type: tar.TypeLink, Linkname: "a"}, ""},
		}},
		{name: "missing", blob: compress(t, "gz", tree), paths: []string{dir + "/etcd", dir + "/etcdutl", "etcd"}, wantErr: []string{
			`archive DIGEST: tar.gz: not found: "` + dir + `/etcdutl", "etcd" (did you mean "` + dir + `/etcd"?); the archive has 8 members: "` + dir + `", "` + dir + `/etcd"`,
		}},
		{name: "missing in zip", blob: zipped, paths: []string{"bin/other"}, wantErr: []string{`archive DIGEST: zip: not found: "bin/other"`}},
		{name: "hostile", blob: compress(t, "gz", makeTar(t, []entry{{name: "ok", body: "x"}, {name: "../x", body: "evil"}})), paths: []string{"ok"},
			wantErr: []string{`archive DIGEST: member "../x" leads out of the archive`}},
		{name: "hostile inside", blob: makeTar(t, []entry{{name: "a/../../x", body: "evil"}}), paths: []string{"."},
			wantErr: []string{`member "a/../../x" leads out of the archive`}},
		{name: "hostile hard link", blob: makeTar(t, []entry{{name: "a", typ: tar.TypeLink, link: "../../etc/shadow"}}), paths: []string{"."},
			wantErr: []string{`hard link a: member "../../etc/shadow" leads out of the archive`}},
		{name: "hostile zip", blob: makeZip(t, []entry{{name: "../../x", body: "evil"}}), paths: []string{"x"},
			wantErr: []string{`member "../../x" leads out of the archive`}},
		{name: "bad path", blob: tree, paths: []string{"../etc"}, wantErr: []string{`archive DIGEST: path "../etc" leads out of the archive`}},
		{name: "no paths", blob: tree, wantErr: []string{"archive DIGEST: no paths to extract"}},
		{name: "not an archive", blob: []byte("#!/bin/sh\necho hi\n"), paths: []string{"x"}, wantErr: []string{"archive DIGEST: not a tar, zip or Debian package (.deb)"}},
		{name: "gzip not tar", blob: compress(t, "gz", []byte("hello")), paths: []string{"x"}, wantErr: []string{"archive DIGEST: tar.gz: the decompressed data is not a tar archive"}},
		{name: "truncated", blob: compress(t, "gz", tree)[:100], paths: []string{"x"}, wantErr: []string{"archive DIGEST: tar.gz: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newDirStore(t)
			d := store.put(t, tt.blob)
			out, err := extractAll(t, store, d, tt.paths)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("no error; got %+v", out)
				}
				for _, s := range tt.wantErr {
					if s = strings.ReplaceAll(s, "DIGEST", d); !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(out, tt.want) {
				t.Errorf("got\n%+v\nwant\n%+v", out, tt.want)
			}
		})
	}
}

func TestExtractGitArchive(t *testing.T) {
	// git archive starts with a pax global header holding the commit.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "0123abcd"}}); err != nil {
		t.Fatal(err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: "repo/f", Mode: 0o644, Size: 1}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write([]byte("f"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	store := newDirStore(t)
	out, err := extractAll(t, store, store.put(t, buf.Bytes()), []string{"."})
	if err != nil || len(out) != 1 || out[0].Name != "repo/f" {
		t.Fatalf("got %+v, %v", out, err)
	}
}

func TestExtractCorruptBlob(t *testing.T) {
	store := newDirStore(t)
	blob := compress(t, "gz", makeTar(t, etcdTree()))
	d := store.put(t, blob)
	// Another archive of the same shape under the first one's name.
	bad := etcdTree()
	bad[1].body = "evil binary"
	if err := os.WriteFile(store.path(d), compress(t, "gz", makeTar(t, bad)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := extractAll(t, store, d, []string{"etcd-v3.5.17-linux-amd64/etcd"})
	if err == nil || !strings.Contains(err.Error(), "corrupt") || !strings.HasPrefix(err.Error(), "archive "+d+": ") {
		t.Fatalf("err = %v", err)
	}
}

func TestExtractErrors(t *testing.T) {
	store := newDirStore(t)
	d := store.put(t, compress(t, "gz", makeTar(t, etcdTree())))
	boom := errors.New("boom")
	err := Extract(context.Background(), store, d, []string{"."}, t.TempDir(), func(m Member, r io.Reader) error {
		if strings.HasSuffix(m.Name, "/etcdctl") {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "archive "+d+": etcd-v3.5.17-linux-amd64/etcdctl: boom") {
		t.Errorf("fn error: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = Extract(ctx, store, d, []string{"."}, t.TempDir(), func(Member, io.Reader) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}

	missing := digestOf([]byte("not stored"))
	err = Extract(context.Background(), store, missing, []string{"."}, t.TempDir(), func(Member, io.Reader) error { return nil })
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "archive "+missing+": ") {
		t.Errorf("missing blob: %v", err)
	}
}

// TestExtractZipTemp checks the zip's temporary file goes.
func TestExtractZipTemp(t *testing.T) {
	store := newDirStore(t)
	d := store.put(t, makeZip(t, []entry{{name: "a", body: "A"}}))
	tmp := t.TempDir()
	if err := Extract(context.Background(), store, d, []string{"a"}, tmp, func(Member, io.Reader) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("left in tmpDir: %v", entries)
	}
}
