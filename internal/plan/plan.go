package plan

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/recipe"
	"github.com/labbake/labbake/internal/source/gobuild"
)

// Format is the version of the plan's shape and of the way labbake turns a
// plan into bytes. Changing what a build writes for the same inputs means
// bumping it, so that digests and derived UUIDs change too.
const Format = 2

// DefaultEpoch is the time written into images when neither
// SOURCE_DATE_EPOCH nor lab.yaml's epoch is set: 2025-01-01T00:00:00Z.
const DefaultEpoch int64 = 1735689600

// Plan is everything a build of one role depends on, each input pinned by
// its digest. Two builds of equal plans write equal bytes.
type Plan struct {
	Format       int     `json:"format"`
	Lab          string  `json:"lab"`
	Role         string  `json:"role"`
	Epoch        int64   `json:"epoch"`
	EpochSource  string  `json:"epoch_source"`
	RecipeDigest string  `json:"recipe_digest"`
	Inputs       []Input `json:"inputs"`
	Disk         Disk    `json:"disk"`
	Kernel       Kernel  `json:"kernel"`
	// Containerd is where the images inputs are preloaded; nil when the
	// recipe preloads none.
	Containerd *Containerd `json:"containerd,omitempty"`
	// Digest is the sha256 of the plan's JSON with Digest empty.
	Digest string `json:"digest"`
}

// Kind is what an input is and where its bytes come from.
type Kind string

// The kinds of input. Those from outside the lab dir (Remote) are pinned
// by a Resolver and read from the cache; the others are hashed in place.
const (
	BaseTar         Kind = "base-tar"
	BaseDir         Kind = "base-dir"
	BaseDebian      Kind = "base-debian"
	BaseOCI         Kind = "base-oci"
	LayerTar        Kind = "layer-tar"
	LayerOCI        Kind = "layer-oci"
	ArtifactURL     Kind = "artifact-url"
	ArtifactArchive Kind = "artifact-archive"
	ArtifactImage   Kind = "artifact-image"
	ArtifactFile    Kind = "artifact-file"
	// ArtifactGo is a Go program built from its module (go:): the
	// binary, or a tar of the binaries for several packages.
	ArtifactGo Kind = "go"
	// ContainerImage is an image preloaded into containerd's store.
	ContainerImage Kind = "image"
	// ImageBuilt is an image preloaded into containerd's store that the
	// bake assembles from files (images[].build): its files are inputs of
	// their own (images[N].build.files[M], kinds as artifacts), its digest
	// is the manifest's the bake made of them.
	ImageBuilt Kind = "image-built"
	Unit       Kind = "unit"
	Overlay    Kind = "overlay"
)

// Remote reports whether inputs of kind k come from outside the lab dir.
func (k Kind) Remote() bool {
	switch k {
	case BaseDebian, BaseOCI, LayerOCI, ArtifactURL, ArtifactArchive, ArtifactImage, ArtifactGo, ContainerImage:
		return true
	}
	return false
}

// Image reports whether inputs of kind k are OCI images (a manifest, a
// config and layers).
func (k Kind) Image() bool {
	return k == BaseOCI || k == LayerOCI || k == ArtifactImage || k == ContainerImage || k == ImageBuilt
}

// pinnedFirst reports whether in is pinned before a build starts (by a
// plan made with RemoteOnly): remote inputs, and a built image with its
// files, local ones too, since the image is made of exactly those bytes
// before the build uses it.
func pinnedFirst(in Input) bool {
	return in.Kind.Remote() || in.Kind == ImageBuilt || strings.HasPrefix(in.Field, "images[")
}

