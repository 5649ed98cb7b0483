package source

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// requireDpkgDeb returns dpkg-deb's path. It skips the test when dpkg-deb
// is missing, or fails it when LABBAKE_REQUIRE_TOOLS is set.
func requireDpkgDeb(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("dpkg-deb")
	if err == nil {
		return p
	}
	if os.Getenv("LABBAKE_REQUIRE_TOOLS") != "" {
		t.Fatal("dpkg-deb not found (run make deps)")
	}
	t.Skip("dpkg-deb not found (run make deps)")
	return ""
}

// The package buildDeb makes: laid out like Debian's catatonit.
const (
	debBinary  = "catatonit binary\n"
	debCopying = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
	debChanges = "catatonit (0.2.1-2) unstable; urgency=medium\n"
)

// buildDeb builds a package with the real dpkg-deb, its data.tar
// compressed by comp (xz, zstd, gzip or none).
func buildDeb(t testing.TB, comp string) []byte {
	t.Helper()
	dpkgDeb := requireDpkgDeb(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for _, f := range []struct {
		name, body string
		mode       os.FileMode
	}{
		{"DEBIAN/control", "Package: catatonit\nVersion: 0.2.1-2\nArchitecture: amd64\nMaintainer: Lab Bake <lab@example.test>\nDescription: init for containers\n", 0o644},
		{"usr/bin/catatonit", debBinary, 0o755},
		{"usr/share/doc/catatonit/copyright", debCopying, 0o644},
		{"usr/share/doc/catatonit/changelog.Debian", debChanges, 0o644},
	} {
		p := filepath.Join(root, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.body), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
	}
	link := filepath.Join(root, "usr/libexec/podman/catatonit")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../bin/catatonit", link); err != nil {
		t.Fatal(err)
	}
	if err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			err = os.Chmod(p, 0o755)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "catatonit.deb")
	cmd := exec.Command(dpkgDeb, "-Z", comp, "--root-owner-group", "--build", root, out)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// arEntry is an ar member to write. size, when set, is written in the
// header instead of the body's length.
type arEntry struct {
	name, body, size string
}

