package iso9660

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	diskfsiso "github.com/diskfs/go-diskfs/filesystem/iso9660"
	"github.com/labbake/labbake/internal/golden"
)

var epoch = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// seedFiles is a typical NoCloud seed.
func seedFiles() []File {
	return []File{
		{Name: "meta-data", Data: []byte("instance-id: master\nlocal-hostname: master\n"), Mode: 0o644},
		{Name: "user-data", Data: []byte("#cloud-config\nssh_keys:\n  ed25519_private: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n    not a real key\n    -----END OPENSSH PRIVATE KEY-----\n"), Mode: 0o600},
		{Name: "network-config", Data: []byte("version: 2\nethernets:\n  id0:\n    match: {macaddress: '52:54:00:12:34:56'}\n    addresses: [172.18.0.10/16]\n"), Mode: 0o644},
	}
}

// pattern is n bytes that repeat no date encoding.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte((i*7+int(seed))%26)
	}
	return b
}

// edgeFiles are names that fold onto each other as level 2 identifiers,
// the longest names, dots at the ends, an empty file, files of exactly
// one sector and one byte more, a large file, modes from 0 to 0777.
func edgeFiles() []File {
	return []File{
		{Name: "a-b", Data: []byte("1"), Mode: 0o644},
		{Name: "a_b", Data: []byte("2"), Mode: 0o600},
		{Name: "A-B", Data: []byte("3"), Mode: 0o640},
		{Name: "a.b", Data: []byte("4"), Mode: 0o444},
		{Name: "a.b.c", Data: []byte("5"), Mode: 0o400},
		{Name: ".hidden", Data: []byte("6"), Mode: 0o700},
		{Name: "x.", Data: []byte("7"), Mode: 0o777},
		{Name: "-dash", Data: []byte("8"), Mode: 0},
		{Name: strings.Repeat("n", 60) + ".txt", Data: []byte("9"), Mode: 0o644},
		{Name: strings.Repeat("L", 64), Data: []byte("10"), Mode: 0o644},
		{Name: strings.Repeat("L", 63), Data: []byte("11"), Mode: 0o644},
		{Name: "name.extension-that-is-very-long-indeed", Data: []byte("12"), Mode: 0o644},
		{Name: "empty", Mode: 0o600},
		{Name: "sector", Data: pattern(2048, 1), Mode: 0o644},
		{Name: "sector-and-one", Data: pattern(2049, 2), Mode: 0o644},
		{Name: "big.bin", Data: pattern(300<<10+5, 3), Mode: 0o755},
	}
}

// manyFiles fill several sectors of both directories.
func manyFiles() []File {
	var files []File
	for i := range 150 {
		files = append(files, File{Name: fmt.Sprintf("file-%03d.conf", i), Data: pattern(i*37, byte(i)), Mode: fs.FileMode(0o400 + i%0o400)})
	}
	return files
}

