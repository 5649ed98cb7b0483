package ociimage

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/iox"
)

// Platform of every image made here.
const (
	Architecture = "amd64"
	OS           = "linux"
)

// Config is the runtime configuration an image carries, as a container
// runtime reads it.
type Config struct {
	Entrypoint   []string
	Cmd          []string
	User         string   // "65535", "65532:65532", a name of the image's /etc/passwd
	Env          []string // KEY=VALUE
	WorkingDir   string   // absolute; "" leaves it to the runtime (/)
	ExposedPorts []string // "53/udp", "9153/tcp"
	Labels       map[string]string
	// CreatedBy is the history entry's created_by: what made the layer.
	CreatedBy string
}

// Blob is one blob of an image: its descriptor and the file holding it.
type Blob struct {
	Digest    string // sha256:HEX
	MediaType string
	Size      int64
	Path      string
}

// Image is what Write made: its manifest, config and layer.
type Image struct {
	Manifest Blob
	Config   Blob
	Layer    Blob
	// Files counts the layer's entries.
	Files int
}

// Write writes the entries of t, all but its root, as the one layer of an
// image with cfg, created at t's epoch, into dir (made if missing): each
// blob in a file named by its hex digest. ctx stops it between files and
// while content is copied.
func Write(ctx context.Context, t *tree.Tree, cfg Config, dir string) (*Image, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	img := &Image{}
	layer, n, err := writeLayer(ctx, t, dir)
	if err != nil {
		return nil, err
	}
	img.Layer, img.Files = layer, n
	created := t.Epoch().UTC()
	conf := imgspec.Image{
		Created:  &created,
		Platform: imgspec.Platform{Architecture: Architecture, OS: OS},
		Config: imgspec.ImageConfig{
			User:         cfg.User,
			ExposedPorts: ports(cfg.ExposedPorts),
			Env:          cfg.Env,
			Entrypoint:   cfg.Entrypoint,
			Cmd:          cfg.Cmd,
			WorkingDir:   cfg.WorkingDir,
			Labels:       cfg.Labels,
		},
		RootFS:  imgspec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.Digest(layer.Digest)}},
		History: []imgspec.History{{Created: &created, CreatedBy: cfg.CreatedBy}},
	}
	b, err := json.Marshal(conf)
	if err != nil {
		return nil, fmt.Errorf("image: config: %w", err)
	}
	if img.Config, err = writeBlob(dir, imgspec.MediaTypeImageConfig, b); err != nil {
		return nil, err
	}
	m := imgspec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: imgspec.MediaTypeImageManifest,
		Config:    descriptor(img.Config),
		Layers:    []imgspec.Descriptor{descriptor(img.Layer)},
	}
	if b, err = json.Marshal(m); err != nil {
		return nil, fmt.Errorf("image: manifest: %w", err)
	}
	if img.Manifest, err = writeBlob(dir, imgspec.MediaTypeImageManifest, b); err != nil {
		return nil, err
	}
	return img, nil
}

// check refuses settings no runtime could use.
func (c Config) check() error {
	var errs []error
	for _, e := range c.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			errs = append(errs, fmt.Errorf("env %q: want KEY=VALUE", e))
		}
	}
	if c.WorkingDir != "" && (!path.IsAbs(c.WorkingDir) || path.Clean(c.WorkingDir) != c.WorkingDir) {
		errs = append(errs, fmt.Errorf("working dir %q: want a clean absolute path", c.WorkingDir))
	}
	for _, p := range c.ExposedPorts {
		if msg := CheckPort(p); msg != "" {
			errs = append(errs, fmt.Errorf("exposed port %q: %s", p, msg))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	return nil
}

// CheckPort says what is wrong with an exposed port (PORT or PORT/PROTO,
// PORT 1 to 65535, PROTO tcp, udp or sctp), or "".
func CheckPort(p string) string {
	num, proto, ok := strings.Cut(p, "/")
	if ok && proto != "tcp" && proto != "udp" && proto != "sctp" {
		return "the protocol is tcp, udp or sctp"
	}
	v := 0
	for _, r := range num {
		if r < '0' || r > '9' || v > 65535 {
			return "want PORT or PORT/PROTO with PORT from 1 to 65535"
		}
		v = v*10 + int(r-'0')
	}
	if num == "" || num[0] == '0' || v < 1 || v > 65535 {
		return "want PORT or PORT/PROTO with PORT from 1 to 65535"
	}
	return ""
}

// ports is the config's set of exposed ports; PORT alone means PORT/tcp.
func ports(ps []string) map[string]struct{} {
	if len(ps) == 0 {
		return nil
	}
	m := make(map[string]struct{}, len(ps))
	for _, p := range ps {
		if !strings.Contains(p, "/") {
			p += "/tcp"
		}
		m[p] = struct{}{}
	}
	return m
}

func descriptor(b Blob) imgspec.Descriptor {
	return imgspec.Descriptor{MediaType: b.MediaType, Digest: digest.Digest(b.Digest), Size: b.Size}
}

// writeBlob writes b into dir under its digest.
func writeBlob(dir, mediaType string, b []byte) (Blob, error) {
	d := digest.FromBytes(b)
	p := filepath.Join(dir, d.Encoded())
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return Blob{}, fmt.Errorf("image: %w", err)
	}
	return Blob{Digest: d.String(), MediaType: mediaType, Size: int64(len(b)), Path: p}, nil
}

