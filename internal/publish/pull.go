package publish

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"

	"github.com/labbake/labbake/internal/atomicfile"
	"github.com/labbake/labbake/internal/source"
	"github.com/labbake/labbake/internal/source/oci"
)

// ErrVerify is wrapped when pulled bytes are not what they claim to be.
var ErrVerify = errors.New("verification failed")

// Pulled is what Pull placed in the output dir.
type Pulled struct {
	Ref    string
	Format Format
	Digest string // the manifest's
	Role   string
	Files  []string // paths written
}

// PullOptions are Pull's own settings.
type PullOptions struct {
	// PolicyPath is the signature policy; "" means the system's
	// policy.json, else accept any image.
	PolicyPath string
}

// Pull fetches the image ref names (REPO:TAG or REPO@sha256:…), in
// either format, verifies it and places ROLE.qcow2, ROLE.manifest.json
// and ROLE.spdx.json (if it carries one) in outDir, replacing what was
// there only once everything is verified. On any failure outDir is left
// as it was.
func Pull(ctx context.Context, o *Options, po PullOptions, ref, outDir string) (*Pulled, error) {
	named, err := reference.ParseNormalizedNamed(strings.TrimPrefix(ref, "docker://"))
	if err != nil {
		return nil, fmt.Errorf("%q: %w", ref, err)
	}
	named = reference.TagNameOnly(named)
	name := named.String()
	sys, err := o.systemContext()
	if err != nil {
		return nil, err
	}
	iref, err := docker.NewReference(named)
	if err != nil {
		return nil, err
	}
	src, err := iref.NewImageSource(ctx, sys)
	if err != nil {
		return nil, registryError(name, err)
	}
	defer func() { _ = src.Close() }()
	if err := oci.CheckPolicy(ctx, po.PolicyPath, sys, src, o.log()); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	manBlob, manDigest, err := readManifest(ctx, src, sys, named)
	if err != nil {
		return nil, err
	}
	var m ispec.Manifest
	if err := json.Unmarshal(manBlob, &m); err != nil || m.MediaType != ispec.MediaTypeImageManifest && manifest.GuessMIMEType(manBlob) != ispec.MediaTypeImageManifest {
		return nil, fmt.Errorf("%s: %w: the manifest %s is not an OCI image manifest", name, ErrVerify, manDigest)
	}

	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(outDir, ".pull-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	p := &puller{o: o, src: src, name: name, work: work}
	var files map[string]string // file name in outDir → path in work
	var f Format
	switch {
	case m.ArtifactType == ArtifactType || m.Config.MediaType == ArtifactType:
		f = FormatArtifact
		files, err = p.artifact(ctx, m)
	case m.Config.MediaType == ispec.MediaTypeImageConfig && len(m.Layers) == 1:
		f = FormatContainerDisk
		files, err = p.containerDisk(ctx, m)
	default:
		err = fmt.Errorf("%s: %s is neither a labbake artifact (artifactType %s) nor a containerDisk of one layer", name, manDigest, ArtifactType)
	}
	if err != nil {
		return nil, err
	}
	role, err := verifyFiles(name, files)
	if err != nil {
		return nil, err
	}
	out := &Pulled{Ref: name, Format: f, Digest: manDigest.String(), Role: role}
	// The qcow2 goes in first and the manifest last: a reader that finds
	// a manifest finds the image it describes.
	for _, n := range []string{role + ".qcow2", role + ".spdx.json", role + ".manifest.json"} {
		tmp, ok := files[n]
		if !ok {
			continue
		}
		dst := filepath.Join(outDir, n)
		if err := os.Rename(tmp, dst); err != nil {
			return nil, err
		}
		out.Files = append(out.Files, dst)
	}
	if err := atomicfile.SyncDir(outDir); err != nil {
		return nil, err
	}
	return out, nil
}

// readManifest reads the manifest ref names, choosing linux/amd64 from a
// list, and checks it against the digest the reference gives, if any.
func readManifest(ctx context.Context, src types.ImageSource, sys *types.SystemContext, named reference.Named) ([]byte, digest.Digest, error) {
	name := named.String()
	b, mt, err := src.GetManifest(ctx, nil)
	if err != nil {
		return nil, "", registryError(name, err)
	}
	if d, ok := named.(reference.Digested); ok {
		if ok, err := manifest.MatchesDigest(b, d.Digest()); err != nil || !ok {
			return nil, "", fmt.Errorf("%s: %w: the registry's manifest does not have that digest", name, ErrVerify)
		}
	}
	if mt == "" {
		mt = manifest.GuessMIMEType(b)
	}
	if manifest.MIMETypeIsMultiImage(mt) {
		list, err := manifest.ListFromBlob(b, mt)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", name, err)
		}
		inst, err := list.ChooseInstance(sys)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", name, err)
		}
		// UnparsedInstance checks the manifest has the digest asked for.
		if b, _, err = image.UnparsedInstance(src, &inst).Manifest(ctx); err != nil {
			return nil, "", registryError(name, err)
		}
	}
	d, err := manifest.Digest(b)
	if err != nil {
		return nil, "", err
	}
	return b, d, nil
}