func writeTemp(t *testing.T, img []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "seed.iso")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// run runs a tool that must be installed (the test is skipped when it is
// not, or fails when LABBAKE_REQUIRE_TOOLS is set) and returns its standard
// output.
func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("LABBAKE_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s is not installed (LABBAKE_REQUIRE_TOOLS is set)", name)
		}
		t.Skipf("%s is not installed", name)
	}
	cmd := exec.Command(path, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

func TestImage(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []File
		opts  Options
	}{
		{"seed", seedFiles(), Options{VolumeID: "cidata", ModTime: epoch}},
		{"edge", edgeFiles(), Options{VolumeID: "cidata", ModTime: time.Date(2155, 12, 31, 23, 59, 59, 0, time.UTC)}},
		{"many", manyFiles(), Options{VolumeID: "lab-seed.v2", ModTime: time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"none", nil, Options{VolumeID: "cidata", ModTime: epoch}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := Image(tc.files, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			want := slices.Clone(tc.files)
			slices.SortFunc(want, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
			t.Run("reader", func(t *testing.T) { checkOwnReader(t, img, want, tc.opts) })
			p := writeTemp(t, img)
			t.Run("isoinfo", func(t *testing.T) { checkIsoinfo(t, p, img, want, tc.opts) })
			t.Run("xorriso", func(t *testing.T) { checkXorriso(t, p, img, want) })
			t.Run("blkid", func(t *testing.T) { checkBlkid(t, p, tc.opts) })
			t.Run("go-diskfs", func(t *testing.T) { checkDiskfs(t, img, want) })
		})
	}
}

// checkOwnReader reads the image with the strict reader of reader_test.go.
func checkOwnReader(t *testing.T, img []byte, want []File, opts Options) {
	if len(img)%sectorSize != 0 {
		t.Fatalf("%d bytes", len(img))
	}
	v, err := readISO(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameFiles(v, want); err != nil {
		t.Fatal(err)
	}
	upper := strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(opts.VolumeID))
	if v.pvdID != upper || v.jolietID != opts.VolumeID {
		t.Errorf("volume ids %q / %q, want %q / %q", v.pvdID, v.jolietID, upper, opts.VolumeID)
	}
	if v.rrID != "RRIP_1991A" || v.rootMode != 0o40755 {
		t.Errorf("Rock Ridge %q, root mode %o", v.rrID, v.rootMode)
	}
	d := opts.ModTime.UTC().Format("20060102150405") + "00"
	if v.pvdDates != [4]string{d, d, "0000000000000000", d} {
		t.Errorf("descriptor dates %q, want %s", v.pvdDates, d)
	}
	// Data ends with genisoimage's 150 zero sectors.
	if !allZero(img[len(img)-150*sectorSize:]) {
		t.Error("the last 150 sectors are not zeros")
	}
}

// sameFiles compares what the reader saw with the files given.
func sameFiles(v *readVolume, want []File) error {
	if len(v.primary) != len(want) || len(v.joliet) != len(want) {
		return fmt.Errorf("%d primary and %d Joliet records for %d files", len(v.primary), len(v.joliet), len(want))
	}
	byName := map[string]readFile{}
	ids := map[string]bool{}
	for _, f := range v.primary {
		if _, ok := byName[f.name]; ok {
			return fmt.Errorf("Rock Ridge name %q twice", f.name)
		}
		byName[f.name] = f
		if err := checkLevel2(f.id); err != nil {
			return err
		}
		if ids[f.id] {
			return fmt.Errorf("identifier %q twice", f.id)
		}
		ids[f.id] = true
	}
	for i, w := range want {
		f, ok := byName[w.Name]
		switch {
		case !ok:
			return fmt.Errorf("no Rock Ridge name %q", w.Name)
		case f.mode != 0o100000|uint32(w.Mode) || f.nlink != 1 || f.uid != 0 || f.gid != 0:
			return fmt.Errorf("%s: PX mode %o nlink %d owner %d:%d, want mode %o", w.Name, f.mode, f.nlink, f.uid, f.gid, 0o100000|uint32(w.Mode))
		case !bytes.Equal(f.data, w.Data):
			return fmt.Errorf("%s: primary data of %d bytes differ from the %d given", w.Name, len(f.data), len(w.Data))
		}
		j := v.joliet[i]
		if j.id != w.Name || !bytes.Equal(j.data, w.Data) || j.extent != f.extent {
			return fmt.Errorf("Joliet record %d: %q, %d bytes at %d; want %q, %d bytes at %d", i, j.id, len(j.data), j.extent, w.Name, len(w.Data), f.extent)
		}
	}
	return nil
}

var level2 = regexp.MustCompile(`^([A-Z0-9_]*)\.([A-Z0-9_]*);1$`)

// checkLevel2 is ISO 9660 level 2: d-characters, one dot, version 1, at
// most 30 characters of name and extension, not both empty.
func checkLevel2(id string) error {
	m := level2.FindStringSubmatch(id)
	if m == nil || len(m[1])+len(m[2]) > 30 || m[1]+m[2] == "" {
		return fmt.Errorf("%q is not a level 2 identifier", id)
	}
	return nil
}

// isoinfo -l lines: mode, links, uid, gid, size, date, [extent flags], name.
var isoinfoLine = regexp.MustCompile(`^([-d][-rwxsStT]{9})\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\w{3} [ \d]\d \d{4})\s+\[\s*(\d+) \d+\]\s+(.*?)\s*$`)

type listed struct {
	mode, date, name string
	size             int
}

func parseIsoinfo(t *testing.T, out []byte) []listed {
	var l []listed
	for _, line := range strings.Split(string(out), "\n") {
		m := isoinfoLine.FindStringSubmatch(line)
		if m == nil || m[8] == "." || m[8] == ".." {
			continue
		}
		size, _ := strconv.Atoi(m[5])
		l = append(l, listed{mode: m[1], date: m[6], name: m[8], size: size})
	}
	return l
}

func checkIsoinfo(t *testing.T, p string, img []byte, want []File, opts Options) {
	d := string(run(t, "isoinfo", "-d", "-i", p))
	for _, s := range []string{
		"Volume id: " + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(opts.VolumeID)) + "\n",
		"Joliet with UCS level 3 found",
		"Rock Ridge signatures version 1 found",
		fmt.Sprintf("Volume size is: %d\n", len(img)/sectorSize),
		"Logical block size is: 2048",
	} {
		if !strings.Contains(d, s) {
			t.Errorf("isoinfo -d lacks %q:\n%s", s, d)
		}
	}
	date := opts.ModTime.UTC().Format("Jan _2 2006")
	for _, ext := range []string{"-R", "-J"} {
		l := parseIsoinfo(t, run(t, "isoinfo", ext, "-l", "-i", p))
		if len(l) != len(want) {
			t.Fatalf("isoinfo %s -l lists %d files, want %d", ext, len(l), len(want))
		}
		byName := map[string]listed{}
		for _, e := range l {
			byName[e.name] = e
		}
		for _, w := range want {
			e, ok := byName[w.Name]
			if !ok || e.size != len(w.Data) || e.date != date {
				t.Errorf("isoinfo %s -l: %q is %+v, want %d bytes, %s", ext, w.Name, e, len(w.Data), date)
			}
			if ext == "-R" && e.mode != w.Mode.String() {
				t.Errorf("isoinfo -R -l: %q has mode %s, want %s", w.Name, e.mode, w.Mode)
			}
		}
	}
	// Primary names alone are level 2, unique.
	seen := map[string]bool{}
	for _, e := range parseIsoinfo(t, run(t, "isoinfo", "-l", "-i", p)) {
		if err := checkLevel2(e.name); err != nil || seen[e.name] {
			t.Errorf("isoinfo -l: %q: %v (seen %v)", e.name, err, seen[e.name])
		}
		seen[e.name] = true
	}
	for _, w := range want {
		for _, ext := range []string{"-R", "-J"} {
			if got := run(t, "isoinfo", ext, "-i", p, "-x", "/"+w.Name); !bytes.Equal(got, w.Data) {
				t.Errorf("isoinfo %s -x /%s: %d bytes differ from the %d given", ext, w.Name, len(got), len(w.Data))
			}
		}
	}
}

// xorriso -lsdl lines: mode, links, uid, gid, size, date, 'path'.
var lsdlLine = regexp.MustCompile(`^([-d][-rwxsStT]{9})\s+\d+\s+(\d+)\s+(\d+)\s+(\d+)\s+.*'/(.*)'$`)

func checkXorriso(t *testing.T, p string, img []byte, want []File) {
	// -return_with WARNING makes any warning about the image an exit code.
	out := string(run(t, "xorriso", "-return_with", "WARNING", "32", "-indev", p,
		"-find", "/", "-type", "f", "-exec", "lsdl", "--", "-check_media", "--"))
	got := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if m := lsdlLine.FindStringSubmatch(line); m != nil {
			if m[2] != "0" || m[3] != "0" {
				t.Errorf("xorriso: owner %s:%s in %q", m[2], m[3], line)
			}
			got[m[5]] = m[1] + " " + m[4]
		}
	}
	if len(got) != len(want) {
		t.Errorf("xorriso lists %d files, want %d:\n%s", len(got), len(want), out)
	}
	for _, w := range want {
		if g, ok := got[w.Name]; !ok || g != fmt.Sprintf("%s %d", w.Mode, len(w.Data)) {
			t.Errorf("xorriso: %q is %q, want %s %d", w.Name, g, w.Mode, len(w.Data))
		}
	}
	if region := fmt.Sprintf("Media region : %10d , %10d , + good", 0, len(img)/sectorSize); !strings.Contains(out, region) {
		t.Errorf("xorriso -check_media lacks %q:\n%s", region, out)
	}
	// Without Rock Ridge, xorriso reads the Joliet tree.
	joliet := run(t, "xorriso", "-return_with", "WARNING", "32", "-read_fs", "norock", "-indev", p, "-ls", "/")
	var names []string
	for _, w := range want {
		names = append(names, "'"+w.Name+"'")
	}
	if got := strings.Fields(string(joliet)); !slices.Equal(got, names) && !(len(names) == 0 && len(got) == 0) {
		t.Errorf("xorriso -read_fs norock -ls: %q, want %q", got, names)
	}
}

