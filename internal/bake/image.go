package bake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/labbake/labbake/builders/boot"
	"github.com/labbake/labbake/builders/disk"
	"github.com/labbake/labbake/builders/dpkg"
	"github.com/labbake/labbake/builders/space"
	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/cache"
	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/plan"
	"github.com/labbake/labbake/internal/recipe"
	"github.com/labbake/labbake/internal/sbom"
)

// Result is what a build of one role wrote.
type Result struct {
	Role     string
	Image    string // path of ROLE.qcow2
	Manifest string // path of ROLE.manifest.json
	SBOM     string // path of ROLE.spdx.json
	Raw      string // path of ROLE.raw when KeepRaw
	Plan     *plan.Plan
	SHA256   string
	Size     int64 // bytes of the qcow2 file
	Files    int
	Took     time.Duration
	// Images are the container images preloaded into containerd.
	Images []ManifestImage
	// Space is what takes the space in the root file system.
	Space *space.Report
}

// build bakes one job into OutDir/ROLE.qcow2, its SBOM and its manifest.
// Everything that can be refused is checked before OutDir is touched: the
// tree is assembled, the plan completed and the root file system's size
// checked in the work dir. Outputs are written under temporary names and
// renamed when complete (see commit), so a failed or killed build leaves
// the previous outputs as they were.
func (b *Batch) build(ctx context.Context, j *Job) (*Result, error) {
	start := time.Now()
	log := b.opts.logger().With("role", j.Role)
	work, release, err := cache.WorkDir(b.opts.CacheDir, j.Role)
	if err != nil {
		return nil, err
	}
	defer b.later(release) // thousands of files: removed while the build goes on
	a := &assembler{lab: b.Lab, r: j.Recipe, res: b.opts.Resolver, pins: j.pins, files: b.files, log: log, work: work,
		snapshots: b.snapshotDir()}
	t, err := a.assemble(ctx, time.Unix(b.epoch, 0).UTC())
	if err != nil {
		return nil, err
	}
	p, err := b.plan(ctx, j)
	if err != nil {
		return nil, err
	}
	log.Info("plan resolved", "digest", p.Digest, "inputs", len(p.Inputs), "epoch", p.Epoch)
	// The disk's IDs come from what the lower part of its root holds, not
	// from the whole plan: an edit of the recipe's own files keeps them,
	// and with them the cached lower root (see disk.Options.Upper).
	hasher := disk.NewHasher()
	step := time.Now()
	lower, err := hasher.LowerDigest(ctx, t.Entries(), upperEntry)
	if err != nil {
		return nil, err
	}
	log.Debug("lower root digested", "digest", lower, "took", since(step))
	ids := disk.IDsFrom(lower)
	bootRes, err := prepareBoot(ctx, t, j.Recipe, p, ids, work, log)
	if err != nil {
		return nil, err
	}
	layout, err := disk.NewLayout(p.Disk.Size, ids)
	if err != nil {
		return nil, at(j.Recipe.Disk.SizePos, fmt.Errorf("disk.size: %w", err))
	}
	if err := checkFits(j.Recipe, t, layout); err != nil {
		return nil, err
	}
	step = time.Now()
	use, err := space.Measure(t, space.Options{})
	if err != nil {
		return nil, err
	}
	log.Debug("space measured", "bytes", use.Bytes, "files", use.Files, "took", since(step))
	w := &writer{opts: b.opts, r: j.Recipe, t: t, out: &Result{Role: j.Role, Plan: p, Images: a.preloaded, Space: use}, layout: layout, boot: bootRes, work: work, log: log,
		ids: ids, hasher: hasher, rootSlot: b.rootSlot(j.Role), later: b.later}
	if err := w.write(ctx); err != nil {
		return nil, err
	}
	out := w.out
	out.Took = time.Since(start)
	return out, nil
}

// upperEntry claims for the upper part of the root file system what the
// recipe holds itself — units, files, overlays, the checks — and what the
// bake writes from the plan (fstab, boot loader configuration): the files
// a user edits between two builds.
func upperEntry(e tree.Entry) bool {
	switch e.Origin {
	case "units", "files", "labbake checks", "fstab", "boot":
		return true
	}
	return strings.HasPrefix(e.Origin, "overlays[")
}

