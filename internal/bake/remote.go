package bake

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/plan"
	"github.com/labbake/labbake/internal/recipe"
	"github.com/labbake/labbake/internal/source"
	"github.com/labbake/labbake/internal/source/oci"
)

// pinned returns the pinned input of a recipe field.
func (a *assembler) pinned(field string) (plan.Input, error) {
	in, ok := a.pins.Input(field)
	if !ok {
		return plan.Input{}, fmt.Errorf("%s: not pinned", field)
	}
	if a.res == nil {
		return plan.Input{}, fmt.Errorf("%s: %s needs the fetch stage", field, in.Kind)
	}
	return in, nil
}

// image is a pinned image input as the OCI source takes it.
func image(in plan.Input) *oci.Resolved {
	return &oci.Resolved{Ref: in.Source, ManifestDigest: in.Digest, Config: in.Config, Layers: in.Layers}
}

// applyRemote applies a Debian base tarball or every layer of an OCI
// image, read from the cache.
func (a *assembler) applyRemote(ctx context.Context, t *tree.Tree, field string) error {
	in, err := a.pinned(field)
	if err != nil {
		return err
	}
	switch in.Kind {
	case plan.BaseDebian:
		p, err := a.res.Cache.Path(in.Digest)
		if err != nil {
			return err
		}
		return applyTar(ctx, t, p, field+" debian "+in.Digest, a.blobs)
	case plan.BaseOCI, plan.LayerOCI:
		for i, l := range in.Layers {
			if err := ctx.Err(); err != nil {
				return err
			}
			rc, err := a.res.OCI.OpenLayer(a.res.Cache, l)
			if err != nil {
				return err
			}
			err = t.ApplyTar(bufio.NewReaderSize(iox.Reader(ctx, rc), 1<<20), fmt.Sprintf("%s %s layer %d", field, in.Source, i), a.blobs)
			rc.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("%s: cannot apply a %s", field, in.Kind)
}

// addArtifact puts an artifact's file(s) at its dest.
// field is the recipe field naming it (artifacts[N], or a file of a
// built image, images[N].build.files[M]).
func (a *assembler) addArtifact(ctx context.Context, t *tree.Tree, field string, art recipe.Artifact) error {
	epoch := t.Epoch()
	file := func(dest string, blob *tree.Blob, mode uint32) error {
		x, err := artifactXattrs(art)
		if err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		return t.Add(tree.Entry{Path: dest, Type: tree.Regular, Mode: mode, UID: art.UID, GID: art.GID, ModTime: epoch, Content: blob, Xattrs: x})
	}
	destFor := func(root, name string) string { return artifactDest(art.Dest, root, name) }
	switch {
	case art.File != "":
		if in, ok := a.pins.Input(field); ok && in.Kind == plan.ArtifactFile {
			// Pinned before the build (a built image's file): exactly
			// the bytes pinned.
			blob, err := verifiedCopy(ctx, art.File, a.blobs, in.Digest)
			if err != nil {
				return err
			}
			return file(destFor(art.File, art.File), blob, art.Mode)
		}
		st, err := os.Stat(art.File)
		if err != nil {
			return err
		}
		return file(destFor(art.File, art.File), &tree.Blob{Path: art.File, Size: st.Size()}, art.Mode)
	case art.URL != "":
		in, err := a.pinned(field)
		if err != nil {
			return err
		}
		blob, err := a.cachedBlob(in.Digest)
		if err != nil {
			return err
		}
		return file(destFor(art.URL, art.URL), blob, art.Mode)
	case art.Archive != "":
		in, err := a.pinned(field)
		if err != nil {
			return err
		}
		return source.Extract(ctx, a.res.Cache, in.Digest, art.Extract, a.work, func(m source.Member, r io.Reader) error {
			root := matchRoot(art.Extract, m.Name)
			return a.addMember(t, destFor(root, m.Name), m.Type, m.Linkname, r, art)
		})
	case art.Go != nil:
		in, err := a.pinned(field)
		if err != nil {
			return err
		}
		blob, err := a.cachedBlob(in.Digest)
		if err != nil {
			return err
		}
		names := art.Go.Names()
		if len(names) == 1 {
			return file(destFor(names[0], names[0]), blob, art.Mode)
		}
		// Several packages: a tar of the binaries, by name.
		return a.addGoBinaries(ctx, t, blob.Path, names, func(name string) string { return destFor(name, name) }, art)
	case art.Image != "":
		in, err := a.pinned(field)
		if err != nil {
			return err
		}
		return a.res.OCI.ExtractPath(ctx, a.res.Cache, image(in), art.Path, func(h *tar.Header, r io.Reader) error {
			return a.addMember(t, destFor(art.Path, h.Name), h.Typeflag, h.Linkname, r, art)
		})
	}
	return fmt.Errorf("%s: no source", field)
}

// cachedBlob is the cache's blob of digest as the tree takes it: read
// only, where the cache keeps it, its digest known (the cache checked it).
func (a *assembler) cachedBlob(digest string) (*tree.Blob, error) {
	p, err := a.res.Cache.Path(digest)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	return &tree.Blob{Path: p, Size: st.Size(), Digest: strings.TrimPrefix(digest, "sha256:")}, nil
}

// artifactDest is where a member found at name goes when the recipe asked
// for root and the artifact's dest is dest: dest itself, or below it when
// it ends in a slash (root's base name for root itself, else name's path
// below root).
func artifactDest(dest, root, name string) string {
	root, name = strings.Trim(root, "/"), strings.Trim(name, "/")
	if !strings.HasSuffix(dest, "/") {
		return dest
	}
	if name == root {
		return dest + path.Base(name)
	}
	return dest + strings.TrimPrefix(strings.TrimPrefix(name, root), "/")
}

// addGoBinaries adds the binaries of a go input of several packages, read
// from the tar gobuild made of them: exactly the names it built.
func (a *assembler) addGoBinaries(ctx context.Context, t *tree.Tree, p string, names []string, dest func(string) string, art recipe.Artifact) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(iox.Reader(ctx, f))
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("go binaries %s: %w", p, err)
		}
		if !slices.Contains(names, h.Name) || seen[h.Name] || h.Typeflag != tar.TypeReg {
			return fmt.Errorf("go binaries %s: unexpected member %q", p, h.Name)
		}
		seen[h.Name] = true
		if err := a.addMember(t, dest(h.Name), h.Typeflag, "", tr, art); err != nil {
			return err
		}
	}
	if len(seen) != len(names) {
		return fmt.Errorf("go binaries %s: %d of %d binaries", p, len(seen), len(names))
	}
	return nil
}

