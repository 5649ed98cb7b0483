package tree

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func reg(p string, blob *Blob) Entry {
	return Entry{Path: p, Type: Regular, Mode: 0o644, Content: blob}
}

func TestNew(t *testing.T) {
	tr := New(testEpoch)
	if tr.Len() != 1 {
		t.Fatalf("Len = %d, want 1", tr.Len())
	}
	root := mustGet(t, tr, ".")
	if root.Type != Dir || root.Mode != 0o755 || root.UID != 0 || root.GID != 0 || !root.ModTime.Equal(testEpoch) {
		t.Fatalf("root = %+v", root)
	}
	if !tr.Epoch().Equal(testEpoch) {
		t.Fatalf("Epoch = %v", tr.Epoch())
	}
	if got := New(time.Time{}).Epoch(); !got.Equal(time.Unix(0, 0)) {
		t.Fatalf("zero epoch became %v", got)
	}
}

func TestAddPaths(t *testing.T) {
	blob := &Blob{Path: "/nonexistent/blob", Size: 0}
	tests := []struct {
		name    string
		setup   []Entry
		add     Entry
		want    string // canonical path the entry must land at
		wantErr string
	}{
		{name: "absolute", add: reg("/a/b", blob), want: "a/b"},
		{name: "trailing slash", add: Entry{Path: "a/b/", Type: Dir}, want: "a/b"},
		{name: "dot slash", add: reg("./a", blob), want: "a"},
		{name: "dotdot inside", add: reg("a/x/../b", blob), want: "a/b"},
		{name: "dotdot leaves", add: reg("a/../../x", blob), wantErr: `entry "a/../../x": leaves the root`},
		{name: "dotdot after slash", add: reg("/../x", blob), wantErr: "leaves the root"},
		{name: "empty", add: reg("", blob), wantErr: `entry "": empty name`},
		{name: "nul", add: reg("a\x00b", blob), wantErr: "NUL"},
		{
			name:  "through absolute symlink to root",
			setup: []Entry{{Path: "evil", Type: Symlink, Linkname: "/"}},
			add:   reg("evil/etc/owned", blob), want: "etc/owned",
		},
		{
			name:  "through absolute symlink",
			setup: []Entry{{Path: "a", Type: Symlink, Linkname: "/x"}},
			add:   reg("a/b/f", blob), want: "x/b/f",
		},
		{
			name:  "through relative symlink clamped",
			setup: []Entry{{Path: "up", Type: Symlink, Linkname: "../../.."}},
			add:   reg("up/x", blob), want: "x",
		},
		{
			name: "through nested relative symlinks",
			setup: []Entry{
				{Path: "usr/lib", Type: Dir},
				{Path: "lib", Type: Symlink, Linkname: "usr/lib"},
				{Path: "usr/lib/sub", Type: Symlink, Linkname: "../share"},
			},
			add: reg("lib/sub/f", blob), want: "usr/share/f",
		},
		{
			name:  "symlink to dot",
			setup: []Entry{{Path: "self", Type: Symlink, Linkname: "."}},
			add:   reg("self/self/f", blob), want: "f",
		},
		{
			name: "loop",
			setup: []Entry{
				{Path: "a", Type: Symlink, Linkname: "b"},
				{Path: "b", Type: Symlink, Linkname: "a"},
			},
			add: reg("a/f", blob), wantErr: "too many levels of symbolic links",
		},
		{
			name:  "parent is a file",
			setup: []Entry{reg("f", blob)},
			add:   reg("f/g", blob), wantErr: "not a directory",
		},
		{
			name:  "final symlink replaced, not followed",
			setup: []Entry{{Path: "l", Type: Symlink, Linkname: "/etc"}},
			add:   reg("l", blob), want: "l",
		},
		{
			name:    "root replaced by file",
			add:     reg("/", blob),
			wantErr: "cannot replace the root",
		},
		{name: "negative owner", add: Entry{Path: "x", Type: Dir, UID: -1}, wantErr: "negative owner"},
		{name: "regular without content", add: Entry{Path: "x", Type: Regular}, wantErr: "without content"},
		{name: "symlink without target", add: Entry{Path: "x", Type: Symlink}, wantErr: "empty target"},
		{name: "bad type", add: Entry{Path: "x", Type: Type(99)}, wantErr: "unknown entry type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := New(testEpoch)
			for _, e := range tc.setup {
				if err := tr.Add(e); err != nil {
					t.Fatalf("setup: %v", err)
				}
			}
			err := tr.Add(tc.add)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				checkInvariants(t, tr, "")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			e := mustGet(t, tr, tc.want)
			if e.Type != tc.add.Type {
				t.Fatalf("type = %s, want %s", e.Type, tc.add.Type)
			}
			checkInvariants(t, tr, "")
		})
	}
}

