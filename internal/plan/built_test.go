package plan

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labbake/labbake/internal/recipe"
	"github.com/labbake/labbake/internal/source/gobuild"
)

// noRemote is a Resolver for recipes without remote inputs.
type noRemote struct{}

func (noRemote) DebianBase(context.Context, *recipe.Debian, int64) (string, int64, error) {
	return "", 0, errors.New("no debian")
}
func (noRemote) ImageInput(context.Context, string) (string, string, []string, error) {
	return "", "", nil, errors.New("no registry")
}
func (noRemote) URL(context.Context, string, string, string) (string, int64, error) {
	return "", 0, errors.New("no network")
}
func (noRemote) GoInput(context.Context, gobuild.Spec) (GoOutput, error) {
	return GoOutput{}, errors.New("no go")
}

// fakeBuilder "builds" an image whose digests say which files it got.
type fakeBuilder struct{ calls []string }

func (f *fakeBuilder) BuildImage(_ context.Context, field string, img recipe.Image, files []Input) (BuiltImage, error) {
	var got []string
	for _, in := range files {
		got = append(got, in.Field+"="+in.Digest)
	}
	f.calls = append(f.calls, field+" "+img.Name+" "+strings.Join(got, " "))
	return BuiltImage{Manifest: "sha256:" + strings.Repeat("a", 64), Config: "sha256:" + strings.Repeat("c", 64), Layers: []string{"sha256:" + strings.Repeat("1", 64)}, Size: 3}, nil
}

// A built image is pinned before the build with its files, lab files
// included (RemoteOnly hashes them); the complete plan takes both from
// there, asking nothing again; the image's blobs are among Blobs.
func TestBuiltImage(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"lab.yaml":            "name: t\nnodes: [{name: m, role: master, ip: 172.18.0.2}]\n",
		"recipes/master.yaml": "base: {dir: rootfs}\nimages:\n  - ref: registry.labbake.test/pause:1\n    pinned: true\n    build:\n      files: [{file: bin/pause, dest: /pause}]\n      entrypoint: [/pause]\n",
		"rootfs/etc/hostname": "m\n",
		"bin/pause":           "pause\n",
	} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(body), 0o644)
	}
	lab, err := recipe.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := lab.Recipe("master")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	b := &fakeBuilder{}
	pins, err := New(ctx, lab, r, DefaultEpoch, "default", Options{Resolver: noRemote{}, Images: b, RemoteOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	fileDigest, _, _ := DigestFile(ctx, filepath.Join(dir, "bin/pause"))
	if len(pins.Inputs) != 2 || pins.Inputs[0].Field != "images[0].build.files[0]" || pins.Inputs[0].Kind != ArtifactFile ||
		pins.Inputs[0].Digest != fileDigest || pins.Inputs[1].Kind != ImageBuilt || pins.Inputs[1].Name != "registry.labbake.test/pause:1" {
		t.Fatalf("pins %+v", pins.Inputs)
	}
	if len(b.calls) != 1 || b.calls[0] != "images[0] registry.labbake.test/pause:1 images[0].build.files[0]="+fileDigest {
		t.Errorf("builder calls %q", b.calls)
	}
	p, err := New(ctx, lab, r, DefaultEpoch, "default", Options{Pinned: pins})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.calls) != 1 {
		t.Errorf("the complete plan built the image again")
	}
	last := p.Inputs[len(p.Inputs)-1]
	if last.Kind != ImageBuilt || last.Digest != "sha256:"+strings.Repeat("a", 64) || last.Config != "sha256:"+strings.Repeat("c", 64) || len(last.Layers) != 1 || last.Size != 3 {
		t.Errorf("image input %+v", last)
	}
	if blobs := p.Blobs(); len(blobs) != 3 || blobs[0] != last.Digest {
		t.Errorf("Blobs() = %v", blobs)
	}
	if p.Containerd == nil || len(p.Containerd.Pinned) != 1 {
		t.Errorf("containerd %+v", p.Containerd)
	}
	// The file is part of the plan digest: another file, another plan.
	os.WriteFile(filepath.Join(dir, "bin/pause"), []byte("other\n"), 0o644)
	pins2, err := New(ctx, lab, r, DefaultEpoch, "default", Options{Resolver: noRemote{}, Images: b, RemoteOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := New(ctx, lab, r, DefaultEpoch, "default", Options{Pinned: pins2})
	if err != nil || p2.Digest == p.Digest {
		t.Errorf("another file: plan %v, %v", p2, err)
	}
	// Without a builder: refused at the image's position.
	_, err = New(ctx, lab, r, DefaultEpoch, "default", Options{Resolver: noRemote{}, RemoteOnly: true})
	if err == nil || !strings.Contains(err.Error(), "recipes/master.yaml:3:5: images[0]: image-built registry.labbake.test/pause:1: images built from files need a bake") {
		t.Errorf("no builder: %v", err)
	}
	// A file that fails: its error alone, the image is not built.
	os.Remove(filepath.Join(dir, "bin/pause"))
	b.calls = nil
	_, err = New(ctx, lab, r, DefaultEpoch, "default", Options{Resolver: noRemote{}, Images: b, RemoteOnly: true})
	if err == nil || !strings.Contains(err.Error(), "images[0].build.files[0]") || strings.Contains(err.Error(), "image-built") || len(b.calls) != 0 {
		t.Errorf("missing file: %v, calls %q", err, b.calls)
	}
}
