package tree

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func richLayer(tb testing.TB) []byte {
	tb.Helper()
	ents := []tarEnt{
		dir("./"),
		dir("etc/"),
		file("etc/hostname", "lab\n"),
		file("/abs/file", "abs"), // GNU tar makes it relative
		dir("big/"),
	}
	for i := range 2000 {
		ents = append(ents, file(fmt.Sprintf("big/f%04d", i), fmt.Sprintf("content %d", i)))
	}
	suid := file("usr/bin/su", "#!su")
	suid.hdr.Mode = 0o4755
	owned := file("home/u/owned", "x")
	owned.hdr.Uid, owned.hdr.Gid = 1234, 5678
	owned.hdr.Uname, owned.hdr.Gname = "someone", "somegroup"
	cap := file("usr/bin/ping", "ping")
	cap.hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"}
	cap.hdr.Format = tar.FormatPAX
	old := file("var/old", "old")
	old.hdr.ModTime = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	future := file("var/future", "future")
	future.hdr.ModTime = time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	ents = append(ents,
		suid, owned, cap, old, future,
		symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
		symlink("lib", "usr/lib"),
		file("lib/libc.so", "elf"), // through the symlink: lands in usr/lib
		file("pair/a", "shared"),
		hardlink("pair/b", "pair/a"),
		tarEnt{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
		tarEnt{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0o660, Devmajor: 8, Devminor: 0}},
		tarEnt{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o600}},
		dir("tmp/"),
	)
	ents[len(ents)-1].hdr.Mode = 0o1777
	return mkTar(tb, ents...)
}

func TestApplyTar(t *testing.T) {
	raw := richLayer(t)
	for _, kind := range []string{"plain", "gzip", "zstd", "xz"} {
		t.Run(kind, func(t *testing.T) {
			blobDir := filepath.Join(t.TempDir(), "blobs")
			tr := New(testEpoch)
			if err := tr.ApplyTar(bytes.NewReader(compress(t, kind, raw)), "layer[0] rich.tar", blobDir); err != nil {
				t.Fatal(err)
			}
			checkInvariants(t, tr, blobDir)
			if got := content(t, tr, "etc/hostname"); got != "lab\n" {
				t.Errorf("etc/hostname = %q", got)
			}
			if got := content(t, tr, "abs/file"); got != "abs" {
				t.Errorf("abs/file = %q", got)
			}
			if got := content(t, tr, "big/f1999"); got != "content 1999" {
				t.Errorf("big/f1999 = %q", got)
			}
			n := 0
			for _, e := range tr.Entries() {
				if strings.HasPrefix(e.Path, "big/") {
					n++
				}
			}
			if n != 2000 {
				t.Errorf("big/ has %d entries, want 2000", n)
			}
			if e := mustGet(t, tr, "usr/bin/su"); e.Mode != 0o4755 {
				t.Errorf("setuid mode = %#o", e.Mode)
			}
			if e := mustGet(t, tr, "tmp"); e.Mode != 0o1777 {
				t.Errorf("sticky mode = %#o", e.Mode)
			}
			if e := mustGet(t, tr, "home/u/owned"); e.UID != 1234 || e.GID != 5678 {
				t.Errorf("owner = %d:%d", e.UID, e.GID)
			}
			if e := mustGet(t, tr, "usr/bin/ping"); len(e.Xattrs["security.capability"]) != 20 || e.Xattrs["security.capability"][0] != 1 {
				t.Errorf("xattrs = %q", e.Xattrs)
			}
			if e := mustGet(t, tr, "var/old"); !e.ModTime.Equal(time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)) {
				t.Errorf("old mtime = %v", e.ModTime)
			}
			if e := mustGet(t, tr, "var/future"); !e.ModTime.Equal(testEpoch) {
				t.Errorf("future mtime = %v, want clamped to %v", e.ModTime, testEpoch)
			}
			if e := mustGet(t, tr, "etc/localtime"); e.Type != Symlink || e.Linkname != "/usr/share/zoneinfo/UTC" {
				t.Errorf("etc/localtime = %+v", e)
			}
			if got := content(t, tr, "usr/lib/libc.so"); got != "elf" {
				t.Errorf("usr/lib/libc.so = %q", got)
			}
			if e := mustGet(t, tr, "pair/b"); e.Type != Hardlink || e.Linkname != "pair/a" {
				t.Errorf("pair/b = %+v", e)
			}
			if e := mustGet(t, tr, "dev/null"); e.Type != CharDev || e.Devmajor != 1 || e.Devminor != 3 || e.Mode != 0o666 {
				t.Errorf("dev/null = %+v", e)
			}
			if e := mustGet(t, tr, "dev/sda"); e.Type != BlockDev || e.Devmajor != 8 {
				t.Errorf("dev/sda = %+v", e)
			}
			if e := mustGet(t, tr, "run/fifo"); e.Type != FIFO {
				t.Errorf("run/fifo = %+v", e)
			}
			// One blob per regular entry, names not derived from tar names.
			blobs, err := os.ReadDir(blobDir)
			if err != nil {
				t.Fatal(err)
			}
			regular := 0
			for _, e := range tr.Entries() {
				if e.Type == Regular {
					regular++
					if !e.Content.Owned {
						t.Errorf("%s: blob not owned", e.Path)
					}
				}
			}
			if len(blobs) != regular {
				t.Errorf("%d blobs for %d regular files", len(blobs), regular)
			}
			for _, b := range blobs {
				if !strings.HasPrefix(b.Name(), "blob-") {
					t.Errorf("blob name %q", b.Name())
				}
			}
		})
	}
}