// prepareBoot writes /etc/fstab and lays out the boot loaders and their
// files in the tree (origins "fstab" and "boot").
func prepareBoot(ctx context.Context, t *tree.Tree, r *recipe.Recipe, p *plan.Plan, ids disk.IDs, work string, log *slog.Logger) (*boot.Result, error) {
	blobs := filepath.Join(work, "blobs")
	defer t.SetOrigin(t.Origin())
	t.SetOrigin("fstab")
	if err := t.AddFiles([]tree.File{{Path: "/etc/fstab", Content: disk.Fstab(ids.RootFSUUID, p.Disk.FstabOptions), Mode: 0o644}}, blobs); err != nil {
		return nil, fmt.Errorf("writing fstab: %w", err)
	}
	step := time.Now()
	res, err := boot.Prepare(ctx, t, boot.Options{
		Methods: p.Disk.Boot, RootFSUUID: ids.RootFSUUID, Cmdline: p.Kernel.Cmdline, Pin: p.Kernel.Version,
		WorkDir: filepath.Join(work, "boot"), Logger: log,
	})
	if err != nil {
		return nil, bootError(r, err)
	}
	t.SetOrigin("boot")
	if err := t.AddFiles(res.TreeFiles, blobs); err != nil {
		return nil, fmt.Errorf("writing the boot loader's files: %w", err)
	}
	if len(res.Loaders) > 0 {
		log.Info("boot loaders laid out", "kernel", res.Kernel.Version, "loaders", strings.Join(res.Loaders, ", "), "took", since(step))
	}
	return res, nil
}

// checkFits refuses a tree that cannot fit the root partition, at the
// recipe's disk.size, before the disk is written: rootEstimate's Sure is
// a lower bound of what the root needs. What it cannot tell (files of the
// host that mke2fs may store sparser) is caught when mke2fs runs out of
// room, by tooSmall, still before anything is written to OutDir.
func checkFits(r *recipe.Recipe, t *tree.Tree, l disk.Layout) error {
	if u := rootEstimate(t, l.Root.Size); u.Sure > l.Root.Size {
		return tooSmall(r, l, fmt.Sprintf("the files take at least %s", iox.Bytes(u.Sure)))
	}
	return nil
}

// tooSmall places a root file system too small for the tree at disk.size.
func tooSmall(r *recipe.Recipe, l disk.Layout, why string) error {
	return at(r.Disk.SizePos, fmt.Errorf("disk.size: %s is too small for the image's files: its root file system holds %s and %s (directories and files in 4 KiB blocks, ext4's inode tables and journal); make the disk larger",
		recipe.FormatSize(r.Disk.Size), iox.Bytes(l.Root.Size), why))
}

// writer writes one role's outputs from its assembled tree and plan.
type writer struct {
	opts   Options
	r      *recipe.Recipe
	t      *tree.Tree
	out    *Result
	layout disk.Layout
	boot   *boot.Result
	work   string
	log    *slog.Logger
	ids    disk.IDs
	// hasher has digested the lower root's blobs; rootSlot is where that
	// part is kept between builds ("" keeps nothing).
	hasher   *disk.Hasher
	rootSlot string
	// later runs cleanup in the background (see Batch.later).
	later func(func())
}

