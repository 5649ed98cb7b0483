package cli

import (
	"errors"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/internal/bake"
	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/plan"
	"github.com/labbake/labbake/internal/recipe"
	"github.com/labbake/labbake/internal/resolve"
)

type buildOptions struct {
	all      bool
	compress bool
	keepRaw  bool
	inputs   inputFlags
}

func newBuildCmd(g *globals) *cobra.Command {
	o := &buildOptions{}
	cmd := &cobra.Command{
		Use:   "build ROLE... | --all",
		Short: "Bake the qcow2 image of one or more roles",
		Long: `Build bakes each role's recipe into OUT/ROLE.qcow2 and OUT/ROLE.manifest.json.
The image is written under a temporary name and renamed when complete, so a
failed or interrupted build leaves the previous image untouched. Two builds of
the same inputs give byte-identical images.`,
		Example: `  labbake build master
  labbake build --all --compress
  labbake -C examples/lab --out /tmp/out build master`,
		RunE: func(cmd *cobra.Command, args []string) error { return runBuild(cmd, g, o, args) },
	}
	cmd.Flags().BoolVar(&o.all, "all", false, "build every role named by a node in lab.yaml")
	cmd.Flags().BoolVar(&o.compress, "compress", false, "write compressed qcow2 clusters (smaller, slower to write)")
	cmd.Flags().BoolVar(&o.keepRaw, "keep-raw", false, "also keep the raw disk as OUT/ROLE.raw")
	cmd.Flags().BoolVar(&o.inputs.offline, "offline", false, "open no network connection: every input must be in the cache (labbake fetch, or bundle import)")
	cmd.Flags().BoolVar(&o.inputs.frozen, "frozen", false, "refuse any input that labbake.lock does not pin, or pins otherwise (for CI)")
	return cmd
}

func runBuild(cmd *cobra.Command, g *globals, o *buildOptions, args []string) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	lab, err := g.loadLab(cmd.Context())
	if err != nil {
		return err
	}
	names, err := roles(lab, args, o.all)
	if err != nil {
		return err
	}
	// Check every recipe before baking anything, so bad input writes nothing,
	// and report the problems of all of them at once.
	// Roles extending one recipe share its problems: report each once.
	var problems recipe.ErrorList
	seen := map[string]bool{}
	for _, role := range names {
		if _, err := lab.RecipeContext(cmd.Context(), role); err != nil {
			var el recipe.ErrorList
			if !errors.As(err, &el) {
				return err
			}
			for _, e := range el {
				if !seen[e.Error()] {
					seen[e.Error()] = true
					problems = append(problems, e)
				}
			}
		}
	}
	if len(problems) > 0 {
		return problems
	}
	res, err := g.resolver(log, o.inputs)
	if err != nil {
		return err
	}
	// With several roles, or offline, pin every role's inputs before baking
	// any, so that a missing input writes nothing and all are listed.
	if len(names) > 1 || o.inputs.offline {
		if err := resolveAll(cmd, g, lab, names, res); err != nil {
			return err
		}
	}
	for _, role := range names {
		res, err := bake.Build(cmd.Context(), lab, role, bake.Options{
			OutDir:          g.outDir(),
			CacheDir:        g.cache,
			Compress:        o.compress,
			KeepRaw:         o.keepRaw,
			SourceDateEpoch: g.getenv("SOURCE_DATE_EPOCH"),
			Logger:          log,
			Resolver:        res,
			Progress:        g.imageProgress(),
		})
		if err != nil {
			return fmt.Errorf("baking %s: %w", role, err)
		}
		fmt.Fprintf(g.stdout, "%s\t%s\tsha256:%s\t%d files\t%s\n", res.Image, iox.Bytes(res.Size), res.SHA256, res.Files, res.Took.Round(1e7))
		fmt.Fprintf(g.stdout, "%s\n", res.Manifest)
		if res.Raw != "" {
			fmt.Fprintf(g.stdout, "%s\n", res.Raw)
		}
	}
	// The machines of the roles built get their seeds.
	var machines []string
	for _, n := range lab.Nodes {
		if slices.Contains(names, n.Role) {
			machines = append(machines, n.Name)
		}
	}
	if len(machines) == 0 {
		return nil
	}
	seeds, err := bake.Seeds(cmd.Context(), lab, machines, g.seedOptions(log))
	if err != nil {
		return fmt.Errorf("writing seeds: %w", err)
	}
	for _, s := range seeds {
		fmt.Fprintf(g.stdout, "%s\n", s.Path)
	}
	return nil
}

// resolveAll pins the inputs of every role and reports all failures.
func resolveAll(cmd *cobra.Command, g *globals, lab *recipe.Lab, names []string, res *resolve.Resolver) error {
	var errs []error
	input := false
	for _, role := range names {
		if _, _, err := resolveRole(cmd, g, lab, role, res); err != nil {
			errs = append(errs, fmt.Errorf("role %s:\n%w", role, err))
			input = input || bake.IsInputError(err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	err := errors.Join(errs...)
	if input {
		return &bake.InputError{Err: err}
	}
	return err
}

func resolveRole(cmd *cobra.Command, g *globals, lab *recipe.Lab, role string, res *resolve.Resolver) (*recipe.Recipe, *plan.Plan, error) {
	return bake.Resolve(cmd.Context(), lab, role, g.getenv("SOURCE_DATE_EPOCH"), res)
}
