package cli

import (
	"errors"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/builders/qcow2"
	"github.com/labbake/labbake/internal/bake"
	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/source"
)

type buildOptions struct {
	all        bool
	compress   string // the value of --compress: "" when not given
	keepRaw    bool
	stageCache bool
	jobs       int
	fallback   string
	inputs     inputFlags
}

func newBuildCmd(g *globals) *cobra.Command {
	o := &buildOptions{}
	cmd := &cobra.Command{
		Use:   "build ROLE... | --all",
		Short: "Bake the qcow2 image of one or more roles",
		Long: `Build bakes each role's recipe into OUT/ROLE.qcow2, OUT/ROLE.manifest.json and
OUT/ROLE.spdx.json (an SPDX 2.3 SBOM: the image's Debian packages, inputs and
container images), and lists every image, manifest and SBOM in OUT/SHA256SUMS
(cd OUT && sha256sum -c SHA256SUMS). They are written under temporary names
and renamed together when complete, so a failed or interrupted build leaves the
previous ones untouched. Two builds of the same inputs give byte-identical
images and SBOMs.`,
		Example: `  labbake build master
  labbake build --all --compress
  labbake build master --compress=zstd
  labbake -C examples/lab --out /tmp/out build master`,
		RunE: func(cmd *cobra.Command, args []string) error { return runBuild(cmd, g, o, args) },
	}
	cmd.Flags().BoolVar(&o.all, "all", false, "build every role named by a node in lab.yaml")
	cmd.Flags().IntVarP(&o.jobs, "jobs", "j", 0, "roles baked at once (default: one per core, at most one per GiB of available memory)")
	cmd.Flags().StringVar(&o.compress, "compress", "", "write compressed qcow2 clusters (smaller, slower to write): zlib, the default, which every qcow2 reader knows (deflate is the same), or zstd, which QEMU reads from 5.1 on (--compress=zstd: with '=')")
	cmd.Flags().Lookup("compress").NoOptDefVal = "zlib" // --compress alone
	cmd.Flags().BoolVar(&o.keepRaw, "keep-raw", false, "also keep the raw disk as OUT/ROLE.raw")
	cmd.Flags().BoolVar(&o.stageCache, "stage-cache", true, "keep between builds each role's root file system without the recipe's own files (units, files, overlays; CACHE/stage), the tree of its base and layers (CACHE/trees) and its image's block map (CACHE/images), so that a build after editing those redoes only them; the image's bytes are the same either way")
	cmd.Flags().BoolVar(&o.inputs.offline, "offline", false, "open no network connection: every input must be in the cache (labbake fetch, or bundle import)")
	cmd.Flags().BoolVar(&o.inputs.frozen, "frozen", false, "refuse any input that labbake.lock does not pin, or pins otherwise (for CI)")
	cmd.Flags().StringVar(&o.fallback, "fallback-values", "", "when an input's host does not resolve from this machine, say so in one line and build with this values file laid over the lab too (make lab: values/from-source.yaml)")
	return cmd
}

// runBuild checks every recipe and pins every input of the roles before
// baking any, so that bad or missing input writes nothing; then bakes them
// and writes the seeds of their machines.
func runBuild(cmd *cobra.Command, g *globals, o *buildOptions, args []string) error {
	compress, err := compression(o.compress, args)
	if err != nil {
		return err
	}
	opts := bake.Options{Compress: compress, KeepRaw: o.keepRaw, Jobs: o.jobs, NoStageCache: !o.stageCache}
	b, err := g.batch(cmd, args, o.all, o.inputs, opts)
	if g.fallBack(o.fallback, err) {
		b, err = g.batch(cmd, args, o.all, o.inputs, opts)
	}
	if err != nil {
		return err
	}
	out, err := b.Build(cmd.Context(), g.seedOptions(b.Options().Logger))
	if len(out.Images) == 0 && g.fallBack(o.fallback, err) {
		// Every input was pinned by the lock, and fetching one failed:
		// nothing was written yet.
		if b, err = g.batch(cmd, args, o.all, o.inputs, opts); err != nil {
			return err
		}
		out, err = b.Build(cmd.Context(), g.seedOptions(b.Options().Logger))
	}
	for _, res := range out.Images {
		fmt.Fprintf(g.stdout, "%s\t%s\tsha256:%s\t%d files\t%s\n", res.Image, iox.Bytes(res.Size), res.SHA256, res.Files, res.Took.Round(1e7))
		if res.Space != nil {
			fmt.Fprintf(g.stdout, "  %s (labbake du %s)\n", spaceSummary(res.Space, 5), res.Role)
		}
		fmt.Fprintf(g.stdout, "%s\n", res.Manifest)
		if res.Raw != "" {
			fmt.Fprintf(g.stdout, "%s\n", res.Raw)
		}
	}
	for _, s := range out.Seeds {
		fmt.Fprintf(g.stdout, "%s\n", s.Path)
	}
	if err == nil && len(out.Images) > 0 {
		err = g.recordValues()
	}
	return err
}

// compression parses the value of --compress ("" when not given; "none"
// is accepted too). The flag's value is optional, so it must follow an
// equals sign: in "build master --compress zstd" the zstd is a second
// role, which is refused as the mistake it surely is.
func compression(flag string, args []string) (qcow2.Compression, error) {
	if flag == "" {
		return qcow2.NoCompression, nil
	}
	c, err := qcow2.ParseCompression(flag)
	if err != nil {
		return 0, &UsageError{fmt.Errorf("--compress=%s: want zlib (or deflate), zstd or none", flag)}
	}
	for _, a := range args {
		if ac, err := qcow2.ParseCompression(a); err == nil && ac != qcow2.NoCompression {
			return 0, &UsageError{fmt.Errorf("%q is taken for a role: write --compress=%s", a, a)}
		}
	}
	return c, nil
}

// fallBack reports whether a build that failed with err should be tried
// again with the values file: err says an input's host does not resolve,
// and the file is not yet laid over the lab. It then adds the file to the
// lab's values and says so in one line.
func (g *globals) fallBack(file string, err error) bool {
	var ue *source.UnreachableError
	if file == "" || !errors.As(err, &ue) || slices.Contains(g.values, file) {
		return false
	}
	fmt.Fprintf(g.stderr, "labbake: upstream cannot be reached from this machine (%s does not resolve): building with --values %s instead\n", ue.Host, file)
	g.values = append(g.values, file)
	return true
}

// batch loads the lab and prepares the roles a verb names (args, or all):
// their recipes rendered and their remote inputs pinned, by the fetch
// stage the input flags set up. opts holds the verb's own settings; batch
// fills in the global ones.
func (g *globals) batch(cmd *cobra.Command, args []string, all bool, f inputFlags, opts bake.Options) (*bake.Batch, error) {
	log, err := g.logger()
	if err != nil {
		return nil, err
	}
	lab, err := g.loadLab(cmd.Context())
	if err != nil {
		return nil, err
	}
	names, err := roles(lab, args, all)
	if err != nil {
		return nil, err
	}
	if opts.Resolver, err = g.resolver(log, f); err != nil {
		return nil, err
	}
	opts.OutDir, opts.CacheDir, opts.Logger = g.outDir(), g.cache, log
	opts.SourceDateEpoch, opts.Progress = g.getenv("SOURCE_DATE_EPOCH"), g.imageProgress()
	opts.Version = toolVersion()
	return bake.Prepare(cmd.Context(), lab, names, opts)
}
