package secrets

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/golden"
)

// labTree builds a tree the way a bake does: a base with a dpkg database,
// then a layer bringing keys, each stage with its origin.
func labTree(t *testing.T) (*tree.Tree, string) {
	t.Helper()
	blobs := t.TempDir()
	tr := tree.New(testEpoch)
	tr.SetOrigin("base debian:trixie")
	base := mkTar(t,
		tdir("usr/"), tdir("usr/lib/"), tsymlink("lib", "usr/lib"),
		tfile("var/lib/dpkg/info/python3-foo.list", "/.\n/usr\n/usr/share\n/usr/share/foo\n/usr/share/foo/test.key\n"),
		tfile("var/lib/dpkg/info/libbar1:amd64.list", "/lib/bar/bar.pem\n/lib/bar/README\n"),
		tfile("var/lib/dpkg/info/libbaz.list", "/usr/share/foo/test.key\n"), // a second owner (diverted or shared)
		tfile("usr/share/foo/test.key", pkcs8PEM(t)),
		tfile("usr/lib/bar/bar.pem", certPEM()+rsaPEM()),
		tfile("usr/lib/bar/README", "-----BEGIN PRIVATE KEY----- marks a key\n"),
		tfile("usr/share/doc/x/cert.pem", certPEM()),
	)
	if err := tr.ApplyTar(bytes.NewReader(base), "base", blobs); err != nil {
		t.Fatal(err)
	}
	tr.SetOrigin("layers[0] layers/keys.tar")
	layer := mkTar(t,
		tfile("root/.ssh/id_ed25519", opensshKey(t)),
		thardlink("root/.ssh/backup", "root/.ssh/id_ed25519"),
		tfile("etc/kubernetes/admin.conf", "client-key-data: "+b64(ecPEM(t))+"\n"),
		tfile("etc/app/config.yaml", "key: none\n"),
	)
	if err := tr.ApplyTar(bytes.NewReader(layer), "layers[0]", blobs); err != nil {
		t.Fatal(err)
	}
	return tr, blobs
}

// opensshKey is an ssh-keygen key, or a Go PKCS#8 key when ssh-keygen is
// missing (the scan tests do not depend on the format).
func opensshKey(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/ssh-keygen"); err != nil {
		return pkcs8PEM(t)
	}
	p, _ := sshKeygen(t, "-t", "ed25519", "-N", "")
	return p
}

