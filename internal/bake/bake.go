package bake

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/labbake/labbake/builders/boot"
	"github.com/labbake/labbake/builders/checks"
	"github.com/labbake/labbake/builders/disk"
	"github.com/labbake/labbake/builders/qcow2"
	"github.com/labbake/labbake/builders/secrets"
	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/cache"
	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/plan"
	"github.com/labbake/labbake/internal/recipe"
	"github.com/labbake/labbake/internal/resolve"
)

// Options are the settings of a build that are not part of the plan: they
// change where things go, not what the image holds.
type Options struct {
	OutDir   string // results: ROLE.qcow2, ROLE.manifest.json
	CacheDir string // scratch work dirs live under CacheDir/tmp
	Compress bool   // compressed qcow2 clusters
	KeepRaw  bool   // also leave the raw disk as OutDir/ROLE.raw
	// SourceDateEpoch is the value of $SOURCE_DATE_EPOCH ("" when unset).
	SourceDateEpoch string
	// Resolver pins and fetches inputs from outside the lab dir (Debian
	// bases, OCI images, URLs); nil refuses recipes that have such inputs.
	Resolver *resolve.Resolver
	// Progress, if set, shows the image being written (the raw disk
	// filling up, then the qcow2) as a bar redrawn in place: set it to a
	// terminal only.
	Progress io.Writer
	Logger   *slog.Logger
}

// InputError marks a failure caused by the build's inputs (a hostile or
// broken tar, a unit that cannot be enabled) rather than by the machine.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// Result is what a build wrote.
type Result struct {
	Role     string
	Image    string // path of ROLE.qcow2
	Manifest string // path of ROLE.manifest.json
	Raw      string // path of ROLE.raw when KeepRaw
	Plan     *plan.Plan
	SHA256   string
	Size     int64 // bytes of the qcow2 file
	Files    int
	Took     time.Duration
}

// Resolve loads a role's recipe and pins it into a plan.
func Resolve(ctx context.Context, lab *recipe.Lab, role, sourceDateEpoch string, res *resolve.Resolver) (*recipe.Recipe, *plan.Plan, error) {
	r, err := lab.RecipeContext(ctx, role)
	if err != nil {
		return nil, nil, err
	}
	epoch, src, err := plan.Epoch(sourceDateEpoch, lab)
	if err != nil {
		return nil, nil, &InputError{err}
	}
	p, err := plan.New(ctx, lab, r, epoch, src, planResolver(res))
	if err != nil {
		return nil, nil, classify(err)
	}
	return r, p, nil
}

// planResolver keeps a nil *Resolver a nil interface.
func planResolver(res *resolve.Resolver) plan.Resolver {
	if res == nil {
		return nil
	}
	return res
}

// classify marks the resolve errors that are the user's to fix (an input
// missing offline, not locked, not matching its digest) as bad input.
// bootError places an error of boot.Prepare: what the image lacks is the
// recipe's problem, named at kernel.version or disk.boot (exit 2);
// anything else (grub-mkimage failing to run) is the host's.
func bootError(r *recipe.Recipe, err error) error {
	if !boot.IsImageError(err) {
		return fmt.Errorf("preparing the boot loaders: %w", err)
	}
	if errors.Is(err, boot.ErrPinnedKernel) {
		pos := r.Kernel.Pos
		return &InputError{fmt.Errorf("%s:%d:%d: kernel.version: %w", pos.File, pos.Line, pos.Col, err)}
	}
	pos, hint := r.Disk.BootPos, ""
	if !r.Disk.BootSet {
		hint = " (disk.boot is [uefi, bios] unless the recipe says otherwise; disk.boot: [] makes an image that is not meant to boot)"
	}
	return &InputError{fmt.Errorf("%s:%d:%d: disk.boot: %w%s", pos.File, pos.Line, pos.Col, err, hint)}
}

func classify(err error) error {
	if resolve.IsInputError(err) {
		return &InputError{err}
	}
	return err
}

