package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labbake/labbake/internal/cache"
	bolt "go.etcd.io/bbolt"
)

// imageLab is a lab whose one role preloads a container image that is in
// the cache already, pinned by a ref an earlier fetch left there: what an
// offline build or a bundle has. It returns the lab, the cache and the
// image's manifest, config and layer digests.
func imageLab(t *testing.T) (lab, cacheDir string, blobs []string) {
	t.Helper()
	lab, cacheDir = t.TempDir(), t.TempDir()
	c, err := cache.Open(cacheDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var layer bytes.Buffer
	gz := gzip.NewWriter(&layer)
	tw := tar.NewWriter(gz)
	body := "hello\n"
	tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write([]byte(body))
	tw.Close()
	gz.Close()
	put := func(b []byte) (string, int) {
		d, _, err := c.Put(context.Background(), bytes.NewReader(b), "")
		if err != nil {
			t.Fatal(err)
		}
		return d, len(b)
	}
	ld, ln := put(layer.Bytes())
	cfg := fmt.Sprintf(`{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["%s"]}}`, digestOf(nil))
	cd, cn := put([]byte(cfg))
	man := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]}`, cd, cn, ld, ln)
	md, _ := put([]byte(man))
	if err := c.SetRef("oci docker://registry.labbake.test/hello:v1", md); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"lab.yaml": "name: t\nnodes: [{name: m, role: master, ip: 172.18.0.2}]\n",
		"recipes/master.yaml": "base: {dir: rootfs}\ndisk: {size: 300MiB, boot: []}\n" +
			"images:\n  - {ref: 'registry.labbake.test/hello:v1', pinned: true}\n",
		"rootfs/etc/hostname": "m\n",
	}
	writeFiles(t, lab, files)
	return lab, cacheDir, []string{md, cd, ld}
}

// The images of a recipe are inputs like OCI layers: planned with their
// pins, carried by bundles, and baked offline from the cache into
// containerd's store in the image, named in the manifest.
func TestImagesOffline(t *testing.T) {
	lab, cacheDir, blobs := imageLab(t)
	stdout, stderr, code := run(t, "-C", lab, "--cache", cacheDir, "plan", "master", "--offline")
	if code != 0 || !strings.Contains(stdout, "image") || !strings.Contains(stdout, "registry.labbake.test/hello:v1") || !strings.Contains(stdout, blobs[0]) {
		t.Fatalf("plan: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, stderr, code = run(t, "-C", lab, "--cache", cacheDir, "plan", "master", "--offline", "--json")
	var p struct {
		Inputs []struct {
			Field, Kind, Name, Source, Digest, Config string
			Layers                                    []string
		}
		Containerd struct {
			Namespace, Root string
			Pinned          []string
		}
	}
	if err := json.Unmarshal([]byte(stdout), &p); code != 0 || err != nil {
		t.Fatalf("plan --json: exit %d %v\n%s%s", code, err, stdout, stderr)
	}
	in := p.Inputs[len(p.Inputs)-1]
	if in.Field != "images[0]" || in.Kind != "image" || in.Name != "registry.labbake.test/hello:v1" || in.Source != "docker://registry.labbake.test/hello:v1" ||
		in.Digest != blobs[0] || in.Config != blobs[1] || len(in.Layers) != 1 || in.Layers[0] != blobs[2] {
		t.Errorf("plan input %+v", in)
	}
	if p.Containerd.Namespace != "k8s.io" || p.Containerd.Root != "/var/lib/containerd" || len(p.Containerd.Pinned) != 1 {
		t.Errorf("plan containerd %+v", p.Containerd)
	}

	// A bundle carries the image's three blobs.
	bundle := filepath.Join(t.TempDir(), "lab.bundle")
	stdout, stderr, code = run(t, "-C", lab, "--cache", cacheDir, "bundle", "export", bundle, "--all", "--offline")
	if code != 0 || !strings.Contains(stdout, "\t3 blobs\t") {
		t.Errorf("bundle export: exit %d\n%s%s", code, stdout, stderr)
	}

	requireTool(t, "mke2fs")
	requireTool(t, "debugfs")
	var shas []string
	for i := range 2 {
		out := t.TempDir()
		cd := cacheDir
		if i == 1 { // the bundle into another cache
			cd = t.TempDir()
			if _, stderr, code := run(t, "-C", lab, "--cache", cd, "bundle", "import", bundle); code != 0 {
				t.Fatalf("bundle import: %s", stderr)
			}
		}
		stdout, stderr, code = run(t, "-C", lab, "--cache", cd, "--out", out, "build", "master", "--offline", "--keep-raw")
		if code != 0 {
			t.Fatalf("build: exit %d\n%s%s", code, stdout, stderr)
		}
		if !strings.Contains(stderr, "container image preloaded") || !strings.Contains(stderr, "registry.labbake.test/hello:v1") {
			t.Errorf("the build's progress does not name the image:\n%s", stderr)
		}
		var m struct {
			Output struct{ SHA256 string }
			Images []struct {
				Ref, Manifest, Config string
				Size                  int64
				Pinned                bool
			}
			Partitions []struct{ Offset int64 }
		}
		b, err := os.ReadFile(filepath.Join(out, "master.manifest.json"))
		if err != nil || json.Unmarshal(b, &m) != nil {
			t.Fatalf("manifest: %v\n%s", err, b)
		}
		if len(m.Images) != 1 || m.Images[0].Ref != "registry.labbake.test/hello:v1" || m.Images[0].Manifest != blobs[0] ||
			m.Images[0].Config != blobs[1] || m.Images[0].Size <= 0 || !m.Images[0].Pinned {
			t.Errorf("manifest images %+v", m.Images)
		}
		shas = append(shas, m.Output.SHA256)
		if i == 1 {
			break
		}
		// The root file system holds the store: read it back with debugfs.
		dev := fmt.Sprintf("%s?offset=%d", filepath.Join(out, "master.raw"), m.Partitions[len(m.Partitions)-1].Offset)
		dir := t.TempDir()
		script := fmt.Sprintf("dump /var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db %s/meta.db\n", dir)
		for i, d := range blobs {
			script += fmt.Sprintf("dump /var/lib/containerd/io.containerd.content.v1.content/blobs/sha256/%s %s/%d\n", strings.TrimPrefix(d, "sha256:"), dir, i)
		}
		script += "stat /var/lib/containerd\nstat /var/lib/containerd/io.containerd.content.v1.content/blobs/sha256/" + strings.TrimPrefix(blobs[2], "sha256:") + "\n"
		os.WriteFile(filepath.Join(dir, "script"), []byte(script), 0o644)
		dbg, err := exec.Command("debugfs", "-f", filepath.Join(dir, "script"), dev).CombinedOutput()
		if err != nil {
			t.Fatalf("debugfs: %v\n%s", err, dbg)
		}
		for _, want := range []string{"Mode:  0700", "Mode:  0444", "User:     0   Group:     0"} {
			if !strings.Contains(string(dbg), want) {
				t.Errorf("debugfs stat lacks %q:\n%s", want, dbg)
			}
		}
		c, _ := cache.Open(cacheDir, nil)
		for i, d := range blobs {
			got, err := os.ReadFile(filepath.Join(dir, fmt.Sprint(i)))
			p, perr := c.Path(d)
			want, werr := os.ReadFile(p)
			if err != nil || perr != nil || werr != nil || !bytes.Equal(got, want) {
				t.Errorf("blob %s in the image differs from the cache's (%v %v %v)", d, err, perr, werr)
			}
		}
		db, err := bolt.Open(filepath.Join(dir, "meta.db"), 0o444, &bolt.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		err = db.View(func(tx *bolt.Tx) error {
			img := tx.Bucket([]byte("v1")).Bucket([]byte("k8s.io")).Bucket([]byte("images")).Bucket([]byte("registry.labbake.test/hello:v1"))
			if img == nil {
				return fmt.Errorf("no image record")
			}
			if got := string(img.Bucket([]byte("target")).Get([]byte("digest"))); got != blobs[0] {
				return fmt.Errorf("target %s, want %s", got, blobs[0])
			}
			if got := string(img.Bucket([]byte("labels")).Get([]byte("io.cri-containerd.pinned"))); got != "pinned" {
				return fmt.Errorf("pinned label %q", got)
			}
			return nil
		})
		db.Close()
		if err != nil {
			t.Errorf("meta.db in the image: %v", err)
		}
	}
	if shas[0] != shas[1] {
		t.Errorf("two builds (one from the bundle, in another cache) differ: %s, %s", shas[0], shas[1])
	}
}
