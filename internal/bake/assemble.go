package bake

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/labbake/labbake/builders/checks"
	"github.com/labbake/labbake/builders/secrets"
	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/plan"
	"github.com/labbake/labbake/internal/recipe"
	"github.com/labbake/labbake/internal/resolve"
)

// assembler builds the image's tree: base, layers, artifacts, container
// images, overlays, units, files, checks; then takes secrets out. Remote
// inputs are read from the cache by the digests pins holds; the lab's tar
// files are hashed while they are applied, into files, so that the plan
// does not read them again.
type assembler struct {
	lab   *recipe.Lab
	r     *recipe.Recipe
	res   *resolve.Resolver
	pins  *plan.Plan
	files *fileDigests
	log   *slog.Logger
	work  string
	blobs string
	// preloaded are the container images the images stage wrote.
	preloaded []ManifestImage
	// snapshots is where trees of bases and layers are kept between
	// builds ("" keeps none; see snapshot.go); snapKey names the one this
	// build read or kept, snapDigests its contents' digests, and clean
	// those that the secret scan found clean before.
	snapshots   string
	snapKey     string
	snapDigests map[string]bool
	clean       map[string]bool
}

func (a *assembler) assemble(ctx context.Context, epoch time.Time) (*tree.Tree, error) {
	step := time.Now()
	a.blobs = filepath.Join(a.work, "blobs")
	if err := os.MkdirAll(a.blobs, 0o755); err != nil {
		return nil, fmt.Errorf("creating work dir: %w", err)
	}
	t := tree.New(epoch)
	t.SetLogger(a.log)
	stages := []func(context.Context, *tree.Tree) error{a.base, a.layers, a.artifacts, a.images, a.overlays, a.inline}
	key, keep, err := a.snapshotKey(epoch)
	if err != nil {
		return nil, err
	}
	if keep {
		if s := a.loadSnapshot(key, epoch); s != nil {
			a.log.Debug("tree snapshot: base and layers read", "key", key, "entries", s.Len(), "took", since(step))
			t, keep = s, false
			stages = stages[2:]
		}
	}
	for i, stage := range stages {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := stage(ctx, t); err != nil {
			return nil, err
		}
		if keep && i == 1 { // the base and the layers are in
			a.storeSnapshot(ctx, key, t, a.tarFiles())
		}
	}
	t.SetOrigin("")
	if err := a.scrub(ctx, t); err != nil {
		return nil, err
	}
	a.log.Info("tree assembled", "entries", t.Len(), "took", since(step))
	return t, nil
}

// tarFiles are the lab's tar files the base and layers are read from.
func (a *assembler) tarFiles() []string {
	var out []string
	if a.r.Base.Tar != "" {
		out = append(out, a.r.Base.Tar)
	}
	for _, l := range a.r.Layers {
		if l.Tar != "" {
			out = append(out, l.Tar)
		}
	}
	return out
}

func (a *assembler) base(ctx context.Context, t *tree.Tree) error {
	r := a.r
	t.SetOrigin("base")
	var err error
	switch {
	case r.Base.Tar != "":
		err = a.applyTarFile(ctx, t, r.Base.Tar, "base "+rel(a.lab, r.Base.Tar))
	case r.Base.Dir != "":
		err = t.ApplyDir(r.Base.Dir, "", nil)
	default:
		err = a.applyRemote(ctx, t, "base")
	}
	if err != nil {
		return at(r.Base.Pos, err)
	}
	return nil
}

func (a *assembler) layers(ctx context.Context, t *tree.Tree) error {
	for i, l := range a.r.Layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if l.Tar != "" {
			name := fmt.Sprintf("layers[%d] %s", i, rel(a.lab, l.Tar))
			t.SetOrigin(name)
			err = a.applyTarFile(ctx, t, l.Tar, name)
		} else {
			t.SetOrigin(fmt.Sprintf("layers[%d]", i))
			err = a.applyRemote(ctx, t, fmt.Sprintf("layers[%d]", i))
		}
		if err != nil {
			return at(l.Pos, err)
		}
	}
	return nil
}

func (a *assembler) artifacts(ctx context.Context, t *tree.Tree) error {
	for i, art := range a.r.Artifacts {
		t.SetOrigin(fmt.Sprintf("artifacts[%d]", i))
		if err := a.addArtifact(ctx, t, fmt.Sprintf("artifacts[%d]", i), art); err != nil {
			return at(art.Pos, err)
		}
	}
	return nil
}

