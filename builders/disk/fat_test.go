package disk

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

func TestShortName(t *testing.T) {
	taken := func(names ...string) map[[11]byte]bool {
		m := map[[11]byte]bool{}
		for _, n := range names {
			var s [11]byte
			copy(s[:], n)
			m[s] = true
		}
		return m
	}
	for _, tc := range []struct {
		long  string
		taken map[[11]byte]bool
		want  string
	}{
		{"BOOTX64.EFI", nil, "BOOTX64 EFI"},
		{"EFI", nil, "EFI        "},
		{"loader", nil, "LOADER     "},      // case only: no tail, the long name keeps the case
		{"loader.conf", nil, "LOADER~1CON"}, // extension cut
		{"systemd-bootx64.efi", nil, "SYSTEM~1EFI"},
		{"6.12.38+deb13-amd64", nil, "612~1   38_"}, // dots dropped, + replaced
		{"a b", nil, "AB~1       "},
		{"long-name-two.txt", taken("LONG-N~1TXT"), "LONG-N~2TXT"},
		{"EFI", taken("EFI        "), "EFI~1      "},
		{".hidden", nil, "HIDDEN~1   "},
		{"ünïcode", nil, "_N_COD~1   "},
	} {
		got := shortName(tc.long, tc.taken)
		if string(got[:]) != tc.want {
			t.Errorf("shortName(%q) = %q, want %q", tc.long, got[:], tc.want)
		}
	}
}

// espFiles is a varied ESP: nested and empty directories' worth of paths,
// long and short names, names that collide as 8.3, a directory that spans
// several clusters, an empty file, a file of exactly one cluster, a
// multi-cluster file from the host.
func espFiles(t *testing.T) []ESPFile {
	big := filepath.Join(t.TempDir(), "big")
	b := make([]byte, 3<<20+77)
	for i := range b {
		b[i] = byte(i*31 + i>>11)
	}
	if err := os.WriteFile(big, b, 0o644); err != nil {
		t.Fatal(err)
	}
	files := []ESPFile{
		{Path: "EFI/BOOT/BOOTX64.EFI", Data: []byte("MZ loader")},
		{Path: "loader/loader.conf", Data: []byte("default labbake.conf\n")},
		{Path: "loader/entries/labbake.conf", Data: []byte("title x\n")},
		{Path: "labbake/6.12.38+deb13-amd64/linux", Source: big},
		{Path: "labbake/6.12.38+deb13-amd64/initrd", Data: []byte{}},
		{Path: "one-cluster.bin", Data: bytes.Repeat([]byte{7}, 512)},
		{Path: "thirteen-char", Data: []byte("13")}, // a long name of exactly 13 characters
		{Path: "ünïcode.txt", Data: []byte("u")},
	}
	for i := range 30 {
		files = append(files, ESPFile{Path: fmt.Sprintf("many/a-rather-long-file-name-%02d.conf", i), Data: []byte{byte(i)}})
	}
	return files
}