func TestApplyTarLibarchiveXattr(t *testing.T) {
	e := file("f", "x")
	e.hdr.Format = tar.FormatPAX
	e.hdr.PAXRecords = map[string]string{"LIBARCHIVE.xattr.user.na%20me": "dmFsdWU"} // "value", unpadded
	tr := New(testEpoch)
	if err := tr.ApplyTar(bytes.NewReader(mkTar(t, e)), "l", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if got := string(mustGet(t, tr, "f").Xattrs["user.na me"]); got != "value" {
		t.Fatalf("xattr = %q", got)
	}
}

// TestWhiteouts applies a lower and an upper layer, as in an OCI image.
func TestWhiteouts(t *testing.T) {
	lower := mkTar(t,
		dir("etc/"), file("etc/keep", "k"), file("etc/gone", "g"),
		dir("etc/gonedir/"), file("etc/gonedir/x", "x"),
		dir("opq/"), file("opq/lower1", "l"), dir("opq/sub/"), file("opq/sub/lower2", "l"),
		dir("opq/kept/"), file("opq/kept/lower3", "l"),
		file("linked/a", "shared"), hardlink("linked/b", "linked/a"),
	)
	upper := mkTar(t,
		dir("etc/"),
		file("etc/.wh.gone", ""),
		file("etc/.wh.gonedir", ""),
		file("etc/.wh.missing", ""),  // whiting out nothing is fine
		file("etc/.wh..wh.plnk", ""), // aufs metadata: skipped
		file("opq/new-before", "u"),  // added before the marker: kept
		dir("opq/"),
		file("opq/.wh..wh..opq", ""),
		file("opq/new", "u"),
		file("opq/kept/upper", "u"),                 // kept/ survives, its lower file does not
		file("linked/.wh.a", ""),                    // hardlink b keeps the content
		file("same/x", "x"), file("same/.wh.x", ""), // same layer: not hidden
	)
	tr := New(testEpoch)
	blobDir := t.TempDir()
	if err := tr.ApplyTar(bytes.NewReader(lower), "layer[0]", blobDir); err != nil {
		t.Fatal(err)
	}
	if err := tr.ApplyTar(bytes.NewReader(compress(t, "gzip", upper)), "layer[1]", blobDir); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, tr, blobDir)
	want := ".,etc,etc/keep,linked,linked/b,opq,opq/kept,opq/kept/upper,opq/new,opq/new-before,same,same/x"
	if got := strings.Join(paths(tr), ","); got != want {
		t.Fatalf("paths = %s\nwant    %s", got, want)
	}
	if got := content(t, tr, "linked/b"); got != "shared" {
		t.Fatalf("linked/b = %q", got)
	}
	if e := mustGet(t, tr, "linked/b"); e.Type != Regular {
		t.Fatalf("linked/b = %s, want file", e.Type)
	}
}