type puller struct {
	o    *Options
	src  types.ImageSource
	name string
	work string
}

// blob streams the blob d names into w, checking its size and digest.
func (p *puller) blob(ctx context.Context, d ispec.Descriptor, w io.Writer) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("%s: %w: %w", p.name, ErrVerify, err)
	}
	rc, _, err := p.src.GetBlob(ctx, types.BlobInfo{Digest: d.Digest, Size: d.Size}, none.NoCache)
	if err != nil {
		return registryError(p.name, err)
	}
	defer rc.Close()
	var r io.Reader = io.LimitReader(rc, d.Size+1)
	var pr *source.Progress
	if p.o.Progress != nil && d.Size > 1<<20 {
		pr = newProgress(p.o, p.name+" "+d.Digest.Encoded()[:12], d.Size)
		r = &progressReader{r: r, p: pr}
	}
	v := d.Digest.Verifier()
	n, err := io.Copy(io.MultiWriter(w, v), r)
	switch {
	case err != nil:
		err = registryError(p.name, err)
	case n != d.Size || !v.Verified():
		err = fmt.Errorf("%s: %w: blob %s: got %d bytes of another digest, want %d bytes", p.name, ErrVerify, d.Digest, n, d.Size)
	}
	if pr != nil {
		if err != nil {
			pr.Abort()
		} else {
			pr.Done()
		}
	}
	return err
}

// toFile writes blob d to a new file of the work dir.
func (p *puller) toFile(ctx context.Context, d ispec.Descriptor, name string) (string, error) {
	dst := filepath.Join(p.work, name)
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return "", err
	}
	err = p.blob(ctx, d, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return dst, err
}

// artifact fetches the titled layers: ROLE.qcow2, ROLE.manifest.json,
// ROLE.spdx.json.
func (p *puller) artifact(ctx context.Context, m ispec.Manifest) (map[string]string, error) {
	files := map[string]string{}
	for _, l := range m.Layers {
		t := l.Annotations[ispec.AnnotationTitle]
		if t == "" || t != path.Base(t) || strings.HasPrefix(t, ".") || !wantedFile(t) {
			return nil, fmt.Errorf("%s: layer %s has title %q: not a file labbake publishes", p.name, l.Digest, t)
		}
		if _, dup := files[t]; dup {
			return nil, fmt.Errorf("%s: two layers titled %q", p.name, t)
		}
		dst, err := p.toFile(ctx, l, t)
		if err != nil {
			return nil, err
		}
		files[t] = dst
	}
	return files, nil
}