func TestWriteFAT32(t *testing.T) {
	epoch := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	files := espFiles(t)
	write := func() []byte {
		p := filepath.Join(t.TempDir(), "esp.img")
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Truncate(espSize); err != nil {
			t.Fatal(err)
		}
		if err := writeFAT32(f, Partition{Offset: 0, Size: espSize}, 0x1234abcd, epoch, files); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	img := write()
	if !bytes.Equal(img, write()) {
		t.Error("two writes of the same files differ")
	}
	p := filepath.Join(t.TempDir(), "esp.img")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}

	// fsck.fat finds nothing to fix.
	if fsck, err := exec.LookPath("fsck.fat"); err == nil {
		out, err := exec.Command(fsck, "-n", "-v", p).CombinedOutput()
		if err != nil || bytes.Contains(out, []byte("differ")) || bytes.Contains(out, []byte("Fixing")) {
			t.Errorf("fsck.fat -n: %v\n%s", err, out)
		}
	} else {
		t.Log("fsck.fat not installed (dosfstools): structure not checked")
	}

	// An independent reader sees every file with its bytes.
	fs, err := fat32.Read(file.New(readOnly{img}, true), espSize, 0, 512)
	if err != nil {
		t.Fatal(err)
	}
	for _, ef := range files {
		want := ef.Data
		if len(want) == 0 && ef.Source == "" {
			continue // go-diskfs cannot open an empty file (first cluster 0): mtools checks it below
		}
		if ef.Source != "" {
			if want, err = os.ReadFile(ef.Source); err != nil {
				t.Fatal(err)
			}
		}
		fl, err := fs.OpenFile("/"+ef.Path, os.O_RDONLY)
		if err != nil {
			t.Errorf("%s: %v", ef.Path, err)
			continue
		}
		got, err := io.ReadAll(fl)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: read %d bytes (%v), want %d", ef.Path, len(got), err, len(want))
		}
	}
	entries, err := fs.ReadDir("many")
	if err != nil || len(entries) != 30 {
		t.Errorf("/many: %d entries, %v", len(entries), err)
	}
	if got := fs.Label(); strings.TrimSpace(got) != "ESP" {
		t.Errorf("label %q", got)
	}

	// mtools agrees on the long names.
	if mdir, err := exec.LookPath("mdir"); err == nil {
		out, err := exec.Command(mdir, "-i", p, "-/", "-b", "::/").CombinedOutput()
		if err != nil {
			t.Fatalf("mdir: %v\n%s", err, out)
		}
		for _, ef := range files {
			if !strings.Contains(string(out), "::/"+ef.Path+"\n") {
				t.Errorf("mdir lacks %s:\n%s", ef.Path, out)
			}
		}
		if got := strings.Count(string(out), "\n"); got != len(files)+7 { // and 7 directories
			t.Errorf("mdir lists %d paths, want %d:\n%s", got, len(files)+7, out)
		}
		for _, ef := range files {
			want := ef.Data
			if ef.Source != "" {
				want, _ = os.ReadFile(ef.Source)
			}
			got, err := exec.Command("mcopy", "-i", p, "::/"+ef.Path, "-").Output()
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("mcopy %s: %d bytes (%v), want %d", ef.Path, len(got), err, len(want))
			}
		}
	} else {
		t.Log("mtools not installed: long names not checked with it")
	}
}

func TestWriteFAT32Errors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []ESPFile
		want  string
	}{
		{"twice", []ESPFile{{Path: "a"}, {Path: "a"}}, "written twice"},
		{"case", []ESPFile{{Path: "EFI/x"}, {Path: "efi/y"}}, "differ only in case"},
		{"file as dir", []ESPFile{{Path: "a"}, {Path: "a/b"}}, "a file, not a directory"},
		{"unclean", []ESPFile{{Path: "a/../b"}}, "not a clean relative path"},
		{"bad char", []ESPFile{{Path: "a:b"}}, "FAT does not allow"},
		{"trailing dot", []ESPFile{{Path: "a."}}, "ends with a dot"},
		{"too big", []ESPFile{{Path: "a", Data: make([]byte, espSize)}}, "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "esp.img"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			err = writeFAT32(f, Partition{Size: espSize}, 1, time.Unix(0, 0), tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// readOnly is an in-memory image for go-diskfs' reader.
type readOnly struct{ b []byte }

func (r readOnly) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(r.b)) {
		return 0, io.EOF
	}
	n := copy(p, r.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (r readOnly) Stat() (os.FileInfo, error)                { return nil, os.ErrInvalid }
func (r readOnly) Read(p []byte) (int, error)                { return 0, io.EOF }
func (r readOnly) Close() error                              { return nil }
func (r readOnly) WriteAt(p []byte, off int64) (int, error)  { return 0, os.ErrPermission }
func (r readOnly) Seek(off int64, whence int) (int64, error) { return 0, nil }
