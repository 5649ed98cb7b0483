package cli

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newStatusCmd(g *globals) *cobra.Command {
	f := &machineFlags{}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [MACHINE...]",
		Short: "Show the lab's machines: state, pid, accelerator, addresses, ports, uptime",
		Long: `Status shows each machine: running, stopped (never started, or shut down)
or crashed (its QEMU went away without a clean shutdown); its pid, the
accelerator and network it runs with, its lab address and MAC, the host
ports forwarded to it and its uptime.`,
		Example: `  labbake status
  labbake status --json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, names, err := g.machines(cmd, *f, args)
			if err != nil {
				return err
			}
			st, err := s.Status(names)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "MACHINE\tROLE\tSTATE\tPID\tACCEL\tADDRESS\tMAC\tPORTS\tUPTIME")
			for _, m := range st {
				pid, uptime := "-", "-"
				if m.PID != 0 {
					pid = fmt.Sprint(m.PID)
				}
				if m.Uptime > 0 {
					uptime = m.Uptime.String()
				}
				var ports []string
				for k, v := range m.Ports {
					ports = append(ports, fmt.Sprintf("%s=127.0.0.1:%d", k, v))
				}
				sort.Strings(ports)
				p := strings.Join(ports, ",")
				if p == "" {
					p = "-"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Role, m.State, pid, orDash(m.Accel), m.Address, m.MAC, p, uptime)
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	f.addNetwork(cmd)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