// Input is one pinned input of a build.
type Input struct {
	Field  string   `json:"field"`            // the recipe field: base, layers[0], artifacts[2], units[1]…
	Kind   Kind     `json:"kind"`             // one of the Kind constants
	Name   string   `json:"name"`             // path relative to the lab dir, image reference, artifact dest, MODULE@VERSION/PKG of a go input, unit or overlay name
	Source string   `json:"source,omitempty"` // URL or image reference it comes from
	Pos    string   `json:"pos"`              // where the recipe names it: FILE:LINE:COL
	Digest string   `json:"digest"`           // content digest; an image's manifest digest
	Size   int64    `json:"size,omitempty"`
	Config string   `json:"config,omitempty"` // an image's config blob
	Layers []string `json:"layers,omitempty"` // an image's layer blobs, lowest first
	GoSum  string   `json:"go_sum,omitempty"` // a go input's go.sum blob: every module's hash
	// Modules are the cache blobs of the module files a go input was built
	// from (its module index first). They are not part of the plan's JSON
	// nor of its digest: module proxies may serve the same modules (same
	// go.sum hashes) in other bytes, and the image does not change with
	// them. Bundles carry them and cache prune keeps them.
	Modules []string `json:"-"`
	// Toolchain is the cache blob of the golang.org/toolchain zip of a go
	// input's Go release, when the cache has it (a toolchain that was
	// fetched, not the host's go). Like Modules, it is not part of the
	// plan's JSON: bundles carry it and cache prune keeps it.
	Toolchain string `json:"-"`
}

// Disk is the shape of the disk to write.
type Disk struct {
	Size         int64    `json:"size"`
	Filesystem   string   `json:"filesystem"`
	FstabOptions []string `json:"fstab_options"`
	Boot         []string `json:"boot"` // boot methods: uefi, bios
}

// Kernel is the kernel to boot and its command line after the root.
type Kernel struct {
	Version string `json:"version,omitempty"` // pinned; "" takes the highest in the image
	Cmdline string `json:"cmdline"`
}

// Containerd is the store the container images go to, and those of them
// given CRI's pinned label.
type Containerd struct {
	Namespace string   `json:"namespace"`
	Root      string   `json:"root"`
	Pinned    []string `json:"pinned,omitempty"` // image names, in recipe order
}

// EpochTime is the plan's epoch as a time.
func (p *Plan) EpochTime() time.Time { return time.Unix(p.Epoch, 0).UTC() }

// Epoch picks the build time: SOURCE_DATE_EPOCH (passed in by the caller,
// "" when unset), else lab.yaml's epoch, else DefaultEpoch.
func Epoch(sourceDateEpoch string, lab *recipe.Lab) (int64, string, error) {
	if sourceDateEpoch != "" {
		v, err := strconv.ParseInt(sourceDateEpoch, 10, 64)
		if err != nil || v < 0 {
			return 0, "", fmt.Errorf("SOURCE_DATE_EPOCH=%q: want a non-negative number of seconds", sourceDateEpoch)
		}
		return v, "SOURCE_DATE_EPOCH", nil
	}
	if lab.Epoch != nil {
		return *lab.Epoch, "lab.yaml", nil
	}
	return DefaultEpoch, "default", nil
}

