package bake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/labbake/labbake/builders/ctrstore"
	"github.com/labbake/labbake/builders/ociimage"
	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/cache"
	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/plan"
	"github.com/labbake/labbake/internal/recipe"
	"github.com/labbake/labbake/internal/resolve"
)

// builtFormat is the version of the way labbake lays a built image out
// (ociimage's bytes, the tree of the files, the history entry): changing
// it changes the cache key of every built image.
const builtFormat = 1

// builtKind prefixes the cache refs of built images: "image-built
// sha256:KEY" points at the manifest made of the inputs KEY digests.
const builtKind = "image-built "

// imageBuilder assembles the images of images[].build for the plans of a
// batch (plan.ImageBuilder): the files put in a tree exactly as artifacts
// are (addArtifact, from the pins the plan gives), the tree written as an
// image by builders/ociimage in a work dir under the cache, its blobs put
// into the cache. A cache ref keyed by the digest of everything that went
// in (the files' digests, where they go, the config, the epoch) makes a
// second build of the same image a lookup.
type imageBuilder struct {
	lab   *recipe.Lab
	res   *resolve.Resolver
	epoch time.Time
	log   *slog.Logger
}

// BuildImage assembles img from files, the pinned inputs of its files in
// recipe order.
func (b *imageBuilder) BuildImage(ctx context.Context, field string, img recipe.Image, files []plan.Input) (plan.BuiltImage, error) {
	if b.res == nil || img.Build == nil || len(files) != len(img.Build.Files) {
		return plan.BuiltImage{}, fmt.Errorf("%s: no files to build the image from", field)
	}
	cfg := builtConfig(img.Build)
	key, err := builtKey(b.epoch, img.Build, cfg, files)
	if err != nil {
		return plan.BuiltImage{}, err
	}
	c := b.res.Cache
	if out, ok := b.cached(key); ok {
		b.log.Debug("built image from the cache", "image", img.Name, "manifest", out.Manifest)
		return out, nil
	}
	step := time.Now()
	work, release, err := cache.WorkDir(c.Dir(), "image")
	if err != nil {
		return plan.BuiltImage{}, err
	}
	defer release()
	t := tree.New(b.epoch)
	t.SetLogger(b.log)
	a := &assembler{lab: b.lab, res: b.res, pins: &plan.Plan{Inputs: files}, log: b.log, work: work, blobs: filepath.Join(work, "blobs")}
	if err := os.MkdirAll(a.blobs, 0o755); err != nil {
		return plan.BuiltImage{}, fmt.Errorf("creating work dir: %w", err)
	}
	for j, art := range img.Build.Files {
		if err := a.addArtifact(ctx, t, files[j].Field, art); err != nil {
			return plan.BuiltImage{}, fmt.Errorf("%s: %w", files[j].Field, err)
		}
	}
	if ep := cfg.Entrypoint[0]; path.IsAbs(ep) {
		if e, ok := t.Get(ep); !ok || e.Type == tree.Dir {
			return plan.BuiltImage{}, &InputError{fmt.Errorf("%s.build.entrypoint: %s is not a file of the image (its files: %s)", field, ep, strings.Join(dests(img.Build), " "))}
		}
	}
	out, err := ociimage.Write(ctx, t, cfg, filepath.Join(work, "image"))
	if err != nil {
		return plan.BuiltImage{}, fmt.Errorf("%s: %w", field, err)
	}
	built := plan.BuiltImage{Manifest: out.Manifest.Digest, Config: out.Config.Digest, Layers: []string{out.Layer.Digest}}
	for _, bl := range []ociimage.Blob{out.Layer, out.Config, out.Manifest} {
		if err := putFile(ctx, c, bl.Path, bl.Digest); err != nil {
			return plan.BuiltImage{}, fmt.Errorf("%s: %w", field, err)
		}
		built.Size += bl.Size
	}
	if err := c.SetRef(key, built.Manifest); err != nil {
		return plan.BuiltImage{}, err
	}
	b.log.Info("container image built", "image", img.Name, "manifest", built.Manifest, "files", out.Files, "bytes", built.Size, "took", since(step))
	return built, nil
}

