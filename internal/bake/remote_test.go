package bake

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labbake/labbake/builders/ociimage"
	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/plan"
	"github.com/labbake/labbake/internal/recipe"
	"github.com/labbake/labbake/internal/source/gobuild"
)

// netBindServiceEP is security.capability as `setcap
// cap_net_bind_service=+ep` writes it (read back with getfattr -e hex;
// see builders/tree's TestFileCapabilities).
const netBindServiceEP = "0100000200040000000000000000000000000000"

// Every regular file an artifact puts in place gets its capabilities:
// a file, each member of an archive or image, each binary of a go input;
// a symlink member does not, nor a file of an artifact that names none.
func TestArtifactCapabilities(t *testing.T) {
	work := t.TempDir()
	a := &assembler{pins: &plan.Plan{}, log: slog.New(slog.DiscardHandler), work: work, blobs: filepath.Join(work, "blobs")}
	if err := os.MkdirAll(a.blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(work, "prog")
	if err := os.WriteFile(src, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var gotar bytes.Buffer
	tw := tar.NewWriter(&gotar)
	for _, name := range []string{"a", "b"} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: 3})
		tw.Write([]byte(name + "\n\n"))
	}
	tw.Close()
	gobins := filepath.Join(work, "gobins.tar")
	if err := os.WriteFile(gobins, gotar.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	caps := []string{"CAP_NET_BIND_SERVICE"}
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		add  func(t *tree.Tree, art recipe.Artifact) error
		want map[string]bool // path → has the capability
	}{
		{"file", func(t *tree.Tree, art recipe.Artifact) error {
			art.File, art.Dest = src, "/usr/local/bin/prog"
			return a.addArtifact(ctx, t, "artifacts[0]", art)
		}, map[string]bool{"usr/local/bin/prog": true}},
		{"members", func(t *tree.Tree, art recipe.Artifact) error {
			if err := a.addMember(t, "/opt/bin/tool", tar.TypeReg, "", strings.NewReader("tool\n"), art); err != nil {
				return err
			}
			if err := a.addMember(t, "/opt/bin/link", tar.TypeSymlink, "tool", nil, art); err != nil {
				return err
			}
			return a.addMember(t, "/opt/bin/", tar.TypeDir, "", nil, art)
		}, map[string]bool{"opt/bin/tool": true, "opt/bin/link": false, "opt/bin": false}},
		{"go binaries", func(t *tree.Tree, art recipe.Artifact) error {
			return a.addGoBinaries(ctx, t, gobins, []string{"a", "b"}, func(n string) string { return "/usr/bin/" + n }, art)
		}, map[string]bool{"usr/bin/a": true, "usr/bin/b": true}},
	} {
		for _, with := range []bool{true, false} {
			tr := tree.New(time.Unix(1700000000, 0))
			art := recipe.Artifact{Mode: 0o755}
			if with {
				art.Capabilities = caps
			}
			if err := tc.add(tr, art); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			for p, has := range tc.want {
				e, ok := tr.Get(p)
				if !ok {
					t.Errorf("%s: no %s in the tree", tc.name, p)
					continue
				}
				got, set := e.Xattrs[tree.CapabilityXattr]
				switch {
				case has && with && hex.EncodeToString(got) != netBindServiceEP:
					t.Errorf("%s: %s has %s %x (set %v), want %s", tc.name, p, tree.CapabilityXattr, got, set, netBindServiceEP)
				case !(has && with) && len(e.Xattrs) != 0:
					t.Errorf("%s (capabilities %q): %s has xattrs %q", tc.name, art.Capabilities, p, e.Xattrs)
				}
			}
		}
	}
}

// A built image's cache key covers its files' capabilities: other
// capabilities, another image.
func TestBuiltKeyCapabilities(t *testing.T) {
	files := []plan.Input{{Kind: plan.ArtifactGo, Digest: "sha256:" + strings.Repeat("ab", 32)}}
	key := func(caps ...string) string {
		t.Helper()
		b := &recipe.ImageBuild{Files: []recipe.Artifact{{Dest: "/pause", Mode: 0o755, Go: &gobuild.Spec{Module: "labbake.test/pause", Version: "v1.0.0", Packages: []string{"."}}, Capabilities: caps}}, Entrypoint: []string{"/pause"}}
		k, err := builtKey(time.Unix(1700000000, 0), b, ociimage.Config{Entrypoint: b.Entrypoint}, files)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	none, bind, both := key(), key("CAP_NET_BIND_SERVICE"), key("CAP_NET_BIND_SERVICE", "CAP_NET_RAW")
	if none == bind || bind == both || none == both {
		t.Errorf("capabilities do not change the key: none %s, one %s, two %s", none, bind, both)
	}
	if again := key("CAP_NET_BIND_SERVICE"); again != bind {
		t.Errorf("the same capabilities, two keys: %s, %s", bind, again)
	}
}

// An artifact's dest is its file's path, or a directory (a trailing slash)
// that members go into below the root the recipe asked for.
func TestArtifactDest(t *testing.T) {
	for _, tc := range []struct{ dest, root, name, want string }{
		{"/usr/bin/tool", "https://x/tool", "https://x/tool", "/usr/bin/tool"},
		{"/usr/bin/tool", "bin", "bin/a", "/usr/bin/tool"},
		{"/usr/local/bin/", "files/tool", "files/tool", "/usr/local/bin/tool"},
		{"/opt/cni/bin/", "bin", "bin/bridge", "/opt/cni/bin/bridge"},
		{"/opt/cni/bin/", "/bin/", "bin/sub/loopback", "/opt/cni/bin/sub/loopback"},
		{"/opt/x/", "", "a/b", "/opt/x/a/b"},
	} {
		if got := artifactDest(tc.dest, tc.root, tc.name); got != tc.want {
			t.Errorf("artifactDest(%q, %q, %q) = %q, want %q", tc.dest, tc.root, tc.name, got, tc.want)
		}
	}
}
