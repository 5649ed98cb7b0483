package bake

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The image never appears without its manifest (issue 9, item 10): when
// the second rename fails, the first is rolled back, whether or not a
// previous pair was there.
func TestCommitPair(t *testing.T) {
	for _, tc := range []struct {
		name     string
		previous bool // a previous pair is in place
		failAt   int  // the rename that fails: 1 or 2; 0 none
		want     string
	}{
		{"new pair", false, 0, "new"},
		{"replaces a pair", true, 0, "new"},
		{"second rename fails, no previous pair", false, 2, ""},
		{"second rename fails, previous pair kept", true, 2, "old"},
		{"first rename fails, previous pair kept", true, 1, "old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			manifest, image := filepath.Join(dir, "m.manifest.json"), filepath.Join(dir, "m.qcow2")
			write := func(p, s string) {
				t.Helper()
				if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.previous {
				write(manifest, "old manifest")
				write(image, "old image")
			}
			tmpManifest, tmpImage := filepath.Join(dir, ".m.manifest.json.tmp-1"), filepath.Join(dir, ".m.qcow2.tmp-1")
			write(tmpManifest, "new manifest")
			write(tmpImage, "new image")
			calls := 0
			rename = func(old, new string) error {
				calls++
				if calls == tc.failAt {
					return errors.New("injected rename failure")
				}
				return os.Rename(old, new)
			}
			defer func() { rename = os.Rename }()
			err := commitPair(tmpManifest, manifest, tmpImage, image)
			if (err != nil) != (tc.failAt != 0) {
				t.Fatalf("commitPair: %v", err)
			}
			for _, p := range []struct{ path, what string }{{manifest, " manifest"}, {image, " image"}} {
				b, err := os.ReadFile(p.path)
				switch {
				case tc.want == "" && !os.IsNotExist(err):
					t.Errorf("%s: %q, %v; want none", filepath.Base(p.path), b, err)
				case tc.want != "" && string(b) != tc.want+p.what:
					t.Errorf("%s: %q, %v; want %q", filepath.Base(p.path), b, err, tc.want+p.what)
				}
			}
			// Nothing is left but the pair and the temporary files, which
			// the build removes.
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if !slices.Contains([]string{"m.manifest.json", "m.qcow2", ".m.manifest.json.tmp-1", ".m.qcow2.tmp-1"}, e.Name()) {
					t.Errorf("left behind: %s", e.Name())
				}
			}
		})
	}
}
