package cli

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/internal/bake"
)

func newKitCmd(g *globals) *cobra.Command {
	f := &machineFlags{}
	var kubevirt string
	cmd := &cobra.Command{
		Use:   "kit [--kubevirt REPO]",
		Short: "Write the host kit into OUT/kit/, or with --kubevirt the KubeVirt kit, without starting anything",
		Long: `Kit writes, from lab.yaml, the files the original lab set up by hand, for
people who run their machines with systemd instead of labbake up:
qemu@.service (a systemd user unit) with one vm/NODE.env per machine and the
run-qemu launcher it runs (the same QEMU command line labbake up uses), and
for the bridge network the systemd-networkd bridge (qemu0.netdev,
qemu0.network), a dnsmasq configuration with one dhcp-host per machine,
nftables NAT rules, the qemu bridge.conf line; ssh_config in either mode.
OUT/kit/README says which file goes where, in what order. labbake up writes
the same files.

With --kubevirt REPO, kit writes instead OUT/kit/kubevirt/, the lab on a
Kubernetes cluster with KubeVirt and Multus: one VirtualMachine per machine
of lab.yaml (its CPUs and memory; UEFI or BIOS as its role's image boots;
started when applied), whose root disk is its role's containerDisk by
digest and whose cloud-init seed comes from its Secret (secret-NODE.yaml,
mode 0600: the seed's private keys; never publish them), on the lab
segment, a bridge NetworkAttachmentDefinition without IPAM, and a
kustomization.yaml: kubectl apply -k OUT/kit/kubevirt. REPO names each
role's repository: {role} is replaced by the role, or -ROLE appended when
REPO has none. Each role's digest is read from OUT/ROLE.published.json
(labbake publish); kit refuses a role that is not published as a
containerDisk, published to another repository than REPO names, or rebuilt
since it was published (its qcow2 is not the one OUT/ROLE.manifest.json
describes). The seeds are rendered as labbake seed writes them (making the
lab's PKI if it has none yet).`,
		Example: `  labbake kit --network bridge && cat output/kit/README
  labbake kit --kubevirt ghcr.io/acme/labbake-{role} && kubectl apply -k output/kit/kubevirt`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("kubevirt") {
				if f.network != "" {
					return &UsageError{errors.New("--network is the host kit's; the KubeVirt kit's lab segment is a bridge on the cluster's nodes")}
				}
				if kubevirt == "" {
					return &UsageError{errors.New("--kubevirt: name the containerDisks' repository, e.g. ghcr.io/acme/labbake-{role}")}
				}
				dir, err := writeKubeVirtKit(cmd, g, kubevirt)
				if err != nil {
					return err
				}
				fmt.Fprintln(g.stdout, dir)
				return nil
			}
			s, _, err := g.machines(cmd, *f, nil)
			if err != nil {
				return err
			}
			if err := s.WriteKit(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, filepath.Join(s.OutDir, bake.KitDir))
			return nil
		},
	}
	f.addNetwork(cmd)
	cmd.Flags().StringVar(&kubevirt, "kubevirt", "", "write the KubeVirt kit (OUT/kit/kubevirt/) for the containerDisks published to `REPO` ({role} replaced by the role; -ROLE appended without one)")
	return cmd
}