func (a *assembler) overlays(_ context.Context, t *tree.Tree) error {
	for i, o := range a.r.Overlays {
		t.SetOrigin(fmt.Sprintf("overlays[%d] %s", i, o.Name))
		skip := func(rel string) bool { return strings.HasSuffix(rel, ".tmpl") }
		if err := t.ApplyDir(o.Dir, "", skip); err != nil {
			return at(o.Pos, err)
		}
		files, err := overlayTemplates(o)
		if err != nil {
			return at(o.Pos, err)
		}
		if err := t.AddFiles(files, a.blobs); err != nil {
			return at(o.Pos, err)
		}
	}
	return nil
}

// inline adds what the recipe holds itself: units, files and the checks.
func (a *assembler) inline(_ context.Context, t *tree.Tree) error {
	r := a.r
	t.SetOrigin("units")
	units := make([]tree.Unit, 0, len(r.Units))
	for _, u := range r.Units {
		units = append(units, tree.Unit{Name: u.Name, Content: u.Content, Enable: u.Enable})
	}
	if err := t.AddUnits(units, a.blobs); err != nil {
		return &InputError{fmt.Errorf("units: %w", err)}
	}
	t.SetOrigin("files")
	files := make([]tree.File, 0, len(r.Files))
	for _, f := range r.Files {
		files = append(files, tree.File{Path: f.Path, Content: f.Content, Symlink: f.Symlink, Mode: f.Mode, UID: f.UID, GID: f.GID})
	}
	if err := t.AddFiles(files, a.blobs); err != nil {
		return &InputError{fmt.Errorf("files: %w", err)}
	}
	t.SetOrigin("labbake checks")
	return checks.Install(t, checkSpec(r.Checks), a.blobs)
}

// checkSpec is the recipe's checks as the checks builder takes them.
func checkSpec(c recipe.Checks) checks.Spec {
	s := checks.Spec{UnitsActive: c.UnitsActive, Files: c.Files}
	for _, cmd := range c.Commands {
		s.Commands = append(s.Commands, checks.Command{Run: cmd.Run, Expect: cmd.Expect})
	}
	return s
}

// scrub takes host keys and snake-oil certificates out; then any private
// key left refuses the build (unless the recipe allows it): images hold no
// secret.
func (a *assembler) scrub(ctx context.Context, t *tree.Tree) error {
	step := time.Now()
	removed, err := secrets.Scrub(t, a.blobs)
	if err != nil {
		return fmt.Errorf("taking secrets out: %w", err)
	}
	if len(removed) > 0 {
		a.log.Info("secrets taken out", "paths", strings.Join(removed, " "))
	}
	_, scanned, err := secrets.ScanKnown(ctx, t, a.r.Secrets.Allow, a.clean)
	if err != nil {
		var se *secrets.Error
		if errors.As(err, &se) {
			return &InputError{err}
		}
		return fmt.Errorf("scanning for secrets: %w", err)
	}
	a.log.Debug("secrets scanned", "read", len(scanned), "known_clean", len(a.clean), "took", since(step))
	a.keepClean(scanned)
	return nil
}

// overlayTemplates turns an overlay's rendered *.tmpl files into inline
// files, keeping the permission bits of the template file.
func overlayTemplates(o recipe.Overlay) ([]tree.File, error) {
	var files []tree.File
	for name, content := range o.Templates {
		st, err := os.Lstat(filepath.Join(o.Dir, filepath.FromSlash(name)+".tmpl"))
		if err != nil {
			return nil, fmt.Errorf("overlay %s: %w", o.Name, err)
		}
		files = append(files, tree.File{Path: "/" + name, Content: content, Mode: uint32(st.Mode().Perm())})
	}
	// Map order is random; the tree does not care, but keep errors stable.
	sortFiles(files)
	return files, nil
}

// applyTarFile applies a tar file of the lab dir, hashing it on the way
// for the plan: the file is read once.
func (a *assembler) applyTarFile(ctx context.Context, t *tree.Tree, path, name string) error {
	return a.files.read(ctx, path, name, func(r io.Reader) error {
		return t.ApplyTar(bufio.NewReaderSize(r, 1<<20), name, a.blobs)
	})
}