// write writes the raw disk in the work dir, then the image, its SBOM and
// its manifest into OutDir under the role's lock, and rewrites
// OUT/SHA256SUMS.
func (w *writer) write(ctx context.Context) error {
	// The dpkg database is read before the disk is written: one small file
	// of the tree, whose blobs the disk may take over.
	debs, err := dpkg.Installed(w.t)
	if err != nil {
		return err
	}
	u := rootEstimate(w.t, w.layout.Root.Size)
	rawPath, inMemory, release, err := scratchDisk(w.work, u.Sure+u.Host+espBytes(w.boot), w.opts.KeepRaw)
	if err != nil {
		return err
	}
	defer w.later(release) // freeing GBs of memory takes a while
	w.log.Debug("raw disk", "in_memory", inMemory)
	res, err := w.writeDisk(ctx, rawPath, u)
	if err != nil {
		return err
	}
	out, outDir := w.out, w.opts.OutDir
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("creating output dir: %w", err)
	}
	unlock, err := iox.LockFile(ctx, filepath.Join(outDir, "."+out.Role+".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	removeStale(outDir, "."+out.Role+".")

	step := time.Now()
	out.Image = filepath.Join(outDir, out.Role+".qcow2")
	blockMap := ""
	if !w.opts.NoStageCache && w.opts.CacheDir != "" {
		blockMap = blockMapPath(w.opts.CacheDir, out.Image)
	}
	q, err := writeQcow2(ctx, qcow2Job{raw: rawPath, dst: out.Image, tempDir: w.work, size: out.Plan.Disk.Size,
		compress: w.opts.Compress, progress: w.opts.Progress, blockMap: blockMap})
	if err != nil {
		return err
	}
	tmpImage := q.tmp
	defer os.Remove(tmpImage) // a no-op once renamed
	out.SHA256, out.Size = q.sha256, q.size
	w.log.Info("qcow2 converted", "bytes", q.size, "compression", w.opts.Compress.String(), "reused", q.reused, "took", since(step))

	out.SBOM = filepath.Join(outDir, out.Role+".spdx.json")
	tmpSBOM, sbomRef, err := w.writeSBOM(debs)
	if err != nil {
		return err
	}
	defer os.Remove(tmpSBOM)
	out.Manifest = filepath.Join(outDir, out.Role+".manifest.json")
	m := newManifest(out.Plan, out, w.opts.Compress, res.Layout, w.ids, w.boot)
	m.SBOM = sbomRef
	tmpManifest, err := writeTemp(out.Manifest, m)
	if err != nil {
		return err
	}
	defer os.Remove(tmpManifest)
	if w.opts.KeepRaw {
		out.Raw = filepath.Join(outDir, out.Role+".raw")
		if err := moveSparse(rawPath, out.Raw); err != nil {
			return fmt.Errorf("keeping the raw disk: %w", err)
		}
	}
	replaced, err := commit(pending{tmpSBOM, out.SBOM}, pending{tmpManifest, out.Manifest}, pending{tmpImage, out.Image})
	if err != nil {
		return err
	}
	// The replaced image is unlinked in the background: freeing its blocks
	// is a journal commit (and discards) that no one needs to wait for.
	w.later(func() { removeAll(replaced) })
	if q.blocks != nil {
		if err := keepBlockMap(blockMap, out.Image, q.blocks); err != nil {
			w.log.Warn("block map not kept: the next image is written whole", "error", err)
		}
	}
	return writeSums(ctx, outDir, w.log)
}

// writeSBOM writes the image's SPDX document into a finished temporary file
// next to w.out.SBOM and returns its name and what the manifest says of it.
func (w *writer) writeSBOM(debs []dpkg.Package) (string, *ManifestSBOM, error) {
	out, p := w.out, w.out.Plan
	img := &sbom.Image{
		Lab: p.Lab, Role: p.Role, PlanDigest: p.Digest, Epoch: p.Epoch, Version: w.opts.Version,
		File: filepath.Base(out.Image), SHA256: out.SHA256, Inputs: p.Inputs, Debs: debs,
	}
	for _, c := range out.Images {
		img.Containers = append(img.Containers, sbom.Container{Ref: c.Ref, Digest: c.Manifest})
	}
	b, err := sbom.Marshal(img)
	if err != nil {
		return "", nil, err
	}
	tmp, err := writeTempBytes(out.SBOM, b)
	if err != nil {
		return "", nil, err
	}
	w.log.Debug("sbom written", "debian_packages", len(debs), "inputs", len(p.Inputs), "images", len(img.Containers))
	return tmp, &ManifestSBOM{File: filepath.Base(out.SBOM), SHA256: sha256Hex(b)}, nil
}

// writeDisk writes the raw disk at rawPath (in the work dir). A root file
// system too small for the tree is the recipe's fault, at disk.size.
func (w *writer) writeDisk(ctx context.Context, rawPath string, u rootUse) (*disk.Result, error) {
	p := w.out.Plan
	step := time.Now()
	dopts := disk.Options{
		Size: p.Disk.Size, IDs: w.ids, Epoch: p.EpochTime(), WorkDir: filepath.Join(w.work, "disk"), Logger: w.log,
		ESPFiles: w.boot.ESPFiles, Upper: upperEntry, RootCache: w.rootSlot, Hasher: w.hasher,
	}
	if w.boot.BIOS != nil {
		dopts.MBRCode, dopts.BIOSCore = w.boot.BIOS.MBRCode, w.boot.BIOS.Core
	}
	stopWatch := watch(w.opts.Progress, w.out.Role+" disk", u.Sure+u.Host+espBytes(w.boot), func() int64 { return allocated(rawPath) })
	res, err := disk.Build(ctx, w.t, rawPath, dopts)
	stopWatch()
	if errors.Is(err, disk.ErrRootFull) {
		return nil, tooSmall(w.r, w.layout, "mke2fs ran out of room: "+err.Error())
	}
	if err != nil {
		return nil, fmt.Errorf("writing disk: %w", err)
	}
	w.out.Files = res.Files
	w.log.Info("raw disk written", "files", res.Files, "size", p.Disk.Size, "took", since(step))
	return res, nil
}

// espBytes is what the ESP's files hold.
func espBytes(b *boot.Result) int64 {
	var n int64
	for _, f := range b.ESPFiles {
		n += int64(len(f.Data))
		if fi, err := os.Stat(f.Source); f.Source != "" && err == nil {
			n += fi.Size()
		}
	}
	return n
}