// makeAr writes an ar archive as dpkg-deb does: names padded with spaces,
// data padded to an even length.
func makeAr(entries ...arEntry) []byte {
	var b bytes.Buffer
	b.WriteString(arMagic)
	for _, e := range entries {
		size := e.size
		if size == "" {
			size = strconv.Itoa(len(e.body))
		}
		fmt.Fprintf(&b, "%-16s%-12s%-6s%-6s%-8s%-10s`\n", e.name, "1700000000", "0", "0", "100644", size)
		b.WriteString(e.body)
		if len(e.body)%2 == 1 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func TestExtractDeb(t *testing.T) {
	catatonit := got{Member{Name: "usr/bin/catatonit", Mode: 0o755, Size: int64(len(debBinary)), Type: tar.TypeReg}, debBinary}
	docs := []got{
		{Member{Name: "usr/share/doc/catatonit", Mode: 0o755, Type: tar.TypeDir}, ""},
		{Member{Name: "usr/share/doc/catatonit/changelog.Debian", Mode: 0o644, Size: int64(len(debChanges)), Type: tar.TypeReg}, debChanges},
		{Member{Name: "usr/share/doc/catatonit/copyright", Mode: 0o644, Size: int64(len(debCopying)), Type: tar.TypeReg}, debCopying},
	}
	link := got{Member{Name: "usr/libexec/podman/catatonit", Mode: 0o777, Type: tar.TypeSymlink, Linkname: "../../bin/catatonit"}, ""}
	type test struct {
		name    string
		blob    []byte
		paths   []string
		want    []got
		wantErr []string // substrings; DIGEST stands for the blob's digest
	}
	var tests []test
	for _, comp := range []string{"xz", "zstd", "gzip"} {
		deb := buildDeb(t, comp)
		tests = append(tests,
			test{name: comp + " file", blob: deb, paths: []string{"usr/bin/catatonit"}, want: []got{catatonit}},
			test{name: comp + " leading ./ and /", blob: deb, paths: []string{"./usr/bin/catatonit", "/usr/libexec/podman/catatonit"}, want: []got{catatonit, link}},
			test{name: comp + " directory", blob: deb, paths: []string{"usr/share/doc/catatonit/"}, want: docs},
			test{name: comp + " symlink", blob: deb, paths: []string{"usr/libexec/podman/catatonit"}, want: []got{link}},
			test{name: comp + " missing", blob: deb, paths: []string{"usr/bin/catatonit", "usr/sbin/catatonit", "catatonit"}, wantErr: []string{
				`archive DIGEST: deb: not found: "usr/sbin/catatonit", "catatonit" (did you mean "usr/bin/catatonit"?); the archive has 11 members: "usr", "usr/bin", "usr/bin/catatonit"`,
			}},
		)
	}
	deb := buildDeb(t, "xz")
	data := bytes.Index(deb, []byte("data.tar.xz"))
	tests = append(tests,
		test{name: "truncated in control.tar", blob: deb[:data-100], paths: []string{"usr/bin/catatonit"},
			wantErr: []string{"archive DIGEST: deb: member \"control.tar.xz\" is truncated: "}},
		test{name: "truncated in a header", blob: deb[:data+10], paths: []string{"usr/bin/catatonit"},
			wantErr: []string{"archive DIGEST: deb: truncated member header (10 of 60 bytes)"}},
		test{name: "truncated in data.tar", blob: deb[:data+60+100], paths: []string{"usr/bin/catatonit"},
			wantErr: []string{"archive DIGEST: deb: data.tar.xz: ", "member \"data.tar.xz\" is truncated: 100 of "}},
		test{name: "truncated by a byte", blob: deb[:len(deb)-1], paths: []string{"usr/bin/catatonit"},
			wantErr: []string{"archive DIGEST: deb: ", "member \"data.tar.xz\" is truncated: "}},
	)

	tree := makeTar(t, []entry{{name: "./", typ: tar.TypeDir, mode: 0o755}, {name: "./usr/bin/tool", body: "tool", mode: 0o755}})
	control := compress(t, "gz", makeTar(t, []entry{{name: "./control", body: "Package: tool\n"}}))
	tool := []got{{Member{Name: "usr/bin/tool", Mode: 0o755, Size: 4, Type: tar.TypeReg}, "tool"}}
	version := arEntry{name: "debian-binary", body: "2.0\n"}
	ctl := arEntry{name: "control.tar.gz", body: string(control)}
	badMagic := makeAr(version, ctl, arEntry{name: "data.tar", body: string(tree)})
	badMagic[len(arMagic)+arHeaderSize+4+58] = 'x' // control.tar.gz's header
	tests = append(tests,
		test{name: "GNU names, a signature, odd sizes, plain data.tar", paths: []string{"usr/bin"}, want: tool, blob: makeAr(
			arEntry{name: "debian-binary/", body: "2.0\n"},
			arEntry{name: "control.tar/", body: string(makeTar(t, []entry{{name: "control", body: "Package: tool\n"}}))},
			arEntry{name: "_gpgbuilder", body: "-----BEGIN PGP SIGNATURE-----\n"},
			arEntry{name: "data.tar/", body: string(tree)},
		)},
		test{name: "debian-binary 2.1, data.tar.zst", paths: []string{"usr/bin/tool"}, want: tool, blob: makeAr(
			arEntry{name: "debian-binary", body: "2.1\n"}, ctl, arEntry{name: "data.tar.zst", body: string(compress(t, "zst", tree))},
		)},
		test{name: "nothing after data.tar is read", paths: []string{"usr/bin/tool"}, want: tool, blob: makeAr(
			version, ctl, arEntry{name: "data.tar.gz", body: string(compress(t, "gz", tree))}, arEntry{name: "evil", body: "x", size: "9999999999"},
		)},
		test{name: "size not a number", paths: []string{"."}, blob: makeAr(version, arEntry{name: "control.tar.gz", body: "x", size: "12a"}),
			wantErr: []string{`archive DIGEST: deb: member "control.tar.gz": size "12a" is not a decimal number`}},
		test{name: "negative size", paths: []string{"."}, blob: makeAr(version, arEntry{name: "control.tar.gz", body: "x", size: "-1"}),
			wantErr: []string{`deb: member "control.tar.gz": size "-1" is not a decimal number`}},
		test{name: "blank size", paths: []string{"."}, blob: makeAr(version, arEntry{name: "control.tar.gz", body: "x", size: " "}),
			wantErr: []string{`deb: member "control.tar.gz": size "" is not a decimal number`}},
		test{name: "huge size", paths: []string{"."}, blob: makeAr(version, arEntry{name: "control.tar.gz", body: string(control), size: "9999999999"}),
			wantErr: []string{fmt.Sprintf("deb: member \"control.tar.gz\" is truncated: %d of 9999999999 bytes", len(control)+len(control)%2)}},
		test{name: "huge data.tar", paths: []string{"."}, blob: makeAr(version, ctl, arEntry{name: "data.tar", body: string(tree), size: "9999999999"}),
			wantErr: []string{fmt.Sprintf("deb: member \"data.tar\" is truncated: %d of 9999999999 bytes", len(tree))}},
		test{name: "huge debian-binary", paths: []string{"."}, blob: makeAr(arEntry{name: "debian-binary", body: "2.0\n", size: "9999999999"}),
			wantErr: []string{"deb: debian-binary is 9999999999 bytes, want at most 64"}},
		test{name: "bad header magic", paths: []string{"."}, blob: badMagic,
			wantErr: []string{"deb: member \"control.tar.gz\": bad header (it ends in \"x\\n\", want \"`\\n\")"}},
		test{name: "version 3", paths: []string{"."}, blob: makeAr(arEntry{name: "debian-binary", body: "3.0\n"}, ctl),
			wantErr: []string{`archive DIGEST: deb: debian-binary says "3.0\n", want 2.x`}},
		test{name: "no debian-binary", paths: []string{"."}, blob: makeAr(ctl, version),
			wantErr: []string{`deb: the first member is "control.tar.gz", want debian-binary`}},
		test{name: "no data.tar", paths: []string{"."}, blob: makeAr(version, ctl),
			wantErr: []string{"archive DIGEST: deb: no data.tar member"}},
		test{name: "empty ar", paths: []string{"."}, blob: []byte(arMagic),
			wantErr: []string{"deb: no debian-binary member: the archive is empty"}},
		test{name: "unexpected member", paths: []string{"."}, blob: makeAr(version, arEntry{name: "evil.o", body: "x"}),
			wantErr: []string{`deb: unexpected member "evil.o"`}},
		test{name: "data.tar.lzma", paths: []string{"."}, blob: makeAr(version, ctl, arEntry{name: "data.tar.lzma", body: "x"}),
			wantErr: []string{"deb: data.tar.lzma: unsupported compression"}},
		test{name: "data.tar not of its kind", paths: []string{"."}, blob: makeAr(version, ctl, arEntry{name: "data.tar.xz", body: string(compress(t, "gz", tree))}),
			wantErr: []string{"deb: data.tar.xz: xz: "}},
		test{name: "hostile member", paths: []string{"."}, blob: makeAr(version, ctl, arEntry{name: "data.tar.gz", body: string(compress(t, "gz",
			makeTar(t, []entry{{name: "./ok", body: "x"}, {name: "./../x", body: "evil"}})))}),
			wantErr: []string{`archive DIGEST: deb: data.tar.gz: member "./../x" leads out of the archive`}},
	)

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

// TestExtractDebCorruptBlob checks a .deb is read to its end, past its
// data.tar, so that the store verifies it.
func TestExtractDebCorruptBlob(t *testing.T) {
	tree := makeTar(t, []entry{{name: "./usr/bin/tool", body: "tool", mode: 0o755}})
	deb := func(tail string) []byte {
		return makeAr(arEntry{name: "debian-binary", body: "2.0\n"}, arEntry{name: "control.tar", body: string(tree)},
			arEntry{name: "data.tar", body: string(tree)}, arEntry{name: "_trailer", body: tail})
	}
	store := newDirStore(t)
	d := store.put(t, deb("good"))
	if err := os.WriteFile(store.path(d), deb("evil"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := extractAll(t, store, d, []string{"usr/bin/tool"})
	if err == nil || !strings.Contains(err.Error(), "corrupt") || !strings.HasPrefix(err.Error(), "archive "+d+": ") {
		t.Fatalf("err = %v", err)
	}
}