// artifactXattrs are the extended attributes every regular file of art
// gets: its capabilities (security.capability), if it names any. Each
// call makes a new map.
func artifactXattrs(art recipe.Artifact) (map[string][]byte, error) {
	if len(art.Capabilities) == 0 {
		return nil, nil
	}
	caps, err := tree.FileCapabilities(art.Capabilities)
	if err != nil {
		return nil, fmt.Errorf("capabilities: %w", err)
	}
	return map[string][]byte{tree.CapabilityXattr: caps}, nil
}

// addMember adds one file (or symlink) taken out of an archive or image,
// with the artifact's mode, owner and, for a regular file, capabilities.
func (a *assembler) addMember(t *tree.Tree, dest string, typ byte, link string, r io.Reader, art recipe.Artifact) error {
	e := tree.Entry{Path: dest, Mode: art.Mode, UID: art.UID, GID: art.GID, ModTime: t.Epoch()}
	switch typ {
	case tar.TypeDir:
		return nil // directories come with the files in them
	case tar.TypeSymlink:
		e.Type, e.Linkname, e.Mode = tree.Symlink, link, 0o777
	case tar.TypeReg, tar.TypeRegA:
		f, err := os.CreateTemp(a.blobs, "artifact-")
		if err != nil {
			return err
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(f, h), r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("extracting %s: %w", dest, err)
		}
		e.Type, e.Content = tree.Regular, &tree.Blob{Path: f.Name(), Size: n, Owned: true, Digest: hex.EncodeToString(h.Sum(nil))}
		if e.Xattrs, err = artifactXattrs(art); err != nil {
			os.Remove(f.Name())
			return fmt.Errorf("%s: %w", dest, err)
		}
	default:
		return fmt.Errorf("%s: unsupported member type %q", dest, typ)
	}
	return t.Add(e)
}

// applyTar applies the tar file at path (a cached blob).
func applyTar(ctx context.Context, t *tree.Tree, path, name, blobs string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	return t.ApplyTar(bufio.NewReaderSize(iox.Reader(ctx, f), 1<<20), name, blobs)
}

// matchRoot returns the extract path that selected member name.
func matchRoot(paths []string, name string) string {
	clean := strings.Trim(path.Clean("/"+name), "/")
	for _, p := range paths {
		p = strings.Trim(path.Clean("/"+p), "/")
		if clean == p || strings.HasPrefix(clean, p+"/") {
			return p
		}
	}
	return clean
}
