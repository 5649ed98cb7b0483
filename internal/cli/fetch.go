package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/internal/bake"
	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/plan"
)

func newFetchCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "fetch ROLE... | --all",
		Short: "Fill the cache with every input the roles need",
		Long: `Fetch downloads, pulls and builds every input of the roles — URLs and the
checksum files that pin them, OCI images, Debian bases made with mmdebstrap —
into the content-addressed cache, using labbake.lock when present. After it, a
build needs no network: labbake build --offline.`,
		Example: `  labbake fetch --all
  labbake fetch master --mirror https://dl.k8s.io=https://mirror.internal/k8s`,
		RunE: func(cmd *cobra.Command, args []string) error {
			plans, err := planRoles(cmd, g, args, all, inputFlags{})
			if err != nil {
				return err
			}
			for _, p := range plans {
				var size int64
				for _, in := range p.Inputs {
					size += in.Size
				}
				fmt.Fprintf(g.stdout, "%s\t%d inputs\t%s\tplan %s\n", p.Role, len(p.Inputs), iox.Bytes(size), p.Digest)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every role named by a node in lab.yaml")
	return cmd
}

// planRoles returns the complete plans of the named roles (or all),
// fetching what is missing unless offline; every failure of every role is
// reported.
func planRoles(cmd *cobra.Command, g *globals, args []string, all bool, f inputFlags) ([]*plan.Plan, error) {
	b, err := g.batch(cmd, args, all, f, bake.Options{})
	if err != nil {
		return nil, err
	}
	return b.Plans(cmd.Context())
}
