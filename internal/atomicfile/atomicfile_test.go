package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// setup prepares the destination dir: "file" (a regular file), "dangling"
// (a symlink to a missing file) and "link" (a symlink to outside/target).
func setup(t *testing.T) (dir, outside string) {
	t.Helper()
	dir, outside = t.TempDir(), t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "file"), []byte("old"), 0o600))
	must(t, os.Symlink(filepath.Join(outside, "missing"), filepath.Join(dir, "dangling")))
	must(t, os.WriteFile(filepath.Join(outside, "target"), []byte("target"), 0o600))
	must(t, os.Symlink(filepath.Join(outside, "target"), filepath.Join(dir, "link")))
	return dir, outside
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fn        func(string, []byte, fs.FileMode) error
		dst       string
		wantExist bool   // an error wrapping fs.ErrExist
		want      string // content at dst afterwards, read without following symlinks
	}{
		{"WriteFile new", WriteFile, "new", false, "data"},
		{"WriteFile over a file", WriteFile, "file", false, "data"},
		{"WriteFile over a symlink replaces the link", WriteFile, "link", false, "data"},
		{"WriteFile over a dangling symlink", WriteFile, "dangling", false, "data"},
		{"WriteNew new", WriteNew, "new", false, "data"},
		{"WriteNew over a file", WriteNew, "file", true, "old"},
		{"WriteNew over a symlink", WriteNew, "link", true, "symlink"},
		{"WriteNew over a dangling symlink", WriteNew, "dangling", true, "symlink"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, outside := setup(t)
			dst := filepath.Join(dir, tc.dst)
			err := tc.fn(dst, []byte("data"), 0o644)
			if tc.wantExist != errors.Is(err, fs.ErrExist) || (!tc.wantExist && err != nil) {
				t.Fatalf("err = %v, want ErrExist %v", err, tc.wantExist)
			}
			fi, err := os.Lstat(dst)
			must(t, err)
			got := "symlink"
			if fi.Mode().IsRegular() {
				b, err := os.ReadFile(dst)
				must(t, err)
				got = string(b)
				if tc.want == "data" && fi.Mode().Perm() != 0o644 {
					t.Errorf("mode %v, want 0644", fi.Mode().Perm())
				}
			}
			if got != tc.want {
				t.Errorf("%s holds %q, want %q", tc.dst, got, tc.want)
			}
			// Nothing was written through a symlink.
			if b, _ := os.ReadFile(filepath.Join(outside, "target")); string(b) != "target" {
				t.Errorf("symlink target changed to %q", b)
			}
			if _, err := os.Lstat(filepath.Join(outside, "missing")); err == nil {
				t.Error("the dangling symlink's target was created")
			}
			// No temp file is left behind.
			names := dirNames(t, dir)
			for _, n := range names {
				if !slices.Contains([]string{"file", "dangling", "link", "new"}, n) {
					t.Errorf("left behind: %s", n)
				}
			}
		})
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	must(t, err)
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestAbortAndCommitOnce(t *testing.T) {
	dir := t.TempDir()
	dst := filepath.Join(dir, "out")
	f, err := Create(dst, 0o644)
	must(t, err)
	if _, err := f.WriteString("partial"); err != nil {
		t.Fatal(err)
	}
	f.Abort()
	f.Abort() // twice is fine
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("after Abort: %v", names)
	}
	if err := f.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}

	f, err = Create(dst, 0o644)
	must(t, err)
	_, _ = f.WriteString("whole")
	must(t, f.Commit())
	f.Abort() // after Commit: no effect
	if b, err := os.ReadFile(dst); err != nil || string(b) != "whole" {
		t.Errorf("after Commit and Abort: %q, %v", b, err)
	}
	if err := f.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
	if _, err := Create(filepath.Join(dir, "no", "such", "dir"), 0o644); err == nil {
		t.Error("Create in a missing dir succeeded")
	}
}

// The hard-link fallback, for file systems without RENAME_NOREPLACE.
func TestLinkNoReplace(t *testing.T) {
	dir, outside := setup(t)
	src := filepath.Join(dir, "src")
	for _, dst := range []string{"file", "link", "dangling"} {
		must(t, os.WriteFile(src, []byte("src"), 0o644))
		if err := linkNoReplace(src, filepath.Join(dir, dst)); !errors.Is(err, fs.ErrExist) {
			t.Errorf("%s: err = %v, want ErrExist", dst, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(outside, "missing")); err == nil {
		t.Error("the dangling symlink's target was created")
	}
	must(t, linkNoReplace(src, filepath.Join(dir, "new")))
	if _, err := os.Lstat(src); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("source left: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "new")); string(b) != "src" {
		t.Errorf("new holds %q", b)
	}
}

func TestMkdirPrivate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a", "pki")
	if err := MkdirPrivate(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o700 {
		t.Errorf("mode %v", st.Mode())
	}
	link := filepath.Join(dir, "link")
	os.Symlink(dir, link)
	if err := MkdirPrivate(link, 0o700); err == nil {
		t.Error("a symlink was taken for the directory")
	}
}