// wantedFile: ROLE.qcow2, ROLE.manifest.json, ROLE.spdx.json.
func wantedFile(name string) bool {
	for _, ext := range []string{".qcow2", ".manifest.json", ".spdx.json"} {
		if r, ok := strings.CutSuffix(name, ext); ok && roleRe.MatchString(r) {
			return true
		}
	}
	return false
}

// containerDisk streams the one layer through a tar reader, taking
// disk/ROLE.qcow2 and labbake/ROLE.{manifest,spdx}.json.
func (p *puller) containerDisk(ctx context.Context, m ispec.Manifest) (map[string]string, error) {
	l := m.Layers[0]
	if l.MediaType != ispec.MediaTypeImageLayer && l.MediaType != "application/vnd.docker.image.rootfs.diff.tar" {
		return nil, fmt.Errorf("%s: layer %s is %s: labbake's containerDisks have an uncompressed layer", p.name, l.Digest, l.MediaType)
	}
	pr, pw := io.Pipe()
	fetched := make(chan error, 1)
	go func() {
		err := p.blob(ctx, l, pw)
		pw.CloseWithError(err)
		fetched <- err
	}()
	files, err := p.untar(pr)
	// Drain what the tar reader left (padding), so the digest is checked.
	_, _ = io.Copy(io.Discard, pr)
	if ferr := <-fetched; ferr != nil {
		return nil, ferr
	}
	if err != nil {
		return nil, err
	}
	return files, nil
}

func (p *puller) untar(r io.Reader) (map[string]string, error) {
	files := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w: reading the layer: %w", p.name, ErrVerify, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		clean := path.Clean(strings.TrimPrefix(h.Name, "/"))
		dir, base := path.Split(clean)
		dir = strings.TrimSuffix(dir, "/")
		take := dir == ContainerDiskDir && strings.HasSuffix(base, ".qcow2") && wantedFile(base) ||
			dir == metaDir && wantedFile(base) && !strings.HasSuffix(base, ".qcow2")
		if !take {
			continue
		}
		if _, dup := files[base]; dup {
			return nil, fmt.Errorf("%s: the layer holds %s twice", p.name, base)
		}
		dst := filepath.Join(p.work, base)
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", p.name, clean, err)
		}
		files[base] = dst
	}
}

// verifyFiles checks what was fetched: one role's manifest JSON, its
// qcow2 with the sha256 and size the manifest gives, nothing else but
// its SBOM. It returns the role.
func verifyFiles(name string, files map[string]string) (string, error) {
	var role string
	for n := range files {
		if r, ok := strings.CutSuffix(n, ".manifest.json"); ok {
			role = r
		}
	}
	if role == "" {
		return "", fmt.Errorf("%s: %w: no ROLE.manifest.json in the image", name, ErrVerify)
	}
	for n := range files {
		if n != role+".qcow2" && n != role+".manifest.json" && n != role+".spdx.json" {
			return "", fmt.Errorf("%s: %w: %s is not of role %s", name, ErrVerify, n, role)
		}
	}
	mb, err := os.ReadFile(files[role+".manifest.json"])
	if err != nil {
		return "", err
	}
	info, err := parseManifestInfo(mb, role+".manifest.json")
	if err != nil {
		return "", fmt.Errorf("%s: %w: %w", name, ErrVerify, err)
	}
	if info.Role != role {
		return "", fmt.Errorf("%s: %w: %s.manifest.json is of role %q", name, ErrVerify, role, info.Role)
	}
	q, ok := files[role+".qcow2"]
	if !ok {
		return "", fmt.Errorf("%s: %w: no %s.qcow2 in the image", name, ErrVerify, role)
	}
	f, err := os.Open(q)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", err
	}
	if got := fmt.Sprintf("%x", h.Sum(nil)); n != info.Output.Size || got != info.Output.SHA256 {
		return "", fmt.Errorf("%s: %w: %s.qcow2 is %d bytes with sha256 %s; its manifest says %d bytes, %s",
			name, ErrVerify, role, n, got, info.Output.Size, info.Output.SHA256)
	}
	return role, nil
}
