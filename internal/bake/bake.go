package bake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/labbake/labbake/builders/boot"
	"github.com/labbake/labbake/builders/qcow2"
	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/plan"
	"github.com/labbake/labbake/internal/recipe"
	"github.com/labbake/labbake/internal/resolve"
)

// Options are the settings of a build that are not part of the plan: they
// change where things go, not what the image holds.
type Options struct {
	OutDir   string // results: ROLE.qcow2, ROLE.manifest.json, ROLE.spdx.json, SHA256SUMS
	CacheDir string // scratch work dirs live under CacheDir/tmp
	// Compress compresses the qcow2 clusters (qcow2.Zlib or qcow2.Zstd);
	// the zero value writes them as they are.
	Compress qcow2.Compression
	KeepRaw  bool // also leave the raw disk as OutDir/ROLE.raw
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
	// Version is labbake's, as ROLE.spdx.json names its creator
	// ("Tool: labbake-VERSION"); "" is written as "unknown".
	Version string
	// Jobs is how many roles bake at once; 0 means DefaultJobs.
	Jobs int
	// NoStageCache keeps no lower root file system between builds under
	// CacheDir/stage (see disk.Options.RootCache): every build makes it.
	// The bytes of the image are the same either way.
	NoStageCache bool
}

// rootSlot is where the lower root file system of role is kept between
// builds: one slot per lab dir and role, under CacheDir/stage ("" when
// there is no cache dir or the stage cache is off).
func (b *Batch) rootSlot(role string) string {
	if b.opts.NoStageCache || b.opts.CacheDir == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(b.Lab.Dir + "\x00" + role))
	return filepath.Join(b.opts.CacheDir, "stage", role+"-"+hex.EncodeToString(sum[:8]))
}

// snapshotDir is where the trees of bases and layers are kept between
// builds ("" when there is no cache dir or the stage cache is off).
func (b *Batch) snapshotDir() string {
	if b.opts.NoStageCache || b.opts.CacheDir == "" {
		return ""
	}
	return filepath.Join(b.opts.CacheDir, "trees")
}

// roleMemory is what one role's bake may take at its peak (measured: about
// 130 MiB for the shipped lab's master, writing its disk; mke2fs and the
// page cache beside it), so that DefaultJobs leaves the machine room.
const roleMemory = 1 << 30

// DefaultJobs is how many roles bake at once when Options.Jobs is 0: one
// per core (the stages of a bake are mostly single-threaded: assembling
// the tree, mke2fs, the qcow2 of an uncompressed image), at most one per
// GiB of available memory, at least one.
func DefaultJobs() int {
	n := runtime.NumCPU()
	if avail := iox.MemAvailable(); avail > 0 {
		n = min(n, int(avail/roleMemory))
	}
	return max(n, 1)
}

func (o Options) logger() *slog.Logger { return orDiscard(o.Logger) }

// orDiscard is l, or a logger that drops everything when l is nil.
func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// planResolver keeps a nil *Resolver a nil interface.
func (o Options) planResolver() plan.Resolver {
	if o.Resolver == nil {
		return nil
	}
	return o.Resolver
}

// InputError marks a failure caused by the build's inputs (a hostile or
// broken tar, a unit that cannot be enabled) rather than by the machine.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// IsInputError reports whether err was caused by bad input.
func IsInputError(err error) bool {
	var ie *InputError
	var el recipe.ErrorList
	return errors.As(err, &ie) || errors.As(err, &el)
}

// classify marks the resolve errors that are the user's to fix (an input
// missing offline, not locked, not matching its digest) as bad input.
func classify(err error) error {
	if resolve.IsInputError(err) {
		return &InputError{err}
	}
	return err
}

// at places an error of the input the recipe names at pos.
func at(pos recipe.Pos, err error) error {
	return &InputError{fmt.Errorf("%s:%d:%d: %w", pos.File, pos.Line, pos.Col, err)}
}

