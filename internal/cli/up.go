package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newUpCmd(g *globals) *cobra.Command {
	f := &machineFlags{}
	cmd := &cobra.Command{
		Use:   "up [MACHINE...]",
		Short: "Start the lab's machines (all of them, or those named)",
		Long: `Up starts each machine of lab.yaml with QEMU, daemonized: a thin qcow2
overlay of its role image (OUT/run/NAME.qcow2, made on first up and kept
until labbake reset), its seed ISO, its lab NIC with the MAC derived from
its name, the serial console on a unix socket (labbake console) and logged
to OUT/run/NAME.log, QMP on a unix socket. KVM when it runs guests here,
TCG otherwise. Nothing listens on anything but 127.0.0.1 and unix sockets.

Networks (--network, or lab.yaml's network.mode):
  bridge  taps on the host bridge (qemu0), as the original lab: install the
          host kit first (OUT/kit/README)
  user    no root: the machines share one L2 segment (a multicast group on
          127.0.0.1) where they have their lab addresses, and each has a
          user-mode uplink; ssh and the API are forwarded to 127.0.0.1 ports
          (OUT/kit/ssh_config, OUT/kubeconfig), and so are the NodePorts
          lab.yaml lists in network.node_ports (to the control plane;
          labbake status shows them)

Up refuses when an image or seed is missing or older than its recipe or
lab.yaml (labbake build), or when a role image changed under a machine's
overlay (labbake reset). A machine that runs already is left alone. Up also
writes the host kit into OUT/kit/.`,
		Example: `  labbake build --all && labbake up
  labbake up master node-one
  labbake up --network user`,
		RunE: func(cmd *cobra.Command, args []string) error { return runUp(cmd, g, *f, args) },
	}
	f.add(cmd)
	return cmd
}

func runUp(cmd *cobra.Command, g *globals, f machineFlags, args []string) error {
	s, names, err := g.machines(cmd, f, args)
	if err != nil {
		return err
	}
	if err := s.Check(names); err != nil {
		return usage(err)
	}
	if err := s.ResolveAccel(cmd.Context()); err != nil {
		return usage(err)
	}
	if err := s.WriteKit(cmd.Context()); err != nil {
		return err
	}
	start := time.Now()
	var errs []error
	for _, r := range s.Up(cmd.Context(), names) {
		switch {
		case r.Err != nil:
			errs = append(errs, r.Err)
		case r.Started:
			fmt.Fprintf(g.stdout, "%s\tstarted\n", r.Name)
		default:
			fmt.Fprintf(g.stdout, "%s\talready running\n", r.Name)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return usage(err)
	}
	fmt.Fprintf(g.stderr, "%d machines up in %s (%s, %s network); labbake status, labbake console NAME, labbake ssh NAME\n",
		len(names), time.Since(start).Round(time.Millisecond), s.Accel, s.Mode)
	if server, ok := s.APIServer(); ok {
		fmt.Fprintf(g.stderr, "kubectl --kubeconfig %s get nodes   # API at %s\n", rel(g, "kubeconfig"), server)
	}
	for _, f := range s.NodePorts() {
		fmt.Fprintf(g.stderr, "NodePort %d at 127.0.0.1:%d\n", f.GuestPort, f.HostPort)
	}
	return nil
}
