package publish

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/labbake/labbake/internal/iox"
)

// Image is one role's baked outputs in an output dir, as Push reads them
// and Pull writes them.
type Image struct {
	Role     string
	Dir      string // the output dir
	Manifest []byte // ROLE.manifest.json as written by the bake
	SBOM     []byte // ROLE.spdx.json; nil when the bake wrote none
	Info     ManifestInfo
}

// ManifestInfo is what publishing needs of ROLE.manifest.json.
type ManifestInfo struct {
	Lab          string `json:"lab"`
	Role         string `json:"role"`
	PlanDigest   string `json:"plan_digest"`
	RecipeDigest string `json:"recipe_digest"`
	Epoch        int64  `json:"epoch"`
	Output       struct {
		File   string `json:"file"`
		SHA256 string `json:"sha256"`
		Size   int64  `json:"size"`
	} `json:"output"`
}

var (
	roleRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// ErrNotBaked is wrapped when a role has no complete outputs.
	ErrNotBaked = errors.New("not baked")
)

// Qcow2 is the path of the image's disk.
func (i *Image) Qcow2() string { return filepath.Join(i.Dir, i.Role+".qcow2") }

// Created is the bake's epoch as the OCI created time.
func (i *Image) Created() time.Time { return time.Unix(i.Info.Epoch, 0).UTC() }

// parseManifestInfo reads and checks what publishing relies on.
func parseManifestInfo(b []byte, name string) (ManifestInfo, error) {
	var m ManifestInfo
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", name, err)
	}
	switch {
	case !roleRe.MatchString(m.Role):
		return m, fmt.Errorf("%s: role %q is not a role name", name, m.Role)
	case m.Output.File != m.Role+".qcow2":
		return m, fmt.Errorf("%s: output.file %q, want %s.qcow2", name, m.Output.File, m.Role)
	case !iox.IsSHA256Hex(m.Output.SHA256):
		return m, fmt.Errorf("%s: output.sha256 %q is not a sha256", name, m.Output.SHA256)
	case m.Output.Size <= 0:
		return m, fmt.Errorf("%s: output.size %d", name, m.Output.Size)
	}
	return m, nil
}

// Load reads role's outputs from dir: the manifest JSON, the SBOM if the
// bake wrote one, and checks the qcow2 is there with the size the
// manifest gives (its sha256 is the manifest's, checked again where the
// bytes are read).
func Load(dir, role string) (*Image, error) {
	if !roleRe.MatchString(role) {
		return nil, fmt.Errorf("role %q: not a role name", role)
	}
	name := filepath.Join(dir, role+".manifest.json")
	b, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w: no %s (labbake build %s first)", role, ErrNotBaked, name, role)
	}
	if err != nil {
		return nil, err
	}
	info, err := parseManifestInfo(b, name)
	if err != nil {
		return nil, err
	}
	if info.Role != role {
		return nil, fmt.Errorf("%s: role %q, want %q", name, info.Role, role)
	}
	img := &Image{Role: role, Dir: dir, Manifest: b, Info: info}
	fi, err := os.Stat(img.Qcow2())
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", role, ErrNotBaked, err)
	}
	if fi.Size() != info.Output.Size {
		return nil, fmt.Errorf("%s: %s is %d bytes, its manifest says %d: %w (a build is under way, or the file was changed)",
			role, img.Qcow2(), fi.Size(), info.Output.Size, ErrNotBaked)
	}
	sbom, err := os.ReadFile(filepath.Join(dir, role+".spdx.json"))
	switch {
	case err == nil:
		img.SBOM = sbom
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	return img, nil
}

// annotations are the manifest annotations of both formats.
func (i *Image) annotations(version string) map[string]string {
	a := map[string]string{
		AnnotationLab:                      i.Info.Lab,
		AnnotationRole:                     i.Role,
		AnnotationPlanDigest:               i.Info.PlanDigest,
		AnnotationRecipeDigest:             i.Info.RecipeDigest,
		AnnotationEpoch:                    strconv.FormatInt(i.Info.Epoch, 10),
		"org.opencontainers.image.created": i.Created().Format(time.RFC3339),
	}
	if version != "" {
		a[AnnotationVersion] = version
	}
	return a
}

// openFile opens path and checks it still has size bytes.
func openFile(path string, size int64) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != size {
		_ = f.Close()
		if err == nil {
			err = fmt.Errorf("%s changed size: %d bytes, expected %d", path, fi.Size(), size)
		}
		return nil, err
	}
	return f, nil
}
