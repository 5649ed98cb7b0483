package cli

import (
	"github.com/spf13/cobra"
)

func newRenderCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "render ROLE",
		Short: "Print a role's recipe as labbake sees it",
		Long: `Render prints the effective recipe of a role: its templates rendered with the
lab's values, the recipe it extends merged in, as YAML. Nothing is built.`,
		Example: `  labbake render master
  labbake -C examples/lab render node`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lab, err := g.loadLab(cmd.Context())
			if err != nil {
				return err
			}
			r, err := lab.RecipeContext(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			_, err = g.stdout.Write(r.Rendered)
			return err
		},
	}
}

// exactArgs is cobra.ExactArgs with a usage error (exit 2).
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return &UsageError{err}
		}
		return nil
	}
}
