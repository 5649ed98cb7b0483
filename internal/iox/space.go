package iox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// MinFree is the free space a cache's file system must keep beyond a new
// entry, at the least, given its total size: a cache is an optimization
// and must never be what fills a disk (the outputs, the inputs and the
// next build need it more). Tests replace it.
var MinFree = func(total int64) int64 { return max(2<<30, total/10) }

// KeepsFree reports whether dir's file system can take n more bytes and
// still keep MinFree, and how much it has free now.
func KeepsFree(dir string, n int64) (bool, int64) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, 0
	}
	bs := int64(st.Bsize) //nolint:unconvert // uint32 on some systems
	free, total := int64(st.Bavail)*bs, int64(st.Blocks)*bs
	return free-n >= MinFree(total), free
}

// PruneDirs removes all but the keep most recently modified directories
// of pool whose names do not start with a dot (those are being written).
func PruneDirs(pool string, keep int) {
	entries, err := os.ReadDir(pool)
	if err != nil {
		return
	}
	type dirAge struct {
		path string
		used time.Time
	}
	var dirs []dirAge
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			dirs = append(dirs, dirAge{filepath.Join(pool, e.Name()), fi.ModTime()})
		}
	}
	slices.SortFunc(dirs, func(a, b dirAge) int { return b.used.Compare(a.used) })
	for _, d := range dirs[min(keep, len(dirs)):] {
		_ = os.RemoveAll(d.path)
	}
}
