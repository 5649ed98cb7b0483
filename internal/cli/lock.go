package cli

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/internal/bake"
	"github.com/labbake/labbake/internal/resolve"
)

func newLockCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "lock",
		Short: "Pin every input of the lab in labbake.lock",
		Long: `Lock resolves every symbolic input of every role — image tags, checksum files,
Debian bases, Go programs (their go.sum and binary, and the hash of the Go
toolchain when one was fetched) — to digests and writes them to labbake.lock in the lab dir (sorted,
one input a line). Builds use the lock when it exists; build --frozen refuses
anything it does not pin, so a rebuild months later gets the same bits.`,
		Example: `  labbake lock && git add labbake.lock`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Preparing every role pins every remote input.
			b, err := g.batch(cmd, nil, true, inputFlags{}, bake.Options{})
			if err != nil {
				return err
			}
			res := b.Options().Resolver
			used := res.Used()
			res.Lock.Keep(used)
			if err := res.Lock.Save(); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s\t%d inputs pinned\n", filepath.Join(g.dir, resolve.LockFile), len(used))
			return nil
		},
	}
}
