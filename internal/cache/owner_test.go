package cache

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fileLines picks the lines of files (not directories, whose mtimes change
// as entries are added) from a snapshot.
func fileLines(snap string) []string {
	var out []string
	for _, l := range strings.Split(snap, "\n") {
		if f := strings.Fields(l); len(f) > 1 && !strings.HasPrefix(f[1], "d") {
			out = append(out, l)
		}
	}
	return out
}

func TestClaim(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, dir string) // dir does not exist yet
		owned   bool
		tagMade bool // claim wrote labbake's tag
	}{
		{"missing dir", func(*testing.T, string) {}, true, true},
		{"empty dir", func(t *testing.T, dir string) { os.Mkdir(dir, 0o755) }, true, true},
		{"only a tag temp file of a concurrent claim", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, tagTempPrefix+"123"), "Sig")
		}, true, true},
		{"labbake's tag", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, tagName), tagContent)
			writeFile(t, filepath.Join(dir, "ingest", "put-1"), "x")
		}, true, false},
		{"a home directory", func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, ".bashrc"), "PS1=$\n") }, false, false},
		{"an old cache without a tag", func(t *testing.T, dir string) { os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755) }, false, false},
		{"another tool's CACHEDIR.TAG", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, tagName), "Signature: 8a477f597d28d172789f06886806bc55\n# other tool\n")
		}, false, false},
		{"labbake's tag with more after it", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, tagName), tagContent+"x")
		}, false, false},
		{"a symlink to a tag elsewhere", func(t *testing.T, dir string) {
			other := filepath.Join(filepath.Dir(dir), "other")
			writeFile(t, filepath.Join(other, tagName), tagContent)
			os.Mkdir(dir, 0o755)
			os.Symlink(filepath.Join(other, tagName), filepath.Join(dir, tagName))
		}, false, false},
		{"a FIFO as tag", func(t *testing.T, dir string) {
			os.Mkdir(dir, 0o755)
			if err := syscall.Mkfifo(filepath.Join(dir, tagName), 0o644); err != nil {
				t.Fatal(err)
			}
		}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cache")
			tc.setup(t, dir)
			before := ""
			if _, err := os.Stat(dir); err == nil {
				before = snapshot(t, dir)
			}
			c, err := Open(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.Owned() != tc.owned {
				t.Errorf("Owned() = %v, want %v", c.Owned(), tc.owned)
			}
			if got := hasTag(dir); got != tc.owned {
				t.Errorf("labbake's tag present: %v, want %v", got, tc.owned)
			}
			if tc.tagMade {
				left, _ := filepath.Glob(filepath.Join(dir, tagTempPrefix+"*"))
				if len(left) > 1 { // the setup's one may stay
					t.Errorf("tag temp files left: %v", left)
				}
			} else if before != "" && !tc.owned {
				// Open added its directories, and changed nothing else.
				after := snapshot(t, dir)
				for _, l := range fileLines(before) {
					if !strings.Contains(after, l) {
						t.Errorf("Open changed %q", l)
					}
				}
			}
		})
	}
}

// In a cache dir labbake did not create (--cache ~, --cache /tmp), nothing
// that is not labbake's is removed: not by Open, Prune, Remove or WorkDir.
// Even files with labbake's names are left, since nothing proves that
// labbake wrote them.
func TestForeignCacheRemovesNothing(t *testing.T) {
	dir := t.TempDir()
	// What a user may have in such a dir, including labbake-like names
	// and an OCI layout's blob directory.
	blob := []byte("an OCI layout's blob")
	userFiles := map[string]string{
		"notes.txt":                               "mine",
		"tmp/job.lock":                            "",
		"tmp/job/data":                            "mine",
		"tmp/build-master-1.lock":                 "",
		"tmp/build-master-1/data":                 "mine",
		"ingest/put-123":                          "mine",
		"ingest/import-9":                         "mine",
		"blobs/sha256/" + digestOf(blob)[7:]:      string(blob),
		"blobs/sha256/" + strings.Repeat("0", 64): "not what its name says",
	}
	for p, c := range userFiles {
		writeFile(t, filepath.Join(dir, p), c)
	}
	before := snapshot(t, dir)
	c, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Owned() {
		t.Fatal("a dir with a user's files is Owned")
	}
	// The cache is usable.
	d := mustPut(t, c, []byte("labbake's blob"))
	if err := c.SetRef("k", d); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Prune(nil); !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), dir) {
		t.Errorf("Prune: %v, want ErrForeign naming %s", err, dir)
	}
	for _, d := range []string{digestOf(blob), "sha256:" + strings.Repeat("0", 64), d} {
		if err := c.Remove(d); !errors.Is(err, ErrForeign) {
			t.Errorf("Remove(%s): %v, want ErrForeign", d, err)
		}
	}
	_, release, err := WorkDir(dir, "master")
	if err != nil {
		t.Fatal(err)
	}
	release()
	if _, err := Open(dir, nil); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, dir)
	for _, l := range fileLines(before) {
		if !strings.Contains(after, l) {
			t.Errorf("changed or removed: %s", l)
		}
	}
	if !c.Has(d) {
		t.Error("the blob labbake put is gone")
	}
}

// In labbake's own cache, Open removes the ingest files of dead writers,
// and only those: regular files with labbake's names.
func TestOpenSweepsOnlyIngestFiles(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Owned() {
		t.Fatal("a new cache is not Owned")
	}
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "target"), "outside")
	in := c.ingestDir()
	writeFile(t, filepath.Join(in, "put-123"), "dead writer's")
	writeFile(t, filepath.Join(in, "import-4"), "dead writer's")
	writeFile(t, filepath.Join(in, "ref-5"), "dead writer's")
	kept := []string{"notes.txt", "put-", "put-12x", "putty-1"}
	for _, n := range kept {
		writeFile(t, filepath.Join(in, n), "mine")
	}
	if err := os.Symlink(filepath.Join(outside, "target"), filepath.Join(in, "put-7")); err != nil {
		t.Fatal(err)
	}
	kept = append(kept, "put-7")
	if err := syscall.Mkfifo(filepath.Join(in, "put-8"), 0o644); err != nil {
		t.Fatal(err)
	}
	kept = append(kept, "put-8")
	live, err := c.newIngest("put")
	if err != nil {
		t.Fatal(err)
	}
	defer live.discard()
	kept = append(kept, filepath.Base(live.path))

	if _, err := Open(dir, nil); err != nil { // must not block on the FIFO
		t.Fatal(err)
	}
	for _, n := range []string{"put-123", "import-4", "ref-5"} {
		if _, err := os.Lstat(filepath.Join(in, n)); err == nil {
			t.Errorf("stale ingest file %s not removed", n)
		}
	}
	for _, n := range kept {
		if _, err := os.Lstat(filepath.Join(in, n)); err != nil {
			t.Errorf("%s removed: %v", n, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "target")); string(b) != "outside" {
		t.Error("a symlink's target changed")
	}
}
