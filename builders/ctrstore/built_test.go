package ctrstore

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labbake/labbake/builders/ociimage"
	"github.com/labbake/labbake/builders/tree"
)

// builtImage assembles an image with builders/ociimage, as a bake does for
// images[].build: files is dest → host file (mode 0755), and returns it as
// an Image named ref.
func builtImage(t *testing.T, dir, ref string, pinned bool, files map[string]string, cfg ociimage.Config) Image {
	t.Helper()
	tr := tree.New(epoch)
	for dest, src := range files {
		st, err := os.Stat(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Add(tree.Entry{Path: dest, Type: tree.Regular, Mode: 0o755, Content: &tree.Blob{Path: src, Size: st.Size()}}); err != nil {
			t.Fatal(err)
		}
	}
	img, err := ociimage.Write(context.Background(), tr, cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	blobPath := func(d string) (string, error) {
		p := filepath.Join(dir, strings.TrimPrefix(d, "sha256:"))
		_, err := os.Stat(p)
		return p, err
	}
	out, err := NewImage(ref, pinned, img.Manifest.Digest, blobPath)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestContainerdBuiltImages preloads two images that labbake assembled
// from files (builders/ociimage: an uncompressed layer, a config with
// entrypoint, cmd and user) and runs a pod (its sandbox the built pause
// image, as a non-root user) and a container from the other through the
// CRI, with no registry: containerd accepts them as pulled ones.
func TestContainerdBuiltImages(t *testing.T) {
	containerd := tool(t, "containerd", "containerd")
	shim := tool(t, "containerd", "containerd-shim-runc-v2")
	runc := tool(t, "", "runc")
	if r := os.Getenv("LABBAKE_TEST_RUNC"); r != "" {
		runc = r
	}
	c := &ctrd{t: t, ctr: tool(t, "containerd", "ctr"), crictl: tool(t, "crictl", "crictl")}
	if os.Getuid() != 0 {
		if os.Getenv("LABBAKE_REQUIRE_TOOLS") != "" {
			t.Fatal("containerd needs root")
		}
		t.Skip("containerd needs root")
	}
	dir := t.TempDir()
	hello := buildHello(t, filepath.Join(dir, "bin"))
	pause := builtImage(t, filepath.Join(dir, "pause"), "registry.labbake.test/pause:3.10.2", true, map[string]string{"/pause": hello},
		ociimage.Config{Entrypoint: []string{"/pause", "-pause"}, User: "65535", CreatedBy: "labbake: /pause"})
	app := builtImage(t, filepath.Join(dir, "app"), "registry.labbake.test/tools/hello:v1", false, map[string]string{"/usr/bin/hello": hello},
		ociimage.Config{Entrypoint: []string{"/usr/bin/hello"}, Cmd: []string{"world"}, User: "65534:65534", Env: []string{"PATH=/usr/bin"}, CreatedBy: "labbake: /usr/bin/hello"})
	if pause.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar" {
		t.Fatalf("layer media type %s", pause.Layers[0].MediaType)
	}

	tr := tree.New(epoch)
	s := &Store{Images: []Image{pause, app}}
	if _, err := s.Add(tr, filepath.Join(dir, "work")); err != nil {
		t.Fatal(err)
	}
	c.root = filepath.Join(dir, "root")
	stage(t, tr, DefaultRoot, c.root)
	c.start(containerd, dir, []string{filepath.Dir(shim), filepath.Dir(runc)})

	check := c.run(c.ctr, "images", "check")
	for _, img := range []Image{pause, app} {
		if !hasRow(check, img.Ref, "complete") {
			t.Errorf("ctr images check does not call %s complete:\n%s", img.Ref, check)
		}
	}
	c.runPod(dir, app.Ref)
	// The sandbox ran the built pause image as the user its config names.
	pods := strings.Fields(c.run(c.crictl, "pods", "-q"))
	if len(pods) != 1 {
		t.Fatalf("pods %q", pods)
	}
	var sandbox struct {
		Info struct {
			RuntimeSpec struct {
				Process struct {
					User struct{ UID, GID int }
					Args []string
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(c.run(c.crictl, "inspectp", "-o", "json", pods[0])), &sandbox); err != nil {
		t.Fatal(err)
	}
	t.Logf("sandbox process: %+v", sandbox.Info.RuntimeSpec.Process)
	if p := sandbox.Info.RuntimeSpec.Process; p.User.UID != 65535 || strings.Join(p.Args, " ") != "/pause -pause" {
		t.Errorf("the sandbox runs %q as %d, want /pause -pause as 65535", p.Args, p.User.UID)
	}
	if out := c.logText(); strings.Contains(out, "registry.labbake.test/v2") || strings.Contains(out, "PullImage") {
		t.Errorf("containerd tried to pull:\n%s", out)
	}
}