// Build bakes one role into OutDir/ROLE.qcow2 and its manifest. Outputs
// are written under temporary names and renamed when complete, so a failed
// or killed build leaves the previous outputs as they were.
func Build(ctx context.Context, lab *recipe.Lab, role string, opts Options) (*Result, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("role", role)
	start := time.Now()
	r, err := lab.RecipeContext(ctx, role)
	if err != nil {
		return nil, err
	}
	epoch, epochSource, err := plan.Epoch(opts.SourceDateEpoch, lab)
	if err != nil {
		return nil, &InputError{err}
	}
	// Pin the inputs while the tree is assembled: both read the same files,
	// the digests on one core and the tree on the other. The disk needs the
	// plan (its IDs derive from the digest), the tree only the epoch.
	type pinned struct {
		p   *plan.Plan
		err error
	}
	planc := make(chan pinned, 1)
	go func() {
		p, err := plan.New(ctx, lab, r, epoch, epochSource, planResolver(opts.Resolver))
		planc <- pinned{p, err}
	}()
	var once sync.Once
	var pr pinned
	waitPlan := func() (*plan.Plan, error) {
		once.Do(func() {
			pr = <-planc
			if pr.err != nil {
				pr.err = classify(pr.err)
			}
		})
		return pr.p, pr.err
	}

	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating output dir: %w", err)
	}
	unlock, err := iox.LockFile(ctx, filepath.Join(opts.OutDir, "."+role+".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	removeStale(opts.OutDir, "."+role+".")

	work, release, err := cache.WorkDir(opts.CacheDir, role)
	if err != nil {
		return nil, err
	}
	defer release()

	a := &assembler{lab: lab, r: r, res: opts.Resolver, plan: waitPlan, log: log, work: work}
	t, err := a.assemble(ctx, time.Unix(epoch, 0).UTC())
	if err != nil {
		return nil, err
	}
	p, err := waitPlan()
	if err != nil {
		return nil, err
	}
	log.Info("plan resolved", "digest", p.Digest, "inputs", len(p.Inputs), "epoch", p.Epoch)
	ids := disk.IDs{
		DiskGUID:    p.UUID("disk"),
		BIOSGUID:    p.UUID("part-bios"),
		ESPGUID:     p.UUID("part-esp"),
		RootGUID:    p.UUID("part-root"),
		RootFSUUID:  p.UUID("root-fs"),
		ESPVolumeID: p.Uint32("esp-volume-id"),
	}
	if err := t.AddFiles([]tree.File{{Path: "/etc/fstab", Content: disk.Fstab(ids.RootFSUUID, p.Disk.FstabOptions), Mode: 0o644}}, filepath.Join(work, "blobs")); err != nil {
		return nil, fmt.Errorf("writing fstab: %w", err)
	}
	step := time.Now()
	bootRes, err := boot.Prepare(ctx, t, boot.Options{
		Methods: p.Disk.Boot, RootFSUUID: ids.RootFSUUID, Cmdline: p.Kernel.Cmdline, Pin: p.Kernel.Version,
		WorkDir: filepath.Join(work, "boot"), Logger: log,
	})
	if err != nil {
		return nil, bootError(r, err)
	}
	if err := t.AddFiles(bootRes.TreeFiles, filepath.Join(work, "blobs")); err != nil {
		return nil, fmt.Errorf("writing the boot loader's files: %w", err)
	}
	if len(bootRes.Loaders) > 0 {
		log.Info("boot loaders laid out", "kernel", bootRes.Kernel.Version, "loaders", strings.Join(bootRes.Loaders, ", "), "took", since(step))
	}

	rawPath := filepath.Join(work, "disk.raw")
	step = time.Now()
	dopts := disk.Options{
		Size: p.Disk.Size, IDs: ids, Epoch: p.EpochTime(), WorkDir: filepath.Join(work, "disk"), Logger: log,
		ESPFiles: bootRes.ESPFiles,
	}
	if bootRes.BIOS != nil {
		dopts.MBRCode, dopts.BIOSCore = bootRes.BIOS.MBRCode, bootRes.BIOS.Core
	}
	var espBytes int64
	for _, f := range bootRes.ESPFiles {
		espBytes += int64(len(f.Data))
		if fi, err := os.Stat(f.Source); f.Source != "" && err == nil {
			espBytes += fi.Size()
		}
	}
	layout, err := disk.NewLayout(p.Disk.Size, ids)
	if err != nil {
		return nil, &InputError{err}
	}
	estimate := contentBytes(t) + espBytes + ext4Overhead(layout.Root.Size)
	stopWatch := watch(opts.Progress, role+" disk", estimate, func() int64 { return allocated(rawPath) })
	res, err := disk.Build(ctx, t, rawPath, dopts)
	stopWatch()
	if err != nil {
		return nil, fmt.Errorf("writing disk: %w", err)
	}
	log.Info("raw disk written", "files", res.Files, "size", p.Disk.Size, "took", since(step))

	step = time.Now()
	image := filepath.Join(opts.OutDir, role+".qcow2")
	tmpImage, sum, size, err := writeQcow2(ctx, rawPath, image, p.Disk.Size, opts.Compress, opts.Progress)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmpImage) // a no-op once renamed
	log.Info("qcow2 converted", "bytes", size, "compressed", opts.Compress, "took", since(step))

	out := &Result{Role: role, Image: image, Plan: p, SHA256: sum, Size: size, Files: res.Files}
	out.Manifest = filepath.Join(opts.OutDir, role+".manifest.json")
	tmpManifest, err := writeTemp(out.Manifest, newManifest(p, out, opts.Compress, res.Layout, bootRes))
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmpManifest)
	if opts.KeepRaw {
		out.Raw = filepath.Join(opts.OutDir, role+".raw")
		if err := os.Rename(rawPath, out.Raw); err != nil {
			return nil, fmt.Errorf("keeping the raw disk: %w", err)
		}
	}
	// Both files are complete: rename them one right after the other.
	if err := rename(tmpImage, image); err != nil {
		return nil, err
	}
	if err := rename(tmpManifest, out.Manifest); err != nil {
		return nil, err
	}
	out.Took = time.Since(start)
	return out, nil
}

