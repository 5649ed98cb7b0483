package recipe

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestInLab(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, "lab")
	writeLab(t, dir, map[string]string{"lab.yaml": miniLab, "data/a.tar": "x", "data/sub/b": "y"})
	writeLab(t, top, map[string]string{"secret": "s"})
	symlink(t, "data", filepath.Join(dir, "in"))              // inside
	symlink(t, "../secret", filepath.Join(dir, "out"))        // outside
	symlink(t, "/", filepath.Join(dir, "data/root"))          // outside, absolute
	symlink(t, "sub", filepath.Join(dir, "data/hop"))         // inside, relative to its dir
	symlink(t, "../../secret", filepath.Join(dir, "data/up")) // outside
	// The lab dir itself may be reached through a symlink.
	symlink(t, "lab", filepath.Join(top, "lablink"))
	lab := &Lab{Dir: filepath.Join(top, "lablink")}
	for _, tc := range []struct {
		path string
		want string // path below lab.Dir, or "" for an error
		err  error
	}{
		{"data/a.tar", "data/a.tar", nil},
		{"in/a.tar", "data/a.tar", nil},
		{"data/hop/b", "data/sub/b", nil},
		{"data/hop/../a.tar", "data/a.tar", nil},
		{"in/../data/a.tar", "data/a.tar", nil},
		{".", ".", nil},
		{"out", "", errOutside},
		{"data/up", "", errOutside},
		{"data/root/etc/passwd", "", errOutside},
		{"data/root/../../..", "", errOutside},
		{"../secret", "", errOutside},
		{"../nope", "", errOutside},
		{"data/../../lab/data/a.tar", "data/a.tar", nil}, // out and back in
		{"missing", "", fs.ErrNotExist},
		{"in/missing", "", fs.ErrNotExist},
		{"/etc/passwd", "", nil},
		{"", "", nil},
	} {
		got, err := lab.inLab(tc.path)
		switch {
		case tc.want != "":
			if err != nil || got != filepath.Join(lab.Dir, tc.want) {
				t.Errorf("inLab(%q) = %q, %v; want %q", tc.path, got, err, filepath.Join(lab.Dir, tc.want))
			}
		case err == nil:
			t.Errorf("inLab(%q) = %q, want an error", tc.path, got)
		case tc.err != nil && !errors.Is(err, tc.err):
			t.Errorf("inLab(%q) = %v, want %v", tc.path, err, tc.err)
		}
	}
}

// A dir: base and an overlay that are symlinks inside the lab dir are
// followed: the recipe names the directories they lead to, and the
// templates of a symlinked overlay are rendered.
func TestSymlinkedDirsInside(t *testing.T) {
	dir := t.TempDir()
	writeLab(t, dir, map[string]string{
		"lab.yaml":                   miniLab,
		"trees/root/etc/hostname":    "x\n",
		"trees/ov/etc/motd.tmpl":     "{{ .role }}\n",
		"trees/ov/etc/plain":         "p\n",
		"units/real.service":         "[Unit]\n",
		"recipes/base.yaml":          "base: {dir: rootlink}\noverlays: [ov]\nunits: [{name: a.service}]\n",
		"recipes/master-common.yaml": "extends: base\n",
	})
	symlink(t, "trees/root", filepath.Join(dir, "rootlink"))
	symlink(t, "../trees/ov", filepath.Join(dir, "overlays/ov"))
	symlink(t, "real.service", filepath.Join(dir, "units/a.service"))
	symlink(t, "master-common.yaml", filepath.Join(dir, "recipes/master.yaml"))
	lab, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := lab.Recipe("master")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(lab.Dir, "trees/root"); rec.Base.Dir != want {
		t.Errorf("Base.Dir = %s, want %s", rec.Base.Dir, want)
	}
	if len(rec.Overlays) != 1 || rec.Overlays[0].Dir != filepath.Join(lab.Dir, "trees/ov") {
		t.Fatalf("Overlays = %+v", rec.Overlays)
	}
	if got := string(rec.Overlays[0].Templates["etc/motd"]); got != "master\n" {
		t.Errorf("template of the symlinked overlay = %q, want %q", got, "master\n")
	}
	if len(rec.Units) != 1 || rec.Units[0].Source != filepath.Join(lab.Dir, "units/real.service") || string(rec.Units[0].Content) != "[Unit]\n" {
		t.Errorf("Units = %+v", rec.Units)
	}
}
