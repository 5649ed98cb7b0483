package iso9660

import (
	"bytes"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzImage builds images from arbitrary names ('/'-separated), contents,
// modes, times and volume ids. Input the package must refuse is a clean
// error (never a panic, never an image); anything else is accepted, and
// the image read back — by the strict reader of reader_test.go through
// both hierarchies, and by go-diskfs' reader — holds exactly the files
// given, with valid, unique level 2 identifiers.
func FuzzImage(f *testing.F) {
	f.Add("meta-data/user-data/network-config", []byte("instance-id: x\n#cloud-config\nversion: 2\n"), uint64(0o644|0o600<<9|0o644<<18), int64(1735787045), "cidata")
	f.Add("a-b/a_b/A-B/a.b/.hidden/x./-dash/...", []byte("0123456789"), uint64(0), int64(0), "lab-seed.v2")
	f.Add(strings.Repeat("L", 64)+"/"+strings.Repeat("L", 63)+"/empty", []byte{}, uint64(1<<62), int64(-2208988800), "C")
	f.Add("a/a", []byte("dup"), uint64(0o777), int64(6000000000), "")
	f.Add("ü/a b/.", []byte("bad"), uint64(1<<63), int64(1), "ci data")
	f.Fuzz(func(t *testing.T, list string, data []byte, modes uint64, secs int64, volumeID string) {
		names := strings.Split(list, "/")
		if len(names) > 300 {
			return
		}
		files := make([]File, len(names))
		valid := volumeID != "" && len(volumeID) <= 16 && allNameChars(volumeID)
		seen := map[string]bool{}
		for i, n := range names {
			d := data[i*len(data)/len(names) : (i+1)*len(data)/len(names)]
			if modes>>62&1 == 1 && len(d) > 0 {
				d = bytes.Repeat(d, 2100/len(d)+1) // past a sector
			}
			files[i] = File{Name: n, Data: d, Mode: fs.FileMode(modes>>(i*9%55)) & fs.ModePerm}
			if i == 0 && modes>>63 == 1 {
				files[i].Mode |= fs.ModeDir
			}
			valid = valid && n != "" && len(n) <= 64 && n != "." && n != ".." && allNameChars(n) && !seen[n] && files[i].Mode&^fs.ModePerm == 0
			seen[n] = true
		}
		modTime := time.Unix(secs, 0)
		valid = valid && modTime.UTC().Year() >= 1900 && modTime.UTC().Year() <= 2155

		img, err := Image(files, Options{VolumeID: volumeID, ModTime: modTime})
		if err != nil {
			if valid || img != nil || !strings.HasPrefix(err.Error(), "iso9660: ") {
				t.Fatalf("valid input %v, image %v: %v", valid, img != nil, err)
			}
			return
		}
		if !valid {
			t.Fatal("no error for input that must be refused")
		}
		want := slices.Clone(files)
		slices.SortFunc(want, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
		v, err := readISO(img)
		if err != nil {
			t.Fatal(err)
		}
		if err := sameFiles(v, want); err != nil {
			t.Fatal(err)
		}
		if v.jolietID != volumeID {
			t.Fatalf("Joliet volume id %q, want %q", v.jolietID, volumeID)
		}
		if err := diskfsSame(img, want); err != nil {
			t.Fatal(err)
		}
	})
}

func allNameChars(s string) bool {
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