// assembler builds the image's tree: base, layers, artifacts, overlays,
// units, files. Remote inputs are read from the cache by the digests the
// plan pins, so it waits for the plan when it meets the first of them.
type assembler struct {
	lab  *recipe.Lab
	r    *recipe.Recipe
	res  *resolve.Resolver
	plan func() (*plan.Plan, error)
	log  *slog.Logger
	work string
}

func (a *assembler) assemble(ctx context.Context, epoch time.Time) (*tree.Tree, error) {
	step := time.Now()
	lab, r, log := a.lab, a.r, a.log
	blobs := filepath.Join(a.work, "blobs")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, fmt.Errorf("creating work dir: %w", err)
	}
	t := tree.New(epoch)
	t.SetLogger(log)
	at := func(pos recipe.Pos, err error) error {
		var pe *planError
		if errors.As(err, &pe) {
			return pe.err
		}
		return &InputError{fmt.Errorf("%s:%d:%d: %w", pos.File, pos.Line, pos.Col, err)}
	}
	t.SetOrigin("base")
	switch {
	case r.Base.Tar != "":
		if err := applyTarFile(t, r.Base.Tar, "base "+rel(lab, r.Base.Tar), blobs); err != nil {
			return nil, at(r.Base.Pos, err)
		}
	case r.Base.Dir != "":
		if err := t.ApplyDir(r.Base.Dir, "", nil); err != nil {
			return nil, at(r.Base.Pos, err)
		}
	default:
		if err := a.applyRemote(ctx, t, "base", blobs); err != nil {
			return nil, at(r.Base.Pos, err)
		}
	}
	for i, l := range r.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var err error
		t.SetOrigin(fmt.Sprintf("layers[%d]", i))
		if l.Tar != "" {
			t.SetOrigin(fmt.Sprintf("layers[%d] %s", i, rel(lab, l.Tar)))
			err = applyTarFile(t, l.Tar, fmt.Sprintf("layers[%d] %s", i, rel(lab, l.Tar)), blobs)
		} else {
			err = a.applyRemote(ctx, t, fmt.Sprintf("layers[%d]", i), blobs)
		}
		if err != nil {
			return nil, at(l.Pos, err)
		}
	}
	for i, art := range r.Artifacts {
		t.SetOrigin(fmt.Sprintf("artifacts[%d]", i))
		if err := a.addArtifact(ctx, t, i, art, blobs); err != nil {
			return nil, at(art.Pos, err)
		}
	}
	for i, o := range r.Overlays {
		t.SetOrigin(fmt.Sprintf("overlays[%d] %s", i, o.Name))
		skip := func(rel string) bool { return strings.HasSuffix(rel, ".tmpl") }
		if err := t.ApplyDir(o.Dir, "", skip); err != nil {
			return nil, at(o.Pos, err)
		}
		files, err := overlayTemplates(o)
		if err != nil {
			return nil, at(o.Pos, err)
		}
		if err := t.AddFiles(files, blobs); err != nil {
			return nil, at(o.Pos, err)
		}
	}
	t.SetOrigin("units")
	units := make([]tree.Unit, 0, len(r.Units))
	for _, u := range r.Units {
		units = append(units, tree.Unit{Name: u.Name, Content: u.Content, Enable: u.Enable})
	}
	if err := t.AddUnits(units, blobs); err != nil {
		return nil, &InputError{fmt.Errorf("units: %w", err)}
	}
	t.SetOrigin("files")
	files := make([]tree.File, 0, len(r.Files))
	for _, f := range r.Files {
		files = append(files, tree.File{Path: f.Path, Content: f.Content, Symlink: f.Symlink, Mode: f.Mode, UID: f.UID, GID: f.GID})
	}
	if err := t.AddFiles(files, blobs); err != nil {
		return nil, &InputError{fmt.Errorf("files: %w", err)}
	}
	t.SetOrigin("labbake checks")
	if err := checks.Install(t, r.Checks, blobs); err != nil {
		return nil, err
	}
	t.SetOrigin("")
	// Images hold no secret: host keys and snake-oil certificates out,
	// then any private key left refuses the build (unless allowed).
	step = time.Now()
	removed, err := secrets.Scrub(t, blobs)
	if err != nil {
		return nil, fmt.Errorf("taking secrets out: %w", err)
	}
	if len(removed) > 0 {
		log.Info("secrets taken out", "paths", strings.Join(removed, " "))
	}
	if _, err := secrets.Scan(ctx, t, r.Secrets.Allow); err != nil {
		var se *secrets.Error
		if errors.As(err, &se) {
			return nil, &InputError{err}
		}
		return nil, fmt.Errorf("scanning for secrets: %w", err)
	}
	log.Debug("secrets scanned", "took", since(step))
	log.Info("tree assembled", "entries", t.Len(), "took", since(step))
	return t, nil
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

