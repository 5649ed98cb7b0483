package publish

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"path"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/labbake/labbake/internal/iox"
)

// Format is how an image is carried in a registry.
type Format string

const (
	FormatArtifact      Format = "artifact"
	FormatContainerDisk Format = "containerdisk"
)

// Media types and annotations of what Push writes.
const (
	ArtifactType      = "application/vnd.labbake.disk.qcow2"
	MediaTypeDisk     = "application/vnd.labbake.disk.qcow2"
	MediaTypeManifest = "application/vnd.labbake.manifest.v1+json"
	MediaTypeSBOM     = "application/spdx+json"

	AnnotationLab          = "io.labbake.lab"
	AnnotationRole         = "io.labbake.role"
	AnnotationPlanDigest   = "io.labbake.plan-digest"
	AnnotationRecipeDigest = "io.labbake.recipe-digest"
	AnnotationEpoch        = "io.labbake.source-date-epoch"
	AnnotationVersion      = "io.labbake.version"

	// ContainerDiskOwner is the uid and gid of /disk/ROLE.qcow2: KubeVirt's
	// virt-launcher runs QEMU as 107 and reads the disk as that user.
	ContainerDiskOwner = 107
	// ContainerDiskDir holds the disk; metaDir the manifest and SBOM.
	ContainerDiskDir = "disk"
	metaDir          = "labbake"
)

// ParseFormat checks a --format value.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatArtifact, FormatContainerDisk:
		return f, nil
	}
	return "", fmt.Errorf("format %q: want %s or %s", s, FormatArtifact, FormatContainerDisk)
}

// blob is one blob a manifest references and how to read its bytes.
type blob struct {
	desc ispec.Descriptor
	open func() (io.ReadCloser, error)
}

// Built is an image in one format, ready to push: the manifest bytes and
// every blob, config first.
type Built struct {
	Format    Format
	Manifest  []byte
	MediaType string
	Digest    digest.Digest
	blobs     []blob
}

func bytesBlob(mediaType string, b []byte, annotations map[string]string) blob {
	return blob{
		desc: ispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b)), Annotations: annotations},
		open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
	}
}

func title(name string) map[string]string {
	return map[string]string{ispec.AnnotationTitle: name}
}

// Build lays img out in format f; version is labbake's, for the
// annotations. A containerDisk's layer is digested by writing it once
// (reading the qcow2 through).
func Build(img *Image, f Format, version string) (*Built, error) {
	switch f {
	case FormatArtifact:
		return buildArtifact(img, version)
	case FormatContainerDisk:
		return buildContainerDisk(img, version)
	}
	return nil, fmt.Errorf("format %q: want %s or %s", f, FormatArtifact, FormatContainerDisk)
}

func buildArtifact(img *Image, version string) (*Built, error) {
	d := digest.NewDigestFromEncoded(digest.SHA256, img.Info.Output.SHA256)
	size, qcow2 := img.Info.Output.Size, img.Qcow2()
	disk := blob{
		desc: ispec.Descriptor{MediaType: MediaTypeDisk, Digest: d, Size: size, Annotations: title(img.Role + ".qcow2")},
		open: func() (io.ReadCloser, error) { return openFile(qcow2, size) },
	}
	blobs := []blob{
		bytesBlob(ispec.MediaTypeEmptyJSON, ispec.DescriptorEmptyJSON.Data, nil),
		disk,
		bytesBlob(MediaTypeManifest, img.Manifest, title(img.Role+".manifest.json")),
	}
	if img.SBOM != nil {
		blobs = append(blobs, bytesBlob(MediaTypeSBOM, img.SBOM, title(img.Role+".spdx.json")))
	}
	m := ispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       blobs[0].desc,
		Annotations:  img.annotations(version),
	}
	for _, b := range blobs[1:] {
		m.Layers = append(m.Layers, b.desc)
	}
	return finish(FormatArtifact, m, blobs)
}

