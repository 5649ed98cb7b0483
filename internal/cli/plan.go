package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/internal/iox"
)

func newPlanCmd(g *globals) *cobra.Command {
	var asJSON bool
	var in inputFlags
	cmd := &cobra.Command{
		Use:   "plan ROLE",
		Short: "Print the resolved plan of a role: every input with its digest",
		Long: `Plan resolves a role's recipe into the plan a build would follow: every
input (base, layers, units, overlays) pinned by its sha256 digest, the epoch
used for all timestamps and the disk shape. The plan digest names the build:
equal digests give byte-identical images.`,
		Example: `  labbake plan master
  labbake plan master --json | jq .inputs`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			plans, err := planRoles(cmd, g, args, false, in)
			if err != nil {
				return err
			}
			p := plans[0]
			if asJSON {
				b, err := p.JSON()
				if err != nil {
					return err
				}
				_, err = g.stdout.Write(b)
				return err
			}
			fmt.Fprintf(g.stdout, "role %s of lab %s\nplan   %s\nrecipe %s\nepoch  %d (%s)\ndisk   %s %s, fstab %v\n",
				p.Role, p.Lab, p.Digest, p.RecipeDigest, p.Epoch, p.EpochSource, iox.Bytes(p.Disk.Size), p.Disk.Filesystem, p.Disk.FstabOptions)
			for _, in := range p.Inputs {
				fmt.Fprintf(g.stdout, "%-16s %-40s %s  (%s)\n", in.Kind, in.Name, in.Digest, in.Pos)
				if in.Source != "" && in.Source != in.Name {
					fmt.Fprintf(g.stdout, "%-16s   from %s\n", "", in.Source)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	cmd.Flags().BoolVar(&in.offline, "offline", false, "open no network connection: resolve from the cache and labbake.lock only")
	cmd.Flags().BoolVar(&in.frozen, "frozen", false, "refuse any input that labbake.lock does not pin")
	return cmd
}
