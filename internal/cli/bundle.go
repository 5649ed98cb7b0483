package cli

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/labbake/labbake/internal/atomicfile"
	"github.com/labbake/labbake/internal/cache"
	"github.com/labbake/labbake/internal/iox"
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
			return runBundleExport(cmd, g, args[0], args[1:], all, offline)
		},
	}
	export.Flags().BoolVar(&all, "all", false, "every role named by a node in lab.yaml")
	export.Flags().BoolVar(&offline, "offline", false, "take everything from the cache, open no connection")
	imp := &cobra.Command{
		Use:   "import FILE",
		Short: "Verify a bundle and add its blobs to the cache",
		Long: `Import checks every blob of FILE against its digest, and the labbake.lock it
carries as one in the lab dir is checked, before adding anything to the cache; a
truncated, tampered or malformed bundle changes nothing (exit 2). When the lab
dir has no labbake.lock, the bundle's is written there; one already there, even
a symlink, is kept.`,
		Example: `  labbake bundle import lab.bundle.zst && labbake build --offline --all`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBundleImport(cmd, g, args[0])
		},
	}
	cmd.AddCommand(export, imp)
	return cmd
}

// runBundleExport writes the bundle of the roles' inputs to file.
func runBundleExport(cmd *cobra.Command, g *globals, file string, roleArgs []string, all, offline bool) error {
	plans, err := planRoles(cmd, g, roleArgs, all, inputFlags{offline: offline})
	if err != nil {
		return err
	}
	c, err := cache.Open(g.cache, nil)
	if err != nil {
		return err
	}
	var digests []string
	for _, p := range plans {
		for _, d := range p.Blobs() {
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
	// Written to a temp file, fsynced and renamed: FILE is whole or not
	// there (or as it was).
	f, err := atomicfile.Create(file, 0o644)
	if err != nil {
		return err
	}
	defer f.Abort()
	bw := bufio.NewWriterSize(f, 4<<20)
	if err := c.ExportBundle(cmd.Context(), bw, lock, refs, digests, strings.HasSuffix(file, ".zst")); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	if err := f.Commit(); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "%s\t%d blobs\t%s\n", file, len(digests), iox.Bytes(fi.Size()))
	return nil
}

// runBundleImport adds a bundle's blobs and refs to the cache and, when the
// lab dir has no labbake.lock, writes the bundle's there. The bundle's lock
// is checked like one in the lab dir before anything is imported, and is
// written atomically, never through a symlink: a labbake.lock of any kind
// already there, a dangling symlink included, is left as it is. A bundle
// at fault (truncated, tampered, malformed) is bad input: exit 2.
func runBundleImport(cmd *cobra.Command, g *globals, file string) error {
	c, err := cache.Open(g.cache, nil)
	if err != nil {
		return err
	}
	f, err := os.Open(file)
	if err != nil {
		return &UsageError{err}
	}
	defer f.Close()
	opts := cache.ImportOptions{CheckLock: func(b []byte) error {
		_, err := resolve.ParseLock(resolve.LockFile, b)
		return err
	}}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	switch {
	case fi.Mode().IsRegular():
		opts.Size = fi.Size()
	case fi.IsDir():
		return &UsageError{fmt.Errorf("%s: a directory, not a bundle", file)}
	}
	info, err := c.ImportBundle(cmd.Context(), bufio.NewReaderSize(f, 4<<20), opts)
	if errors.Is(err, cache.ErrBadBundle) {
		return &UsageError{fmt.Errorf("%s: %w", file, err)}
	}
	if err != nil {
		return err
	}
	if len(info.Lock) > 0 {
		lockPath := filepath.Join(g.dir, resolve.LockFile)
		err := atomicfile.WriteNew(lockPath, info.Lock, 0o644)
		switch {
		case err == nil:
			fmt.Fprintf(g.stdout, "%s written from the bundle\n", lockPath)
		case errors.Is(err, fs.ErrExist):
			note := ""
			if b, rerr := readRegular(lockPath); rerr != nil || !bytes.Equal(b, info.Lock) {
				note = "; it differs from the bundle's (labbake lock updates it)"
			}
			fmt.Fprintf(g.stdout, "%s kept, not replaced by the bundle's%s\n", lockPath, note)
		default:
			return err
		}
	}
	fmt.Fprintf(g.stdout, "%d blobs and %d references imported into %s\n", len(info.Blobs), len(info.Refs), c.Dir())
	return nil
}

// readRegular reads path if it is a regular file (not a symlink, FIFO or
// device).
func readRegular(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	return os.ReadFile(path)
}
