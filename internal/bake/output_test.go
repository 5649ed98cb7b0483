package bake

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The image never appears without its manifest (issue 9, item 10), nor the
// manifest without the SBOM it names: when a rename fails, those done are
// rolled back, whether or not previous outputs were there.
func TestCommit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		previous bool // previous outputs are in place
		failAt   int  // the rename that fails: 1 to 3; 0 none
		want     string
	}{
		{"new outputs", false, 0, "new"},
		{"replaces outputs", true, 0, "new"},
		{"last rename fails, no previous outputs", false, 3, ""},
		{"last rename fails, previous outputs kept", true, 3, "old"},
		{"second rename fails, no previous outputs", false, 2, ""},
		{"second rename fails, previous outputs kept", true, 2, "old"},
		{"first rename fails, previous outputs kept", true, 1, "old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			names := []string{"m.spdx.json", "m.manifest.json", "m.qcow2"}
			write := func(p, s string) {
				t.Helper()
				if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var files []pending
			for _, n := range names {
				f := pending{tmp: filepath.Join(dir, "."+n+".tmp-1"), dst: filepath.Join(dir, n)}
				if tc.previous {
					write(f.dst, "old "+n)
				}
				write(f.tmp, "new "+n)
				files = append(files, f)
			}
			calls := 0
			rename = func(old, new string) error {
				calls++
				if calls == tc.failAt {
					return errors.New("injected rename failure")
				}
				return os.Rename(old, new)
			}
			defer func() { rename = os.Rename }()
			replaced, err := commit(files...)
			if (err != nil) != (tc.failAt != 0) {
				t.Fatalf("commit: %v", err)
			}
			// The previous outputs are handed back under temporary names,
			// for the build to remove in the background.
			for i, p := range replaced {
				b, err := os.ReadFile(p)
				if want := "old " + names[i]; (p != "") != tc.previous || (p != "" && string(b) != want) {
					t.Errorf("replaced %q: %q, %v; want %v and %q", p, b, err, tc.previous, want)
				}
			}
			removeAll(replaced)
			for _, n := range names {
				b, err := os.ReadFile(filepath.Join(dir, n))
				switch {
				case tc.want == "" && !os.IsNotExist(err):
					t.Errorf("%s: %q, %v; want none", n, b, err)
				case tc.want != "" && string(b) != tc.want+" "+n:
					t.Errorf("%s: %q, %v; want %q", n, b, err, tc.want+" "+n)
				}
			}
			// Nothing is left but the outputs and the temporary files,
			// which the build removes.
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if !slices.Contains(names, e.Name()) && !slices.Contains(names, e.Name()[1:len(e.Name())-len(".tmp-1")]) {
					t.Errorf("left behind: %s", e.Name())
				}
			}
		})
	}
}