// cached returns the image an earlier build of the same inputs left in
// the cache, when all its blobs are still there.
func (b *imageBuilder) cached(key string) (plan.BuiltImage, bool) {
	c := b.res.Cache
	d, ok, err := c.Ref(key)
	if err != nil || !ok {
		return plan.BuiltImage{}, false
	}
	p, err := c.Path(d)
	if err != nil {
		return plan.BuiltImage{}, false
	}
	raw, err := os.ReadFile(p)
	if err != nil {
		return plan.BuiltImage{}, false
	}
	m, cfg, layers, err := ctrstore.ParseManifest(raw)
	if err != nil {
		return plan.BuiltImage{}, false
	}
	out := plan.BuiltImage{Manifest: m.Digest, Config: cfg.Digest, Size: m.Size + cfg.Size}
	for _, bl := range append([]ctrstore.Blob{cfg}, layers...) {
		if _, err := c.Path(bl.Digest); err != nil {
			return plan.BuiltImage{}, false
		}
	}
	for _, l := range layers {
		out.Layers = append(out.Layers, l.Digest)
		out.Size += l.Size
	}
	return out, true
}

// builtConfig is the image config a recipe's build asks for.
func builtConfig(b *recipe.ImageBuild) ociimage.Config {
	return ociimage.Config{
		Entrypoint: b.Entrypoint, Cmd: b.Cmd, User: b.User, Env: b.Env, WorkingDir: b.WorkingDir,
		ExposedPorts: b.ExposedPorts, Labels: b.Labels,
		CreatedBy: "labbake: " + strings.Join(dests(b), " "),
	}
}

func dests(b *recipe.ImageBuild) []string {
	out := make([]string, 0, len(b.Files))
	for _, f := range b.Files {
		out = append(out, f.Dest)
	}
	return out
}

// builtFile is what a file of a built image contributes to its key: its
// content by digest and everything that says where and how it goes.
type builtFile struct {
	Kind    plan.Kind `json:"kind"`
	Digest  string    `json:"digest"`
	Dest    string    `json:"dest"`
	Mode    uint32    `json:"mode"`
	UID     int       `json:"uid"`
	GID     int       `json:"gid"`
	Extract []string  `json:"extract,omitempty"`
	Path    string    `json:"path,omitempty"`
	Names   []string  `json:"names,omitempty"` // the binaries of a go input
	// Capabilities of the file's regular files; left out when none, so
	// that the keys of images built before they existed stay the same.
	Capabilities []string `json:"capabilities,omitempty"`
}

// builtKey is the cache ref of the image made of files with cfg at epoch.
func builtKey(epoch time.Time, b *recipe.ImageBuild, cfg ociimage.Config, files []plan.Input) (string, error) {
	k := struct {
		Format int             `json:"format"`
		Epoch  int64           `json:"epoch"`
		Files  []builtFile     `json:"files"`
		Config ociimage.Config `json:"config"`
	}{Format: builtFormat, Epoch: epoch.Unix(), Config: cfg}
	for j, a := range b.Files {
		f := builtFile{Kind: files[j].Kind, Digest: files[j].Digest, Dest: a.Dest, Mode: a.Mode, UID: a.UID, GID: a.GID, Extract: a.Extract, Path: a.Path, Capabilities: a.Capabilities}
		if a.Go != nil {
			f.Names = a.Go.Names()
		}
		k.Files = append(k.Files, f)
	}
	raw, err := json.Marshal(k)
	if err != nil {
		return "", fmt.Errorf("built image key: %w", err)
	}
	return builtKind + iox.DigestBytes(raw), nil
}

// putFile puts the file at p into the cache, checked against digest.
func putFile(ctx context.Context, c *cache.Cache, p, digest string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, _, err = c.Put(ctx, f, digest)
	return err
}

// verifiedCopy copies the lab file src into the work blob dir, hashing
// it, and returns the copy when its digest is want: the bytes a built
// image takes are those its plan names, whatever happens to the file
// after it was hashed.
func verifiedCopy(ctx context.Context, src, dir, want string) (*tree.Blob, error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	out, err := os.CreateTemp(dir, "file-")
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), iox.Reader(ctx, in))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if got := iox.DigestOf(h.Sum(nil)); got != want {
			err = fmt.Errorf("%s changed while the build ran: %w: planned %s, now %s", src, iox.ErrDigestMismatch, want, got)
		}
	}
	if err != nil {
		os.Remove(out.Name())
		return nil, err
	}
	return &tree.Blob{Path: out.Name(), Size: n, Owned: true, Digest: hex.EncodeToString(h.Sum(nil))}, nil
}

var _ plan.ImageBuilder = (*imageBuilder)(nil)
