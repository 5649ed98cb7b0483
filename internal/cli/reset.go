package cli

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/internal/machine"
)

func newResetCmd(g *globals) *cobra.Command {
	f := &machineFlags{}
	var yes bool
	cmd := &cobra.Command{
		Use:   "reset MACHINE...",
		Short: "Throw a machine's disk away: the next up starts it fresh from its image",
		Long: `Reset deletes the machine's overlay (everything written to its disk since
its first up), its UEFI variables and its console log. The next labbake up
makes a new overlay of the role image and the seed is applied anew. The
machine must be stopped (labbake down). Asks first unless --yes.`,
		Example: `  labbake reset node-two
  labbake down && labbake reset --yes master node-one node-two`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return &UsageError{fmt.Errorf("name the machines to reset")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			s, _, err := g.machines(cmd, *f, args)
			if err != nil {
				return err
			}
			if !yes {
				fmt.Fprintf(g.stderr, "discard the disks of %s? [y/N] ", strings.Join(args, ", "))
				line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
					return &UsageError{fmt.Errorf("not reset (give --yes to skip the question)")}
				}
			}
			for _, name := range args {
				existed, err := machine.Reset(cmd.Context(), s.RunDir, name)
				if err != nil {
					return &UsageError{err}
				}
				if existed {
					fmt.Fprintf(g.stdout, "%s\treset\n", name)
				} else {
					fmt.Fprintf(g.stdout, "%s\tno disk to reset\n", name)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask")
	f.addNetwork(cmd)
	return cmd
}