// Blobs lists the cache blobs the plan reads, each once, in plan order:
// fetched files, Debian base tarballs, each image's manifest, config
// and layers (those of built images too), and each go input's output,
// go.sum, module files and fetched toolchain.
func (p *Plan) Blobs() []string {
	var out []string
	seen := map[string]bool{}
	add := func(ds ...string) {
		for _, d := range ds {
			if d != "" && !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	for _, in := range p.Inputs {
		switch {
		case in.Kind.Image():
			add(in.Digest, in.Config)
			add(in.Layers...)
		case in.Kind == ArtifactGo:
			add(in.Digest, in.GoSum)
			add(in.Modules...)
			add(in.Toolchain)
		case in.Kind.Remote():
			add(in.Digest)
		}
	}
	return out
}

// Resolver pins the inputs that live outside the lab dir and makes sure
// their bytes are in the cache (internal/resolve implements it).
type Resolver interface {
	DebianBase(ctx context.Context, d *recipe.Debian, epoch int64) (digest string, size int64, err error)
	ImageInput(ctx context.Context, ref string) (manifest, config string, layers []string, err error)
	URL(ctx context.Context, url, sha256, sha256URL string) (digest string, size int64, err error)
	GoInput(ctx context.Context, s gobuild.Spec) (GoOutput, error)
}

// ImageBuilder assembles the images of images[].build (internal/bake
// implements it): img's files, pinned as files (their inputs, in recipe
// order), into one image whose blobs it leaves in the cache.
type ImageBuilder interface {
	BuildImage(ctx context.Context, field string, img recipe.Image, files []Input) (BuiltImage, error)
}

// BuiltImage is an image an ImageBuilder made: its blobs' digests, and the
// bytes of them all.
type BuiltImage struct {
	Manifest string
	Config   string
	Layers   []string
	Size     int64
}

// GoOutput is a go input pinned and built: its output blob, go.sum and
// module files (see Input).
type GoOutput struct {
	Digest    string
	Size      int64
	GoSum     string
	Modules   []string
	Toolchain string
}

// Files gives the digest and size of a file of the lab dir. A build that
// has just read a file (to apply a tar) hands its digest over this way
// instead of reading the file again.
type Files interface {
	FileDigest(ctx context.Context, path string) (digest string, size int64, err error)
}

// Options are where New takes digests from.
type Options struct {
	// Resolver pins the inputs from outside the lab dir; nil refuses
	// recipes that have any.
	Resolver Resolver
	// Images assembles the images built from files; nil refuses recipes
	// that have any (unless Pinned has them).
	Images ImageBuilder
	// Files hashes the lab's files; nil: New reads each file itself.
	Files Files
	// Pinned is a plan of the same recipe made with RemoteOnly: its
	// remote inputs are taken as they are, asking Resolver nothing.
	Pinned *Plan
	// RemoteOnly pins only what a build must find before it starts: the
	// remote inputs, and the images built from files with those files;
	// it reads no other file. The plan is partial, with no Digest, good
	// only as Pinned.
	RemoteOnly bool
}

// New resolves a recipe into a plan: it hashes every local input (by
// opts.Files, or reading it once) and asks opts.Resolver for the others.
// Every input that fails is reported, each with its recipe position, in one
// joined error.
func New(ctx context.Context, lab *recipe.Lab, r *recipe.Recipe, epoch int64, epochSource string, opts Options) (*Plan, error) {
	res := opts.Resolver
	p := &Plan{
		Format:       Format,
		Lab:          lab.Name,
		Role:         r.Role,
		Epoch:        epoch,
		EpochSource:  epochSource,
		RecipeDigest: digestBytes(r.Rendered),
		Disk: Disk{
			Size:         r.Disk.Size,
			Filesystem:   r.Disk.Filesystem,
			FstabOptions: r.Disk.FstabOptions,
			Boot:         r.Disk.Boot,
		},
		Kernel: Kernel{Version: r.Kernel.Version, Cmdline: r.Kernel.Cmdline},
	}
	if res == nil && opts.Pinned == nil {
		if err := unsupported(r); err != nil {
			return nil, err
		}
	}
	files := opts.Files
	if files == nil {
		files = readFiles{}
	}
	digestFile := func(path string) (string, int64, error) { return files.FileDigest(ctx, path) }
	var errs []error
	add := func(in Input, pos recipe.Pos, digest func() (string, int64, error)) *Input {
		if opts.RemoteOnly && !pinnedFirst(in) {
			return nil
		}
		if pinnedFirst(in) && opts.Pinned != nil {
			pinned, ok := opts.Pinned.Input(in.Field)
			if !ok || pinned.Kind != in.Kind {
				errs = append(errs, fmt.Errorf("%s: %s: not pinned before the build", posString(pos), in.Field))
				return nil
			}
			p.Inputs = append(p.Inputs, pinned)
			return nil
		}
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			return nil
		}
		d, size, err := digest()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %s %s: %w", posString(pos), in.Field, in.Kind, in.Name, err))
			return nil
		}
		in.Pos, in.Digest, in.Size = posString(pos), d, size
		p.Inputs = append(p.Inputs, in)
		return &p.Inputs[len(p.Inputs)-1]
	}
	rel := func(path string) string {
		if r, err := filepath.Rel(lab.Dir, path); err == nil && !strings.HasPrefix(r, "..") {
			return filepath.ToSlash(r)
		}
		return path
	}
	image := func(field string, kind Kind, name, ref string, pos recipe.Pos) {
		var cfg string
		var layers []string
		in := add(Input{Field: field, Kind: kind, Name: name, Source: ref}, pos, func() (string, int64, error) {
			m, c, l, err := res.ImageInput(ctx, ref)
			cfg, layers = c, l
			return m, 0, err
		})
		if in != nil {
			in.Config, in.Layers = cfg, layers
		}
	}
	switch {
	case r.Base.Tar != "":
		add(Input{Field: "base", Kind: BaseTar, Name: rel(r.Base.Tar)}, r.Base.Pos, func() (string, int64, error) { return digestFile(r.Base.Tar) })
	case r.Base.Dir != "":
		add(Input{Field: "base", Kind: BaseDir, Name: rel(r.Base.Dir)}, r.Base.Pos, func() (string, int64, error) { return digestDir(ctx, r.Base.Dir, nil) })
	case r.Base.Debian != nil:
		add(Input{Field: "base", Kind: BaseDebian, Name: r.Base.Debian.Suite}, r.Base.Pos, func() (string, int64, error) {
			return res.DebianBase(ctx, r.Base.Debian, epoch)
		})
	case r.Base.OCI != "":
		image("base", BaseOCI, r.Base.OCI, r.Base.OCI, r.Base.Pos)
	}
	for i, l := range r.Layers {
		field := fmt.Sprintf("layers[%d]", i)
		if l.OCI != "" {
			image(field, LayerOCI, l.OCI, l.OCI, l.Pos)
			continue
		}
		add(Input{Field: field, Kind: LayerTar, Name: rel(l.Tar)}, l.Pos, func() (string, int64, error) { return digestFile(l.Tar) })
	}
	artifact := func(field string, a recipe.Artifact) {
		switch {
		case a.URL != "":
			add(Input{Field: field, Kind: ArtifactURL, Name: a.Dest, Source: a.URL}, a.Pos, func() (string, int64, error) {
				return res.URL(ctx, a.URL, a.SHA256, a.SHA256URL)
			})
		case a.Archive != "":
			add(Input{Field: field, Kind: ArtifactArchive, Name: a.Dest, Source: a.Archive}, a.Pos, func() (string, int64, error) {
				return res.URL(ctx, a.Archive, a.SHA256, a.SHA256URL)
			})
		case a.Image != "":
			image(field, ArtifactImage, a.Image, a.Image, a.Pos)
		case a.Go != nil:
			var out GoOutput
			in := add(Input{Field: field, Kind: ArtifactGo, Name: a.Go.Name()}, a.Pos, func() (string, int64, error) {
				var err error
				out, err = res.GoInput(ctx, *a.Go)
				return out.Digest, out.Size, err
			})
			if in != nil {
				in.GoSum, in.Modules, in.Toolchain = out.GoSum, out.Modules, out.Toolchain
			}
		case a.File != "":
			add(Input{Field: field, Kind: ArtifactFile, Name: a.Dest, Source: rel(a.File)}, a.Pos, func() (string, int64, error) { return digestFile(a.File) })
		}
	}
	for i, a := range r.Artifacts {
		artifact(fmt.Sprintf("artifacts[%d]", i), a)
	}
	for i, img := range r.Images {
		field := fmt.Sprintf("images[%d]", i)
		if img.Build == nil {
			image(field, ContainerImage, img.Name, img.Ref, img.Pos)
			continue
		}
		// The files first, then the image made of them, which is left
		// out when a file failed (that failure says why).
		start, failed := len(p.Inputs), len(errs)
		for j, a := range img.Build.Files {
			artifact(fmt.Sprintf("%s.build.files[%d]", field, j), a)
		}
		if len(errs) > failed {
			continue
		}
		files := slices.Clone(p.Inputs[start:])
		var built BuiltImage
		in := add(Input{Field: field, Kind: ImageBuilt, Name: img.Name}, img.Pos, func() (string, int64, error) {
			if opts.Images == nil {
				return "", 0, errors.New("images built from files need a bake to assemble them")
			}
			var err error
			built, err = opts.Images.BuildImage(ctx, field, img, files)
			return built.Manifest, built.Size, err
		})
		if in != nil {
			in.Config, in.Layers = built.Config, built.Layers
		}
	}
	if len(r.Images) > 0 {
		p.Containerd = &Containerd{Namespace: r.Containerd.Namespace, Root: r.Containerd.Root}
		for _, img := range r.Images {
			if img.Pinned {
				p.Containerd.Pinned = append(p.Containerd.Pinned, img.Name)
			}
		}
	}
	for i, u := range r.Units {
		add(Input{Field: fmt.Sprintf("units[%d]", i), Kind: Unit, Name: u.Name}, u.Pos, func() (string, int64, error) {
			return digestBytes(u.Content), int64(len(u.Content)), nil
		})
	}
	for i, o := range r.Overlays {
		add(Input{Field: fmt.Sprintf("overlays[%d]", i), Kind: Overlay, Name: o.Name}, o.Pos, func() (string, int64, error) { return digestDir(ctx, o.Dir, o.Templates) })
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if opts.RemoteOnly {
		return p, nil
	}
	d, err := p.digest()
	if err != nil {
		return nil, err
	}
	p.Digest = d
	return p, nil
}

// Input returns the pinned input of a recipe field ("base", "layers[2]").
func (p *Plan) Input(field string) (Input, bool) {
	for _, in := range p.Inputs {
		if in.Field == field {
			return in, true
		}
	}
	return Input{}, false
}

// unsupported refuses the input kinds that the recipe accepts but this
// build pipeline does not fetch yet, instead of silently leaving them out.
func unsupported(r *recipe.Recipe) error {
	at := func(pos recipe.Pos, what string) error {
		return fmt.Errorf("%s: %s: not supported by this build yet (tar and dir bases and tar layers are)", posString(pos), what)
	}
	switch {
	case r.Base.Debian != nil:
		return at(r.Base.Pos, "base.debian")
	case r.Base.OCI != "":
		return at(r.Base.Pos, "base.oci")
	}
	for i, l := range r.Layers {
		if l.OCI != "" {
			return at(l.Pos, fmt.Sprintf("layers[%d].oci", i))
		}
	}
	if len(r.Artifacts) > 0 {
		return at(r.Artifacts[0].Pos, "artifacts")
	}
	if len(r.Images) > 0 {
		return at(r.Images[0].Pos, "images")
	}
	return nil
}

func (p *Plan) digest() (string, error) {
	c := *p
	c.Digest = ""
	b, err := json.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("encoding plan: %w", err)
	}
	return digestBytes(b), nil
}