func TestScan(t *testing.T) {
	tr, _ := labTree(t)
	sshKind := "OpenSSH private key"
	if !strings.Contains(opensshKey(t), "OPENSSH") {
		sshKind = "PKCS#8 private key"
	}
	all := []Finding{
		{Path: "/etc/kubernetes/admin.conf", Kind: "EC private key (base64-encoded PEM)", Origin: "layers[0] layers/keys.tar"},
		{Path: "/root/.ssh/id_ed25519", Kind: sshKind, Origin: "layers[0] layers/keys.tar"},
		{Path: "/usr/lib/bar/bar.pem", Kind: "RSA private key", Origin: "base debian:trixie", Package: "libbar1:amd64"},
		{Path: "/usr/share/foo/test.key", Kind: "PKCS#8 private key", Origin: "base debian:trixie", Package: "libbaz, python3-foo"},
	}
	tests := []struct {
		name  string
		allow []string
		want  []Finding
	}{
		{name: "no allow list", want: all},
		{name: "exact paths", allow: []string{"/usr/share/foo/test.key", "/etc/kubernetes/admin.conf"}, want: []Finding{all[1], all[2]}},
		{name: "glob", allow: []string{"/usr/*/*/*"}, want: []Finding{all[0], all[1]}},
		{name: "hardlink name", allow: []string{"/root/.ssh/backup"}, want: []Finding{all[0], all[2], all[3]}},
		{name: "path through a symlink", allow: []string{"/lib/bar/bar.pem"}, want: []Finding{all[0], all[1], all[3]}},
		{name: "everything", allow: []string{"/usr/share/foo/test.key", "/lib/bar/bar.pem", "/root/.ssh/*", "/etc/kubernetes/admin.conf"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Scan(context.Background(), tr, tc.allow)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("findings:\n got %v\nwant %v", got, tc.want)
			}
			var se *Error
			switch {
			case len(tc.want) == 0 && err != nil:
				t.Errorf("err = %v, want nil", err)
			case len(tc.want) > 0 && !errors.As(err, &se):
				t.Errorf("err = %v, want an *Error", err)
			case len(tc.want) > 0 && !reflect.DeepEqual(se.Findings, tc.want):
				t.Errorf("Error.Findings = %v", se.Findings)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	e := &Error{Findings: []Finding{
		{Path: "/etc/kubernetes/admin.conf", Kind: "EC private key (base64-encoded PEM)", Origin: "layers[0] layers/keys.tar"},
		{Path: "/usr/share/foo/test.key", Kind: "PKCS#8 private key", Origin: "base debian:trixie", Package: "python3-foo"},
		{Path: "/etc/x.pem", Kind: "RSA private key", Package: "x"},
		{Path: "/etc/y.pem", Kind: "RSA private key"},
	}}
	golden.Check(t, filepath.Join("testdata", "error.txt"), []byte(e.Error()+"\n"))
	one := (&Error{Findings: e.Findings[:1]}).Error()
	if !strings.HasPrefix(one, "the image would hold private key material (1 file):\n  /etc/kubernetes/admin.conf: EC private key (base64-encoded PEM) (from layers[0] layers/keys.tar)\n") {
		t.Errorf("one finding:\n%s", one)
	}
}

func TestScanAllowErrors(t *testing.T) {
	tr := tree.New(testEpoch)
	for _, a := range []string{"etc/x", "/etc/../x", "/etc/x/", "/etc/[x", ""} {
		if _, err := Scan(context.Background(), tr, []string{a}); err == nil || !strings.Contains(err.Error(), "secrets.allow") {
			t.Errorf("allow %q: err = %v", a, err)
		}
	}
}

// TestScanWindows puts a key at offsets around the window boundaries of a
// large file, and behind a hole of a sparse file.
func TestScanWindows(t *testing.T) {
	key := []byte(pkcs8PEM(t))
	filler := bytes.Repeat([]byte("filler text, no key here. "), (3*window)/26+1)[:3*window]
	offsets := []int{0, window - len(key)/2, window, window + overlap - len(key)/2, window + overlap - 10, 2*window + 7, 3*window - len(key)}
	dir := t.TempDir()
	tr := tree.New(testEpoch)
	for i, off := range offsets {
		data := append(append(append([]byte{}, filler[:off]...), key...), filler[off:]...)
		p := filepath.Join(dir, "f"+string(rune('a'+i)))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		addFile(t, tr, "data/"+filepath.Base(p), p)
	}
	// A sparse file: 2 GiB of hole, then the key.
	sp := filepath.Join(dir, "sparse")
	f, err := os.Create(sp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(key, 2<<30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	addFile(t, tr, "data/sparse", sp)
	// A clean file as large as the others.
	clean := filepath.Join(dir, "clean")
	if err := os.WriteFile(clean, filler, 0o644); err != nil {
		t.Fatal(err)
	}
	addFile(t, tr, "data/clean", clean)

	found, err := Scan(context.Background(), tr, nil)
	if err == nil {
		t.Fatal("no error")
	}
	var paths []string
	for _, f := range found {
		if f.Kind != "PKCS#8 private key" {
			t.Errorf("%s: kind %q", f.Path, f.Kind)
		}
		paths = append(paths, f.Path)
	}
	want := []string{"/data/fa", "/data/fb", "/data/fc", "/data/fd", "/data/fe", "/data/ff", "/data/fg", "/data/sparse"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("found %v, want %v", paths, want)
	}
}

func addFile(t *testing.T, tr *tree.Tree, p, host string) {
	t.Helper()
	st, err := os.Stat(host)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Add(tree.Entry{Path: p, Type: tree.Regular, Mode: 0o644, Content: &tree.Blob{Path: host, Size: st.Size()}}); err != nil {
		t.Fatal(err)
	}
}

func TestScanErrors(t *testing.T) {
	tr := tree.New(testEpoch)
	if err := tr.Add(tree.Entry{Path: "etc/gone", Type: tree.Regular, Content: &tree.Blob{Path: filepath.Join(t.TempDir(), "missing"), Size: 100}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Scan(context.Background(), tr, nil); err == nil || !strings.Contains(err.Error(), "/etc/gone") || errors.As(err, new(*Error)) {
		t.Errorf("unreadable blob: err = %v", err)
	}

	tr2, _ := labTree(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Scan(ctx, tr2, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestScanSkipsELF: a shared library that embeds a key for its self-test
// (as libgnutls does) is not a finding; the same bytes in a data file are.
func TestScanSkipsELF(t *testing.T) {
	dir := t.TempDir()
	body := "\x00key\x00" + pkcs8PEM(t) + "\x00\x01\x02"
	tr := tree.New(testEpoch)
	for name, data := range map[string]string{"lib.so": "\x7fELF\x02\x01\x01\x00" + body, "data.bin": "DATA\x02\x01\x01\x00" + body} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		addFile(t, tr, "usr/lib/"+name, p)
	}
	found, _ := Scan(context.Background(), tr, nil)
	if len(found) != 1 || found[0].Path != "/usr/lib/data.bin" {
		t.Errorf("found %+v, want only /usr/lib/data.bin", found)
	}
}

// TestScanKnown: the contents found clean are returned by digest; given
// back as known clean they are not read again (their blobs may be gone),
// and the files holding keys are still reported.
func TestScanKnown(t *testing.T) {
	tr, _ := labTree(t)
	first, clean, err := ScanKnown(context.Background(), tr, nil, nil)
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("ScanKnown: %v, want findings", err)
	}
	readme, _ := tr.Get("usr/lib/bar/README")
	conf, _ := tr.Get("etc/app/config.yaml")
	known := map[string]bool{}
	for _, d := range clean {
		known[d] = true
	}
	if !known[readme.Content.Digest] || len(known) != len(clean) {
		t.Errorf("clean digests %v: want README's %s once", clean, readme.Content.Digest)
	}
	for _, e := range tr.Entries() {
		// The dpkg lists are read to name the packages of the findings.
		if e.Type == tree.Regular && known[e.Content.Digest] && !strings.HasPrefix(e.Path, "var/lib/dpkg/") {
			if err := os.Remove(e.Content.Path); err != nil {
				t.Fatal(err)
			}
		}
	}
	again, clean2, err := ScanKnown(context.Background(), tr, nil, known)
	if !errors.As(err, &se) {
		t.Fatalf("ScanKnown with known clean contents: %v, want findings", err)
	}
	if !reflect.DeepEqual(again, first) {
		t.Errorf("findings %v, want %v", again, first)
	}
	if len(clean2) != 0 {
		t.Errorf("clean contents read again: %v", clean2)
	}
	// A file too small to hold a key is neither read nor returned.
	if known[conf.Content.Digest] {
		t.Errorf("config.yaml (%d bytes) returned as scanned", conf.Content.Size)
	}
}
