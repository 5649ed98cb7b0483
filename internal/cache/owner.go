package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/labbake/labbake/internal/atomicfile"
)

// ErrForeign is wrapped by the error of an operation that would remove
// files from a cache directory that labbake did not create (see Open).
var ErrForeign = errors.New("not a cache directory labbake created")

// The marker at the top of a cache directory labbake created: a cache
// directory tag (https://bford.info/cachedir/), which also makes backup
// tools skip the cache, with labbake's own lines. Only a file with exactly
// this content marks a directory as labbake's.
const (
	tagName    = "CACHEDIR.TAG"
	tagContent = "Signature: 8a477f597d28d172789f06886806bc55\n" +
		"# This file is a cache directory tag created by labbake.\n" +
		"# labbake made this directory for its cache: blobs, refs, ingest, locks, tmp.\n"
	// tagTempPrefix starts the name of the temp file a tag is written to
	// before its rename (see atomicfile); such files do not make a
	// directory "not empty" (two processes may claim a new cache at once).
	tagTempPrefix = "." + tagName + ".tmp-"
)

// claim makes dir if needed and tells whether labbake owns it: it does if
// dir carries labbake's tag, or was missing or empty, in which case the tag
// is written now. A directory with other content and no tag (a home
// directory, /tmp, an OCI layout…) is foreign: labbake adds its
// subdirectories and files there but removes nothing it cannot prove it
// wrote.
func claim(dir string) (owned bool, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	if hasTag(dir) {
		return true, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tagTempPrefix) {
			// Not empty: foreign, unless another process claimed the
			// directory after our first look (it writes its tag before
			// anything else).
			return hasTag(dir), nil
		}
	}
	if err := writeTag(dir); err != nil {
		return false, fmt.Errorf("marking %s as labbake's cache: %w", dir, err)
	}
	return true, nil
}

// hasTag reports whether dir/CACHEDIR.TAG is a regular file with
// labbake's content.
func hasTag(dir string) bool {
	return hasContent(filepath.Join(dir, tagName), tagContent)
}

// hasContent reports whether path is a regular file (not a symlink, not a
// FIFO: opening neither follows nor blocks) holding exactly want.
func hasContent(path, want string) bool {
	f, err := openNoFollow(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return fileHolds(f, want)
}

func writeTag(dir string) error {
	// Two processes claiming at once rename equal content.
	return atomicfile.WriteFile(filepath.Join(dir, tagName), []byte(tagContent), 0o644)
}

// Owned reports whether labbake created the cache directory (it carries
// labbake's CACHEDIR.TAG). In a foreign one, Open sweeps nothing, and Prune
// and Remove refuse with ErrForeign.
func (c *Cache) Owned() bool { return c.owned }

// CheckOwned returns nil if the cache directory is labbake's, else the
// error, wrapping ErrForeign, that an operation removing files would fail
// with: callers check it before starting such an operation.
func (c *Cache) CheckOwned(op string) error {
	if c.owned {
		return nil
	}
	return c.foreignErr(op)
}

func (c *Cache) foreignErr(op string) error {
	return fmt.Errorf("cache: %s: %s: %w (it has other content and no labbake %s at its top): labbake adds to it but removes nothing there; use a directory of its own, e.g. --cache %s",
		op, c.dir, ErrForeign, tagName, filepath.Join(c.dir, "labbake"))
}

// openNoFollow opens path for reading without following a symlink at it
// and without blocking on a FIFO.
func openNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
}