func applyTarFile(t *tree.Tree, path, name, blobs string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	return t.ApplyTar(bufio.NewReaderSize(f, 1<<20), name, blobs)
}

// writeQcow2 converts the raw disk into a temporary file next to dst and
// returns its name, sha256 and size; the caller renames it.
func writeQcow2(ctx context.Context, rawPath, dst string, size int64, compress bool, progress io.Writer) (string, string, int64, error) {
	raw, err := os.Open(rawPath)
	if err != nil {
		return "", "", 0, fmt.Errorf("opening raw disk: %w", err)
	}
	defer raw.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return "", "", 0, fmt.Errorf("creating image: %w", err)
	}
	fail := func(err error) (string, string, int64, error) {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", "", 0, err
	}
	iw := newImageWriter(tmp)
	bw := bufio.NewWriterSize(iw, 4<<20)
	total := allocated(rawPath) // what an uncompressed image holds, about
	if compress {
		total = -1
	}
	stopWatch := watch(progress, filepath.Base(dst), total, iw.written.Load)
	err = qcow2.Write(ctx, bw, raw, size, qcow2.Options{Compress: compress, TempDir: filepath.Dir(rawPath)})
	stopWatch()
	if err == nil {
		err = bw.Flush()
	}
	sum := iw.Close()
	if err != nil {
		return fail(fmt.Errorf("writing qcow2: %w", err))
	}
	if err := finish(tmp); err != nil {
		return fail(err)
	}
	return tmp.Name(), sum, iw.n, nil
}

// finish makes a complete temporary file durable and closes it.
func finish(tmp *os.File) error {
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	return nil
}

// rename gives a finished file its name and makes the rename durable.
func rename(tmp, dst string) error {
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	if d, err := os.Open(filepath.Dir(dst)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// writeTemp writes v as indented JSON into a finished temporary file next
// to dst and returns its name.
func writeTemp(dst string, v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encoding %s: %w", filepath.Base(dst), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", dst, err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", fmt.Errorf("writing %s: %w", dst, err)
	}
	if err := finish(tmp); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}

// removeStale removes temporary files that a killed build of the same role
// left behind; the caller holds the role's lock.
func removeStale(dir, prefix string) {
	matches, _ := filepath.Glob(filepath.Join(dir, prefix+"*.tmp-*"))
	for _, m := range matches {
		os.Remove(m)
	}
}

func rel(lab *recipe.Lab, path string) string {
	if r, err := filepath.Rel(lab.Dir, path); err == nil && !strings.HasPrefix(r, "..") {
		return filepath.ToSlash(r)
	}
	return path
}

func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }

// IsInputError reports whether err was caused by bad input.
func IsInputError(err error) bool {
	var ie *InputError
	var el recipe.ErrorList
	return errors.As(err, &ie) || errors.As(err, &el)
}
