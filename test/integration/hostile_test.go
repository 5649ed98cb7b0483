package integration

import (
	"archive/tar"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHostileLayers bakes labs whose layer tries to write outside the root.
// Escaping names and hardlinks are refused naming the entry (exit 2); writes
// through symlinks to / or ../../.. land inside the image. Nothing appears
// on the host outside the build's own dirs.
func TestHostileLayers(t *testing.T) {
	for _, name := range []string{"mke2fs", "debugfs"} {
		tool(t, name)
	}
	// A unique name: if a write escaped it would show up on the host here.
	marker := fmt.Sprintf("labbake-hostile-%d", time.Now().UnixNano())
	hostTargets := []string{filepath.Join("/tmp", marker), filepath.Join(os.TempDir(), marker)}
	reg := func(name, content string) tarEntry {
		return tarEntry{&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(epoch, 0)}, content}
	}
	sym := func(name, target string) tarEntry {
		return tarEntry{&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: time.Unix(epoch, 0)}, ""}
	}
	for _, tc := range []struct {
		name    string
		layer   []tarEntry
		errPart string // "" means the build succeeds
		inImage string // a path that must then exist in the image
	}{
		{"dotdot", []tarEntry{reg("../../../tmp/"+marker, "x")}, "../../../tmp/" + marker, ""},
		{"dotdot inside", []tarEntry{reg("a/../../tmp/"+marker, "x")}, "a/../../tmp/" + marker, ""},
		{"hardlink out", []tarEntry{{&tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "../../../etc/passwd", ModTime: time.Unix(epoch, 0)}, ""}}, "../../../etc/passwd", ""},
		{"absolute", []tarEntry{reg("/tmp/"+marker, "x")}, "", "tmp/" + marker},
		{"symlink to root", []tarEntry{sym("evil", "/"), reg("evil/tmp/"+marker, "x")}, "", "tmp/" + marker},
		{"symlink up", []tarEntry{sym("up", "../../.."), reg("up/tmp/"+marker, "x")}, "", "tmp/" + marker},
		{"empty name", []tarEntry{reg("", "x")}, "empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab, _ := makeLab(t)
			writeTar(t, filepath.Join(lab, "layer.tar"), tc.layer)
			out := filepath.Join(t.TempDir(), "out")
			_, stderr, code := labbake(t, nil, "-C", lab, "--out", out, "--cache", t.TempDir(), "build", "master", "--keep-raw")
			for _, h := range hostTargets {
				if _, err := os.Lstat(h); err == nil {
					os.Remove(h)
					t.Fatalf("the layer wrote %s on the host", h)
				}
			}
			if tc.errPart != "" {
				if code != 2 || !strings.Contains(stderr, tc.errPart) || !strings.Contains(stderr, "layers[0]") {
					t.Errorf("exit %d, want 2 with an error naming %q in layers[0]:\n%s", code, tc.errPart, stderr)
				}
				if _, err := os.Stat(filepath.Join(out, "master.qcow2")); err == nil {
					t.Error("an image was written")
				}
				return
			}
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, stderr)
			}
			m := readManifest(t, filepath.Join(out, "master.manifest.json"))
			got := readImage(t, filepath.Join(out, "master.raw"), m.Partitions[2].Offset)
			if got[tc.inImage] == nil {
				t.Errorf("%s is not in the image", tc.inImage)
			}
		})
	}
}
