package ctrstore

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/test/upstream"
)

// epoch is the bake time of the tests.
var epoch = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// layoutImage writes spec as an OCI layout under dir and returns it as an
// Image named ref, its blobs read from the layout.
func layoutImage(t *testing.T, dir, ref string, pinned bool, spec upstream.ImageSpec) Image {
	t.Helper()
	img, err := upstream.WriteImage(dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	blobPath := func(d string) (string, error) {
		p := filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))
		_, err := os.Stat(p)
		return p, err
	}
	out, err := NewImage(ref, pinned, img.Manifest.String(), blobPath)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fileImages are two small images whose files are data: enough for the
// database and the tree, nothing to run.
func fileImages(t *testing.T) []Image {
	t.Helper()
	dir := t.TempDir()
	a := layoutImage(t, filepath.Join(dir, "a"), "registry.labbake.test/pause:3.10.2", true, upstream.ImageSpec{
		Registry: "registry.labbake.test", Repository: "pause", Tag: "3.10.2", Created: epoch,
		Files: []upstream.ImageFile{{Path: "/pause", Data: []byte("pause\n"), Mode: 0o755}},
	})
	b := layoutImage(t, filepath.Join(dir, "b"), "registry.labbake.test:5000/coredns/coredns:v1.14.6", false, upstream.ImageSpec{
		Registry: "registry.labbake.test", Repository: "coredns/coredns", Tag: "v1.14.6", Created: epoch,
		Files: []upstream.ImageFile{{Path: "/coredns", Data: []byte("coredns\n"), Mode: 0o755}},
	})
	return []Image{a, b}
}

// stage writes the entries of t under prefix (a path of the tree) into
// dir, with their modes: what the disk builder would put in the image.
func stage(t *testing.T, tr *tree.Tree, prefix, dir string) {
	t.Helper()
	prefix = strings.TrimPrefix(prefix, "/")
	for _, e := range tr.Entries() {
		rel, ok := strings.CutPrefix(e.Path, prefix)
		if !ok || (rel != "" && !strings.HasPrefix(rel, "/")) {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(rel))
		switch e.Type {
		case tree.Dir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				t.Fatal(err)
			}
		case tree.Regular:
			src, err := os.Open(e.Content.Path)
			if err != nil {
				t.Fatal(err)
			}
			dst, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(dst, src); err != nil {
				t.Fatal(err)
			}
			src.Close()
			if err := dst.Close(); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("%s: unexpected %s", e.Path, e.Type)
		}
		if err := os.Chmod(p, os.FileMode(e.Mode)); err != nil {
			t.Fatal(err)
		}
		if e.UID != 0 || e.GID != 0 {
			t.Errorf("%s: owner %d:%d, want 0:0", e.Path, e.UID, e.GID)
		}
	}
}

// entry returns the entry at p of the tree, failing the test without it.
func entry(t *testing.T, tr *tree.Tree, p string) tree.Entry {
	t.Helper()
	e, ok := tr.Get(p)
	if !ok {
		t.Fatalf("%s: not in the tree", p)
	}
	return e
}

// tool finds a program in PATH, or under $LABBAKE_UPSTREAM_BIN/DIR (the
// layout labbake-upstream writes: containerd/, crictl/). Without either,
// containerd and crictl are built here from the Go module proxy once
// (test/upstream, with its Go build cache: seconds when warm, about three
// minutes cold) unless -short; the test is skipped when a program cannot be
// had, or fails when LABBAKE_REQUIRE_TOOLS is set.
func tool(t *testing.T, dir, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			return filepath.Join(d, name)
		}
	}
	up := os.Getenv("LABBAKE_UPSTREAM_BIN")
	if up == "" && dir != "" && !testing.Short() {
		up = builtUpstream(t)
	}
	if up != "" {
		p := filepath.Join(up, dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("LABBAKE_REQUIRE_TOOLS") != "" {
		t.Fatalf("%s not found in PATH or $LABBAKE_UPSTREAM_BIN/%s", name, path.Join(dir, name))
	}
	t.Skipf("%s not found in PATH or $LABBAKE_UPSTREAM_BIN/%s (labbake-upstream builds it)", name, path.Join(dir, name))
	return ""
}

// TestMain removes what builtUpstream built.
func TestMain(m *testing.M) {
	code := m.Run()
	if upstreamBin.dir != "" {
		os.RemoveAll(filepath.Dir(upstreamBin.dir))
	}
	os.Exit(code)
}

// upstreamBin is where builtUpstream put containerd and crictl.
var upstreamBin struct {
	once sync.Once
	dir  string
	err  error
}

// builtUpstream builds containerd and crictl at the lab's versions with
// test/upstream, once per test binary, and returns the bin directory.
func builtUpstream(t *testing.T) string {
	t.Helper()
	upstreamBin.once.Do(func() {
		cache, err := upstream.DefaultCacheDir()
		if err != nil {
			upstreamBin.err = err
			return
		}
		out, err := os.MkdirTemp("", "labbake-ctrstore-upstream-")
		if err != nil {
			upstreamBin.err = err
			return
		}
		_, upstreamBin.err = upstream.Bake(context.Background(), &upstream.Builder{CacheDir: cache},
			upstream.Options{Versions: upstream.DefaultVersions(), Only: []string{"containerd", "crictl"}, OutDir: out})
		upstreamBin.dir = filepath.Join(out, "bin")
	})
	if upstreamBin.err != nil {
		t.Fatalf("building containerd and crictl: %v", upstreamBin.err)
	}
	return upstreamBin.dir
}
