package oci

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

// maxSymlinks bounds the symlinks followed while resolving one path, as
// Linux does (ELOOP).
const maxSymlinks = 40

// Whiteout markers of the OCI image layer format.
const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// ExtractPath finds p in the flattened image — a file, a symlink followed
// inside the image (absolute targets are relative to the image root), or a
// directory, which yields every file below it — and calls fn once for each
// file found with its tar header and content. Upper layers win, whiteouts and
// opaque directories hide what lower layers had.
//
// h.Name is the file's absolute path as reached through p (p itself, or p
// followed by the path below it), even where p goes through symlinks. Regular
// files come with their content; a hard link comes as a regular file with the
// content of its target; symlinks inside a directory are not followed and come
// as symlinks, like devices and fifos, with an empty reader. Directories are
// not passed to fn. Entries without content come first, in path order, then
// the files in the order the layers store them (bottom layer first), so the
// calls are the same for the same image. A p that is not in the image is an
// error wrapping fs.ErrNotExist; an error from fn stops the walk and is
// returned wrapped.
func (s *Source) ExtractPath(ctx context.Context, store Store, img *Resolved, p string, fn func(h *tar.Header, r io.Reader) error) error {
	if img == nil {
		return errors.New("oci: extracting from a nil image")
	}
	want := path.Clean("/" + p)
	idx, err := s.flatten(ctx, store, img)
	if err != nil {
		return err
	}
	real, err := idx.resolve(want)
	if err != nil {
		return fmt.Errorf("oci: %s: %s: %w", img.Ref, want, err)
	}
	files, err := idx.below(real)
	if err != nil {
		return fmt.Errorf("oci: %s: %s: %w", img.Ref, want, err)
	}
	s.log().Debug("extracting from image", "ref", img.Ref, "path", want, "resolved", real, "files", len(files))

	// Plan: entries without content are delivered at once; contents are
	// read from the layers that hold them, in a second pass.
	wants := map[int]map[int][]delivery{} // layer → position in its tar → deliveries
	pending := 0
	for _, f := range files {
		e := idx.entries[f]
		d := delivery{name: outName(want, real, f), hdr: e.hdr}
		src := e
		switch e.hdr.Typeflag {
		case tar.TypeReg:
		case tar.TypeLink:
			target := cleanName(e.hdr.Linkname)
			t, ok := idx.entries[target]
			if !ok || t.hdr.Typeflag != tar.TypeReg {
				return fmt.Errorf("oci: %s: %s: hard link to %s, which is not a regular file in the image", img.Ref, f, target)
			}
			d.link = true
			src = t
		default:
			h := *e.hdr
			h.Name = d.name
			if err := fn(&h, strings.NewReader("")); err != nil {
				return fmt.Errorf("oci: %s: %s: %w", img.Ref, d.name, err)
			}
			continue
		}
		if wants[src.layer] == nil {
			wants[src.layer] = map[int][]delivery{}
		}
		wants[src.layer][src.seq] = append(wants[src.layer][src.seq], d)
		pending++
	}

	for layer := range img.Layers {
		lw := wants[layer]
		if len(lw) == 0 {
			continue
		}
		left := len(lw)
		err := s.walkLayer(ctx, store, img.Layers[layer], func(seq int, _ string, h *tar.Header, r io.Reader) (bool, error) {
			ds, ok := lw[seq]
			if !ok {
				return false, nil
			}
			if err := deliverContent(ds, h, r, fn); err != nil {
				return false, fmt.Errorf("oci: %s: %w", img.Ref, err)
			}
			pending -= len(ds)
			left--
			return left == 0, nil
		})
		if err != nil {
			return err
		}
	}
	if pending != 0 {
		return fmt.Errorf("oci: %s: %s: %d files changed between reads of the layers", img.Ref, want, pending)
	}
	return nil
}

// delivery is one call of the ExtractPath callback.
type delivery struct {
	name string      // h.Name handed to fn
	hdr  *tar.Header // the entry as indexed
	link bool        // a hard link: header from hdr, content from its target
}

// deliverContent hands one stored file to every delivery that needs its
// content, spooling it to a temporary file when there is more than one.
func deliverContent(ds []delivery, h *tar.Header, r io.Reader, fn func(*tar.Header, io.Reader) error) error {
	call := func(d delivery, r io.Reader) error {
		hdr := *h
		if d.link {
			hdr = *d.hdr
			hdr.Typeflag = tar.TypeReg
			hdr.Size = h.Size
			hdr.Linkname = ""
		}
		hdr.Name = d.name
		if err := fn(&hdr, r); err != nil {
			return fmt.Errorf("%s: %w", d.name, err)
		}
		return nil
	}
	if len(ds) == 1 {
		return call(ds[0], r)
	}
	tmp, err := os.CreateTemp("", "labbake-oci-*")
	if err != nil {
		return fmt.Errorf("spooling %s: %w", h.Name, err)
	}
	defer func() {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
	}()
	if _, err := io.Copy(tmp, r); err != nil {
		return fmt.Errorf("spooling %s: %w", h.Name, err)
	}
	for _, d := range ds {
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("spooling %s: %w", h.Name, err)
		}
		if err := call(d, tmp); err != nil {
			return err
		}
	}
	return nil
}

// outName maps file f below the resolved path real back to the path asked
// for (want), so that callers see the names they asked for.
func outName(want, real, f string) string {
	if f == real {
		return want
	}
	rel := strings.TrimPrefix(f, real)
	if real == "/" {
		rel = f
	}
	return path.Join(want, rel)
}

