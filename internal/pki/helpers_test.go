package pki

import (
	"bytes"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// now is the issuance time of the test labs.
var now = time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC)

// testSpec is a lab of one control-plane machine and two nodes.
func testSpec() Spec {
	return Spec{
		LabName:       "lab1",
		ClusterDomain: "cluster.local",
		ServiceCIDR:   netip.MustParsePrefix("10.100.0.0/24"),
		Machines: []Machine{
			{Name: "master", IP: netip.MustParseAddr("172.18.0.10"), ControlPlane: true},
			{Name: "node1", IP: netip.MustParseAddr("172.18.0.11")},
			{Name: "node2", IP: netip.MustParseAddr("172.18.0.12")},
		},
		Now: now,
	}
}

// newLab makes a lab's PKI in a new directory.
func newLab(t *testing.T, spec Spec) (string, *PKI) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	p, err := Ensure(dir, spec)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	return dir, p
}

type fileState struct {
	data  []byte
	mtime time.Time
	mode  fs.FileMode
}

// snapshot is every file and directory below dir (directories with nil
// data), by slash-separated relative name.
func snapshot(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fileState{mtime: fi.ModTime(), mode: fi.Mode()}
		if !d.IsDir() {
			if st.data, err = os.ReadFile(path); err != nil {
				return err
			}
		}
		out[filepath.ToSlash(rel)] = st
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// changed lists the files that differ between two snapshots (content,
// mtime or mode), were added or removed, sorted. Directories count only
// when added, removed or their mode changed.
func changed(a, b map[string]fileState) []string {
	var out []string
	for name, x := range a {
		y, ok := b[name]
		switch {
		case !ok:
			out = append(out, name)
		case x.data == nil && y.data == nil:
			if x.mode != y.mode {
				out = append(out, name)
			}
		case !bytes.Equal(x.data, y.data) || !x.mtime.Equal(y.mtime) || x.mode != y.mode:
			out = append(out, name)
		}
	}
	for name := range b {
		if _, ok := a[name]; !ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// files lists the regular files of a snapshot, sorted.
func files(s map[string]fileState) []string {
	var out []string
	for name, st := range s {
		if st.data != nil {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// command runs a tool the users trust; a failure fails the test with its
// output.
func command(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// execOut runs a command that may fail.
func execOut(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

func writeFile(t *testing.T, path string, data []byte, mode fs.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	return path
}
