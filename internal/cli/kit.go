package cli

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/internal/bake"
)

func newKitCmd(g *globals) *cobra.Command {
	f := &machineFlags{}
	cmd := &cobra.Command{
		Use:   "kit",
		Short: "Write the host kit into OUT/kit/ without starting anything",
		Long: `Kit writes, from lab.yaml, the files the original lab set up by hand, for
people who run their machines with systemd instead of labbake up:
qemu@.service (a systemd user unit) with one vm/NODE.env per machine and the
run-qemu launcher it runs (the same QEMU command line labbake up uses), and
for the bridge network the systemd-networkd bridge (qemu0.netdev,
qemu0.network), a dnsmasq configuration with one dhcp-host per machine,
nftables NAT rules, the qemu bridge.conf line; ssh_config in either mode.
OUT/kit/README says which file goes where, in what order. labbake up writes
the same files.`,
		Example: `  labbake kit --network bridge && cat output/kit/README`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, _, err := g.machines(cmd, *f, nil)
			if err != nil {
				return err
			}
			if err := s.WriteKit(); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, filepath.Join(s.OutDir, bake.KitDir))
			return nil
		},
	}
	f.addNetwork(cmd)
	return cmd
}
