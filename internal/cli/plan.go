package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/plan"
)

func newPlanCmd(g *globals) *cobra.Command {
	var asJSON, all bool
	var in inputFlags
	cmd := &cobra.Command{
		Use:   "plan ROLE... | --all",
		Short: "Print the resolved plan of a role: every input with its digest",
		Long: `Plan resolves a role's recipe into the plan a build would follow: every
input (base, layers, units, overlays) pinned by its sha256 digest, the epoch
used for all timestamps and the disk shape. The plan digest names the build:
equal digests give byte-identical images.

With one role --json prints its plan; with several (or --all) a JSON array of
plans, in the order of the roles.`,
		Example: `  labbake plan master
  labbake plan master --json | jq .inputs
  labbake plan --all --json | jq -r '.[].inputs[] | "\(.kind) \(.name) \(.digest)"'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			plans, err := planRoles(cmd, g, args, all, in)
			if err != nil {
				return err
			}
			if asJSON {
				return writePlansJSON(g, plans, len(args) == 1 && !all)
			}
			for i, p := range plans {
				if i > 0 {
					fmt.Fprintln(g.stdout)
				}
				printPlan(g, p)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON (an array of plans for several roles)")
	cmd.Flags().BoolVar(&all, "all", false, "every role named by a node in lab.yaml")
	cmd.Flags().BoolVar(&in.offline, "offline", false, "open no network connection: resolve from the cache and labbake.lock only")
	cmd.Flags().BoolVar(&in.frozen, "frozen", false, "refuse any input that labbake.lock does not pin")
	return cmd
}

// writePlansJSON prints one plan's JSON, or an array of them.
func writePlansJSON(g *globals, plans []*plan.Plan, single bool) error {
	if single {
		b, err := plans[0].JSON()
		if err != nil {
			return err
		}
		_, err = g.stdout.Write(b)
		return err
	}
	b, err := json.MarshalIndent(plans, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding plans: %w", err)
	}
	_, err = g.stdout.Write(append(b, '\n'))
	return err
}

// printPlan prints a plan for people.
func printPlan(g *globals, p *plan.Plan) {
	fmt.Fprintf(g.stdout, "role %s of lab %s\nplan   %s\nrecipe %s\nepoch  %d (%s)\ndisk   %s %s, fstab %v\n",
		p.Role, p.Lab, p.Digest, p.RecipeDigest, p.Epoch, p.EpochSource, iox.Bytes(p.Disk.Size), p.Disk.Filesystem, p.Disk.FstabOptions)
	for _, in := range p.Inputs {
		fmt.Fprintf(g.stdout, "%-16s %-40s %s  (%s)\n", in.Kind, in.Name, in.Digest, in.Pos)
		if in.Source != "" && in.Source != in.Name {
			fmt.Fprintf(g.stdout, "%-16s   from %s\n", "", in.Source)
		}
	}
}
