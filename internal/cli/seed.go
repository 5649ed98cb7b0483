package cli

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/internal/bake"
	"github.com/labbake/labbake/internal/recipe"
)

type seedOptions struct{ all bool }

func newSeedCmd(g *globals) *cobra.Command {
	o := &seedOptions{}
	cmd := &cobra.Command{
		Use:   "seed NODE... | --all",
		Short: "Write the cloud-init seed ISO of one or more machines",
		Long: `Seed writes OUT/seed/NODE.iso for each machine: a NoCloud seed (volume id
cidata, ISO 9660 with Rock Ridge and Joliet) holding everything that makes
that machine this machine — hostname, static lab address matched by the
MAC derived from its name, SSH host key, who may log in, its certificates,
keys and kubeconfigs, /etc/network-environment, and the files lab.yaml's
seed_files give it (your secrets: read from the lab dir now, a missing one
fails with nothing written). Role images hold none of it, so they are the
same for every machine and every lab.

The lab's PKI (OUT/pki/, 0700) is made on first need and reused after;
seeds are 0600. Seed also writes OUT/kubeconfig (the admin's) and
OUT/kit/known_hosts (every machine's host key under its name and address).
labbake build writes the seeds of the machines of the roles it builds.`,
		Example: `  labbake seed --all
  labbake seed node-one`,
		RunE: func(cmd *cobra.Command, args []string) error { return runSeed(cmd, g, o, args) },
	}
	cmd.Flags().BoolVar(&o.all, "all", false, "every machine of lab.yaml")
	return cmd
}

func runSeed(cmd *cobra.Command, g *globals, o *seedOptions, args []string) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	lab, err := g.loadLab(cmd.Context())
	if err != nil {
		return err
	}
	nodes, err := nodeNames(lab, args, o.all)
	if err != nil {
		return err
	}
	res, err := bake.Seeds(cmd.Context(), lab, nodes, g.seedOptions(log))
	if err != nil {
		return err
	}
	for _, r := range res {
		fmt.Fprintf(g.stdout, "%s\t%s\n", r.Path, r.InstanceID)
	}
	return nil
}

func (g *globals) seedOptions(log *slog.Logger) bake.SeedOptions {
	return bake.SeedOptions{OutDir: g.outDir(), SourceDateEpoch: g.getenv("SOURCE_DATE_EPOCH"), Now: time.Now(), Logger: log}
}

// nodeNames picks the machines a verb works on: its arguments, checked
// against lab.yaml, or with all every machine.
func nodeNames(lab *recipe.Lab, args []string, all bool) ([]string, error) {
	switch {
	case all && len(args) > 0:
		return nil, &UsageError{fmt.Errorf("give machines or --all, not both")}
	case all:
		names := make([]string, len(lab.Nodes))
		for i, n := range lab.Nodes {
			names[i] = n.Name
		}
		return names, nil
	case len(args) == 0:
		return nil, &UsageError{fmt.Errorf("name a machine of lab.yaml (e.g. %s) or give --all", lab.Nodes[0].Name)}
	}
	for _, a := range args {
		if _, ok := lab.Node(a); !ok {
			return nil, &UsageError{fmt.Errorf("no machine %q in lab.yaml (machines: %s)", a, machineList(lab))}
		}
	}
	return args, nil
}

func machineList(lab *recipe.Lab) string {
	s := ""
	for i, n := range lab.Nodes {
		if i > 0 {
			s += ", "
		}
		s += n.Name
	}
	return s
}