// bootError places an error of boot.Prepare: what the image lacks is the
// recipe's problem, named at kernel.version or disk.boot (exit 2);
// anything else (grub-mkimage failing to run) is the host's.
func bootError(r *recipe.Recipe, err error) error {
	if !boot.IsImageError(err) {
		return fmt.Errorf("preparing the boot loaders: %w", err)
	}
	if errors.Is(err, boot.ErrPinnedKernel) {
		return at(r.Kernel.Pos, fmt.Errorf("kernel.version: %w", err))
	}
	hint := ""
	if !r.Disk.BootSet {
		hint = " (disk.boot is [uefi, bios] unless the recipe says otherwise; disk.boot: [] makes an image that is not meant to boot)"
	}
	return at(r.Disk.BootPos, fmt.Errorf("disk.boot: %w%s", err, hint))
}

// Job is one role of a Batch: its recipe, rendered once, and its inputs
// from outside the lab dir, pinned.
type Job struct {
	Role   string
	Recipe *recipe.Recipe
	pins   *plan.Plan // made with plan.Options.RemoteOnly
}

// Batch is the work of one command on one or more roles of a lab: every
// recipe rendered and every remote input pinned before anything is
// written, then plans or images made from them. The verbs of the CLI
// (build, plan, fetch, lock, bundle export, cache prune) all go through it.
type Batch struct {
	Lab         *recipe.Lab
	Jobs        []Job
	epoch       int64
	epochSource string
	opts        Options
	files       *fileDigests
	// cleanup runs what frees space once a role's outputs are in place
	// (its work dir, its raw disk in memory, the image it replaced) while
	// the build goes on; Build waits for it before returning.
	cleanup sync.WaitGroup
}

// later runs f in the background; Build returns only once it is done.
func (b *Batch) later(f func()) {
	b.cleanup.Add(1)
	go func() {
		defer b.cleanup.Done()
		f()
	}()
}