func TestAddErrorsIs(t *testing.T) {
	tr := New(testEpoch)
	if err := tr.Add(Entry{Path: "../x", Type: Dir}); !errors.Is(err, ErrLeavesRoot) {
		t.Fatalf("err = %v, want ErrLeavesRoot", err)
	}
	tr.Add(Entry{Path: "a", Type: Symlink, Linkname: "a"})
	if err := tr.Add(Entry{Path: "a/x", Type: Dir}); !errors.Is(err, ErrSymlinkLoop) {
		t.Fatalf("err = %v, want ErrSymlinkLoop", err)
	}
}

func TestAddReplace(t *testing.T) {
	b1 := &Blob{Path: "/b1", Size: 1}
	b2 := &Blob{Path: "/b2", Size: 2}
	tr := New(testEpoch)
	must := func(e Entry) {
		t.Helper()
		if err := tr.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	must(Entry{Path: "d", Type: Dir, Mode: 0o700, UID: 5})
	must(reg("d/f", b1))
	must(reg("d/sub/g", b1))
	// Dir over dir: metadata updated, children kept.
	must(Entry{Path: "d", Type: Dir, Mode: 0o750, UID: 7})
	if e := mustGet(t, tr, "d"); e.Mode != 0o750 || e.UID != 7 {
		t.Fatalf("d = %+v", e)
	}
	mustGet(t, tr, "d/f")
	mustGet(t, tr, "d/sub/g")
	// File over file.
	must(reg("d/f", b2))
	if e := mustGet(t, tr, "d/f"); e.Content.Path != "/b2" {
		t.Fatalf("d/f = %+v", e)
	}
	// File over dir: subtree gone.
	must(reg("d", b2))
	for _, p := range []string{"d/f", "d/sub", "d/sub/g"} {
		if _, ok := tr.Get(p); ok {
			t.Fatalf("%s survived replacing its parent by a file", p)
		}
	}
	// Dir over file.
	must(Entry{Path: "d", Type: Dir})
	if tr.Len() != 2 {
		t.Fatalf("Len = %d, want 2: %v", tr.Len(), paths(tr))
	}
	// Root metadata.
	must(Entry{Path: "./", Type: Dir, Mode: 0o700})
	if e := mustGet(t, tr, "."); e.Mode != 0o700 {
		t.Fatalf("root mode = %#o", e.Mode)
	}
	// Remove.
	must(reg("d/x/y", b1))
	tr.Remove("/d")
	if tr.Len() != 1 {
		t.Fatalf("after Remove: %v", paths(tr))
	}
	tr.Remove("missing/path")
	tr.Remove("../x")
	checkInvariants(t, tr, "")
}

func TestAddClampAndMissingParents(t *testing.T) {
	tr := New(testEpoch)
	old := time.Date(2001, 9, 9, 1, 46, 40, 0, time.UTC)
	future := testEpoch.Add(time.Hour)
	if err := tr.Add(Entry{Path: "a/b/c", Type: Dir, ModTime: old, Mode: 0o1777 | 0o170000}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Add(Entry{Path: "a/b/d", Type: Dir, ModTime: future}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Add(Entry{Path: "a/b/e", Type: FIFO}); err != nil {
		t.Fatal(err)
	}
	if e := mustGet(t, tr, "a/b/c"); !e.ModTime.Equal(old) || e.Mode != 0o1777 {
		t.Fatalf("a/b/c = %+v", e)
	}
	if e := mustGet(t, tr, "a/b/d"); !e.ModTime.Equal(testEpoch) {
		t.Fatalf("future time not clamped: %v", e.ModTime)
	}
	if e := mustGet(t, tr, "a/b/e"); !e.ModTime.Equal(testEpoch) {
		t.Fatalf("zero time not the epoch: %v", e.ModTime)
	}
	for _, p := range []string{"a", "a/b"} {
		e := mustGet(t, tr, p)
		if e.Type != Dir || e.Mode != 0o755 || e.UID != 0 || !e.ModTime.Equal(testEpoch) {
			t.Fatalf("missing parent %s = %+v", p, e)
		}
	}
}

func TestHardlinks(t *testing.T) {
	b1 := &Blob{Path: "/b1", Size: 1}
	b2 := &Blob{Path: "/b2", Size: 2}
	type step struct {
		add     *Entry
		remove  string
		wantErr string
	}
	link := func(p, target string) *Entry { return &Entry{Path: p, Type: Hardlink, Linkname: target} }
	file := func(p string, b *Blob) *Entry { e := reg(p, b); e.Mode = 0o755; e.UID = 3; return &e }
	tests := []struct {
		name  string
		steps []step
		// want maps path -> "link:TARGET" or "file:BLOBPATH"
		want map[string]string
	}{
		{
			name:  "pair",
			steps: []step{{add: file("a", b1)}, {add: link("b", "/a")}},
			want:  map[string]string{"a": "file:/b1", "b": "link:a"},
		},
		{
			name:  "link to link is canonical",
			steps: []step{{add: file("a", b1)}, {add: link("b", "a")}, {add: link("c", "./b")}},
			want:  map[string]string{"a": "file:/b1", "b": "link:a", "c": "link:a"},
		},
		{
			name:  "target removed: first link takes the content",
			steps: []step{{add: file("a", b1)}, {add: link("c", "a")}, {add: link("b", "a")}, {remove: "a"}},
			want:  map[string]string{"b": "file:/b1", "c": "link:b"},
		},
		{
			name:  "target replaced by a regular file: links keep the old content",
			steps: []step{{add: file("a", b1)}, {add: link("b", "a")}, {add: file("a", b2)}},
			want:  map[string]string{"a": "file:/b2", "b": "file:/b1"},
		},
		{
			name:  "target replaced by a symlink",
			steps: []step{{add: file("a", b1)}, {add: link("b", "a")}, {add: &Entry{Path: "a", Type: Symlink, Linkname: "x"}}},
			want:  map[string]string{"b": "file:/b1"},
		},
		{
			name:  "target's dir removed, link outside survives",
			steps: []step{{add: file("d/a", b1)}, {add: link("d/b", "d/a")}, {add: link("e", "d/a")}, {remove: "d"}},
			want:  map[string]string{"e": "file:/b1"},
		},
		{
			name:  "relink over the target through its own link",
			steps: []step{{add: file("a", b1)}, {add: link("b", "a")}, {add: link("a", "b")}},
			want:  map[string]string{"b": "file:/b1", "a": "link:b"},
		},
		{
			name:  "through a symlinked dir",
			steps: []step{{add: file("real/a", b1)}, {add: &Entry{Path: "s", Type: Symlink, Linkname: "/real"}}, {add: link("b", "s/a")}},
			want:  map[string]string{"b": "link:real/a"},
		},
		{
			name:  "out of the root",
			steps: []step{{add: link("h", "../../outside"), wantErr: `entry "h": hardlink target "../../outside": leaves the root`}},
		},
		{
			name:  "missing target",
			steps: []step{{add: link("h", "nope"), wantErr: "does not exist"}},
		},
		{
			name:  "to a dir",
			steps: []step{{add: &Entry{Path: "d", Type: Dir}}, {add: link("h", "d"), wantErr: "not a regular file"}},
		},
		{
			name:  "to a symlink (not followed)",
			steps: []step{{add: file("a", b1)}, {add: &Entry{Path: "s", Type: Symlink, Linkname: "a"}}, {add: link("h", "s"), wantErr: "is a symlink"}},
		},
		{
			name:  "to itself",
			steps: []step{{add: file("a", b1)}, {add: link("a", "a"), wantErr: "itself"}},
		},
		{
			name:  "target inside the dir it replaces",
			steps: []step{{add: file("d/a", b1)}, {add: link("d", "d/a"), wantErr: "inside the entry"}},
			want:  map[string]string{"d/a": "file:/b1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := New(testEpoch)
			for i, s := range tc.steps {
				var err error
				if s.add != nil {
					err = tr.Add(*s.add)
				} else {
					tr.Remove(s.remove)
				}
				if s.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), s.wantErr) {
						t.Fatalf("step %d: err = %v, want %q", i, err, s.wantErr)
					}
				} else if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			for p, w := range tc.want {
				e := mustGet(t, tr, p)
				var got string
				switch e.Type {
				case Hardlink:
					got = "link:" + e.Linkname
				case Regular:
					got = "file:" + e.Content.Path
					if e.Mode != 0o755 || e.UID != 3 {
						t.Errorf("%s: attributes not carried over: %+v", p, e)
					}
				default:
					got = e.Type.String()
				}
				if got != w {
					t.Errorf("%s = %s, want %s", p, got, w)
				}
			}
			checkInvariants(t, tr, "")
		})
	}
}

func TestEntriesOrderAndCopy(t *testing.T) {
	tr := New(testEpoch)
	for _, p := range []string{"b/c", "a-b", "a/z", "a/b/c", "-x", " sp", "a"} {
		if err := tr.Add(Entry{Path: p, Type: Dir, Xattrs: map[string][]byte{"user.k": []byte("v")}}); err != nil {
			t.Fatal(err)
		}
	}
	got := strings.Join(paths(tr), ",")
	want := "., sp,-x,a,a-b,a/b,a/b/c,a/z,b,b/c"
	if got != want {
		t.Fatalf("order = %s\nwant    %s", got, want)
	}
	es := tr.Entries()
	es[1].Xattrs["user.k"][0] = 'X'
	if e := mustGet(t, tr, " sp"); string(e.Xattrs["user.k"]) != "v" {
		t.Fatal("Entries shares xattr storage with the tree")
	}
	checkInvariants(t, tr, "")
}

func TestResolve(t *testing.T) {
	tr := New(testEpoch)
	tr.Add(Entry{Path: "lib", Type: Symlink, Linkname: "usr/lib"})
	got, err := tr.Resolve("/lib/x/y")
	if err != nil || got != "usr/lib/x/y" {
		t.Fatalf("Resolve = %q, %v", got, err)
	}
	if _, err := tr.Resolve("../a"); err == nil {
		t.Fatal("Resolve of ../a: no error")
	}
}

func TestDigest(t *testing.T) {
	dir := t.TempDir()
	build := func(blobDir string) string {
		tr := New(testEpoch)
		data := mkTar(t, dir_("etc"), file("etc/hostname", "lab\n"), symlink("l", "/etc"), hardlink("h", "etc/hostname"))
		if err := tr.ApplyTar(strings.NewReader(string(data)), "t", blobDir); err != nil {
			t.Fatal(err)
		}
		d, err := tr.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d1 := build(filepath.Join(dir, "1"))
	d2 := build(filepath.Join(dir, "2"))
	if d1 != d2 || !strings.HasPrefix(d1, "sha256:") {
		t.Fatalf("digests differ or malformed: %s %s", d1, d2)
	}
	tr := New(testEpoch.Add(time.Second))
	tr.ApplyTar(strings.NewReader(string(mkTar(t, dir_("etc")))), "t", filepath.Join(dir, "3"))
	if d3, _ := tr.Digest(); d3 == d1 {
		t.Fatal("different trees, same digest")
	}
}

// dir_ is dir, for tests that shadow the name dir.
func dir_(name string) tarEnt { return dir(name) }

func TestOwnedBlobLifecycle(t *testing.T) {
	blobDir := t.TempDir()
	tr := New(testEpoch)
	if err := tr.AddFiles([]File{{Path: "a", Content: []byte("1")}, {Path: "b", Content: []byte("2")}}, blobDir); err != nil {
		t.Fatal(err)
	}
	a := mustGet(t, tr, "a")
	// Get, change, Add: same blob, updated in place, blob kept.
	a.Mode = 0o600
	if err := tr.Add(a); err != nil {
		t.Fatal(err)
	}
	if got := content(t, tr, "a"); got != "1" || mustGet(t, tr, "a").Mode != 0o600 {
		t.Fatalf("a = %q %+v", got, mustGet(t, tr, "a"))
	}
	// Replacing and removing delete the owned blobs.
	b := mustGet(t, tr, "b")
	if err := tr.AddFiles([]File{{Path: "b", Content: []byte("3")}}, blobDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(b.Content.Path); !os.IsNotExist(err) {
		t.Fatalf("replaced blob still there: %v", err)
	}
	tr.Remove("a")
	if _, err := os.Stat(a.Content.Path); !os.IsNotExist(err) {
		t.Fatalf("removed blob still there: %v", err)
	}
	if des, _ := os.ReadDir(blobDir); len(des) != 1 {
		t.Fatalf("blob dir holds %d files, want 1", len(des))
	}
	// A host file (not owned) is never deleted.
	host := filepath.Join(t.TempDir(), "host")
	os.WriteFile(host, []byte("h"), 0o644)
	tr.Add(Entry{Path: "h", Type: Regular, Content: &Blob{Path: host, Size: 1}})
	tr.Remove("h")
	if _, err := os.Stat(host); err != nil {
		t.Fatal(err)
	}
}

// All yields the entries Entries returns, once each, and stops when asked.
func TestAll(t *testing.T) {
	tr := New(testEpoch)
	for _, p := range []string{"/a/b/c", "/a/d", "/e"} {
		if err := tr.AddFiles([]File{{Path: p, Content: []byte(p)}}, filepath.Join(t.TempDir(), "blobs")); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Add(Entry{Path: "/a/l", Type: Hardlink, Linkname: "/e"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for e := range tr.All() {
		got = append(got, e.Path+" "+e.Type.String())
	}
	slices.Sort(got)
	var want []string
	for _, e := range tr.Entries() {
		want = append(want, e.Path+" "+e.Type.String())
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("All yielded %q, want %q", got, want)
	}
	n := 0
	for range tr.All() {
		n++
		break
	}
	if n != 1 {
		t.Errorf("All went on after break: %d entries", n)
	}
}
