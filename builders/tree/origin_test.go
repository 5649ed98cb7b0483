package tree

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// buildStages applies the same four stages to a new tree, calling SetOrigin
// before each when label is true.
func buildStages(t *testing.T, label bool) *Tree {
	t.Helper()
	blobs := t.TempDir()
	overlay := t.TempDir()
	if err := os.MkdirAll(filepath.Join(overlay, "etc", "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(overlay, "etc", "app", "conf"), []byte("overlay"), 0o644); err != nil {
		t.Fatal(err)
	}
	set := func(tr *Tree, s string) {
		if label {
			tr.SetOrigin(s)
		}
	}
	tr := New(testEpoch)
	set(tr, "base base.tar")
	base := mkTar(t, dir("etc/"), file("etc/a", "a"), file("etc/b", "b"), hardlink("etc/h", "etc/a"),
		file("usr/bin/tool", "v1"))
	if err := tr.ApplyTar(bytes.NewReader(base), "base", blobs); err != nil {
		t.Fatal(err)
	}
	set(tr, "layers[0] l0.tar")
	l0 := mkTar(t, file("etc/b", "b2"), file("etc/.wh.a", ""), file("opt/new/x", "x"))
	if err := tr.ApplyTar(bytes.NewReader(l0), "l0", blobs); err != nil {
		t.Fatal(err)
	}
	set(tr, "overlays[0] ov")
	if err := tr.ApplyDir(overlay, "", nil); err != nil {
		t.Fatal(err)
	}
	set(tr, "units")
	if err := tr.AddUnits([]Unit{{Name: "x.service", Enable: true, Content: []byte("[Install]\nWantedBy=multi-user.target\n")}}, blobs); err != nil {
		t.Fatal(err)
	}
	set(tr, "files")
	if err := tr.AddFiles([]File{{Path: "/etc/motd", Content: []byte("hi")}}, blobs); err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestOrigin(t *testing.T) {
	tr := buildStages(t, true)
	if got := tr.Origin(); got != "files" {
		t.Errorf("Origin() = %q, want %q", got, "files")
	}
	tests := []struct{ path, origin string }{
		{".", ""}, // the root is never added
		{"etc", "base base.tar"},
		{"usr/bin/tool", "base base.tar"},
		{"usr/bin", "base base.tar"},       // created as a missing parent
		{"etc/b", "layers[0] l0.tar"},      // replaced
		{"etc/h", "base base.tar"},         // inherited the removed etc/a's content
		{"opt/new", "layers[0] l0.tar"},    // missing parent
		{"etc/app/conf", "overlays[0] ov"}, // dir base files
		{"etc/app", "overlays[0] ov"},      // new dir from the overlay
		{"etc/systemd/system/x.service", "units"},
		{"etc/systemd/system/multi-user.target.wants/x.service", "units"},
		{"etc/motd", "files"},
	}
	for _, tc := range tests {
		if got := mustGet(t, tr, tc.path).Origin; got != tc.origin {
			t.Errorf("%s: Origin = %q, want %q", tc.path, got, tc.origin)
		}
	}
	// Entries carries it too.
	for _, e := range tr.Entries() {
		if e.Path == "etc/motd" && e.Origin != "files" {
			t.Errorf("Entries: etc/motd Origin = %q", e.Origin)
		}
	}
}

func TestOriginKeptWhenUnset(t *testing.T) {
	tr := New(testEpoch)
	blob := &Blob{Path: "/nonexistent", Size: 0}
	if err := tr.Add(Entry{Path: "a", Type: Regular, Content: blob, Origin: "copied"}); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, tr, "a").Origin; got != "copied" {
		t.Errorf("without SetOrigin: Origin = %q, want the given %q", got, "copied")
	}
	tr.SetOrigin("stage")
	e := mustGet(t, tr, "a")
	e.Mode = 0o600
	if err := tr.Add(e); err != nil { // same content: an attribute update
		t.Fatal(err)
	}
	if got := mustGet(t, tr, "a").Origin; got != "stage" {
		t.Errorf("after an update under SetOrigin: Origin = %q, want %q", got, "stage")
	}
}

func TestDigestIgnoresOrigin(t *testing.T) {
	plain, err := buildStages(t, false).Digest()
	if err != nil {
		t.Fatal(err)
	}
	labelled, err := buildStages(t, true).Digest()
	if err != nil {
		t.Fatal(err)
	}
	if plain != labelled {
		t.Errorf("Digest changed by SetOrigin: %s vs %s", plain, labelled)
	}
}