func buildContainerDisk(img *Image, version string) (*Built, error) {
	h := sha256.New()
	n, err := writeDiskLayer(h, img)
	if err != nil {
		return nil, err
	}
	layerDigest := digest.NewDigest(digest.SHA256, h)
	layer := blob{
		desc: ispec.Descriptor{MediaType: ispec.MediaTypeImageLayer, Digest: layerDigest, Size: n},
		open: func() (io.ReadCloser, error) {
			pr, pw := io.Pipe()
			go func() {
				_, err := writeDiskLayer(pw, img)
				pw.CloseWithError(err)
			}()
			return pr, nil
		},
	}
	annotations := img.annotations(version)
	created := img.Created()
	config := ispec.Image{
		Created:  &created,
		Platform: ispec.Platform{Architecture: "amd64", OS: "linux"},
		Config:   ispec.ImageConfig{Labels: annotations},
		RootFS:   ispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDigest}},
		History:  []ispec.History{{Created: &created, CreatedBy: "labbake publish --format containerdisk"}},
	}
	cb, err := json.Marshal(config)
	if err != nil {
		return nil, err
	}
	blobs := []blob{bytesBlob(ispec.MediaTypeImageConfig, cb, nil), layer}
	m := ispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   ispec.MediaTypeImageManifest,
		Config:      blobs[0].desc,
		Layers:      []ispec.Descriptor{layer.desc},
		Annotations: annotations,
	}
	return finish(FormatContainerDisk, m, blobs)
}

func finish(f Format, m ispec.Manifest, blobs []blob) (*Built, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &Built{Format: f, Manifest: b, MediaType: ispec.MediaTypeImageManifest, Digest: digest.FromBytes(b), blobs: blobs}, nil
}

// writeDiskLayer writes the containerDisk's layer, an uncompressed tar:
// disk/ and disk/ROLE.qcow2 owned by ContainerDiskOwner, then labbake/
// with the manifest JSON and the SBOM, owned by root; every time the
// bake's epoch. It returns the bytes written. The qcow2's bytes are
// checked against the manifest's sha256 as they pass.
func writeDiskLayer(w io.Writer, img *Image) (int64, error) {
	cw := &iox.CountingWriter{W: w}
	tw := tar.NewWriter(cw)
	mtime := img.Created()
	dir := func(name string, owner int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o555, Uid: owner, Gid: owner, ModTime: mtime})
	}
	file := func(name string, mode int64, owner int, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Uid: owner, Gid: owner, Size: size, ModTime: mtime}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	if err := dir(ContainerDiskDir, ContainerDiskOwner); err != nil {
		return 0, err
	}
	f, err := openFile(img.Qcow2(), img.Info.Output.Size)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := sha256.New()
	if err := file(path.Join(ContainerDiskDir, img.Role+".qcow2"), 0o440, ContainerDiskOwner, img.Info.Output.Size, io.TeeReader(f, h)); err != nil {
		return 0, fmt.Errorf("%s: %w", img.Qcow2(), err)
	}
	if got := fmt.Sprintf("%x", h.Sum(nil)); got != img.Info.Output.SHA256 {
		return 0, fmt.Errorf("%s: sha256 %s, its manifest says %s (changed since it was built: build again)", img.Qcow2(), got, img.Info.Output.SHA256)
	}
	if err := dir(metaDir, 0); err != nil {
		return 0, err
	}
	if err := file(path.Join(metaDir, img.Role+".manifest.json"), 0o444, 0, int64(len(img.Manifest)), bytes.NewReader(img.Manifest)); err != nil {
		return 0, err
	}
	if img.SBOM != nil {
		if err := file(path.Join(metaDir, img.Role+".spdx.json"), 0o444, 0, int64(len(img.SBOM)), bytes.NewReader(img.SBOM)); err != nil {
			return 0, err
		}
	}
	if err := tw.Close(); err != nil {
		return 0, err
	}
	return cw.N, nil
}
