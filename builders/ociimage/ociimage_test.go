package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/golden"
)

var epoch = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// sample is a tree as a built image's files make it: a program from a
// host file, a data file with an owner, a symlink, nested parents; the
// host files live in src.
func sample(t *testing.T, src string) *tree.Tree {
	t.Helper()
	tr := tree.New(epoch)
	write := func(name, body string) string {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	prog := write("prog", "#!/pause\nnot really a program\n")
	conf := write("conf", ".:53 {\n    forward . /etc/resolv.conf\n}\n")
	for _, e := range []tree.Entry{
		{Path: "/pause", Type: tree.Regular, Mode: 0o755, Content: &tree.Blob{Path: prog, Size: 30}},
		{Path: "/etc/coredns/Corefile", Type: tree.Regular, Mode: 0o640, UID: 65532, GID: 65532, Content: &tree.Blob{Path: conf, Size: 40}},
		{Path: "/usr/local/bin/pause", Type: tree.Symlink, Linkname: "/pause", Mode: 0o777},
		{Path: "/var/run/pause", Type: tree.Dir, Mode: 0o1777},
	} {
		if err := tr.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

var sampleConfig = Config{
	Entrypoint: []string{"/pause"}, Cmd: []string{"-v"}, User: "65535:65535", Env: []string{"PATH=/usr/local/bin:/"},
	WorkingDir: "/var/run/pause", ExposedPorts: []string{"53/udp", "9153"}, Labels: map[string]string{"b": "2", "a": "1"},
	CreatedBy: "labbake: /pause /etc/coredns/Corefile",
}

// listing prints a layer's members as archive/tar reads them.
func listing(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b strings.Builder
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		fmt.Fprintf(&b, "%c %04o %d:%d %q %q %s %q size=%d %s\n", h.Typeflag, h.Mode, h.Uid, h.Gid, h.Uname, h.Gname,
			h.ModTime.UTC().Format(time.RFC3339), h.Name, h.Size, h.Linkname)
		if len(body) > 0 {
			fmt.Fprintf(&b, "  %q\n", body)
		}
	}
	return b.String()
}

// indent re-indents JSON for a readable golden file; the bytes hashed
// are the compact ones, kept in the golden file as they are too.
func indent(t *testing.T, b []byte) []byte {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestWriteGolden pins the bytes of an image: its config and manifest
// (compact, as hashed, and indented), the layer's members, and the
// digests. The layer is read back with GNU tar too.
func TestWriteGolden(t *testing.T) {
	dir := t.TempDir()
	img, err := Write(context.Background(), sample(t, t.TempDir()), sampleConfig, filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	read := func(b Blob) []byte {
		got, err := os.ReadFile(b.Path)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(got)) != b.Size || filepath.Base(b.Path) != strings.TrimPrefix(b.Digest, "sha256:") {
			t.Errorf("blob %s at %s: %d bytes, descriptor says %d", b.Digest, b.Path, len(got), b.Size)
		}
		return got
	}
	cfg, man := read(img.Config), read(img.Manifest)
	var out bytes.Buffer
	fmt.Fprintf(&out, "manifest %s %d\n%s\n%s\n\nconfig %s %d\n%s\n%s\n\nlayer %s %s %d (%d files)\n%s",
		img.Manifest.Digest, img.Manifest.Size, man, indent(t, man),
		img.Config.Digest, img.Config.Size, cfg, indent(t, cfg),
		img.Layer.Digest, img.Layer.MediaType, img.Layer.Size, img.Files, listing(t, img.Layer.Path))
	golden.Check(t, "testdata/image.golden", out.Bytes())

	// GNU tar reads the layer: numeric owners, modes, the epoch.
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("no tar")
	}
	gnu, err := exec.Command("tar", "--numeric-owner", "--full-time", "-tvf", img.Layer.Path).CombinedOutput()
	if err != nil {
		t.Fatalf("tar -tvf: %v\n%s", err, gnu)
	}
	for _, want := range []string{
		"drwxr-xr-x 0/0 0 2026-12-01 00:00:00 etc/\n",
		"-rw-r----- 65532/65532 40 2026-12-01 00:00:00 etc/coredns/Corefile\n",
		"-rwxr-xr-x 0/0 30 2026-12-01 00:00:00 pause\n",
		"lrwxrwxrwx 0/0 0 2026-12-01 00:00:00 usr/local/bin/pause -> /pause\n",
		"drwxrwxrwt 0/0 0 2026-12-01 00:00:00 var/run/pause/\n",
	} {
		if !strings.Contains(strings.Join(strings.Fields(string(gnu)), " ")+" ", strings.TrimSuffix(want, "\n")+" ") {
			t.Errorf("tar -tvf lacks %q:\n%s", want, gnu)
		}
	}
}

// The same files from other host paths, written into another dir, give
// the same bytes; another epoch or setting another manifest.
func TestWriteReproducible(t *testing.T) {
	write := func(tr *tree.Tree, cfg Config) *Image {
		img, err := Write(context.Background(), tr, cfg, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	a := write(sample(t, t.TempDir()), sampleConfig)
	b := write(sample(t, t.TempDir()), sampleConfig)
	if a.Manifest.Digest != b.Manifest.Digest || a.Config.Digest != b.Config.Digest || a.Layer.Digest != b.Layer.Digest {
		t.Errorf("two work dirs, two images: %+v %+v", a, b)
	}
	for _, blobs := range [][2]Blob{{a.Manifest, b.Manifest}, {a.Config, b.Config}, {a.Layer, b.Layer}} {
		x, _ := os.ReadFile(blobs[0].Path)
		y, _ := os.ReadFile(blobs[1].Path)
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two writes", blobs[0].Digest)
		}
	}
	cfg := sampleConfig
	cfg.User = "65534"
	if c := write(sample(t, t.TempDir()), cfg); c.Manifest.Digest == a.Manifest.Digest || c.Layer.Digest != a.Layer.Digest {
		t.Errorf("another user: manifest %s (was %s), layer %s (was %s)", c.Manifest.Digest, a.Manifest.Digest, c.Layer.Digest, a.Layer.Digest)
	}
	later := tree.New(epoch.Add(time.Hour))
	if err := later.Add(tree.Entry{Path: "/pause", Type: tree.Regular, Mode: 0o755, Content: &tree.Blob{Path: a.Config.Path, Size: a.Config.Size}}); err != nil {
		t.Fatal(err)
	}
	early := tree.New(epoch)
	if err := early.Add(tree.Entry{Path: "/pause", Type: tree.Regular, Mode: 0o755, Content: &tree.Blob{Path: a.Config.Path, Size: a.Config.Size}}); err != nil {
		t.Fatal(err)
	}
	if x, y := write(later, sampleConfig), write(early, sampleConfig); x.Layer.Digest == y.Layer.Digest || x.Config.Digest == y.Config.Digest {
		t.Errorf("another epoch, same image")
	}
}

func TestWriteErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		file int64 // size the entry claims
		want string
	}{
		{name: "env", cfg: Config{Env: []string{"=x", "PATH"}}, file: 29, want: `env "=x": want KEY=VALUE` + "\n" + `env "PATH": want KEY=VALUE`},
		{name: "workdir", cfg: Config{WorkingDir: "tmp"}, file: 29, want: `working dir "tmp"`},
		{name: "port", cfg: Config{ExposedPorts: []string{"53/icmp", "0", "70000/tcp", "x"}}, file: 29, want: `exposed port "53/icmp": the protocol is tcp, udp or sctp`},
		{name: "short file", cfg: Config{}, file: 30, want: "holds 29 bytes, not 30"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			p := filepath.Join(src, "f")
			os.WriteFile(p, make([]byte, 29), 0o644)
			tr := tree.New(epoch)
			tr.Add(tree.Entry{Path: "/f", Type: tree.Regular, Mode: 0o644, Content: &tree.Blob{Path: p, Size: tc.file}})
			_, err := Write(context.Background(), tr, tc.cfg, t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
	for _, p := range []string{"53", "53/tcp", "65535/sctp"} {
		if msg := CheckPort(p); msg != "" {
			t.Errorf("CheckPort(%q) = %q", p, msg)
		}
	}
	for _, p := range []string{"", "/tcp", "053", "65536", "1/TCP", "1e3"} {
		if CheckPort(p) == "" {
			t.Errorf("CheckPort(%q) accepts it", p)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Write(ctx, sample(t, t.TempDir()), Config{}, t.TempDir()); err == nil {
		t.Error("Write with a cancelled context succeeds")
	}
}

// A file's capabilities (an entry's security.capability) are in the
// layer as the PAX record SCHILY.xattr.security.capability, which
// archive/tar and GNU tar --xattrs read back; a file without has none.
func TestWriteCapabilities(t *testing.T) {
	caps, err := tree.FileCapabilities([]string{"CAP_NET_BIND_SERVICE"})
	if err != nil {
		t.Fatal(err)
	}
	tr := sample(t, t.TempDir())
	e, _ := tr.Get("pause")
	e.Xattrs = map[string][]byte{tree.CapabilityXattr: caps}
	if err := tr.Add(e); err != nil {
		t.Fatal(err)
	}
	img, err := Write(context.Background(), tr, sampleConfig, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(img.Layer.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]string{}
	r := tar.NewReader(f)
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				got[h.Name+" "+k] = fmt.Sprintf("%x", v)
			}
		}
	}
	// The bytes of `setcap cap_net_bind_service=+ep` (builders/tree's
	// TestFileCapabilities).
	want := map[string]string{"pause SCHILY.xattr.security.capability": "0100000200040000000000000000000000000000"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("xattr records %v, want %v", got, want)
	}

	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("no tar")
	}
	gnu, err := exec.Command("tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-tvvf", img.Layer.Path).CombinedOutput()
	if err != nil {
		t.Fatalf("tar --xattrs -tvvf: %v\n%s", err, gnu)
	}
	// GNU tar marks a member with xattrs by a * after its mode and lists
	// each under it as "x: SIZE NAME".
	lines := strings.Split(string(gnu), "\n")
	found := false
	for i, l := range lines {
		if strings.HasSuffix(l, " pause") && strings.HasPrefix(l, "-") {
			found = true
			if !strings.HasPrefix(l, "-rwxr-xr-x* ") || i+1 >= len(lines) || strings.TrimSpace(lines[i+1]) != "x: 20 security.capability" {
				t.Errorf("GNU tar lists pause without its capability:\n%s", gnu)
			}
		}
	}
	if !found || strings.Count(string(gnu), "x: ") != 1 {
		t.Errorf("GNU tar lists %d xattrs, want 1:\n%s", strings.Count(string(gnu), "x: "), gnu)
	}
}
