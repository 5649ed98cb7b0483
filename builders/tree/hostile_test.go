package tree

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestHostile applies tars that try to write outside the root and checks
// that nothing appears outside the blob dir and that the escape attempts
// fail naming the entry (or land inside the tree).
func TestHostile(t *testing.T) {
	type check struct {
		path string // tree path that must exist
		typ  Type
	}
	tests := []struct {
		name    string
		ents    func(outside string) []tarEnt
		wantErr string // substring; "" means success
		want    []check
		gone    []string // tree paths that must not exist
		lower   []tarEnt // applied first, when set
	}{
		{
			name:    "dotdot",
			ents:    func(string) []tarEnt { return []tarEnt{file("../x", "pwned")} },
			wantErr: `entry "../x": leaves the root`,
		},
		{
			name:    "dotdot in the middle",
			ents:    func(string) []tarEnt { return []tarEnt{file("a/../../x", "pwned")} },
			wantErr: `entry "a/../../x": leaves the root`,
		},
		{
			name: "absolute name",
			ents: func(string) []tarEnt { return []tarEnt{file("/etc/passwd", "root:x:0:0::/root:/bin/sh\n")} },
			want: []check{{"etc/passwd", Regular}},
		},
		{
			name:    "hardlink out of the root",
			ents:    func(string) []tarEnt { return []tarEnt{hardlink("h", "../../outside")} },
			wantErr: `entry "h": hardlink target "../../outside": leaves the root`,
		},
		{
			name:    "hardlink to a host path",
			ents:    func(string) []tarEnt { return []tarEnt{hardlink("h", "/etc/passwd")} },
			wantErr: `entry "h": hardlink target "/etc/passwd" does not exist`,
		},
		{
			name: "symlink to / then write through it",
			ents: func(string) []tarEnt {
				return []tarEnt{symlink("evil", "/"), file("evil/etc/owned", "pwned")}
			},
			want: []check{{"evil", Symlink}, {"etc/owned", Regular}},
		},
		{
			name: "symlink up then write through it",
			ents: func(string) []tarEnt {
				return []tarEnt{symlink("up", "../../.."), file("up/x", "pwned")}
			},
			want: []check{{"up", Symlink}, {"x", Regular}},
		},
		{
			name: "symlink to the host outside dir then write through it",
			ents: func(outside string) []tarEnt {
				return []tarEnt{symlink("abs", outside), dir("abs/sub/"), file("abs/sub/pwned", "pwned")}
			},
			want: []check{{"abs", Symlink}, {"$OUTSIDE/sub/pwned", Regular}},
		},
		{
			name: "symlink dir swapped in after a dir",
			ents: func(string) []tarEnt {
				return []tarEnt{dir("d/"), symlink("d", "../../../.."), file("d/etc/x", "pwned")}
			},
			want: []check{{"d", Symlink}, {"etc/x", Regular}},
		},
		{
			name: "hardlink through an evil symlink",
			ents: func(string) []tarEnt {
				return []tarEnt{file("etc/shadow", "s"), symlink("evil", "/"), hardlink("h", "evil/etc/shadow")}
			},
			want: []check{{"h", Hardlink}},
		},
		{
			name: "symlink loop",
			ents: func(string) []tarEnt {
				return []tarEnt{symlink("a", "b"), symlink("b", "a"), file("a/f", "pwned")}
			},
			wantErr: `entry "a/f": resolving "a": too many levels of symbolic links`,
		},
		{
			name:    "empty name",
			ents:    func(string) []tarEnt { return []tarEnt{file("", "pwned")} },
			wantErr: `entry "": empty name`,
		},
		{
			name:    "whiteout out of the root",
			ents:    func(string) []tarEnt { return []tarEnt{file("../.wh.x", "")} },
			wantErr: `entry "../.wh.x": leaves the root`,
		},
		{
			name: "whiteout through an evil symlink",
			ents: func(string) []tarEnt {
				return []tarEnt{symlink("evil", "/"), file("evil/.wh.keep", "")}
			},
			lower: []tarEnt{file("keep", "k"), file("other", "o")},
			want:  []check{{"evil", Symlink}, {"other", Regular}},
			gone:  []string{"keep"},
		},
	}
	for _, tc := range tests {
		for _, kind := range []string{"plain", "gzip"} {
			t.Run(tc.name+"/"+kind, func(t *testing.T) {
				base := t.TempDir()
				outside := filepath.Join(base, "outside") // sentinel: must stay empty
				work := filepath.Join(base, "a", "b", "work")
				blobDir := filepath.Join(work, "blobs")
				for _, d := range []string{outside, blobDir} {
					if err := os.MkdirAll(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				t.Chdir(work) // a relative write would land here
				cwdParent := filepath.Dir(base)
				beforeBase := listTree(t, base)
				beforeParent := listTree(t, cwdParent)
				beforeSrc := srcListing(t)

				data := compress(t, kind, mkTar(t, tc.ents(outside)...))
				tr := New(testEpoch)
				if tc.lower != nil {
					if err := tr.ApplyTar(bytes.NewReader(mkTar(t, tc.lower...)), "lower", blobDir); err != nil {
						t.Fatal(err)
					}
				}
				err := tr.ApplyTar(bytes.NewReader(data), "layer[0] hostile.tar", blobDir)
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("err = %v, want %q", err, tc.wantErr)
					}
				} else if err != nil {
					t.Fatal(err)
				}
				checkInvariants(t, tr, blobDir)
				for _, c := range tc.want {
					p := strings.ReplaceAll(c.path, "$OUTSIDE", strings.TrimPrefix(outside, "/"))
					if e := mustGet(t, tr, p); e.Type != c.typ {
						t.Errorf("%s is a %s, want %s", p, e.Type, c.typ)
					}
				}
				for _, p := range tc.gone {
					if _, ok := tr.Get(p); ok {
						t.Errorf("%s survived", p)
					}
				}

				// Nothing new anywhere but in the blob dir.
				notBlob := func(ps []string) []string {
					return slices.DeleteFunc(ps, func(p string) bool { return strings.Contains(p, "work/blobs/") })
				}
				if after := notBlob(listTree(t, base)); !slices.Equal(beforeBase, after) {
					t.Errorf("temp dir changed:\nbefore %v\nafter  %v", beforeBase, after)
				}
				if after := notBlob(listTree(t, cwdParent)); !slices.Equal(beforeParent, after) {
					t.Errorf("parent of the temp dir changed:\nbefore %v\nafter  %v", beforeParent, after)
				}
				if after := srcListing(t); !slices.Equal(beforeSrc, after) {
					t.Errorf("package dir changed:\nbefore %v\nafter  %v", beforeSrc, after)
				}
				// Every blob belongs to a regular entry (blobs of removed
				// entries are deleted).
				blobs, _ := os.ReadDir(blobDir)
				regular := 0
				for _, e := range tr.Entries() {
					if e.Type == Regular {
						regular++
					}
				}
				if len(blobs) != regular {
					t.Errorf("%d blobs for %d regular entries", len(blobs), regular)
				}
			})
		}
	}
}

// srcListing lists the package's source dir (the test's original cwd).
func srcListing(tb testing.TB) []string {
	tb.Helper()
	_, self, _, _ := runtimeCaller()
	return listTree(tb, filepath.Dir(self))
}

// TestHostileNoHostRead checks that a hardlink can't be used to pull a host
// file into the tree and a symlink target is never read on the host.
func TestHostileNoHostRead(t *testing.T) {
	tr := New(testEpoch)
	data := mkTar(t,
		symlink("e", "/etc"),
		tarEnt{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "pw", Linkname: "e/passwd"}},
	)
	err := tr.ApplyTar(bytes.NewReader(data), "l", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `hardlink target "e/passwd" does not exist`) {
		t.Fatalf("err = %v", err)
	}
}
