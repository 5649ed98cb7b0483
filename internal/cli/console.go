package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/labbake/labbake/internal/machine"
)

func newConsoleCmd(g *globals) *cobra.Command {
	f := &machineFlags{}
	cmd := &cobra.Command{
		Use:   "console MACHINE",
		Short: "Attach to a machine's serial console (detach with Ctrl-])",
		Long: `Console connects the terminal to the machine's serial console, as the
original lab's telnet did; Ctrl-] detaches and leaves the machine running.
Everything the console printed since the machine started is in
OUT/run/MACHINE.log.`,
		Example: `  labbake console node-one`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, _, err := g.machines(cmd, *f, args)
			if err != nil {
				return err
			}
			fd := int(os.Stdin.Fd())
			if term.IsTerminal(fd) {
				old, err := term.MakeRaw(fd)
				if err != nil {
					return err
				}
				defer term.Restore(fd, old)
				fmt.Fprintf(g.stderr, "connected to %s's console; Ctrl-] detaches\r\n", args[0])
			}
			err = machine.Attach(cmd.Context(), s.RunDir, args[0], os.Stdin, g.stdout)
			if errors.Is(err, os.ErrNotExist) {
				return &UsageError{err}
			}
			return err
		},
	}
	f.addNetwork(cmd)
	return cmd
}
