package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newDownCmd(g *globals) *cobra.Command {
	f := &machineFlags{}
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "down [MACHINE...]",
		Short: "Shut the lab's machines down cleanly (all, or those named)",
		Long: `Down presses each machine's ACPI power button over QMP and waits for the
guest to shut down and QEMU to exit; after --timeout it tells QEMU to quit,
and kills it if that fails too, and says so. The machines' disks (overlays)
are kept: the next labbake up continues where they stopped.`,
		Example: `  labbake down
  labbake down node-two --timeout 10s`,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, names, err := g.machines(cmd, *f, args)
			if err != nil {
				return err
			}
			var errs []error
			for _, r := range s.Down(cmd.Context(), names, timeout) {
				switch {
				case r.Err != nil:
					errs = append(errs, fmt.Errorf("%s: %w", r.Name, r.Err))
				case !r.WasRunning:
					fmt.Fprintf(g.stdout, "%s\tnot running\n", r.Name)
				case r.Clean:
					fmt.Fprintf(g.stdout, "%s\tshut down in %s\n", r.Name, r.Took.Round(100*time.Millisecond))
				case r.NoQMP:
					fmt.Fprintf(g.stdout, "%s\tstopped without a clean shutdown: its QMP socket did not answer\n", r.Name)
				default:
					fmt.Fprintf(g.stdout, "%s\tkilled: no clean shutdown within %s\n", r.Name, timeout)
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long a guest may take to shut down before QEMU is stopped")
	f.addNetwork(cmd)
	return cmd
}
