package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/internal/cache"
	"github.com/labbake/labbake/internal/plan"
	"github.com/labbake/labbake/internal/resolve"
)

func newBundleCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Carry a lab's inputs into an air-gapped network in one file",
		Example: `  labbake bundle export lab.bundle.zst --all     # on the connected machine
  labbake bundle import lab.bundle.zst           # on the offline one
  labbake build --offline --all`,
	}
	var all, offline bool
	export := &cobra.Command{
		Use:   "export FILE [ROLE... | --all]",
		Short: "Write one file holding labbake.lock and every blob the roles need",
		Long: `Export resolves the roles (fetching what is missing unless --offline) and
writes FILE: labbake.lock, the cache's named references and every blob the roles
need. A name ending in .zst gives a zstd-compressed bundle.`,
		Example: `  labbake bundle export lab.bundle.zst --all`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return &UsageError{errors.New("bundle export needs a FILE")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			plans, err := planRoles(cmd, g, args[1:], all, inputFlags{offline: offline})
			if err != nil {
				return err
			}
			c, err := cache.Open(g.cache, nil)
			if err != nil {
				return err
			}
			var digests []string
			for _, p := range plans {
				for _, d := range planDigests(p) {
					if c.Has(d) && !slices.Contains(digests, d) {
						digests = append(digests, d)
					}
				}
			}
			allRefs, err := c.Refs()
			if err != nil {
				return err
			}
			refs := map[string]string{}
			for k, d := range allRefs {
				if slices.Contains(digests, d) {
					refs[k] = d
				}
			}
			lock, err := os.ReadFile(filepath.Join(g.dir, resolve.LockFile))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			file := args[0]
			tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-*")
			if err != nil {
				return fmt.Errorf("writing %s: %w", file, err)
			}
			defer os.Remove(tmp.Name())
			bw := bufio.NewWriterSize(tmp, 4<<20)
			if err := c.ExportBundle(cmd.Context(), bw, lock, refs, digests, strings.HasSuffix(file, ".zst")); err != nil {
				tmp.Close()
				return err
			}
			if err := bw.Flush(); err != nil {
				tmp.Close()
				return fmt.Errorf("writing %s: %w", file, err)
			}
			if err := tmp.Close(); err != nil {
				return fmt.Errorf("writing %s: %w", file, err)
			}
			if err := os.Rename(tmp.Name(), file); err != nil {
				return fmt.Errorf("writing %s: %w", file, err)
			}
			st, _ := os.Stat(file)
			fmt.Fprintf(g.stdout, "%s\t%d blobs\t%s\n", file, len(digests), humanBytes(st.Size()))
			return nil
		},
	}
	export.Flags().BoolVar(&all, "all", false, "every role named by a node in lab.yaml")
	export.Flags().BoolVar(&offline, "offline", false, "take everything from the cache, open no connection")
	imp := &cobra.Command{
		Use:   "import FILE",
		Short: "Verify a bundle and add its blobs to the cache",
		Long: `Import checks every blob of FILE against its digest before adding anything to
the cache; a truncated or tampered bundle changes nothing. When the lab dir has
no labbake.lock, the bundle's is written there.`,
		Example: `  labbake bundle import lab.bundle.zst && labbake build --offline --all`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cache.Open(g.cache, nil)
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return &UsageError{err}
			}
			defer f.Close()
			info, err := c.ImportBundle(cmd.Context(), bufio.NewReaderSize(f, 4<<20))
			if err != nil {
				return err
			}
			lockPath := filepath.Join(g.dir, resolve.LockFile)
			if len(info.Lock) > 0 {
				if _, err := os.Stat(lockPath); errors.Is(err, fs.ErrNotExist) {
					if err := os.WriteFile(lockPath, info.Lock, 0o644); err != nil {
						return err
					}
					fmt.Fprintf(g.stdout, "%s written from the bundle\n", lockPath)
				}
			}
			fmt.Fprintf(g.stdout, "%d blobs and %d references imported into %s\n", len(info.Blobs), len(info.Refs), c.Dir())
			return nil
		},
	}
	cmd.AddCommand(export, imp)
	return cmd
}

// planDigests lists every cached blob a plan reads: fetched files, Debian
// tarballs, and each image's manifest, config and layers.
func planDigests(p *plan.Plan) []string {
	var out []string
	for _, in := range p.Inputs {
		switch in.Kind {
		case "base-debian", "artifact-url", "artifact-archive":
			out = append(out, in.Digest)
		case "base-oci", "layer-oci", "artifact-image":
			out = append(out, in.Digest, in.Config)
			out = append(out, in.Layers...)
		}
	}
	return out
}