func TestApplyTarErrors(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"dotdot", mkTar(t, file("../x", "x")), `layer[0] t.tar: entry "../x": leaves the root`},
		{"hardlink out", mkTar(t, hardlink("h", "../../outside")), `layer[0] t.tar: entry "h": hardlink target "../../outside": leaves the root`},
		{"hardlink forward", mkTar(t, hardlink("h", "later"), file("later", "x")), `entry "h": hardlink target "later" does not exist`},
		{"empty name", mkTar(t, file("", "x")), `entry "": empty name`},
		{"truncated content", mkTar(t, file("a", "aaaa"))[:514], `entry "a": writing blob: unexpected EOF`},
		{"truncated header", mkTar(t, file("a", "aaaa"), file("b", "b"))[:1100], `reading tar after entry "a"`},
		{"garbage", bytes.Repeat([]byte("garbage!"), 100), "reading tar"},
		{"bad gzip", []byte{0x1f, 0x8b, 0, 0, 0}, "gzip"},
		{"empty symlink", mkTar(t, symlink("s", "")), `entry "s": symlink with an empty target`},
		{"bad whiteout", mkTar(t, file(".wh...", "")), "invalid whiteout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := New(testEpoch)
			err := tr.ApplyTar(bytes.NewReader(tc.data), "layer[0] t.tar", t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			checkInvariants(t, tr, "")
		})
	}
}

func TestApplyTarEmpty(t *testing.T) {
	tr := New(testEpoch)
	if err := tr.ApplyTar(bytes.NewReader(nil), "empty", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := tr.ApplyTar(bytes.NewReader(mkTar(t)), "eof-only", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if tr.Len() != 1 {
		t.Fatalf("Len = %d", tr.Len())
	}
}

func TestApplyTarSparse(t *testing.T) {
	blobDir := t.TempDir()
	tr := New(testEpoch)
	err := tr.ApplyTar(bytes.NewReader(sparseTar(t, "bomb", 1<<50)), "l", blobDir)
	if err == nil || !strings.Contains(err.Error(), `entry "bomb": sparse file of 1125899906842624 bytes`) {
		t.Fatalf("err = %v", err)
	}
	if err := tr.ApplyTar(bytes.NewReader(sparseTar(t, "var/log/lastlog", 256<<20)), "l", blobDir); err != nil {
		t.Fatal(err)
	}
	e := mustGet(t, tr, "var/log/lastlog")
	if e.Type != Regular || e.Content.Size != 256<<20 {
		t.Fatalf("lastlog = %+v %+v", e, e.Content)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(e.Content.Path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 256<<20 || st.Blocks*512 > 1<<20 {
		t.Fatalf("blob: size %d, %d bytes allocated; want a sparse file", st.Size, st.Blocks*512)
	}
}

func TestCopySparse(t *testing.T) {
	c := newCopier()
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"small", []byte("hello")},
		{"zeros", make([]byte, 3*holeBlock)},
		{"zeros then data", append(make([]byte, 2*holeBlock+17), "tail"...)},
		{"data then zeros", append([]byte("head"), make([]byte, 5*copyBufSize/2)...)},
		{"mixed", bytes.Repeat(append(bytes.Repeat([]byte{1}, holeBlock+3), make([]byte, 2*holeBlock)...), 9)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One byte per Read: fill must assemble blocks.
			b, err := c.writeBlob(dir, &slowReader{data: tc.data})
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(b.Path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.data) || b.Size != int64(len(tc.data)) {
				t.Fatalf("blob differs: %d bytes (Size %d), want %d", len(got), b.Size, len(tc.data))
			}
		})
	}
}

// slowReader returns at most 4099 bytes per Read.
type slowReader struct{ data []byte }

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 4099)], r.data)
	r.data = r.data[n:]
	return n, nil
}
