package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/internal/bake"
	"github.com/labbake/labbake/internal/recipe"
)

type buildOptions struct {
	all      bool
	compress bool
	keepRaw  bool
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
	return cmd
}

func runBuild(cmd *cobra.Command, g *globals, o *buildOptions, args []string) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	lab, err := g.loadLab()
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
		if _, err := lab.Recipe(role); err != nil {
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
	for _, role := range names {
		res, err := bake.Build(cmd.Context(), lab, role, bake.Options{
			OutDir:          g.outDir(),
			CacheDir:        g.cache,
			Compress:        o.compress,
			KeepRaw:         o.keepRaw,
			SourceDateEpoch: g.getenv("SOURCE_DATE_EPOCH"),
			Logger:          log,
		})
		if err != nil {
			return fmt.Errorf("baking %s: %w", role, err)
		}
		fmt.Fprintf(g.stdout, "%s\t%s\tsha256:%s\t%d files\t%s\n", res.Image, humanBytes(res.Size), res.SHA256, res.Files, res.Took.Round(1e7))
		fmt.Fprintf(g.stdout, "%s\n", res.Manifest)
		if res.Raw != "" {
			fmt.Fprintf(g.stdout, "%s\n", res.Raw)
		}
	}
	return nil
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
