package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/internal/cache"
	"github.com/labbake/labbake/internal/iox"
)

func newCacheCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "List, verify and prune the content-addressed cache",
		Example: `  labbake cache ls
  labbake cache verify
  labbake cache prune`,
	}
	cmd.AddCommand(newCacheLsCmd(g), newCacheVerifyCmd(g), newCachePruneCmd(g))
	return cmd
}

func newCacheLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Short:   "List the cached blobs with their sizes and names",
		Example: `  labbake cache ls`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cache.Open(g.cache, nil)
			if err != nil {
				return err
			}
			blobs, err := c.List()
			if err != nil {
				return err
			}
			var total int64
			for _, b := range blobs {
				total += b.Size
				fmt.Fprintf(g.stdout, "%s\t%10s\t%s\n", b.Digest, iox.Bytes(b.Size), joinRefs(b.Refs))
			}
			fmt.Fprintf(g.stdout, "%d blobs, %s in %s\n", len(blobs), iox.Bytes(total), c.Dir())
			return nil
		},
	}
}

func newCacheVerifyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "verify",
		Short:   "Re-hash every cached blob and report the corrupt ones",
		Example: `  labbake cache verify`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cache.Open(g.cache, nil)
			if err != nil {
				return err
			}
			problems, err := c.VerifyAll(cmd.Context())
			if err != nil {
				return err
			}
			for _, p := range problems {
				fmt.Fprintf(g.stdout, "%s\t%s\t%v\n", p.Digest, p.Path, p.Err)
			}
			if len(problems) > 0 {
				return fmt.Errorf("cache verify: %d problems (remove a corrupt blob with labbake cache prune, then fetch again)", len(problems))
			}
			fmt.Fprintln(g.stdout, "cache verified: no problems")
			return nil
		},
	}
}

func newCachePruneCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Remove the blobs the lab's roles no longer need",
		Long: `Prune removes every cached blob that no role of the lab in --dir needs (as
resolved from the cache and labbake.lock, offline) and that no named reference
points to, and corrupt blobs. It removes nothing from a --cache directory that
labbake did not create (one without labbake's CACHEDIR.TAG at its top).`,
		Example: `  labbake -C examples/lab cache prune`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cache.Open(g.cache, nil)
			if err != nil {
				return err
			}
			// --cache names a directory labbake did not make: remove
			// nothing from it.
			if err := c.CheckOwned("prune"); err != nil {
				return &UsageError{err}
			}
			plans, err := planRoles(cmd, g, nil, true, inputFlags{offline: true})
			if err != nil {
				return fmt.Errorf("cache prune: the lab's inputs must resolve from the cache first: %w", err)
			}
			keep := map[string]bool{}
			for _, p := range plans {
				for _, d := range p.Blobs() {
					keep[d] = true
				}
			}
			problems, err := c.VerifyAll(cmd.Context())
			if err != nil {
				return err
			}
			// Corrupt blobs go even when a reference names them: the
			// next fetch stores them anew.
			removed := 0
			for _, p := range problems {
				if p.Digest != "" && c.Remove(p.Digest) == nil {
					removed++
				}
			}
			n, freed, err := c.Prune(func(d string) bool { return keep[d] })
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "removed %d blobs (%d corrupt), freed %s\n", n+removed, removed, iox.Bytes(freed))
			return nil
		},
	}
}

func joinRefs(refs []string) string {
	if len(refs) == 0 {
		return "-"
	}
	out := refs[0]
	for _, r := range refs[1:] {
		out += ", " + r
	}
	return out
}
