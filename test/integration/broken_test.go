package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestBrokenRecipes runs `labbake build --all` on every broken lab of the
// recipe corpus: each must exit 2, print exactly its expected problems in
// the FILE:LINE:COL: field: message form, and leave output/ untouched.
func TestBrokenRecipes(t *testing.T) {
	corpus := "../../internal/recipe/testdata/broken"
	cases, err := os.ReadDir(corpus)
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 15 {
		t.Fatalf("corpus has %d broken labs, want at least 15", len(cases))
	}
	form := regexp.MustCompile(`^[^:\s]+:\d+:\d+: \S`)
	for _, c := range cases {
		t.Run(c.Name(), func(t *testing.T) {
			lab := filepath.Join(t.TempDir(), "lab")
			if err := os.CopyFS(lab, os.DirFS(filepath.Join(corpus, c.Name()))); err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join(lab, "expect.txt"))
			if err != nil {
				t.Fatal(err)
			}
			mkfile(t, lab, "output/master.qcow2", "previous image")
			args := []string{"-C", lab, "--cache", t.TempDir(), "build", "--all"}
			_, stderr, code := labbake(t, nil, args...)
			if code != 2 {
				t.Errorf("exit %d, want 2\n%s", code, stderr)
			}
			if got := strings.TrimSpace(stderr); got != strings.TrimSpace(string(want)) {
				t.Errorf("stderr:\n%s\nwant:\n%s", got, want)
			}
			for _, l := range lines(stderr) {
				if !form.MatchString(l) {
					t.Errorf("line not in FILE:LINE:COL: form: %q", l)
				}
			}
			entries, err := os.ReadDir(filepath.Join(lab, "output"))
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Errorf("output/ holds %d entries after a failed build, want only the previous image", len(entries))
			}
			if b, _ := os.ReadFile(filepath.Join(lab, "output/master.qcow2")); string(b) != "previous image" {
				t.Errorf("previous image changed")
			}
		})
	}
}