// flatEntry is the visible version of one path in the flattened image.
type flatEntry struct {
	layer int // index in Resolved.Layers
	seq   int // position of the header in that layer's tar stream
	hdr   *tar.Header
}

// flatIndex is the metadata of the flattened image: what a reader of the
// assembled root filesystem would see.
type flatIndex struct {
	entries  map[string]flatEntry // cleaned absolute path → visible entry
	whiteout map[string]bool      // paths (and all below) removed by an upper layer
	opaque   map[string]bool      // directories whose lower contents are hidden
}

// flatten reads the layers from top to bottom and keeps, for every path, the
// entry of the highest layer that has it, unless an upper layer whited it out,
// made a directory above it opaque, or replaced a directory above it by a
// non-directory. Whiteouts apply to lower layers only, never to entries of
// their own layer.
func (s *Source) flatten(ctx context.Context, store Store, img *Resolved) (*flatIndex, error) {
	idx := &flatIndex{entries: map[string]flatEntry{}, whiteout: map[string]bool{}, opaque: map[string]bool{}}
	for layer := len(img.Layers) - 1; layer >= 0; layer-- {
		var entries []flatEntry
		var whiteouts, opaques []string
		err := s.walkLayer(ctx, store, img.Layers[layer], func(seq int, name string, h *tar.Header, _ io.Reader) (bool, error) {
			dir, base := path.Split(name)
			switch {
			case base == whiteoutOpaque:
				opaques = append(opaques, path.Clean(dir))
			case strings.HasPrefix(base, whiteoutMeta):
				// other AUFS metadata (.wh..wh.plnk, …): not part of the tree
			case strings.HasPrefix(base, whiteoutPrefix):
				whiteouts = append(whiteouts, path.Join(dir, base[len(whiteoutPrefix):]))
			default:
				hdr := *h
				entries = append(entries, flatEntry{layer: layer, seq: seq, hdr: &hdr})
			}
			return false, nil
		})
		if err != nil {
			return nil, fmt.Errorf("oci: %s: %w", img.Ref, err)
		}
		for _, e := range entries {
			name := cleanName(e.hdr.Name)
			if idx.hidden(name, layer) {
				continue
			}
			idx.entries[name] = e // a later duplicate in the same layer wins, as when extracting
		}
		for _, w := range whiteouts {
			idx.whiteout[w] = true
		}
		for _, o := range opaques {
			idx.opaque[o] = true
		}
	}
	return idx, nil
}

// hidden reports whether an entry for p in layer is hidden by the layers
// above it.
func (x *flatIndex) hidden(p string, layer int) bool {
	if e, ok := x.entries[p]; ok && e.layer != layer {
		return true
	}
	if x.whiteout[p] {
		return true
	}
	for a := p; a != "/"; {
		a = path.Dir(a)
		if x.whiteout[a] || x.opaque[a] {
			return true
		}
		if e, ok := x.entries[a]; ok && e.layer != layer && e.hdr.Typeflag != tar.TypeDir {
			return true
		}
	}
	return false
}

// resolve follows every symlink in p (absolute targets relative to the image
// root, ".." stopping at the root) and returns the path it names.
func (x *flatIndex) resolve(p string) (string, error) {
	cur := "/"
	rest := splitPath(p)
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		if e, ok := x.entries[next]; ok && e.hdr.Typeflag == tar.TypeSymlink {
			links++
			if links > maxSymlinks {
				return "", fmt.Errorf("too many levels of symbolic links")
			}
			if path.IsAbs(e.hdr.Linkname) {
				cur = "/"
			}
			rest = append(splitPath(e.hdr.Linkname), rest...)
			continue
		}
		cur = next
	}
	return cur, nil
}

// below returns the non-directory entries at or below real, sorted.
func (x *flatIndex) below(real string) ([]string, error) {
	e, ok := x.entries[real]
	if ok && e.hdr.Typeflag != tar.TypeDir {
		return []string{real}, nil
	}
	prefix := real + "/"
	if real == "/" {
		prefix = "/"
	}
	var files []string
	for name, e := range x.entries {
		if strings.HasPrefix(name, prefix) && e.hdr.Typeflag != tar.TypeDir {
			files = append(files, name)
		}
	}
	if !ok && len(files) == 0 {
		return nil, fmt.Errorf("not in the image: %w", fs.ErrNotExist)
	}
	sort.Strings(files)
	return files, nil
}

// walkLayer reads the tar stream of a layer and calls fn with each entry's
// position in the stream, its cleaned absolute name, header and content,
// until fn says it is done.
func (s *Source) walkLayer(ctx context.Context, store Store, layerDigest string, fn func(seq int, name string, h *tar.Header, r io.Reader) (bool, error)) error {
	rc, err := s.OpenLayer(store, layerDigest)
	if err != nil {
		return err
	}
	// A walk stopped early leaves the blob unverified: the store may well
	// complain on Close then, which is no error here.
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	for seq := 0; ; seq++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// Read the padding after the end of the archive too, so
			// that the store verifies the whole blob.
			if _, err := io.Copy(io.Discard, rc); err != nil {
				return fmt.Errorf("layer %s: %w", layerDigest, err)
			}
			return nil
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return fmt.Errorf("layer %s: %w", layerDigest, err)
		}
		name := cleanName(h.Name)
		if name == "/" {
			continue
		}
		done, err := fn(seq, name, h, tr)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// cleanName turns a tar entry name into a clean absolute path.
func cleanName(name string) string {
	return path.Clean("/" + name)
}

func splitPath(p string) []string {
	return strings.Split(p, "/")
}
