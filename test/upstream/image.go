package upstream

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImageSpec describes a single-layer linux/amd64 image assembled from files,
// without a container engine.
type ImageSpec struct {
	Repository string // path in the registry, e.g. coredns/coredns
	// Registry is the upstream registry the image stands in for
	// (registry.k8s.io, quay.io, ghcr.io; UpstreamRegistries): the image's
	// name in a lab is Registry/Repository:Tag.
	Registry     string
	Tag          string // e.g. v1.14.6
	Files        []ImageFile
	Entrypoint   []string
	Cmd          []string
	User         string   // e.g. 65532:65532
	ExposedPorts []string // e.g. 53/tcp
	Env          []string
	// Created dates the config, the history and every file of the layer.
	Created time.Time
}

// ImageFile is one regular file of the image's layer.
type ImageFile struct {
	Path string // absolute path in the image, e.g. /coredns
	Src  string // file to read, or
	Data []byte // its content
	Mode int64  // permission bits
	// Capabilities are file capabilities (security.capability), by bit
	// number, e.g. CapNetBindService; all are permitted and effective.
	Capabilities []uint
}

// CapNetBindService is CAP_NET_BIND_SERVICE, which lets a non-root program
// bind ports below 1024.
const CapNetBindService = 10

// Image is an image written as an OCI layout.
type Image struct {
	Spec     ImageSpec
	Layout   string        // the OCI layout directory; "oci:"+Layout+":"+Tag names it
	Manifest digest.Digest // the manifest's digest, which a registry keeps
	Config   digest.Digest
	Layer    digest.Digest // the compressed layer blob
	Size     int64         // config plus layer bytes
}

// Reference is the image's name in a registry at host (host:port).
func (img *Image) Reference(host string) string {
	return host + "/" + img.Spec.Repository + ":" + img.Spec.Tag
}

// Upstream is the image's name as a lab writes it, e.g.
// quay.io/calico/node:v3.31.3.
func (img *Image) Upstream() string {
	return img.Reference(img.Spec.Registry)
}

// UpstreamRegistries are the registries whose images are pushed to the
// local registry; RegistriesConf sends each there.
var UpstreamRegistries = []string{"registry.k8s.io", "quay.io", "ghcr.io"}

// baseFiles are what a distroless static base gives every image here: the
// root and nonroot (65532) users and groups, and /tmp.
func baseFiles() []member {
	return []member{
		{name: "etc/passwd", data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"), mode: 0o644},
		{name: "etc/group", data: []byte("root:x:0:\nnonroot:x:65532:\n"), mode: 0o644},
		{name: "tmp", dir: true, mode: 0o1777},
	}
}

// WriteImage writes spec as an OCI image layout in dir (created if missing,
// which must not hold another layout). The same spec gives the same bytes.
func WriteImage(dir string, spec ImageSpec) (*Image, error) {
	if spec.Repository == "" || spec.Tag == "" || spec.Created.IsZero() || spec.Registry == "" {
		return nil, fmt.Errorf("image %s:%s: registry, repository, tag and created time are required", spec.Repository, spec.Tag)
	}
	name := spec.Repository + ":" + spec.Tag
	members := baseFiles()
	for _, f := range spec.Files {
		if !strings.HasPrefix(f.Path, "/") {
			return nil, fmt.Errorf("image %s: file %q: want an absolute path", name, f.Path)
		}
		m := member{name: strings.TrimPrefix(f.Path, "/"), src: f.Src, data: f.Data, mode: f.Mode}
		if len(f.Capabilities) > 0 {
			m.xattrs = map[string]string{"security.capability": string(fileCaps(f.Capabilities))}
		}
		members = append(members, m)
	}
	raw, err := tarBytes(members, spec.Created, true)
	if err != nil {
		return nil, fmt.Errorf("image %s: layer: %w", name, err)
	}
	gz, err := gzipBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("image %s: layer: %w", name, err)
	}
	created := spec.Created.UTC()
	ports := map[string]struct{}{}
	for _, p := range spec.ExposedPorts {
		ports[p] = struct{}{}
	}
	if len(ports) == 0 {
		ports = nil
	}
	var files []string
	for _, f := range spec.Files {
		files = append(files, f.Path)
	}
	cfg := imgspec.Image{
		Created:  &created,
		Platform: imgspec.Platform{Architecture: "amd64", OS: "linux"},
		Config: imgspec.ImageConfig{
			User:         spec.User,
			ExposedPorts: ports,
			Env:          spec.Env,
			Entrypoint:   spec.Entrypoint,
			Cmd:          spec.Cmd,
			WorkingDir:   "/",
		},
		RootFS: imgspec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(raw)}},
		History: []imgspec.History{{
			Created:   &created,
			CreatedBy: "labbake test/upstream: " + strings.Join(files, " "),
		}},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, err
	}
	put := func(mediaType string, data []byte) (imgspec.Descriptor, error) {
		d := digest.FromBytes(data)
		if err := os.WriteFile(filepath.Join(blobs, d.Encoded()), data, 0o644); err != nil {
			return imgspec.Descriptor{}, err
		}
		return imgspec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}, nil
	}
	cfgDesc, err := put(imgspec.MediaTypeImageConfig, cfgJSON)
	if err != nil {
		return nil, err
	}
	layerDesc, err := put(imgspec.MediaTypeImageLayerGzip, gz)
	if err != nil {
		return nil, err
	}
	manifest, err := json.Marshal(imgspec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: imgspec.MediaTypeImageManifest,
		Config:    cfgDesc,
		Layers:    []imgspec.Descriptor{layerDesc},
	})
	if err != nil {
		return nil, err
	}
	mDesc, err := put(imgspec.MediaTypeImageManifest, manifest)
	if err != nil {
		return nil, err
	}
	mDesc.Annotations = map[string]string{imgspec.AnnotationRefName: spec.Tag}
	index, err := json.Marshal(imgspec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: imgspec.MediaTypeImageIndex,
		Manifests: []imgspec.Descriptor{mDesc},
	})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), index, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, imgspec.ImageLayoutFile), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return nil, err
	}
	return &Image{
		Spec: spec, Layout: dir, Manifest: mDesc.Digest, Config: cfgDesc.Digest, Layer: layerDesc.Digest,
		Size: cfgDesc.Size + layerDesc.Size,
	}, nil
}

// fileCaps is a security.capability value (struct vfs_cap_data, revision
// 2) with caps permitted and effective.
func fileCaps(caps []uint) []byte {
	var permitted [2]uint32
	for _, c := range caps {
		permitted[c/32] |= 1 << (c % 32)
	}
	const revision2, effective = 0x02000000, 0x000001
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], revision2|effective)
	binary.LittleEndian.PutUint32(b[4:], permitted[0])  // data[0].permitted
	binary.LittleEndian.PutUint32(b[12:], permitted[1]) // data[1].permitted; inheritable stays 0
	return b
}