// UUID derives a stable RFC 4122 UUID (version 8, name-based) for one use
// (e.g. "root-fs") from the plan digest.
func (p *Plan) UUID(purpose string) string {
	sum := sha256.Sum256([]byte("labbake uuid\x00" + p.Digest + "\x00" + purpose))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x80
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Uint32 derives a stable 32-bit number (e.g. a FAT volume ID).
func (p *Plan) Uint32(purpose string) uint32 {
	sum := sha256.Sum256([]byte("labbake u32\x00" + p.Digest + "\x00" + purpose))
	return uint32(sum[0])<<24 | uint32(sum[1])<<16 | uint32(sum[2])<<8 | uint32(sum[3])
}

func posString(p recipe.Pos) string {
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

func digestBytes(b []byte) string { return iox.DigestBytes(b) }

// readFiles hashes a file by reading it.
type readFiles struct{}

func (readFiles) FileDigest(ctx context.Context, path string) (string, int64, error) {
	return DigestFile(ctx, path)
}

// DigestFile reads the file at path and returns its digest and size; it
// stops when ctx is done.
func DigestFile(ctx context.Context, path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, iox.Reader(ctx, f))
	if err != nil {
		return "", 0, fmt.Errorf("reading: %w", err)
	}
	return iox.DigestOf(h.Sum(nil)), n, nil
}

// digestDir hashes what labbake takes from a host directory: each path's
// type, permission bits, link target and content, in sorted order. Owners
// and times are not taken from a checkout, so they are not hashed. rendered
// replaces the content of *.tmpl files (keyed by path without the suffix).
func digestDir(ctx context.Context, dir string, rendered map[string][]byte) (string, int64, error) {
	h := sha256.New()
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode()
		switch {
		case mode.IsDir():
			fmt.Fprintf(h, "d %q %o\n", rel, iox.PermBits(mode))
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "l %q %q\n", rel, target)
		case mode.IsRegular():
			if rendered != nil && strings.HasSuffix(rel, ".tmpl") {
				name := strings.TrimSuffix(rel, ".tmpl")
				fmt.Fprintf(h, "t %q %s\n", name, digestBytes(rendered[name]))
				total += int64(len(rendered[name]))
				return nil
			}
			d, n, err := DigestFile(ctx, path)
			if err != nil {
				return err
			}
			total += n
			fmt.Fprintf(h, "f %q %o %s\n", rel, iox.PermBits(mode), d)
		default:
			fmt.Fprintf(h, "o %q %v\n", rel, mode.Type())
		}
		return nil
	})
	if err != nil {
		return "", 0, err
	}
	return iox.DigestOf(h.Sum(nil)), total, nil
}

// JSON renders the plan for `labbake plan --json`: indented, stable.
func (p *Plan) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding plan: %w", err)
	}
	return append(b, '\n'), nil
}