func checkBlkid(t *testing.T, p string, opts Options) {
	out := string(run(t, "blkid", "-p", p))
	uuid := opts.ModTime.UTC().Format("2006-01-02-15-04-05") + "-00"
	for _, s := range []string{`TYPE="iso9660"`, `LABEL="` + opts.VolumeID + `"`, `UUID="` + uuid + `"`, `VERSION="Joliet Extension"`} {
		if !strings.Contains(out, s) {
			t.Errorf("blkid -p lacks %s: %s", s, out)
		}
	}
}

// checkDiskfs reads the image with go-diskfs' reader (Rock Ridge names).
func checkDiskfs(t *testing.T, img []byte, want []File) {
	if err := diskfsSame(img, want); err != nil {
		t.Error(err)
	}
}

// diskfsName is a name as go-diskfs v1.9.4 reports it: its
// directoryEntry.Name strips a leading and a trailing '.' even from a
// Rock Ridge name (".hidden" reads as "hidden", "x." as "x"); isoinfo,
// xorriso and the reader here see the names as written.
func diskfsName(name string) string {
	return strings.TrimPrefix(strings.TrimSuffix(name, "."), ".")
}

// diskfsSame compares what go-diskfs reads with the files given (sorted
// by name); nil when go-diskfs cannot tell the names apart or makes a
// name like "..." into "." (skipping only what go-diskfs cannot show).
func diskfsSame(img []byte, want []File) error {
	byName := map[string]File{}
	for _, w := range want {
		n := diskfsName(w.Name)
		if _, ok := byName[n]; ok || n == "" || n == "." || n == ".." {
			return nil // names go-diskfs reports alike, or as no file
		}
		byName[n] = w
	}
	got, err := diskfsRead(img)
	if err != nil {
		return fmt.Errorf("go-diskfs: %w", err)
	}
	if len(got) != len(want) {
		return fmt.Errorf("go-diskfs reads %d files, want %d", len(got), len(want))
	}
	for _, g := range got {
		w, ok := byName[g.Name]
		if !ok || g.Mode != w.Mode || !bytes.Equal(g.Data, w.Data) {
			return fmt.Errorf("go-diskfs reads %q %v %d bytes, want %q %v %d bytes", g.Name, g.Mode, len(g.Data), w.Name, w.Mode, len(w.Data))
		}
	}
	return nil
}

