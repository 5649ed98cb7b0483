package cli

import (
	"errors"
	"log/slog"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/internal/lab"
	"github.com/labbake/labbake/internal/machine"
)

// machineFlags are the flags of the verbs that run the lab's machines.
type machineFlags struct {
	network  string
	accel    string
	restrict bool
}

func (f *machineFlags) add(cmd *cobra.Command) {
	f.addNetwork(cmd)
	cmd.Flags().StringVar(&f.accel, "accel", "auto", "auto (KVM when it runs guests here, else TCG), kvm or tcg")
	cmd.Flags().BoolVar(&f.restrict, "restrict", false, "user mode: the machines reach nothing outside this host but the forwarded ports")
}

// addNetwork adds only --network, for the verbs that start nothing.
func (f *machineFlags) addNetwork(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.network, "network", "", "auto (bridge when the host has lab.yaml's bridge, else user), bridge or user; default lab.yaml's network.mode")
}

// openLab loads lab.yaml and resolves how the lab runs on this host.
func (g *globals) openLab(cmd *cobra.Command, f machineFlags, log *slog.Logger) (*lab.Lab, error) {
	l, err := g.loadLab(cmd.Context())
	if err != nil {
		return nil, err
	}
	accel := f.accel
	if accel == "auto" {
		accel = ""
	}
	s, err := lab.Open(cmd.Context(), l, lab.Options{
		OutDir: g.outDir(), Network: f.network, Accel: accel, Restrict: f.restrict, Logger: log,
	})
	return s, usage(err)
}

// machines opens the lab and checks the machines named in args (all of
// them when there are none): what every machine verb starts with.
func (g *globals) machines(cmd *cobra.Command, f machineFlags, args []string) (*lab.Lab, []string, error) {
	log, err := g.logger()
	if err != nil {
		return nil, nil, err
	}
	s, err := g.openLab(cmd, f, log)
	if err != nil {
		return nil, nil, err
	}
	names, err := s.Names(args)
	if err != nil {
		return nil, nil, usage(err)
	}
	return s, names, nil
}

// usage turns the lab's usage errors into the CLI's (exit 2).
func usage(err error) error {
	var ue *lab.UsageError
	if errors.As(err, &ue) || errors.Is(err, machine.ErrImageChanged) {
		return &UsageError{err}
	}
	return err
}

// rel is a path under OUT as the user would type it.
func rel(g *globals, name string) string {
	return filepath.Join(g.outDir(), name)
}
