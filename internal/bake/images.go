package bake

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/labbake/labbake/builders/ctrstore"
	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/plan"
)

// ManifestImage is a container image preloaded into the image's
// containerd, as ROLE.manifest.json lists it.
type ManifestImage struct {
	Ref      string `json:"ref"`      // as containerd names it: registry.k8s.io/pause:3.10.2
	Manifest string `json:"manifest"` // the platform manifest's digest
	Config   string `json:"config"`   // the image ID
	Size     int64  `json:"size"`     // bytes of its manifest, config and layers
	Pinned   bool   `json:"pinned,omitempty"`
	// Built is set for an image the bake assembled from files
	// (images[].build) rather than pulled.
	Built bool `json:"built,omitempty"`
}

// images writes the recipe's container images into containerd's store in
// the tree: blobs from the cache, and the metadata database.
func (a *assembler) images(_ context.Context, t *tree.Tree) error {
	r := a.r
	if len(r.Images) == 0 {
		return nil
	}
	step := time.Now()
	s := &ctrstore.Store{Namespace: r.Containerd.Namespace, Root: r.Containerd.Root}
	for i, img := range r.Images {
		field := fmt.Sprintf("images[%d]", i)
		in, err := a.pinned(field)
		if err != nil {
			return at(img.Pos, err)
		}
		ci, err := ctrstore.NewImage(in.Name, img.Pinned, in.Digest, a.res.Cache.Path)
		if err != nil {
			return at(img.Pos, fmt.Errorf("%s: %w", field, err))
		}
		if ci.Config.Digest != in.Config || len(ci.Layers) != len(in.Layers) {
			return at(img.Pos, fmt.Errorf("%s: manifest %s does not name the config and layers the plan pins", field, in.Digest))
		}
		s.Images = append(s.Images, ci)
		mi := ManifestImage{Ref: ci.Ref, Manifest: ci.Manifest.Digest, Config: ci.Config.Digest, Pinned: img.Pinned, Built: in.Kind == plan.ImageBuilt}
		for _, b := range append([]ctrstore.Blob{ci.Manifest, ci.Config}, ci.Layers...) {
			mi.Size += b.Size
		}
		a.preloaded = append(a.preloaded, mi)
		a.log.Info("container image preloaded", "ref", ci.Ref, "manifest", ci.Manifest.Digest, "layers", len(ci.Layers), "bytes", mi.Size, "built", mi.Built)
	}
	t.SetOrigin("images")
	res, err := s.Add(t, filepath.Join(a.work, "ctrstore"))
	if err != nil {
		return at(r.Containerd.Pos, err)
	}
	a.log.Info("containerd store written", "root", r.Containerd.Root, "namespace", r.Containerd.Namespace,
		"images", len(s.Images), "blobs", res.Blobs, "bytes", res.BlobBytes, "meta_db", res.MetaDB, "took", since(step))
	return nil
}