// diskfsRead lists the root with go-diskfs and reads every file.
func diskfsRead(img []byte) ([]File, error) {
	fsys, err := diskfsiso.Read(file.New(readOnly{img}, true), int64(len(img)), 0, sectorSize)
	if err != nil {
		return nil, err
	}
	entries, err := fsys.ReadDir(".")
	if err != nil {
		return nil, err
	}
	var files []File
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		f, err := fsys.OpenFile(e.Name(), os.O_RDONLY)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		data, err := io.ReadAll(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		files = append(files, File{Name: e.Name(), Data: data, Mode: fi.Mode()})
	}
	return files, nil
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

// TestReproducible: equal input gives equal bytes whatever the order of
// the files or the time zone of ModTime; another ModTime changes exactly
// the dates.
func TestReproducible(t *testing.T) {
	opts := Options{VolumeID: "cidata", ModTime: epoch}
	a, err := Image(seedFiles(), opts)
	if err != nil {
		t.Fatal(err)
	}
	reversed := seedFiles()
	slices.Reverse(reversed)
	zoned := opts
	zoned.ModTime = epoch.In(time.FixedZone("X", -7*3600))
	for _, in := range []struct {
		files []File
		opts  Options
	}{{seedFiles(), opts}, {reversed, opts}, {seedFiles(), zoned}} {
		b, err := Image(in.files, in.opts)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%v, %v: the image differs", in.files[0].Name, in.opts.ModTime)
		}
	}

	later := opts
	later.ModTime = time.Date(2031, 7, 8, 9, 10, 11, 120_000_000, time.UTC)
	b, err := Image(seedFiles(), later)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Fatal("another ModTime gives the same image")
	}
	// Put a's dates back into b: what is left must be a, byte for byte.
	// Dates in a: descriptor dates (creation, modification, effective;
	// PVD and SVD) and 7-byte record dates: the two root records in the
	// descriptors, "." ".." and 3 files in each hierarchy, and 3 times in
	// each primary record's TF.
	for _, d := range []struct {
		from, to []byte
		count    int
	}{
		{[]byte("2031070809101112"), []byte("2025010203040500"), 6},
		{[]byte{131, 7, 8, 9, 10, 11, 0}, []byte{125, 1, 2, 3, 4, 5, 0}, 2 + 2*5 + 3*5},
	} {
		if n := bytes.Count(b, d.from); n != d.count {
			t.Errorf("%d dates % x, want %d", n, d.from, d.count)
		}
		b = bytes.ReplaceAll(b, d.from, d.to)
	}
	if !bytes.Equal(a, b) {
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("images differ beyond dates, first at byte %d (sector %d)", i, i/sectorSize)
			}
		}
	}
}