// writeLayer writes the layer tar into dir, hashing it on the way, and
// names it by its digest.
func writeLayer(ctx context.Context, t *tree.Tree, dir string) (Blob, int, error) {
	f, err := os.CreateTemp(dir, "layer-*.tar")
	if err != nil {
		return Blob{}, 0, fmt.Errorf("image: layer: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	h := sha256.New()
	cw := &iox.CountingWriter{W: io.MultiWriter(f, h)}
	n, err := writeTar(ctx, t, cw)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Blob{}, 0, fmt.Errorf("image: layer: %w", err)
	}
	d := digest.NewDigest(digest.SHA256, h)
	p := filepath.Join(dir, d.Encoded())
	if err := os.Rename(tmp, p); err != nil {
		return Blob{}, 0, fmt.Errorf("image: layer: %w", err)
	}
	return Blob{Digest: d.String(), MediaType: imgspec.MediaTypeImageLayer, Size: cw.N, Path: p}, n, nil
}

// writeTar writes every entry of t but the root to w as a tar and returns
// how many it wrote.
func writeTar(ctx context.Context, t *tree.Tree, w io.Writer) (int, error) {
	tw := tar.NewWriter(w)
	n := 0
	for _, e := range t.Entries() {
		if e.Path == "." {
			continue
		}
		if err := ctx.Err(); err != nil {
			return n, err
		}
		h, err := header(e)
		if err != nil {
			return n, err
		}
		if err := tw.WriteHeader(h); err != nil {
			return n, fmt.Errorf("%s: %w", e.Path, err)
		}
		if e.Type == tree.Regular {
			if err := copyContent(ctx, tw, e); err != nil {
				return n, err
			}
		}
		n++
	}
	return n, tw.Close()
}

// header is the tar header of e: its path relative to the root (a
// directory's with a trailing slash), numeric owner without names, and no
// time but the modification time, whole seconds.
func header(e tree.Entry) (*tar.Header, error) {
	h := &tar.Header{
		Name: e.Path, Mode: int64(e.Mode & 0o7777), Uid: e.UID, Gid: e.GID,
		ModTime: e.ModTime.UTC().Truncate(time.Second), Format: tar.FormatPAX,
	}
	switch e.Type {
	case tree.Regular:
		h.Typeflag, h.Size = tar.TypeReg, e.Content.Size
	case tree.Dir:
		h.Typeflag, h.Name = tar.TypeDir, e.Path+"/"
	case tree.Symlink:
		h.Typeflag, h.Linkname = tar.TypeSymlink, e.Linkname
	case tree.Hardlink:
		h.Typeflag, h.Linkname = tar.TypeLink, e.Linkname
	case tree.CharDev, tree.BlockDev:
		h.Typeflag = tar.TypeChar
		if e.Type == tree.BlockDev {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor, h.Devminor = int64(e.Devmajor), int64(e.Devminor)
	case tree.FIFO:
		h.Typeflag = tar.TypeFifo
	default:
		return nil, fmt.Errorf("%s: cannot put a %s in a layer", e.Path, e.Type)
	}
	if len(e.Xattrs) > 0 {
		h.PAXRecords = map[string]string{}
		for _, k := range slices.Sorted(maps.Keys(e.Xattrs)) {
			h.PAXRecords["SCHILY.xattr."+k] = string(e.Xattrs[k])
		}
	}
	return h, nil
}

// copyContent copies a regular entry's bytes: exactly the size it says.
func copyContent(ctx context.Context, w io.Writer, e tree.Entry) error {
	f, err := os.Open(e.Content.Path)
	if err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Size() != e.Content.Size {
		if err == nil {
			err = fmt.Errorf("%s holds %d bytes, not %d", e.Content.Path, st.Size(), e.Content.Size)
		}
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	n, err := io.Copy(w, iox.Reader(ctx, io.LimitReader(f, e.Content.Size)))
	if err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	if n != e.Content.Size {
		return fmt.Errorf("%s: %s holds %d bytes, not %d", e.Path, e.Content.Path, n, e.Content.Size)
	}
	return nil
}
