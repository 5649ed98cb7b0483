package cli

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/spf13/cobra"
)

func newSSHCmd(g *globals) *cobra.Command {
	f := &machineFlags{}
	cmd := &cobra.Command{
		Use:   "ssh MACHINE [-- COMMAND...]",
		Short: "Log in to a machine with ssh (the lab key, its known host key)",
		Long: `Ssh runs ssh with OUT/kit/ssh_config, which labbake up writes: the lab key
(or your own, with ssh.authorized_keys in lab.yaml), OUT/kit/known_hosts so
the first login asks nothing, and the machine's lab address on the bridge or
its forwarded port on 127.0.0.1 in user mode. Arguments after -- are the
command to run.`,
		Example: `  labbake ssh master
  labbake ssh master -- uptime`,
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() == 0 || len(args) == 0 {
				return &UsageError{fmt.Errorf("name a machine: labbake ssh MACHINE [-- COMMAND...]")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			s, _, err := g.machines(cmd, *f, args[:1])
			if err != nil {
				return err
			}
			name, rest := args[0], args[1:]
			if dash := cmd.ArgsLenAtDash(); dash > 1 {
				return &UsageError{fmt.Errorf("one machine, then -- and the command")}
			}
			conf := s.SSHConfig()
			if _, err := os.Stat(conf); err != nil {
				return &UsageError{fmt.Errorf("%s does not exist: labbake up writes it", conf)}
			}
			sshArgs := append([]string{"-F", conf, name}, rest...)
			c := exec.CommandContext(cmd.Context(), "ssh", sshArgs...)
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, g.stdout, g.stderr
			if err := c.Run(); err != nil {
				if ee, ok := err.(*exec.ExitError); ok {
					return &ExitError{Code: ee.ExitCode(), Err: fmt.Errorf("ssh %s: %w", name, err)}
				}
				return fmt.Errorf("ssh: %w (Debian package openssh-client)", err)
			}
			return nil
		},
	}
	f.addNetwork(cmd)
	return cmd
}