// TestGolden pins the bytes of the sample seed; -update rewrites the digest.
func TestGolden(t *testing.T) {
	img, err := Image(seedFiles(), Options{VolumeID: "cidata", ModTime: epoch})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(img)
	got := fmt.Sprintf("%s  seed.iso (%d bytes)\n", hex.EncodeToString(sum[:]), len(img))
	golden.Check(t, filepath.Join("testdata", "seed.iso.sha256"), []byte(got))
}

func TestImageErrors(t *testing.T) {
	ok := Options{VolumeID: "cidata", ModTime: epoch}
	for _, tc := range []struct {
		name  string
		files []File
		opts  Options
		want  string
	}{
		{"empty volume id", nil, Options{ModTime: epoch}, "volume id"},
		{"long volume id", nil, Options{VolumeID: strings.Repeat("c", 17), ModTime: epoch}, "1..16"},
		{"volume id char", nil, Options{VolumeID: "ci data", ModTime: epoch}, "not one of"},
		{"volume id non-ascii", nil, Options{VolumeID: "cïdata", ModTime: epoch}, "not one of"},
		{"too early", nil, Options{VolumeID: "cidata", ModTime: time.Date(1899, 12, 31, 23, 59, 59, 0, time.UTC)}, "1900..2155"},
		{"too late", nil, Options{VolumeID: "cidata", ModTime: time.Date(2156, 1, 1, 0, 0, 0, 0, time.UTC)}, "1900..2155"},
		{"zero time", nil, Options{VolumeID: "cidata"}, "1900..2155"},
		{"empty name", []File{{Name: ""}}, ok, "1..64"},
		{"long name", []File{{Name: strings.Repeat("x", 65)}}, ok, "1..64"},
		{"dot", []File{{Name: "."}}, ok, "reserved"},
		{"dotdot", []File{{Name: ".."}}, ok, "reserved"},
		{"slash", []File{{Name: "a/b"}}, ok, "not one of"},
		{"space", []File{{Name: "a b"}}, ok, "not one of"},
		{"semicolon", []File{{Name: "a;1"}}, ok, "not one of"},
		{"unicode", []File{{Name: "ü"}}, ok, "not one of"},
		{"duplicate", []File{{Name: "user-data"}, {Name: "meta-data"}, {Name: "user-data"}}, ok, "given twice"},
		{"directory mode", []File{{Name: "d", Mode: fs.ModeDir | 0o755}}, ok, "more than permission bits"},
		{"setuid", []File{{Name: "s", Mode: fs.ModeSetuid | 0o755}}, ok, "more than permission bits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := Image(tc.files, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "iso9660: ") {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if img != nil {
				t.Error("an image came with the error")
			}
		})
	}
}

func TestLevel2ID(t *testing.T) {
	taken := func(ids ...string) map[string]bool {
		m := map[string]bool{}
		for _, id := range ids {
			m[id] = true
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		taken map[string]bool
		want  string
	}{
		{"user-data", nil, "USER_DATA.;1"},
		{"meta-data", nil, "META_DATA.;1"},
		{"network-config", nil, "NETWORK_CONFIG.;1"},
		{"README.txt", nil, "README.TXT;1"},
		{"a.b.c", nil, "A_B.C;1"},
		{".hidden", nil, ".HIDDEN;1"},
		{"x.", nil, "X.;1"},
		{"...", nil, "__.;1"},
		{"abcdefghijklmnopqrstuvwxyz0123456789", nil, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123.;1"},
		{"name.extension-that-is-very-long-indeed", nil, "NAME.EXTENSION_THAT_IS_VERY_LON;1"},
		{"a-very-long-base-name-of-forty-chars.conf", nil, "A_VERY_LONG_BASE_NAME_OF_F.CONF;1"},
		{"a_b", taken("A_B.;1"), "A_B1.;1"},
		{"A-B", taken("A_B.;1", "A_B1.;1"), "A_B2.;1"},
		{"abcdefghijklmnopqrstuvwxyz0123456789", taken("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123.;1"), "ABCDEFGHIJKLMNOPQRSTUVWXYZ0121.;1"},
	} {
		if got := level2ID(tc.name, tc.taken); got != tc.want {
			t.Errorf("level2ID(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}