// Prepare renders the recipe of each role once and pins the remote inputs
// of every role (fetching what is missing unless the resolver is offline).
// It reports the problems of all roles at once: recipe problems first (a
// problem of a recipe several roles extend, once), then inputs that cannot
// be pinned, by role. It writes nothing but the cache.
func Prepare(ctx context.Context, lab *recipe.Lab, roles []string, opts Options) (*Batch, error) {
	b := &Batch{Lab: lab, opts: opts, files: newFileDigests()}
	var problems recipe.ErrorList
	seen := map[string]bool{}
	for _, role := range roles {
		r, err := lab.RecipeContext(ctx, role)
		var el recipe.ErrorList
		switch {
		case errors.As(err, &el):
			for _, e := range el {
				if !seen[e.Error()] {
					seen[e.Error()] = true
					problems = append(problems, e)
				}
			}
		case err != nil:
			return nil, err
		}
		b.Jobs = append(b.Jobs, Job{Role: role, Recipe: r})
	}
	if len(problems) > 0 {
		return nil, problems
	}
	var err error
	if b.epoch, b.epochSource, err = plan.Epoch(opts.SourceDateEpoch, lab); err != nil {
		return nil, &InputError{err}
	}
	var images plan.ImageBuilder
	if opts.Resolver != nil {
		images = &imageBuilder{lab: lab, res: opts.Resolver, epoch: time.Unix(b.epoch, 0).UTC(), log: opts.logger()}
	}
	err = b.eachJob(func(_ int, j *Job) error {
		var err error
		j.pins, err = plan.New(ctx, lab, j.Recipe, b.epoch, b.epochSource, plan.Options{Resolver: opts.planResolver(), Images: images, RemoteOnly: true})
		return err
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Options returns the options the batch was prepared with.
func (b *Batch) Options() Options { return b.opts }

// eachJob runs fn for every job and reports every failure: one role's
// alone, several by role; bad input if any is.
func (b *Batch) eachJob(fn func(i int, j *Job) error) error {
	var errs []error
	input := false
	for i := range b.Jobs {
		err := fn(i, &b.Jobs[i])
		if err == nil {
			continue
		}
		err = classify(err)
		input = input || IsInputError(err)
		if len(b.Jobs) > 1 {
			err = fmt.Errorf("role %s:\n%w", b.Jobs[i].Role, err)
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil
	}
	err := errors.Join(errs...)
	if len(errs) == 1 {
		err = errs[0]
	}
	if input && !IsInputError(err) {
		return &InputError{err}
	}
	return err
}

// plan completes a job's plan: local inputs hashed (those the build has
// read already are not read again), remote ones as pinned.
func (b *Batch) plan(ctx context.Context, j *Job) (*plan.Plan, error) {
	p, err := plan.New(ctx, b.Lab, j.Recipe, b.epoch, b.epochSource, plan.Options{Files: b.files, Pinned: j.pins})
	if err != nil {
		return nil, classify(err)
	}
	return p, nil
}

// Plans returns the complete plan of every job, in role order, reporting
// the failures of all.
func (b *Batch) Plans(ctx context.Context) ([]*plan.Plan, error) {
	plans := make([]*plan.Plan, len(b.Jobs))
	err := b.eachJob(func(i int, j *Job) error {
		p, err := b.plan(ctx, j)
		plans[i] = p
		return err
	})
	if err != nil {
		return nil, err
	}
	return plans, nil
}

// Outcome is what Build wrote.
type Outcome struct {
	Images []*Result    // one per job, in role order
	Seeds  []SeedResult // the seeds of the machines of the roles built
}

// Build bakes the image of every job in turn, then writes the seeds of the
// lab's machines whose role it built (with the lab's PKI, kubeconfig and
// known_hosts: see Seeds). The seed files of those machines are read
// before anything is baked. On an error it returns what was written before.
func (b *Batch) Build(ctx context.Context, seeds SeedOptions) (*Outcome, error) {
	defer b.cleanup.Wait()
	out := &Outcome{}
	var machines []string
	for _, n := range b.Lab.Nodes {
		for _, j := range b.Jobs {
			if n.Role == j.Role {
				machines = append(machines, n.Name)
			}
		}
	}
	// The seeds' files are read again when the seeds are written; reading
	// them now makes a missing one fail the build before any image is baked.
	if len(machines) > 0 {
		if _, err := b.Lab.ReadSeedFiles(machines); err != nil {
			return out, err
		}
	}
	images, err := b.buildAll(ctx)
	out.Images = images
	if err != nil {
		return out, err
	}
	if len(machines) == 0 {
		return out, nil
	}
	s, err := Seeds(ctx, b.Lab, machines, seeds)
	if err != nil {
		return out, fmt.Errorf("writing seeds: %w", err)
	}
	out.Seeds = s
	return out, nil
}

// buildAll bakes the jobs, up to Options.Jobs at once. The first failure
// stops the others (they leave their previous outputs, as any failed
// build does); it returns the images baked, in role order, and that
// failure.
func (b *Batch) buildAll(ctx context.Context) ([]*Result, error) {
	jobs := b.opts.Jobs
	if jobs <= 0 {
		jobs = DefaultJobs()
	}
	jobs = min(jobs, len(b.Jobs))
	if jobs > 1 {
		// Bars of several roles redrawn in one place would garble each
		// other: the logs say what each does.
		b.opts.Progress = nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]*Result, len(b.Jobs))
	errs := make([]error, len(b.Jobs))
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for i := range b.Jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			if ctx.Err() != nil {
				errs[i] = ctx.Err()
				return
			}
			res, err := b.build(ctx, &b.Jobs[i])
			if err != nil {
				errs[i] = fmt.Errorf("baking %s: %w", b.Jobs[i].Role, err)
				cancel()
				return
			}
			results[i] = res
		}()
	}
	wg.Wait()
	var done []*Result
	for _, r := range results {
		if r != nil {
			done = append(done, r)
		}
	}
	// The failure that stopped the others, not their being stopped.
	var stopped error
	for _, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, context.Canceled) && stopped == nil:
			stopped = err
		case !errors.Is(err, context.Canceled):
			return done, err
		}
	}
	return done, stopped
}

// rel names a lab path relative to the lab dir.
func rel(lab *recipe.Lab, path string) string {
	if r, err := filepath.Rel(lab.Dir, path); err == nil && !strings.HasPrefix(r, "..") {
		return filepath.ToSlash(r)
	}
	return path
}

func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }
