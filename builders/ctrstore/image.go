package ctrstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/opencontainers/go-digest"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker/reference"
)

// Media types of Docker's image manifest v2 schema 2, which registries
// still serve beside OCI's.
const (
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerConfig   = "application/vnd.docker.container.image.v1+json"
)

// Blob is one content blob of an image: its descriptor and the host file
// holding its bytes (a blob of labbake's cache).
type Blob struct {
	Digest    string // "sha256:HEX"
	MediaType string
	Size      int64
	Path      string // host file with the bytes; read, never changed
}

// Image is one image to preload: a platform manifest, its config and its
// layers, under the name a recipe gives it.
type Image struct {
	// Ref is the image's name as CRI normalizes it:
	// registry.k8s.io/pause:3.10.2, docker.io/library/nginx:latest or
	// REPO@sha256:HEX.
	Ref string
	// Pinned asks for CRI's pinned label: the kubelet's image garbage
	// collection never removes the image (the sandbox image).
	Pinned   bool
	Manifest Blob
	Config   Blob
	Layers   []Blob
}

// NormalizeRef names ref as the CRI plugin does: a bare name means
// docker.io/library, a missing tag :latest, and a reference with both a
// tag and a digest keeps only the digest. A docker:// prefix is dropped.
func NormalizeRef(ref string) (string, error) {
	named, err := reference.ParseDockerRef(strings.TrimPrefix(ref, "docker://"))
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	return named.String(), nil
}

// maxManifest bounds a manifest read from the cache, as the OCI source
// does.
const maxManifest = 8 << 20

// manifestJSON is what ParseManifest reads of an OCI image manifest or a
// Docker schema 2 manifest: both have this shape.
type manifestJSON struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	Config        imgspec.Descriptor   `json:"config"`
	Layers        []imgspec.Descriptor `json:"layers"`
	Manifests     json.RawMessage      `json:"manifests"`
}

// ParseManifest reads an image manifest (OCI or Docker schema 2, not a
// list or index) and returns it as the Image's Manifest, Config and Layers
// descriptors, without host paths. The manifest's media type is its
// mediaType field, or OCI's when an OCI manifest leaves it out.
func ParseManifest(b []byte) (manifest Blob, config Blob, layers []Blob, err error) {
	if len(b) > maxManifest {
		return Blob{}, Blob{}, nil, fmt.Errorf("manifest of %d bytes: larger than %d", len(b), maxManifest)
	}
	var m manifestJSON
	if err := json.Unmarshal(b, &m); err != nil {
		return Blob{}, Blob{}, nil, fmt.Errorf("parsing manifest: %w", err)
	}
	if m.SchemaVersion != 2 {
		return Blob{}, Blob{}, nil, fmt.Errorf("manifest schemaVersion %d: want 2", m.SchemaVersion)
	}
	switch m.MediaType {
	case "":
		if m.Manifests != nil {
			return Blob{}, Blob{}, nil, errors.New("an image index, not an image manifest")
		}
		m.MediaType = imgspec.MediaTypeImageManifest
	case imgspec.MediaTypeImageManifest, MediaTypeDockerManifest:
	default:
		return Blob{}, Blob{}, nil, fmt.Errorf("media type %q is not an image manifest", m.MediaType)
	}
	manifest = Blob{Digest: digest.FromBytes(b).String(), MediaType: m.MediaType, Size: int64(len(b))}
	if config, err = descriptor(m.Config, "config"); err != nil {
		return Blob{}, Blob{}, nil, err
	}
	for i, l := range m.Layers {
		b, err := descriptor(l, fmt.Sprintf("layer %d", i))
		if err != nil {
			return Blob{}, Blob{}, nil, err
		}
		layers = append(layers, b)
	}
	return manifest, config, layers, nil
}

// descriptor checks a descriptor of a manifest: a sha256 digest, a media
// type and a size.
func descriptor(d imgspec.Descriptor, what string) (Blob, error) {
	// Validate first: Algorithm panics on a digest without a colon.
	if err := d.Digest.Validate(); err != nil {
		return Blob{}, fmt.Errorf("%s digest %q: %w", what, d.Digest, err)
	}
	if d.Digest.Algorithm() != digest.SHA256 {
		return Blob{}, fmt.Errorf("%s digest %q: want sha256:HEX", what, d.Digest)
	}
	if d.MediaType == "" {
		return Blob{}, fmt.Errorf("%s %s has no media type", what, d.Digest)
	}
	if d.Size < 0 {
		return Blob{}, fmt.Errorf("%s %s has size %d", what, d.Digest, d.Size)
	}
	return Blob{Digest: d.Digest.String(), MediaType: d.MediaType, Size: d.Size}, nil
}

// record is one image record of the metadata database.
type record struct {
	name   string
	target Blob
	pinned bool
}

// records returns the image records CRI makes when it pulls img: the
// image ID (the config digest), the tag when the name has one,
// NAME@MANIFEST, and NAME@DIGEST when the name carries a digest other than
// the manifest's (an index the platform manifest was chosen from).
func (img *Image) records() ([]record, error) {
	named, err := reference.ParseDockerRef(img.Ref)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", img.Ref, err)
	}
	if named.String() != img.Ref {
		return nil, fmt.Errorf("image %q: not normalized (want %q)", img.Ref, named.String())
	}
	repo := reference.TrimNamed(named)
	names := []string{img.Config.Digest}
	if t, ok := named.(reference.NamedTagged); ok {
		names = append(names, t.String())
	}
	names = append(names, repo.String()+"@"+img.Manifest.Digest)
	if c, ok := named.(reference.Canonical); ok && c.Digest().String() != img.Manifest.Digest {
		names = append(names, c.String())
	}
	out := make([]record, 0, len(names))
	for _, n := range names {
		out = append(out, record{name: n, target: img.Manifest, pinned: img.Pinned})
	}
	return out, nil
}

// source returns the host and repository of the image's name, as
// containerd's distribution-source label has them: the registry's host
// name without its port, and the path.
func (img *Image) source() (host, repo string, err error) {
	named, err := reference.ParseDockerRef(img.Ref)
	if err != nil {
		return "", "", fmt.Errorf("image %q: %w", img.Ref, err)
	}
	host = reference.Domain(named)
	if h, _, ok := strings.Cut(host, ":"); ok && !strings.HasPrefix(host, "[") {
		host = h
	} else if strings.HasPrefix(host, "[") {
		if i := strings.Index(host, "]"); i > 0 {
			host = host[1:i]
		}
	}
	return host, reference.Path(named), nil
}

// blobs returns the image's manifest, config and layers.
func (img *Image) blobs() []Blob {
	return append([]Blob{img.Manifest, img.Config}, img.Layers...)
}

// NewImage makes the Image named ref (normalized here) from the manifest
// with digest manifestDigest, finding the host file of every blob with
// blobPath (labbake's cache gives them). It reads the manifest and checks
// its digest; the other blobs are checked when the store is added.
func NewImage(ref string, pinned bool, manifestDigest string, blobPath func(digest string) (string, error)) (Image, error) {
	name, err := NormalizeRef(ref)
	if err != nil {
		return Image{}, err
	}
	mp, err := blobPath(manifestDigest)
	if err != nil {
		return Image{}, fmt.Errorf("image %s: manifest %s: %w", name, manifestDigest, err)
	}
	b, err := readCapped(mp, maxManifest)
	if err != nil {
		return Image{}, fmt.Errorf("image %s: manifest %s: %w", name, manifestDigest, err)
	}
	m, c, layers, err := ParseManifest(b)
	if err != nil {
		return Image{}, fmt.Errorf("image %s: manifest %s: %w", name, manifestDigest, err)
	}
	if m.Digest != manifestDigest {
		return Image{}, fmt.Errorf("image %s: manifest %s: the bytes have digest %s", name, manifestDigest, m.Digest)
	}
	img := Image{Ref: name, Pinned: pinned, Manifest: m, Config: c, Layers: layers}
	img.Manifest.Path = mp
	if img.Config.Path, err = blobPath(c.Digest); err != nil {
		return Image{}, fmt.Errorf("image %s: config %s: %w", name, c.Digest, err)
	}
	for i := range img.Layers {
		if img.Layers[i].Path, err = blobPath(img.Layers[i].Digest); err != nil {
			return Image{}, fmt.Errorf("image %s: layer %s: %w", name, img.Layers[i].Digest, err)
		}
	}
	return img, nil
}

// readCapped reads the file p when it holds at most limit bytes.
func readCapped(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return b, nil
}
