package fsutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(target, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		setup func(p string)
		perm  os.FileMode
	}{
		{"new file", func(string) {}, 0o600},
		{"replaces a file", func(p string) { os.WriteFile(p, []byte("old content, longer"), 0o644) }, 0o644},
		{"replaces a symlink, does not follow it", func(p string) { os.Symlink(target, p) }, 0o600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f")
			tc.setup(p)
			if err := WriteFile(p, []byte("new"), tc.perm); err != nil {
				t.Fatal(err)
			}
			st, err := os.Lstat(p)
			if err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != tc.perm {
				t.Fatalf("stat %v %v", st, err)
			}
			if b, _ := os.ReadFile(p); string(b) != "new" {
				t.Errorf("content %q", b)
			}
			if b, _ := os.ReadFile(target); string(b) != "keep" {
				t.Errorf("the symlink's target was written: %q", b)
			}
			if m, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".*tmp-*")); len(m) != 0 {
				t.Errorf("temporary files left: %v", m)
			}
		})
	}
	if err := WriteFile(filepath.Join(dir, "missing-dir", "f"), nil, 0o600); err == nil {
		t.Error("writing into a missing directory succeeded")
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
